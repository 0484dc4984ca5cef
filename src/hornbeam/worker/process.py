"""A worker process: everything that happens between ``fork()`` and ``_exit()``.

Boot: reset the arbiter's signal handling, load the app (unless preloaded), attach the shared
state, run ``post_fork``, start a uvloop event loop serving the inherited sockets, and tell
the arbiter ``booted``. Then heart-beat from the loop (a loop blocked by the app stops the
beat and gets the worker killed, as does a pool whose every thread is stuck), recycle itself
after ``max_requests`` or past ``max_worker_memory``, and drain gracefully on SIGTERM.

The control pipe to the arbiter carries one-byte messages (see :mod:`hornbeam.worker.control`).
"""

from __future__ import annotations

import asyncio
import ctypes
import faulthandler
import os
import random
import signal
import socket
import time
import traceback
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

from hornbeam.config import Settings
from hornbeam.errors import EXIT_APP_LOAD, EXIT_OK, EXIT_WORKER_BOOT, AppLoadError
from hornbeam.forwarded import ProxyTrust
from hornbeam.http1.parser import Limits
from hornbeam.io.channel import LoopChannel
from hornbeam.io.server import ServerContext
from hornbeam.loader import detect_interface, load_app
from hornbeam.logs import AccessLog, configure, error_log
from hornbeam.pubsub import client as pubsub
from hornbeam.worker import control
from hornbeam.wsgi.handler import WsgiHandler

uvloop: ModuleType | None
try:  # imported with this module (in the arbiter, before fork): one copy of its pages
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency where it exists
    uvloop = None

if TYPE_CHECKING:
    from hornbeam.asgi.http import AsgiHandler
    from hornbeam.asgi.lifespan import Lifespan
    from hornbeam.state.runtime import StateRuntime

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
_MEMORY_CHECK_EVERY = 2.0


def resident_memory() -> int:
    """This process's RSS in bytes."""
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * _PAGE_SIZE


class Worker:
    """One worker process (the object lives in the child after fork)."""

    def __init__(
        self,
        settings: Settings,
        slot: int,
        sockets: list[socket.socket],
        control_fd: int,
        app: Callable[..., Any] | None,
        state: StateRuntime | None,
        server: object,
        broker_path: str | None = None,
    ) -> None:
        self.settings = settings
        self.slot = slot
        self.pid = os.getpid()
        self.sockets = sockets
        self.app = app
        self.state = state
        self.server = server  # the arbiter, passed to gunicorn-style hooks
        self.broker_path = broker_path
        self._control = control.Sender(control_fd)
        self._retiring = False
        self._stop: asyncio.Future[bool] | None = None
        self._requests = 0
        jitter = settings.max_requests_jitter
        self._max_requests = settings.max_requests + (random.randint(0, jitter) if jitter else 0)
        self._ctx: ServerContext | None = None
        self._handler: WsgiHandler | AsgiHandler | None = None
        self._next_memory_check = 0.0

    # ---- boot --------------------------------------------------------------------------------
    def run(self) -> int:
        """Serve until told to stop; returns the process exit code."""
        self._reset_signals()
        faulthandler.enable()  # SIGABRT from the arbiter dumps every thread's stack first
        limit_malloc_arenas()
        try:
            app = self.app if self.app is not None else load_app(self.settings.app)
        except AppLoadError as exc:
            return self._boot_failed(EXIT_APP_LOAD, str(exc))
        except BaseException as exc:
            error_log.error("Exception while loading the application\n%s", traceback.format_exc())
            message = f"app: importing {self.settings.app!r} raised {type(exc).__name__}: {exc}"
            return self._boot_failed(EXIT_APP_LOAD, message)
        interface = detect_interface(app, self.settings.interface)
        try:
            if self.state is not None:
                self.state.worker_attach()
            if self.broker_path is not None:
                pubsub.attach(self.broker_path)
            if self.settings.post_fork is not None:
                self.settings.post_fork(self.server, self)
        except Exception as exc:
            error_log.error("Worker failed to boot\n%s", traceback.format_exc())
            return self._boot_failed(EXIT_WORKER_BOOT, f"worker boot: {type(exc).__name__}: {exc}")
        loop = _new_event_loop()
        try:
            code = loop.run_until_complete(self._serve(loop, app, interface))
        finally:
            loop.close()
        self._exit_hook()
        return code

    def _boot_failed(self, code: int, message: str) -> int:
        error_log.error("%s", message)
        self._control.send_error(message)
        return code

    def _reset_signals(self) -> None:
        """Take the worker's own signal dispositions, then let signals in.

        The arbiter forks with its signals blocked, so one sent to this worker before now
        is pending, not lost, and arrives with the worker's disposition.
        """
        signal.set_wakeup_fd(-1)  # the arbiter's wake-up pipe is not ours
        for sig in (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGWINCH):
            signal.signal(sig, signal.SIG_IGN)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())

    # ---- serving -----------------------------------------------------------------------------
    async def _serve(
        self, loop: asyncio.AbstractEventLoop, app: Callable[..., Any], interface: str
    ) -> int:
        settings = self.settings
        channel = LoopChannel(loop)
        ctx = ServerContext(
            loop=loop,
            limits=Limits(
                request_line=settings.limit_request_line,
                fields=settings.limit_request_fields,
                field_size=settings.limit_request_field_size,
                body=settings.limit_request_body,
            ),
            keepalive=settings.keepalive,
            request_timeout=settings.request_timeout,
            body_timeout=settings.timeout or 30.0,
            health_path=settings.health_path,
            post=channel.post,
            on_request_started=self._request_started,
        )
        access_log = AccessLog(settings.access_log_format)
        trust = ProxyTrust(settings.forwarded_allow_ips)
        handler: WsgiHandler | AsgiHandler
        lifespan: Lifespan | None = None
        if interface == "asgi":
            # imported here: a WSGI worker never loads the ASGI and WebSocket stacks
            from hornbeam.asgi.http import AsgiHandler
            from hornbeam.asgi.lifespan import Lifespan, LifespanFailure
            from hornbeam.asgi.websocket import WebSocketLimits

            lifespan = Lifespan(app, settings.lifespan, settings.lifespan_timeout)
            try:
                await lifespan.startup()
            except LifespanFailure as exc:
                return self._boot_failed(EXIT_WORKER_BOOT, str(exc))
            websocket_limits = WebSocketLimits(
                max_message=settings.websocket_max_frame_size,
                idle_timeout=settings.websocket_timeout,
                ping_interval=settings.websocket_ping_interval,
                compress=settings.websocket_compress,
            )
            handler = AsgiHandler(app, lifespan.state, access_log, trust, websocket_limits)
        else:
            handler = WsgiHandler(
                app,
                threads=settings.threads,
                post=channel.post,
                access_log=access_log,
                trust=trust,
                on_stuck_request=self.retire,
                schedule=loop.call_later,
                soon=loop.call_soon,
            )
        ctx.handler = handler
        ctx.speaks_websocket = interface == "asgi"
        self._ctx, self._handler = ctx, handler
        self._stop = loop.create_future()
        loop.add_signal_handler(signal.SIGTERM, self.retire, "SIGTERM", False)
        loop.add_signal_handler(signal.SIGINT, self._stop_now)
        loop.add_signal_handler(signal.SIGQUIT, self._stop_now)
        loop.add_signal_handler(signal.SIGUSR1, self._reopen_logs)
        runs_apps_on_loop = interface == "asgi" or settings.threads == 0
        await ctx.listen(self.sockets, settings.backlog, take_backlogs=runs_apps_on_loop)
        error_log.info("Booting worker with pid: %d", self.pid)
        self._control.send(control.BOOTED)
        self._tick()
        graceful = await self._stop
        if graceful:
            finished = await ctx.drain(settings.graceful_timeout)
            if not finished:
                error_log.warning("graceful timeout: closing connections with requests in flight")
        else:
            ctx.stop_accepting()
            for conn in list(ctx.connections):
                conn.close(abort=True)
        if lifespan is not None:
            await lifespan.shutdown()
        error_log.info(
            "Worker exiting (pid: %d): served %d requests on %d connections",
            self.pid,
            self._requests,
            ctx.connections_accepted,
        )
        return EXIT_OK

    def _tick(self) -> None:
        ctx, handler = self._ctx, self._handler
        assert ctx is not None and handler is not None
        ctx.tick()
        now = time.monotonic()
        timeout = self.settings.timeout
        # Every app thread busy means no request can start: like a blocked loop, that is
        # silence, and the arbiter kills a worker silent for `timeout` (gunicorn's meaning).
        if not handler.stalled_for(now):
            self._control.send(control.HEARTBEAT)
        if self.settings.max_worker_memory and now >= self._next_memory_check:
            self._next_memory_check = now + _MEMORY_CHECK_EVERY
            rss = resident_memory()
            if rss > self.settings.max_worker_memory:
                self.retire(f"memory {rss} bytes is over max_worker_memory")
        interval = min(1.0, timeout / 4) if timeout else 1.0
        ctx.loop.call_later(interval, self._tick)

    def _request_started(self) -> None:
        self._requests += 1
        if self._max_requests and self._requests >= self._max_requests:
            self.retire(f"served max_requests ({self._max_requests})")

    def retire(self, reason: str, announce: bool = True) -> None:
        """Stop accepting, finish what is in flight, exit. The arbiter starts a replacement."""
        if self._retiring:
            return
        self._retiring = True
        error_log.info("Worker %d retiring: %s", self.pid, reason)
        if announce:
            self._control.send(control.RETIRING)
        if self._ctx is not None:
            self._ctx.draining = True
            self._ctx.stop_accepting()
        if self._stop is not None and not self._stop.done():
            self._stop.set_result(True)

    def _stop_now(self) -> None:
        if self._stop is not None and not self._stop.done():
            self._stop.set_result(False)

    def _reopen_logs(self) -> None:
        s = self.settings
        configure(s.error_log, s.log_level, s.access_log)

    def _exit_hook(self) -> None:
        if self.settings.worker_exit is not None:
            try:
                self.settings.worker_exit(self.server, self)
            except Exception:
                error_log.exception("worker_exit hook raised")


# glibc's mallopt() parameter for the most malloc arenas (malloc.h: M_ARENA_MAX).
_M_ARENA_MAX = -8
MALLOC_ARENAS = 2


def limit_malloc_arenas() -> bool:
    """Cap glibc's malloc arenas for this process; False where that cannot be done.

    glibc gives threads that allocate at the same time arenas of their own, up to eight per
    core, and memory freed in an arena stays with it. App threads take turns on the GIL, so
    extra arenas buy nothing, yet with a few threads building 64 KB responses a worker's RSS
    measured 34-46 MB against 28-31 MB with two arenas (same throughput).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no C library symbols to look in, or not glibc
        return False
    return bool(mallopt(_M_ARENA_MAX, MALLOC_ARENAS))


def _new_event_loop() -> asyncio.AbstractEventLoop:
    loop = asyncio.new_event_loop() if uvloop is None else uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.set_exception_handler(_log_loop_exception)
    return loop


def _log_loop_exception(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    exc = context.get("exception")
    error_log.error("event loop: %s", context.get("message", "unhandled error"), exc_info=exc)
