"""The WSGI adapter: runs the app for each request on a pool of app threads (or inline).

Thread mode (default): the loop hands each request to :class:`AppThreadPool`; a thread builds
the environ, calls the app, and posts the framed bytes back through the loop channel, so one
slow request never delays the others of its worker. Inline mode (``threads = 0``) calls the
app on the loop thread itself, once the whole body is in: faster for tiny apps that never block.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from hornbeam.errors import ClientDisconnected
from hornbeam.forwarded import ProxyTrust
from hornbeam.http1.framing import HeadCache
from hornbeam.http1.writer import HeaderChecker, error_response
from hornbeam.io.channel import run_inline
from hornbeam.io.connection import HttpConnection, RequestCycle
from hornbeam.logs import AccessLog, error_log
from hornbeam.wsgi.environ import base_environ, connection_environ, request_environ
from hornbeam.wsgi.input import EMPTY_INPUT, StreamingInput
from hornbeam.wsgi.pool import AppThreadPool, Schedule, Soon
from hornbeam.wsgi.response import ResponseAborted, WsgiResponse

WsgiApp = Callable[..., Any]


class WsgiHandler:
    """Implements :class:`~hornbeam.io.connection.RequestHandler` for a WSGI app."""

    def __init__(
        self,
        app: WsgiApp,
        threads: int,
        post: Callable[..., None],
        access_log: AccessLog,
        trust: ProxyTrust,
        on_stuck_request: Callable[[str], None],
        schedule: Schedule | None = None,
        soon: Soon | None = None,
    ) -> None:
        self.app = app
        self.pool = AppThreadPool(threads, schedule, soon) if threads > 0 else None
        self.needs_complete_body = self.pool is None
        self._post = post if self.pool is not None else run_inline
        self._access_log = access_log
        self._trust = trust
        self._checker = HeaderChecker()
        self._heads = HeadCache()
        self._base = base_environ(multithread=self.pool is not None)
        self._on_stuck_request = on_stuck_request

    def new_body(self, conn: HttpConnection) -> StreamingInput:
        return StreamingInput(
            pause=conn.pause_for_body,
            resume=conn.resume_for_body_threadsafe,
            read_timeout=conn.ctx.body_timeout,
            # inline mode reads nothing until the whole body is in: nothing would drain it
            bounded=self.pool is not None,
        )

    def handle(self, conn: HttpConnection, cycle: RequestCycle) -> None:
        if self.pool is not None:
            self.pool.submit_soon(self._run, conn, cycle)
        else:
            self._run(conn, cycle)

    def timed_out(self, conn: HttpConnection, cycle: RequestCycle) -> None:
        if self.pool is not None:
            # A thread cannot be interrupted: let this worker retire once the others finish.
            self._on_stuck_request("an app thread is stuck past request_timeout")

    def _run(self, conn: HttpConnection, cycle: RequestCycle) -> None:
        post = self._post
        environ_base = conn.adapter_cache
        if environ_base is None:
            environ_base = conn.adapter_cache = connection_environ(
                self._base, conn.client, conn.server
            )
        body = cycle.body
        if body is None:
            stream: Any = EMPTY_INPUT
        elif body.complete:
            assert isinstance(body, StreamingInput)
            stream = io.BytesIO(body.take_all_buffered())
        else:
            stream = body
        environ = request_environ(environ_base, cycle.event, stream, self._trust)
        response = WsgiResponse(conn, cycle, post, self._checker, self._heads)
        result: Any = None
        try:
            result = self.app(environ, response.start_response)
            response.send_iterable(result)
        except (ResponseAborted, ClientDisconnected) as exc:
            error_log.debug("response to %s abandoned: %s", conn.client, exc)
            post(conn.abort, cycle)
        except Exception:
            error_log.exception(
                "Error handling request %s %s",
                cycle.event.method.decode("latin-1"),
                cycle.event.target.decode("latin-1"),
            )
            if response.head_sent:
                post(conn.abort, cycle)
            else:
                data = error_response(500, "the application raised an error", conn.ctx.date)
                response.replaced_by_server_error(data)
                post(conn.write_and_finish, cycle, data, False)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    error_log.exception("error in the close() of the app's response iterable")
        if self._access_log.enabled:
            self._access_log.response(
                cycle.event,
                cycle.started,
                environ.get("REMOTE_ADDR", ""),
                response.status_code,
                response.body_sent,
                response.header_map,
            )

    def stalled_for(self, now: float) -> float:
        return self.pool.stalled_for(now) if self.pool is not None else 0.0
