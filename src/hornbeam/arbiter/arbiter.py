"""The arbiter: the master process that binds, forks and supervises the workers.

It never runs app code (unless ``preload_app``). Signal handlers only queue the signal; the
main loop, woken by the signal wake-up pipe or a worker's control pipe, does the work:

=========  =============================================================================
SIGTERM    graceful stop: workers stop accepting and finish in-flight requests
SIGINT/QUIT fast stop
SIGHUP     reload config and code: a new generation boots, then the old one drains
SIGTTIN    one worker more; SIGTTOU: one worker less
SIGUSR1    reopen log files (forwarded to the workers)
SIGCHLD    reap; a dead worker's slot gets a new worker at once
=========  =============================================================================

A worker that misses heartbeats for ``timeout`` gets SIGABRT (its stacks are dumped) and then
SIGKILL. A worker that cannot load the app at start stops the server with exit code 4 (3 for
other boot failures) instead of respawning forever; during a reload it only aborts the reload.
"""

from __future__ import annotations

import contextlib
import gc
import os
import select
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hornbeam import __version__
from hornbeam.arbiter.listeners import Listeners
from hornbeam.config import Settings
from hornbeam.errors import (
    EXIT_APP_LOAD,
    EXIT_WORKER_BOOT,
    AppLoadError,
    ConfigError,
    HornbeamError,
    WorkerBootError,
)
from hornbeam.loader import load_app, prepare_import_path
from hornbeam.logs import configure, error_log
from hornbeam.pubsub.broker import Broker
from hornbeam.worker.control import Receiver
from hornbeam.worker.process import Worker  # imported before fork: workers share its pages

_SIGNALS = (
    signal.SIGHUP,
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGUSR1,
    signal.SIGCHLD,
)
_KILL_GRACE = 2.0  # seconds between SIGABRT (stack dump) and SIGKILL
_SWEEP_EVERY = 1.0
_BOOT_CRASH_LIMIT = 5  # workers of one generation dying before boot, within _BOOT_CRASH_WINDOW
_BOOT_CRASH_WINDOW = 10.0


@dataclass(eq=False)
class WorkerRecord:
    pid: int
    slot: int
    generation: int
    pipe: int
    receiver: Receiver
    terminate_sent: float | None = None  # when we asked it to stop (SIGTERM/SIGQUIT)
    abort_sent: float | None = None  # when we sent SIGABRT for a missed heartbeat

    @property
    def leaving(self) -> bool:
        return self.terminate_sent is not None or self.receiver.retiring


@dataclass
class _Stop:
    graceful: bool
    deadline: float
    error: HornbeamError | None = None


@dataclass
class Arbiter:
    settings: Settings
    workers: dict[int, WorkerRecord] = field(default_factory=dict)
    generation: int = 0

    def __post_init__(self) -> None:
        self.num_workers = self.settings.workers
        self.app: Callable[..., Any] | None = None
        self.listeners = Listeners(self.settings.bind, self.settings.backlog)
        self.state: Any = None
        self._signals: list[int] = []
        self._wakeup_r = self._wakeup_w = -1
        self._stop: _Stop | None = None
        self._boot_crashes: list[float] = []
        self._next_sweep = 0.0
        self._previous_settings: Settings | None = None
        self.broker: Broker | None = None
        self._runtime_dir = ""
        self.pid = os.getpid()

    # ---- lifecycle -----------------------------------------------------------------------------
    def run(self) -> None:
        """Serve until stopped; raises a HornbeamError when the server cannot run."""
        s = self.settings
        configure(s.error_log, s.log_level, s.access_log)
        prepare_import_path(s.pythonpath, s.chdir, s.venv)
        if s.on_starting is not None:
            s.on_starting(self)
        if s.preload_app:
            self.app = load_app(s.app)
            gc.freeze()  # workers share the app's pages instead of copying them on write
        self.listeners.open()
        try:
            self._start_state()
            self._start_broker()
            self._write_pidfile()
            self._install_signals()
            error_log.info("Starting hornbeam %s", __version__)
            for url in self.listeners.urls():
                error_log.info("Listening at: %s (%d)", url, self.pid)
            error_log.info(
                "Using %d workers; WSGI apps on %s",
                self.num_workers,
                f"{s.threads} app threads each" if s.threads else "the event loop (inline)",
            )
            self._main_loop()
        finally:
            self._cleanup()
        if self._stop is not None and self._stop.error is not None:
            raise self._stop.error

    def _start_broker(self) -> None:
        self._runtime_dir = tempfile.mkdtemp(prefix="hornbeam-run-")  # 0700 by construction
        self.broker = Broker(os.path.join(self._runtime_dir, "pubsub.sock"))

    def _start_state(self) -> None:
        from hornbeam.state.runtime import StateRuntime

        self.state = StateRuntime.create(self.settings.state_backend, self.settings.state_path)
        error_log.info("Shared state: %s in %s", self.settings.state_backend, self.state.run_dir)

    def _main_loop(self) -> None:
        while True:
            self._wait_for_events(0.5)
            self._handle_signals()
            self._reap()
            now = time.monotonic()
            if self._stop is not None:
                if not self.workers:
                    return
                if now >= self._stop.deadline:
                    self._kill_all(signal.SIGKILL)
                continue
            self._murder_unresponsive(now)
            self._hand_over_generations()
            self._spawn_missing()
            if now >= self._next_sweep and self.state is not None:
                self._next_sweep = now + _SWEEP_EVERY
                self.state.sweep_expired()

    def _wait_for_events(self, timeout: float) -> None:
        broker = self.broker
        fds = [self._wakeup_r, *(rec.pipe for rec in self.workers.values())]
        write_fds: list[int] = []
        broker_fds: set[int] = set()
        if broker is not None:
            broker_fds.update(broker.read_fds())
            fds += broker_fds
            write_fds = broker.write_fds()
        try:
            ready, writable, _ = select.select(fds, write_fds, [], timeout)
        except InterruptedError:
            return
        now = time.monotonic()
        by_pipe = {rec.pipe: rec for rec in self.workers.values()}
        if broker is not None:
            for fd in writable:
                broker.writable(fd)
        for fd in ready:
            if fd in broker_fds:
                assert broker is not None
                broker.readable(fd)  # a peer dropped meanwhile is ignored
            elif fd == self._wakeup_r:
                with contextlib.suppress(BlockingIOError):
                    os.read(fd, 4096)
            else:
                with contextlib.suppress(BlockingIOError):
                    by_pipe[fd].receiver.feed(os.read(fd, 4096), now)

    # ---- signals ---------------------------------------------------------------------------------
    def _install_signals(self) -> None:
        self._wakeup_r, self._wakeup_w = os.pipe()
        for fd in (self._wakeup_r, self._wakeup_w):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(self._wakeup_w)
        for sig in _SIGNALS:
            signal.signal(sig, self._queue_signal)

    def _queue_signal(self, signum: int, frame: Any) -> None:
        self._signals.append(signum)

    def _handle_signals(self) -> None:
        while self._signals:
            sig = self._signals.pop(0)
            if sig == signal.SIGCHLD:
                continue  # reaping happens every turn
            error_log.info("Handling signal: %s", signal.Signals(sig).name)
            if sig == signal.SIGTERM:
                self.stop(graceful=self._stop is None)
            elif sig in (signal.SIGINT, signal.SIGQUIT):
                self.stop(graceful=False)
            elif self._stop is not None:
                continue
            elif sig == signal.SIGHUP:
                self.reload()
            elif sig == signal.SIGTTIN:
                self.num_workers += 1
            elif sig == signal.SIGTTOU:
                self._shrink()
            elif sig == signal.SIGUSR1:
                s = self.settings
                configure(s.error_log, s.log_level, s.access_log)
                self._kill_all(signal.SIGUSR1)

    # ---- operations ------------------------------------------------------------------------------
    def stop(self, graceful: bool, error: HornbeamError | None = None) -> None:
        now = time.monotonic()
        wait = self.settings.graceful_timeout + 1.0 if graceful else 2.0
        if self._stop is None:
            self._stop = _Stop(graceful, now + wait, error)
        else:
            self._stop.deadline = min(self._stop.deadline, now + wait)
            self._stop.error = self._stop.error or error
        sig = signal.SIGTERM if graceful else signal.SIGQUIT
        for rec in self.workers.values():
            rec.terminate_sent = rec.terminate_sent or now
            _signal_worker(rec.pid, sig)
        # Workers close their copies as they stop accepting; with ours closed too, new
        # connections are refused at once instead of queueing until the end.
        self.listeners.close()

    def reload(self) -> None:
        """SIGHUP: new settings and code in a new generation; the old drains once it is up."""
        try:
            new = self.settings.reload()
        except ConfigError as exc:
            error_log.error("Reload aborted, keeping the running configuration: %s", exc)
            return
        if tuple(new.bind) != tuple(self.settings.bind):
            error_log.warning(
                "Reload: bind changes need a restart; keeping %s",
                ", ".join(str(b) for b in self.settings.bind),
            )
        if new.preload_app:
            error_log.warning("Reload: preload_app is set, so app code is not reloaded")
        self._previous_settings = self.settings
        self.settings = new
        configure(new.error_log, new.log_level, new.access_log)
        prepare_import_path(new.pythonpath, new.chdir, new.venv)
        self.num_workers = new.workers
        self.generation += 1
        error_log.info("Reloading: starting worker generation %d", self.generation)

    def _shrink(self) -> None:
        if self.num_workers <= 1:
            error_log.info("SIGTTOU ignored: one worker is the minimum")
            return
        self.num_workers -= 1
        now = time.monotonic()
        for rec in self.workers.values():
            if rec.slot >= self.num_workers and rec.terminate_sent is None:
                rec.terminate_sent = now
                _signal_worker(rec.pid, signal.SIGTERM)

    def _hand_over_generations(self) -> None:
        """Once every slot of the current generation has booted, stop the older ones."""
        old = [r for r in self.workers.values() if r.generation < self.generation]
        if not old:
            return
        current = [r for r in self.workers.values() if r.generation == self.generation]
        booted_slots = {r.slot for r in current if r.receiver.booted}
        if len(booted_slots) < self.num_workers:
            return
        now = time.monotonic()
        for rec in old:
            if rec.terminate_sent is None:
                rec.terminate_sent = now
                _signal_worker(rec.pid, signal.SIGTERM)

    def _spawn_missing(self) -> None:
        staying = {
            r.slot
            for r in self.workers.values()
            if r.generation == self.generation and not r.leaving
        }
        for slot in range(self.num_workers):
            if slot not in staying:
                self.spawn(slot)
        for slot in self.listeners.slots():
            if slot >= self.num_workers and not any(r.slot == slot for r in self.workers.values()):
                self.listeners.close_slot(slot)

    def spawn(self, slot: int) -> None:
        read_end, write_end = os.pipe()
        sockets = self.listeners.for_slot(slot)
        inherited_pipes = [rec.pipe for rec in self.workers.values()]
        # Signals stay blocked across fork until the worker has its own handlers.
        previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        pid = os.fork()
        if pid == 0:  # the child
            code = EXIT_WORKER_BOOT
            try:
                signal.set_wakeup_fd(-1)
                self.listeners.keep_only_slot(slot)
                os.close(read_end)
                for fd in (*inherited_pipes, self._wakeup_r, self._wakeup_w):
                    with contextlib.suppress(OSError):
                        os.close(fd)
                broker_path = self.broker.path if self.broker is not None else None
                worker = Worker(
                    self.settings, slot, sockets, write_end, self.app, self.state, self, broker_path
                )
                code = worker.run()
            except BaseException:
                traceback.print_exc()
            finally:
                for stream in (sys.stdout, sys.stderr):
                    with contextlib.suppress(Exception):
                        stream.flush()
                for handler in error_log.handlers:
                    with contextlib.suppress(Exception):
                        handler.flush()
                os._exit(code)
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
        os.close(write_end)
        os.set_blocking(read_end, False)
        self.workers[pid] = WorkerRecord(
            pid, slot, self.generation, read_end, Receiver(time.monotonic())
        )

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            rec = self.workers.pop(pid, None)
            if rec is None:
                continue
            with contextlib.suppress(OSError):
                rec.receiver.feed(os.read(rec.pipe, 65536), time.monotonic())
            os.close(rec.pipe)
            if self.state is not None:
                self.state.worker_exited()
            self._on_worker_exit(rec, os.waitstatus_to_exitcode(status))

    def _on_worker_exit(self, rec: WorkerRecord, code: int) -> None:
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"code {code}"
        expected = rec.leaving or self._stop is not None
        if not expected or code != 0:
            log = error_log.info if expected else error_log.error
            log("Worker (pid: %d) exited with %s", rec.pid, how)
        if rec.receiver.booted or self._stop is not None:
            return
        message = rec.receiver.error or f"worker {rec.pid} died while booting ({how})"
        if rec.generation != self.generation or rec.leaving:
            return  # an old generation, or a failed reload already being rolled back
        if code in (EXIT_APP_LOAD, EXIT_WORKER_BOOT):
            if self.generation > 0 and any(
                r.generation < self.generation for r in self.workers.values()
            ):
                self._abort_reload(message)
                return
            cls = AppLoadError if code == EXIT_APP_LOAD else WorkerBootError
            self.stop(graceful=False, error=cls(message))
            return
        now = time.monotonic()
        self._boot_crashes = [t for t in self._boot_crashes if now - t < _BOOT_CRASH_WINDOW]
        self._boot_crashes.append(now)
        if len(self._boot_crashes) >= _BOOT_CRASH_LIMIT:
            self.stop(
                graceful=False,
                error=WorkerBootError(f"workers keep dying while booting ({message}); giving up"),
            )

    def _abort_reload(self, message: str) -> None:
        error_log.error("Reload failed, keeping the running workers: %s", message)
        for rec in list(self.workers.values()):
            if rec.generation == self.generation:
                rec.terminate_sent = time.monotonic()
                _signal_worker(rec.pid, signal.SIGQUIT)
        self.generation -= 1
        if self._previous_settings is not None:
            self.settings = self._previous_settings
            self.num_workers = self.settings.workers

    def _murder_unresponsive(self, now: float) -> None:
        timeout = self.settings.timeout
        for rec in self.workers.values():
            if rec.abort_sent is not None:
                if now - rec.abort_sent > _KILL_GRACE:
                    _signal_worker(rec.pid, signal.SIGKILL)
                continue
            if rec.terminate_sent is not None:
                if now - rec.terminate_sent > self.settings.graceful_timeout + _KILL_GRACE:
                    _signal_worker(rec.pid, signal.SIGKILL)
                continue
            if timeout and now - rec.receiver.last_beat > timeout:
                error_log.critical(
                    "WORKER TIMEOUT (pid: %d): no heartbeat for %gs", rec.pid, timeout
                )
                rec.abort_sent = now
                _signal_worker(rec.pid, signal.SIGABRT)

    def _kill_all(self, sig: int) -> None:
        for rec in self.workers.values():
            _signal_worker(rec.pid, sig)

    # ---- files ---------------------------------------------------------------------------------
    def _write_pidfile(self) -> None:
        path = self.settings.pidfile
        if path:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(f"{self.pid}\n")

    def _cleanup(self) -> None:
        if self.workers:
            self._kill_all(signal.SIGKILL)
            deadline = time.monotonic() + 5.0
            while self.workers and time.monotonic() < deadline:
                self._reap()
                time.sleep(0.01)
        for sig in _SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        if self._wakeup_w != -1:
            signal.set_wakeup_fd(-1)
            os.close(self._wakeup_r)
            os.close(self._wakeup_w)
            self._wakeup_r = self._wakeup_w = -1
        self.listeners.close()
        if self.broker is not None:
            self.broker.close()
            self.broker = None
        if self._runtime_dir:
            shutil.rmtree(self._runtime_dir, ignore_errors=True)
        if self.state is not None:
            self.state.close()
        if self.settings.pidfile:
            with contextlib.suppress(OSError):
                os.unlink(self.settings.pidfile)
        error_log.info("Shutting down: Master")


def _signal_worker(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def serve(settings: Settings) -> None:
    """Run the server described by ``settings`` until it is stopped."""
    Arbiter(settings).run()
