"""ASGI 3 HTTP (spec 2.4): the scope, ``receive``/``send`` of one request, and the adapter.

Each request runs as a task on the worker's event loop. ``receive()`` yields the body as it
arrives (``http.request`` chunks, reading paused past a high-water mark), then blocks until
the client leaves or the response is complete, and says ``http.disconnect``. ``send()``
accepts ``http.response.start`` / ``body`` (with ``more_body``), ``http.response.trailers``
(sent only when the client asked with ``TE: trailers``), ``http.response.pathsend`` and
``http.response.informational`` (e.g. 103 Early Hints). Misuse by the app raises
``RuntimeError`` in the app with a message saying what was expected.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from hornbeam.errors import ClientDisconnected
from hornbeam.forwarded import FORWARDING_HEADER_NAMES, ProxyTrust
from hornbeam.http1.events import Request
from hornbeam.http1.framing import HeadCache, ResponseFraming
from hornbeam.http1.target import decode_path, is_plain_path, split_target
from hornbeam.http1.writer import (
    BYTES_LIKE,
    SEQUENCES,
    HeaderChecker,
    HeaderError,
    error_response,
    reason_phrase,
)
from hornbeam.io.connection import HttpConnection, RequestCycle
from hornbeam.logs import AccessLog, error_log

if TYPE_CHECKING:
    from hornbeam.asgi.websocket import WebSocketLimits, WebSocketSession

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]

ASGI_VERSION = {"version": "3.0", "spec_version": "2.4"}
HIGH_WATER = 256 * 1024
_PATHSEND_CHUNK = 256 * 1024
_EXTENSIONS: dict[str, dict[str, Any]] = {
    "http.response.trailers": {},
    "http.response.pathsend": {},
    "http.response.informational": {},
}


class AsyncBody:
    """A request body the loop feeds and one coroutine reads, with back-pressure."""

    __slots__ = (
        "_chunks",
        "_complete",
        "_conn",
        "_first_read",
        "_lost",
        "_paused",
        "_size",
        "_waiter",
    )

    def __init__(self, conn: HttpConnection) -> None:
        self._conn = conn
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._complete = False
        self._lost = False
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._first_read: Callable[[], None] | None = None

    @property
    def complete(self) -> bool:
        return self._complete

    def set_first_read_hook(self, hook: Callable[[], None]) -> None:
        self._first_read = hook

    def feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        if self._size > HIGH_WATER and not self._paused:
            self._paused = True
            self._conn.pause_for_body()
        self._wake()

    def finish(self) -> None:
        self._complete = True
        self._wake()

    def abort(self, reason: str) -> None:
        self._lost = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def read(self) -> tuple[bytes, bool] | None:
        """Everything buffered and whether more follows; None when the client left."""
        if self._first_read is not None:
            hook, self._first_read = self._first_read, None
            hook()
        while not self._chunks and not self._complete and not self._lost:
            self._waiter = self._conn.ctx.loop.create_future()
            await self._waiter
            self._waiter = None
        if self._lost and not self._complete:
            return None
        data = b"".join(self._chunks) if len(self._chunks) != 1 else self._chunks[0]
        self._chunks.clear()
        self._size = 0
        if self._paused:
            self._paused = False
            self._conn.resume_for_body()
        return data, not self._complete


class HttpCycle:
    """``receive`` and ``send`` of one ASGI HTTP request."""

    __slots__ = (
        "_checker",
        "_conn",
        "_cycle",
        "_done",
        "_headers",
        "_heads",
        "_request_read",
        "_trailer_lines",
        "_trailers_announced",
        "_trailers_sent_on_wire",
        "_waiting_for_trailers",
        "complete",
        "framing",
        "head_sent",
        "started",
        "status",
        "task",
    )

    def __init__(
        self, conn: HttpConnection, cycle: RequestCycle, checker: HeaderChecker, heads: HeadCache
    ) -> None:
        self._conn = conn
        self._heads = heads
        self._cycle = cycle
        self._checker = checker
        self._request_read = False
        self._done: asyncio.Event | None = None  # set when the client leaves or we finished
        self._headers: Any = ()
        self._trailers_announced = False  # the app said trailers=True in its start message
        self._trailers_sent_on_wire = False  # ...and the client accepts them (TE: trailers)
        self._waiting_for_trailers = False
        self._trailer_lines: list[bytes] = []
        self.framing = ResponseFraming(cycle.event, conn.ctx.draining)
        self.started = False
        self.head_sent = False
        self.complete = False
        self.status = 0
        self.task: asyncio.Task[None] | None = None
        cycle.adapter = self

    def client_lost(self) -> None:
        """Called by the connection when the client goes away."""
        if self._done is not None:
            self._done.set()

    # ---- receive -----------------------------------------------------------------------------
    async def receive(self) -> Message:
        body = self._cycle.body
        if not self._request_read:
            if body is None:
                self._request_read = True
                return {"type": "http.request", "body": b"", "more_body": False}
            assert isinstance(body, AsyncBody)
            result = await body.read()
            if result is not None:
                data, more = result
                self._request_read = not more
                return {"type": "http.request", "body": data, "more_body": more}
            self._request_read = True
        elif not (self.complete or self._conn.closed or self._cycle.abandoned):
            if self._done is None:
                self._done = asyncio.Event()
            await self._done.wait()
        return {"type": "http.disconnect"}

    # ---- send --------------------------------------------------------------------------------
    async def send(self, message: Message) -> None:
        kind = message["type"]
        if self.complete:
            raise RuntimeError(f"ASGI: {kind!r} sent after the response was complete")
        if self._conn.closed or self._cycle.abandoned:
            raise ClientDisconnected("the client closed the connection")
        if not self.started:
            if kind == "http.response.start":
                self._start(message)
            elif kind == "http.response.informational":
                self._informational(message)
            else:
                raise RuntimeError(f"ASGI: expected 'http.response.start', got {kind!r}")
        elif self._waiting_for_trailers:
            if kind != "http.response.trailers":
                raise RuntimeError(f"ASGI: expected 'http.response.trailers', got {kind!r}")
            self._trailers(message)
        elif kind == "http.response.body":
            body = message.get("body", b"")
            if not isinstance(body, BYTES_LIKE):
                raise RuntimeError(f"ASGI: body must be bytes, not {type(body).__name__}")
            more = bool(message.get("more_body", False))
            self._body(bytes(body), more)
            if more and not self._conn.writable:
                await self._conn.drained()  # the client reads slower than the app writes
        elif kind == "http.response.pathsend":
            await self._pathsend(str(message["path"]))
        else:
            raise RuntimeError(f"ASGI: unexpected {kind!r} in an HTTP response")

    def _start(self, message: Message) -> None:
        status = message.get("status")
        if not isinstance(status, int) or not 200 <= status <= 999:
            raise RuntimeError(f"ASGI: response status {status!r} is not a final status code")
        self.status = status
        self._headers = message.get("headers", ())  # checked when the head is built
        self.started = True
        self._trailers_announced = bool(message.get("trailers", False))
        self._trailers_sent_on_wire = self._trailers_announced and self._client_wants_trailers()

    def _client_wants_trailers(self) -> bool:
        event = self._cycle.event
        if event.http_version != "1.1":
            return False
        return any(n.lower() == b"te" and b"trailers" in v.lower() for n, v in event.headers)

    def _informational(self, message: Message) -> None:
        status = message.get("status")
        if not isinstance(status, int) or not 100 <= status < 200 or status == 101:
            raise RuntimeError(f"ASGI: informational status {status!r} must be 1xx, not 101")
        if self._cycle.event.http_version != "1.1":
            return  # HTTP/1.0 clients do not understand interim responses
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, reason_phrase(status))]
        for name, value in message.get("headers", ()):
            self._checker.lower_name(name)
            self._checker.check_value(name, value)
            lines.append(b"%s: %s\r\n" % (name, value))
        lines.append(b"\r\n")
        self._conn.write(self._cycle, b"".join(lines))

    def _head(self, known_length: int | None) -> bytes:
        if self.head_sent:
            return b""
        if self._trailers_sent_on_wire:
            known_length = None  # trailers travel after a chunked body
        date_line = self._conn.ctx.date.line
        raw_headers = self._headers
        key: Any = None
        head = None
        if isinstance(raw_headers, SEQUENCES):  # anything else is refused by _checked_headers
            key = (self.status, tuple(raw_headers), known_length)
            head = self.framing.cached_head(self._heads, key, date_line)
        if head is None:
            head = self.framing.head(
                self.status,
                b"%d %s" % (self.status, reason_phrase(self.status)),
                _checked_headers(raw_headers),
                known_length,
                self._checker,
                date_line,
                self._heads,
                key,
            )
        self.head_sent = True
        return head

    def _body(self, data: bytes, more: bool) -> None:
        framing, conn = self.framing, self._conn
        head = self._head(None if more else len(data))
        if more:
            conn.write(self._cycle, head + framing.body(data))
        elif self._trailers_announced:
            conn.write(self._cycle, head + framing.body(data))
            self._waiting_for_trailers = True
        else:
            self._finish(head, framing.body(data) + framing.end())

    def _trailers(self, message: Message) -> None:
        if self._trailers_sent_on_wire and self.framing.chunked:
            for name, value in message.get("headers", ()):
                self._checker.lower_name(name)
                self._checker.check_value(name, value)
                self._trailer_lines.append(b"%s: %s\r\n" % (name, value))
        if not message.get("more_trailers", False):
            self._finish(self.framing.end(b"".join(self._trailer_lines)))

    async def _pathsend(self, path: str) -> None:
        if self.head_sent:
            raise RuntimeError("ASGI: 'http.response.pathsend' after a body was sent")
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            conn = self._conn
            conn.write(self._cycle, self._head(size))
            while self.framing.body_allowed and (chunk := file.read(_PATHSEND_CHUNK)):
                if conn.closed:
                    raise ClientDisconnected("the client closed the connection")
                conn.write(self._cycle, self.framing.body(chunk))
                if not conn.writable:
                    await conn.drained()
        self._finish(self.framing.end())

    def _finish(self, data: bytes, body: bytes = b"") -> None:
        self.complete = True
        self._conn.write_and_finish(self._cycle, data, self.framing.keep_alive, body)
        if self._done is not None:
            self._done.set()


def _checked_headers(headers: Any) -> list[tuple[bytes, bytes]]:
    checked = []
    for pair in headers:
        name, value = pair
        if not isinstance(name, bytes) or not isinstance(value, bytes):
            raise RuntimeError(f"ASGI: header {pair!r} must be a pair of bytes")
        checked.append((name, value))
    return checked


def connection_scope(
    conn: HttpConnection, event: Request, state: dict[str, Any], trust: ProxyTrust, secure: bool
) -> dict[str, Any]:
    """The scope keys HTTP and WebSocket share; ``scheme`` is "http"/"https" (callers map it).

    ``client`` and the scheme follow X-Forwarded-* / Forwarded only from trusted proxies.
    """
    target = event.target
    if is_plain_path(target):
        raw_path, query, path = target, b"", target.decode("ascii")
    else:
        raw_path, query = split_target(target)
        path = decode_path(raw_path, "utf-8")
    client: tuple[str, int] | None = conn.client
    scheme = "https" if secure else "http"
    headers = [(name.lower(), value) for name, value in event.headers]
    if trust.enabled and client is not None:
        forwarded = {
            n.decode("latin-1"): v.decode("latin-1")
            for n, v in headers
            if n in FORWARDING_HEADER_NAMES
        }
        if forwarded and trust.trusts(client[0]):
            host, proto = trust.client_and_scheme(forwarded)
            if host:
                client = (host, 0)
            scheme = proto or scheme
    return {
        "asgi": ASGI_VERSION,
        "http_version": event.http_version,
        "server": conn.server,
        "client": client,
        "scheme": scheme,
        "root_path": "",
        "path": path,
        "raw_path": raw_path,
        "query_string": query,
        "headers": headers,
        "state": state.copy(),
    }


def http_scope(
    conn: HttpConnection, event: Request, state: dict[str, Any], trust: ProxyTrust
) -> dict[str, Any]:
    scope = connection_scope(conn, event, state, trust, secure=False)
    scope["type"] = "http"
    scope["method"] = event.method.decode("ascii")
    scope["extensions"] = _EXTENSIONS
    return scope


class AsgiHandler:
    """Implements :class:`~hornbeam.io.connection.RequestHandler` for an ASGI app."""

    needs_complete_body = False

    def __init__(
        self,
        app: AsgiApp,
        state: dict[str, Any],
        access_log: AccessLog,
        trust: ProxyTrust,
        websocket_limits: WebSocketLimits,
    ) -> None:
        self.app = app
        self.websocket_limits = websocket_limits
        self.state = state  # filled by lifespan startup; each request gets a shallow copy
        self._access_log = access_log
        self._trust = trust
        self._checker = HeaderChecker()
        self._heads = HeadCache()

    def new_body(self, conn: HttpConnection) -> AsyncBody:
        return AsyncBody(conn)

    def open_websocket(self, conn: HttpConnection, cycle: RequestCycle) -> WebSocketSession:
        from hornbeam.asgi.websocket import WebSocketSession

        return WebSocketSession(
            conn,
            cycle,
            self.app,
            connection_scope(conn, cycle.event, self.state, self._trust, secure=False),
            self.websocket_limits,
            self._checker,
            self._access_log,
        )

    def handle(self, conn: HttpConnection, cycle: RequestCycle) -> None:
        http = HttpCycle(conn, cycle, self._checker, self._heads)
        http.task = conn.ctx.loop.create_task(self._run(conn, cycle, http))

    def timed_out(self, conn: HttpConnection, cycle: RequestCycle) -> None:
        http = cycle.adapter
        if isinstance(http, HttpCycle) and http.task is not None:
            http.task.cancel()

    def stalled_for(self, now: float) -> float:
        return 0.0  # coroutines cannot stall the pool; a blocked loop stops the heartbeat

    async def _run(self, conn: HttpConnection, cycle: RequestCycle, http: HttpCycle) -> None:
        event = cycle.event
        try:
            scope = http_scope(conn, event, self.state, self._trust)
            await self.app(scope, http.receive, http.send)
        except asyncio.CancelledError:
            return  # request_timeout: the client already has its 504
        except ClientDisconnected:
            error_log.debug("client %s left during %s", conn.client, event.target)
        except (Exception, HeaderError) as exc:
            error_log.error(
                "Exception in ASGI application for %s %s",
                event.method.decode("latin-1"),
                event.target.decode("latin-1"),
                exc_info=exc,
            )
            self._fail(conn, cycle, http)
        else:
            if not http.complete and not conn.closed:
                error_log.error(
                    "ASGI app returned without %s response to %s",
                    "completing its" if http.head_sent else "sending a",
                    event.target.decode("latin-1"),
                )
                self._fail(conn, cycle, http)
        # Break the cycles task -> coroutine -> http -> task and cycle <-> http now, so a
        # finished request is freed by reference counting, not left to the garbage collector
        # (measured: one cyclic collection per ~700 requests, each a latency spike).
        http.task = None
        cycle.adapter = None
        if self._access_log.enabled:
            client = conn.client
            self._access_log.response(
                event,
                cycle.started,
                client[0] if client else "",
                http.status if http.head_sent else 500,
                http.framing.body_sent,
                http.framing.header_map,
            )

    def _fail(self, conn: HttpConnection, cycle: RequestCycle, http: HttpCycle) -> None:
        if http.head_sent:
            conn.abort(cycle)  # the client sees a cut-off body, never a wrong one
        elif not http.complete:
            http.complete = True
            data = error_response(500, "the application raised an error", conn.ctx.date)
            conn.write_and_finish(cycle, data, False)
