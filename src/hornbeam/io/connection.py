"""One HTTP/1.x connection on the event loop: parsing, pipelining, keep-alive, flow control.

Bytes from the transport go through the sans-IO :class:`~hornbeam.http1.parser.RequestParser`;
each request becomes a :class:`RequestCycle` handed to the interface adapter (WSGI or ASGI)
once the requests before it on this connection are answered. Adapters answer through
:meth:`HttpConnection.write` / :meth:`HttpConnection.finish` on the loop thread (app threads
reach them through the :class:`~hornbeam.io.channel.LoopChannel`).

Rules kept here:
- Requests on one connection are answered in order; at most ``MAX_PIPELINE`` wait, then the
  socket is not read until they are answered.
- A request body is buffered up to a high-water mark, then reading pauses (back-pressure).
- A connection idle for ``keepalive`` seconds is closed; one that has sent part of a request
  head by then gets ``408`` (slow clients, slowloris).
- While the worker drains, every response says ``Connection: close``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, cast

from hornbeam.http1.events import Data, EndOfMessage, Event, Request
from hornbeam.http1.parser import ProtocolError, RequestParser
from hornbeam.http1.writer import CONTINUE_RESPONSE, error_response, text_response
from hornbeam.logs import error_log

if TYPE_CHECKING:
    from hornbeam.io.server import ServerContext

MAX_PIPELINE = 16
# A response body at least this large leaves beside its head in one writev, rather than being
# copied after the head into a new buffer (measured with 64 KB bodies: 5% more requests/s).
COPY_LIMIT = 16 * 1024
# Queued output of one connection past which it is sent at once rather than at the end of
# the loop iteration: the transport's flow control (pause_writing) then holds back the app.
SEND_AT_ONCE = 64 * 1024


class RequestBody(Protocol):
    """Where the connection puts a request body as it arrives (the adapter reads it)."""

    @property
    def complete(self) -> bool: ...

    def feed(self, data: bytes) -> None: ...

    def finish(self) -> None: ...

    def abort(self, reason: str) -> None: ...

    def set_first_read_hook(self, hook: Callable[[], None]) -> None: ...


class UpgradedSession(Protocol):
    """A protocol that took over the connection after an HTTP upgrade (WebSocket)."""

    def data_received(self, data: bytes) -> None: ...

    def connection_lost(self) -> None: ...

    def shutdown(self) -> None: ...


class RequestHandler(Protocol):
    """What an interface adapter (WSGI, ASGI) offers the connection."""

    #: True when the app must only run once the whole body is buffered (inline WSGI).
    needs_complete_body: bool

    def new_body(self, conn: HttpConnection) -> RequestBody:
        """A body buffer for a request that has one; it pauses ``conn`` when too full."""

    def handle(self, conn: HttpConnection, cycle: RequestCycle) -> None:
        """Start answering ``cycle``; end with ``conn.finish`` or ``conn.abort``."""

    def timed_out(self, conn: HttpConnection, cycle: RequestCycle) -> None:
        """``request_timeout`` passed: stop the work if possible (the 504 is already sent)."""


class RequestCycle:
    """One request on one connection, from its head to the end of its response."""

    __slots__ = (
        "abandoned",
        "adapter",
        "body",
        "complete",
        "continue_sent",
        "event",
        "response_started",
        "started",
        "timer",
    )

    def __init__(self, event: Request, body: RequestBody | None, started: float) -> None:
        self.event = event
        self.body = body
        self.started = started
        self.complete = body is None  # the whole request (body included) has been received
        self.abandoned = False  # the server answered for the app (504) or the client left
        self.response_started = False
        self.continue_sent = not event.expect_continue
        self.timer: asyncio.TimerHandle | None = None
        # The adapter's own per-request object (the ASGI cycle); told when the client leaves.
        self.adapter: Any = None


class HttpConnection(asyncio.Protocol):
    """The protocol object of one accepted connection."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.parser = RequestParser(ctx.limits)
        self.transport: asyncio.Transport | None = None
        self.client: tuple[str, int] | None = None
        self.server: tuple[str, int] | None = None
        self.cycle: RequestCycle | None = None  # the request being answered
        self.receiving: RequestCycle | None = None  # the request whose body is arriving
        self.pipeline: deque[RequestCycle] = deque()
        self.idle_since = time.monotonic()
        self.closed = False
        self.adapter_cache: Any = None  # per-connection data of the adapter (WSGI environ base)
        self.upgraded: UpgradedSession | None = None  # set once a WebSocket took over
        # False while the transport's buffer is over its high-water mark (pause_writing);
        # writers then wait through wait_drained / drained.
        self.writable = True
        self._drain_waiters: list[Callable[[], None]] = []
        self._eof = False
        self._paused_for_body = False
        self._paused_for_pipeline = False
        self._paused_for_refusal = False
        self._reading_paused = False
        self._refusal: tuple[int, str] | None = None  # a protocol error to answer in turn
        # Bytes written during this loop iteration, sent at its end (see ServerContext).
        self._output: list[bytes] = []
        self._output_size = 0
        self._close_after_output = False  # the last response is queued: close once it is sent

    # ---- asyncio.Protocol --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        if isinstance(peer, tuple):
            self.client = (str(peer[0]), int(peer[1]))
        if isinstance(sock, tuple):
            self.server = (str(sock[0]), int(sock[1]))
        self.ctx.connection_opened(self)

    def data_received(self, data: bytes) -> None:
        if self._close_after_output:
            return  # the connection ends with the response queued; no request comes after it
        if self.upgraded is not None:
            self.upgraded.data_received(data)
            return
        try:
            events = self.parser.feed(data)
        except ProtocolError as exc:
            self._handle_events(exc.events)
            self._refuse(exc.status, exc.reason)
            return
        self._handle_events(events)

    def _refuse(self, status: int, reason: str) -> None:
        """Answer a protocol error once the requests before it are answered, in order."""
        broken = self.receiving
        if broken is not None and not broken.complete:
            # The bad bytes are inside this request's body: it can never complete.
            if broken.body is not None:
                broken.body.abort(reason)
            if broken is self.cycle:
                self.reject(status, reason)
                return
            if broken in self.pipeline:
                self.pipeline.remove(broken)
        self._refusal = (status, reason)
        self._paused_for_refusal = True
        self._update_reading()
        if self.cycle is None and not self.pipeline:
            self.reject(status, reason)

    def _handle_events(self, events: list[Event]) -> None:
        for event in events:
            kind = type(event)
            if kind is Data:
                receiving = self.receiving
                if receiving is not None and receiving.body is not None:
                    receiving.body.feed(event.data)  # type: ignore[union-attr]
            elif kind is Request:
                self._on_request(event)  # type: ignore[arg-type]
            elif kind is EndOfMessage:
                self._on_end_of_message()

    def eof_received(self) -> bool:
        receiving = self.receiving
        if receiving is not None and not receiving.complete:
            return False  # the client gave up mid-request: connection_lost aborts the body
        if self.cycle is not None or self.pipeline:
            # Half-close: answer what was asked, then close. An app that can listen for the
            # client leaving (ASGI's http.disconnect) is told now.
            self._eof = True
            lost = getattr(self.cycle.adapter, "client_lost", None) if self.cycle else None
            if lost is not None:
                lost()
            return True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.parser.release()
        if self.upgraded is not None:
            self.upgraded.connection_lost()
        for cycle in (self.cycle, self.receiving, *self.pipeline):
            if cycle is not None:
                self._drop(cycle)
        self.pipeline.clear()
        self.writable = True
        self._release_drain_waiters()
        self.ctx.connection_closed(self)

    def pause_writing(self) -> None:
        self.writable = False

    def resume_writing(self) -> None:
        self.writable = True
        self._release_drain_waiters()

    # ---- requests ----------------------------------------------------------------------------
    def _on_request(self, event: Request) -> None:
        ctx = self.ctx
        body = ctx.handler.new_body(self) if event.chunked or event.content_length else None
        cycle = RequestCycle(event, body, time.time())
        if body is not None and not cycle.continue_sent:
            body.set_first_read_hook(lambda: ctx.post(self.send_continue, cycle))
        self.receiving = cycle
        if self.cycle is None:
            self._start(cycle)
        else:
            self.pipeline.append(cycle)
            if len(self.pipeline) >= MAX_PIPELINE:
                self._paused_for_pipeline = True
                self._update_reading()

    def _on_end_of_message(self) -> None:
        cycle = self.receiving
        if cycle is None or cycle.complete:
            return  # a request without a body was complete (and dispatched) from its head
        cycle.complete = True
        if cycle.body is not None:
            cycle.body.finish()
        if cycle is self.cycle and (self.ctx.handler.needs_complete_body or self._upgrades(cycle)):
            self._dispatch(cycle)

    def _start(self, cycle: RequestCycle) -> None:
        self.cycle = cycle
        ctx = self.ctx
        if ctx.health_target is not None and ctx.is_health_check(cycle.event.target):
            self._answer_health(cycle)
            return
        if ctx.handler.needs_complete_body:
            if not cycle.continue_sent:
                self.send_continue(cycle)
            if not cycle.complete:
                return  # _on_end_of_message dispatches it
        elif cycle.event.upgrade is not None and self._upgrades(cycle) and not cycle.complete:
            return  # switch protocols once the whole upgrade request is in
        self._dispatch(cycle)

    def _upgrades(self, cycle: RequestCycle) -> bool:
        """Whether this request switches the connection to WebSocket."""
        return cycle.event.upgrade == b"websocket" and self.ctx.speaks_websocket

    def _dispatch(self, cycle: RequestCycle) -> None:
        ctx = self.ctx
        # Counted as it starts, so the request that ends a worker's life (max_requests)
        # already sees the worker draining and answers with "Connection: close".
        ctx.request_started()
        if cycle.event.upgrade is not None and self._upgrades(cycle):
            self.upgraded = ctx.handler.open_websocket(self, cycle)  # type: ignore[attr-defined]
            leftover = self.parser.take_upgrade_bytes()
            if leftover:
                self.upgraded.data_received(leftover)
            return
        if ctx.request_timeout > 0:
            cycle.timer = ctx.loop.call_later(ctx.request_timeout, self._request_timed_out, cycle)
        ctx.handler.handle(self, cycle)

    def _answer_health(self, cycle: RequestCycle) -> None:
        event = cycle.event
        status, body = (503, b"draining\n") if self.ctx.draining else (200, b"ok\n")
        keep_alive = event.keep_alive and not self.ctx.draining
        response = text_response(
            status, body, self.ctx.date, event.http_version, keep_alive, event.method == b"HEAD"
        )
        self.write(cycle, response)
        self.finish(cycle, keep_alive)

    def _request_timed_out(self, cycle: RequestCycle) -> None:
        if cycle is not self.cycle or self.closed:
            return
        cycle.abandoned = True
        error_log.warning(
            "request timeout: %s %s took longer than %gs; answered 504",
            cycle.event.method.decode("latin-1"),
            cycle.event.target.decode("latin-1"),
            self.ctx.request_timeout,
        )
        if not cycle.response_started and self.transport is not None:
            self._queue(error_response(504, "request timed out", self.ctx.date))
        self.close()
        self.ctx.handler.timed_out(self, cycle)

    # ---- answers (loop thread) ---------------------------------------------------------------
    def send_continue(self, cycle: RequestCycle) -> None:
        if not cycle.continue_sent and not cycle.response_started and self.transport is not None:
            cycle.continue_sent = True
            if not self.closed:
                self._queue(CONTINUE_RESPONSE)

    def write(self, cycle: RequestCycle, data: bytes) -> None:
        if cycle is self.cycle and not cycle.abandoned and not self.closed and data:
            cycle.response_started = True
            self._queue(data)

    def _queue(self, data: bytes) -> None:
        """Send ``data`` at the end of this loop iteration, with everything else written in
        it: a burst of responses then leaves together and wakes the client once, not once
        per response."""
        output = self._output
        if not output:
            self.ctx.output_queued(self)
            self._output_size = 0
        output.append(data)
        self._output_size += len(data)
        if self._output_size >= SEND_AT_ONCE:
            self.flush_output()  # a large response goes now, under the transport's flow control

    def flush_output(self) -> None:
        """Send what this loop iteration wrote, now (ServerContext calls it at the end of
        the iteration; anything about to use the transport directly calls it first)."""
        output = self._output
        if not output:
            return
        self._output = []
        transport = self.transport
        if transport is None or self.closed:
            return
        if len(output) == 1:
            transport.write(output[0])
        elif self._output_size < COPY_LIMIT:
            transport.write(b"".join(output))
        else:
            transport.writelines(output)
        if self._close_after_output:
            transport.close()

    def finish(self, cycle: RequestCycle, keep_alive: bool) -> None:
        """The response to ``cycle`` is complete; go on with the next request or close."""
        if cycle is not self.cycle:
            return
        if cycle.timer is not None:
            cycle.timer.cancel()
        self.cycle = None
        if self.closed:
            return
        if not keep_alive or self.ctx.draining or not cycle.complete or cycle.abandoned:
            if self._output:
                # Closed now, the socket would send this response alone, waking the client
                # for it; it leaves with the iteration's other responses (see _queue), and
                # the close follows (FastAPI, Connection: close, one worker: 11,300-12,100 ->
                # 12,900-13,000 req/s).
                self._close_after_output = True
            else:
                self.close()
            return
        if self.pipeline:
            if self._paused_for_pipeline and len(self.pipeline) < MAX_PIPELINE:
                self._paused_for_pipeline = False
                self._update_reading()
            self._start(self.pipeline.popleft())
        elif self._refusal is not None:
            self.reject(*self._refusal)
        elif self._eof:
            self.close()
        else:
            self.idle_since = time.monotonic()

    def write_and_finish(
        self, cycle: RequestCycle, data: bytes, keep_alive: bool, body: bytes = b""
    ) -> None:
        """Write ``data`` and then ``body`` (kept apart so a large one is not copied), finish."""
        if len(body) < COPY_LIMIT:
            self.write(cycle, data + body)
        elif cycle is self.cycle and not cycle.abandoned and not self.closed:
            cycle.response_started = True
            self._queue(data)
            self._queue(body)
        self.finish(cycle, keep_alive)

    def abort(self, cycle: RequestCycle) -> None:
        """Close at once: the response cannot be completed (the client sees it cut short)."""
        if cycle is self.cycle:
            self.finish(cycle, keep_alive=False)
            self.flush_output()  # what it had written goes first, and the close with it
        self.close(abort=True)

    def wait_drained(self, cycle: RequestCycle, event: threading.Event) -> None:
        """Set ``event`` once the transport takes writes again (app threads throttle on it)."""
        if self.closed or self.writable or cycle is not self.cycle:
            event.set()
        else:
            self._drain_waiters.append(event.set)

    async def drained(self) -> None:
        """Return once the transport takes writes again (coroutines throttle on it)."""
        if self.closed or self.writable:
            return
        waiter: asyncio.Future[None] = self.ctx.loop.create_future()

        def release() -> None:
            if not waiter.done():
                waiter.set_result(None)

        self._drain_waiters.append(release)
        await waiter

    def wait_flushed(self, cycle: RequestCycle, event: threading.Event) -> None:
        """Set ``event`` once every byte written so far has left the transport's buffer."""
        self.flush_output()
        transport = self.transport
        if (
            self.closed
            or cycle is not self.cycle
            or transport is None
            or transport.get_write_buffer_size() == 0
        ):
            event.set()
        else:  # rare (sendfile after a large head): poll briefly rather than add a hook
            self.ctx.loop.call_later(0.001, self.wait_flushed, cycle, event)

    def reject(self, status: int, reason: str) -> None:
        """Answer a protocol error with a short text/plain response and close."""
        if self.transport is None or self.closed:
            return
        cycle = self.cycle
        if cycle is None or not cycle.response_started:
            self._queue(error_response(status, reason, self.ctx.date))
        if cycle is not None:
            cycle.abandoned = True  # whatever the app still sends is dropped
        error_log.debug("rejected request from %s: %d %s", self.client, status, reason)
        self.close()

    def close(self, abort: bool = False) -> None:
        if abort:
            self._output = []
        else:
            self.flush_output()
        if self.transport is not None and not self.transport.is_closing():
            if abort:
                self.transport.abort()
            else:
                self.transport.close()

    # ---- housekeeping ------------------------------------------------------------------------
    def check_idle(self, now: float, keepalive: float) -> None:
        """Close a connection that has been waiting for a request head too long."""
        if self.cycle is not None or self.pipeline or self.closed:
            return
        if now - self.idle_since >= keepalive:
            if self.parser.in_message:
                self.reject(408, "request head not received in time")
            else:
                self.close()

    def _drop(self, cycle: RequestCycle) -> None:
        cycle.abandoned = True
        if cycle.timer is not None:
            cycle.timer.cancel()
        if cycle.body is not None:
            cycle.body.abort("client disconnected")
        lost = getattr(cycle.adapter, "client_lost", None)
        if lost is not None:
            lost()

    def _release_drain_waiters(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for release in waiters:
            release()

    def pause_for_body(self) -> None:
        self._paused_for_body = True
        self._update_reading()

    def resume_for_body(self) -> None:
        self._paused_for_body = False
        self._update_reading()

    def resume_for_body_threadsafe(self) -> None:
        self.ctx.post(self.resume_for_body)

    def _update_reading(self) -> None:
        want_paused = self._paused_for_body or self._paused_for_pipeline or self._paused_for_refusal
        if want_paused == self._reading_paused or self.transport is None or self.closed:
            return
        self._reading_paused = want_paused
        if want_paused:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()
