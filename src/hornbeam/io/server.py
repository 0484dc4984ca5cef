"""The listening side of one worker: servers on the inherited sockets and their connections.

:class:`ServerContext` is what every :class:`~hornbeam.io.connection.HttpConnection` of a
worker shares: limits, timeouts, the app adapter, the cached ``Date`` header, and whether the
worker is draining. It runs the once-a-tick housekeeping (idle connections, the clock) and
the graceful drain.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterable

from hornbeam.http1.parser import Limits
from hornbeam.http1.writer import DateHeader
from hornbeam.io.connection import HttpConnection, RequestHandler

# Seconds a keep-alive connection must have been idle before a draining worker closes it.
DRAIN_IDLE_GRACE = 0.25


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

    async def listen(self, sockets: Iterable[socket.socket], backlog: int) -> None:
        for sock in sockets:
            server = await self.loop.create_server(
                lambda: HttpConnection(self), sock=sock, backlog=backlog
            )
            self._servers.append(server)

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
