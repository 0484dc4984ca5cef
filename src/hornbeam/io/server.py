"""The listening side of one worker: servers on the inherited sockets and their connections.

:class:`ServerContext` is what every :class:`~hornbeam.io.connection.HttpConnection` of a
worker shares: limits, timeouts, the app adapter, the cached ``Date`` header, and whether the
worker is draining. It runs the once-a-tick housekeeping (idle connections, the clock) and
the graceful drain.

Accepting: libuv, under uvloop's servers, accepts one connection per event loop iteration.
With one request per connection (``Connection: close``, what many proxies send their
upstreams) every request then took an iteration of its own, and the backlog, not the app,
set the pace. Where the apps run on the loop (ASGI, inline WSGI), each accept by the server
is followed, at the end of the iteration, by a look at the socket's backlog
(:class:`BacklogTaker`): the connections waiting there are accepted too, and their requests
are read, run and answered together, as keep-alive requests are. One worker on one core,
``Connection: close``: the FastAPI JSON endpoint 9,400-9,800 -> 12,000-12,500 req/s (with
the connection closing with the iteration's output, see ``HttpConnection.finish``: 12,900-
13,000; granian 14,300), the Flask demo inline 7,300-7,700 -> 10,100, hello apps unchanged.
Threaded WSGI keeps one accept per iteration: its app threads, not the loop, set its pace,
and the Python accept path only took GIL time from them (the Flask demo 9,800-10,700 ->
9,400-10,400). A look that finds the backlog empty costs a failed ``accept()``; after one,
the next look waits for ``LOOK_EVERY`` accepts, so a lightly loaded server does not pay it
for each connection.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

from hornbeam.http1.parser import Limits
from hornbeam.http1.writer import DateHeader
from hornbeam.io.connection import HttpConnection, RequestHandler
from hornbeam.logs import error_log

# Seconds a keep-alive connection must have been idle before a draining worker closes it.
DRAIN_IDLE_GRACE = 0.25
# Most connections one look takes from a backlog. More is not faster: with 32, the FastAPI
# app's requests of one iteration outgrew the collector's first generation, and full
# collections (18 ms each) took its p99 from 5 ms to 20 ms.
BACKLOG_BATCH = 16
# Accepts by the server after a look that found the backlog empty, before the next look.
LOOK_EVERY = 8


class ServerContext:
    """Per-worker state shared by all connections."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        limits: Limits,
        keepalive: float,
        request_timeout: float,
        body_timeout: float,
        health_path: str | None,
        post: Callable[..., None],
        on_request_started: Callable[[], None],
    ) -> None:
        self.loop = loop
        self.limits = limits
        self.keepalive = keepalive
        self.request_timeout = request_timeout
        self.body_timeout = body_timeout
        self.health_target = health_path.encode("latin-1") if health_path else None
        self.post = post
        self.request_started = on_request_started
        self.date = DateHeader()
        self.draining = False
        self.connections: set[HttpConnection] = set()
        self.connections_accepted = 0
        self.handler: RequestHandler
        self.speaks_websocket = False  # the handler can take over upgraded connections
        self._servers: list[asyncio.AbstractServer] = []
        self._backlog_takers: list[BacklogTaker] = []
        self._output_queued: list[HttpConnection] = []

    def is_health_check(self, target: bytes) -> bool:
        health = self.health_target
        assert health is not None
        return target == health or (target.startswith(health) and target[len(health)] == 0x3F)

    def output_queued(self, conn: HttpConnection) -> None:
        """``conn`` has bytes to send: send them, and every other connection's, at the end
        of this loop iteration (see ``HttpConnection._queue``)."""
        if not self._output_queued:
            self.loop.call_soon(self._flush_output)
        self._output_queued.append(conn)

    def _flush_output(self) -> None:
        queued, self._output_queued = self._output_queued, []
        for conn in queued:
            conn.flush_output()

    def connection_opened(self, conn: HttpConnection) -> None:
        self.connections.add(conn)
        self.connections_accepted += 1

    def connection_closed(self, conn: HttpConnection) -> None:
        self.connections.discard(conn)

    async def listen(
        self, sockets: Iterable[socket.socket], backlog: int, take_backlogs: bool
    ) -> None:
        """Serve connections on ``sockets``; with ``take_backlogs``, take every waiting
        connection each time one is accepted (see the module docstring)."""
        for sock in sockets:
            factory = self.new_connection
            if take_backlogs:
                taker = BacklogTaker(self, sock)
                self._backlog_takers.append(taker)
                factory = taker.accepted
            server = await self.loop.create_server(factory, sock=sock, backlog=backlog)
            self._servers.append(server)

    def new_connection(self) -> HttpConnection:
        """The protocol of a connection just accepted."""
        return HttpConnection(self)

    def tick(self) -> None:
        """Once-a-tick housekeeping: refresh the Date header, close idle connections."""
        self.date.refresh(time.time())
        now = time.monotonic()
        keepalive = self.keepalive
        for conn in list(self.connections):
            conn.check_idle(now, keepalive)

    def busy(self) -> bool:
        return any(c.cycle is not None or c.pipeline for c in self.connections)

    def stop_accepting(self) -> None:
        for server in self._servers:
            server.close()
        self._servers.clear()
        for taker in self._backlog_takers:
            taker.stopped = True
        self._backlog_takers.clear()

    async def drain(self, graceful_timeout: float, poll: float = 0.05) -> bool:
        """Stop accepting, answer in-flight requests, then close every connection.

        A keep-alive connection is closed only once it has been idle for ``DRAIN_IDLE_GRACE``:
        a client that just got a response may already be sending its next request, and
        closing then would lose it ("server disconnected without a response"). That next
        request is answered with ``Connection: close`` instead. Returns True if everything
        in flight finished within ``graceful_timeout``.
        """
        self.draining = True
        self.stop_accepting()
        for conn in list(self.connections):
            if conn.upgraded is not None:
                conn.upgraded.shutdown()  # WebSockets close with 1001
        deadline = time.monotonic() + graceful_timeout
        while self.busy() or any(conn.upgraded is None for conn in self.connections):
            now = time.monotonic()
            if now >= deadline:
                break
            for conn in list(self.connections):
                if conn.upgraded is None:
                    conn.check_idle(now, DRAIN_IDLE_GRACE)
            await asyncio.sleep(poll)
        finished = not self.busy()
        for conn in list(self.connections):
            conn.close(abort=not finished)
        return finished


class BacklogTaker:
    """Accepts the connections left in one listening socket's backlog (see the module
    docstring); the server's own accepts pass through :meth:`accepted`."""

    def __init__(self, ctx: ServerContext, sock: socket.socket) -> None:
        self._ctx = ctx
        self._sock = sock
        sock.setblocking(False)  # an empty backlog must answer EAGAIN, never hold the loop
        self._look_pending = False
        self._accepts_until_look = 0  # accepts by the server before the next look
        self.stopped = False

    def accepted(self) -> HttpConnection:
        """The server's protocol factory: it just accepted a connection."""
        if not self._look_pending:
            if self._accepts_until_look:
                self._accepts_until_look -= 1
            else:
                self._look_pending = True
                self._ctx.loop.call_soon(self._take)
        return self._ctx.new_connection()

    def _take(self) -> None:
        self._look_pending = False
        if self.stopped:
            return
        loop = self._ctx.loop
        taken = 0
        for _ in range(BACKLOG_BATCH):
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                break
            except ConnectionAbortedError:
                continue  # the client gave up while queued
            except OSError as exc:  # out of descriptors: the server's next accept says so
                error_log.debug("accept() on a backlog failed: %s", exc)
                break
            taken += 1
            adopted = loop.create_task(loop.connect_accepted_socket(self._ctx.new_connection, conn))
            adopted.add_done_callback(_log_adoption_failure)
        self._accepts_until_look = 0 if taken else LOOK_EVERY


def _log_adoption_failure(adopted: asyncio.Task[Any]) -> None:
    failure = None if adopted.cancelled() else adopted.exception()
    if failure is not None:
        error_log.debug("connection dropped while being set up: %s", failure)
