"""A worker's connection machinery inside the test process, driven over socketpairs.

:class:`WiredWorker` wires a :class:`~hornbeam.io.server.ServerContext`, a
:class:`~hornbeam.wsgi.handler.WsgiHandler` (or, with ``asgi=True``, an
:class:`~hornbeam.asgi.http.AsgiHandler`) and a :class:`~hornbeam.io.channel.LoopChannel` the
way ``hornbeam.worker.process.Worker._serve`` does, on an event loop (asyncio or uvloop) run by
a :class:`LoopThread`. Each :meth:`WiredWorker.connect` hands one end of a socketpair to the
loop as an accepted connection and returns the other end, so a test talks to the real
``HttpConnection`` with plain blocking socket calls, without a subprocess in between.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import uvloop

from hornbeam.asgi.http import AsgiApp, AsgiHandler
from hornbeam.asgi.websocket import WebSocketLimits
from hornbeam.forwarded import ProxyTrust
from hornbeam.http1.parser import Limits
from hornbeam.io.channel import LoopChannel
from hornbeam.io.connection import HttpConnection
from hornbeam.io.server import ServerContext
from hornbeam.logs import AccessLog
from hornbeam.wsgi.handler import WsgiApp, WsgiHandler

T = TypeVar("T")
LOOP_KINDS = ("asyncio", "uvloop")


class LoopThread:
    """An event loop running forever in a daemon thread; work reaches it thread-safely."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.loop = uvloop.new_event_loop() if kind == "uvloop" else asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=f"driver-{kind}-loop", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 5.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the loop thread, where the connection's state may be read."""

        async def on_loop() -> T:
            return fn(*args)

        return self.run(on_loop())

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


class WiredWorker:
    """What one worker process runs per listening socket, minus the socket and the process."""

    def __init__(
        self,
        loop_thread: LoopThread,
        app: WsgiApp | AsgiApp,
        *,
        asgi: bool = False,
        threads: int = 4,
        request_timeout: float = 0.0,
        health_path: str | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.loop_thread = loop_thread
        channel = LoopChannel(loop_thread.loop)
        self.requests_done = 0
        self.stuck_reports: list[str] = []
        self.ctx = ServerContext(
            loop=loop_thread.loop,
            limits=limits or Limits(),
            keepalive=5.0,
            request_timeout=request_timeout,
            body_timeout=10.0,
            health_path=health_path,
            post=channel.post,
            on_request_started=self._request_done,
        )
        access_log = AccessLog("%(h)s %(r)s %(s)s")
        trust = ProxyTrust(["127.0.0.1"])
        if asgi:
            websocket_limits = WebSocketLimits(1 << 20, 60.0, 20.0, compress=False)
            self.ctx.handler = AsgiHandler(app, {}, access_log, trust, websocket_limits)
        else:
            self.ctx.handler = WsgiHandler(
                app,
                threads=threads,
                post=channel.post,
                access_log=access_log,
                trust=trust,
                on_stuck_request=self.stuck_reports.append,
                schedule=loop_thread.loop.call_later,  # the handler runs on that loop's thread
                soon=loop_thread.loop.call_soon,
            )
        self._client_sockets: list[socket.socket] = []

    def _request_done(self) -> None:
        self.requests_done += 1

    def connect(self) -> tuple[socket.socket, HttpConnection]:
        """A new connection: the client end (blocking socket) and the server's protocol."""
        server_end, client_end = socket.socketpair()
        self._client_sockets.append(client_end)
        loop = self.loop_thread.loop

        async def accept() -> HttpConnection:
            _, protocol = await loop.connect_accepted_socket(
                lambda: HttpConnection(self.ctx), server_end
            )
            return protocol

        return client_end, self.loop_thread.run(accept())

    def close(self, timeout: float = 5.0) -> None:
        """Abort every connection and wait until the loop has seen each one go."""

        def abort_all() -> None:
            for conn in list(self.ctx.connections):
                conn.close(abort=True)

        self.loop_thread.call(abort_all)
        deadline = time.monotonic() + timeout
        while self.loop_thread.call(len, self.ctx.connections):
            if time.monotonic() > deadline:
                raise AssertionError("connections still open after abort")
            time.sleep(0.01)
        for sock in self._client_sockets:
            sock.close()
