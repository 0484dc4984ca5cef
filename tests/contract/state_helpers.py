"""Helpers of the state contract suites: a settable clock, and forked test workers."""

from __future__ import annotations

import os
import select
import signal
import time
import traceback
from collections.abc import Callable
from typing import Any

import msgpack
import pytest

from hornbeam.state import StateRuntime, StateStore

CHILD_DEADLINE = 60.0  # seconds a forked test worker may take before it is killed


class Clock:
    """A settable Unix clock, so that expiry is tested without waiting."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class StoreCase:
    """A store under test, and how to let time pass for it."""

    def __init__(self, store: StateStore, clock: Clock) -> None:
        self.store = store
        self._clock = clock

    def advance(self, seconds: float) -> None:
        self._clock.now += seconds


class Child:
    """A forked test worker: its pid, and the pipe its result comes back on."""

    def __init__(self, pid: int, result_fd: int) -> None:
        self.pid = pid
        self.reaped = False
        self._result_fd = result_fd

    def kill(self) -> None:
        if not self.reaped:
            os.kill(self.pid, signal.SIGKILL)

    def reap(self, runtime: StateRuntime, deadline: float) -> int:
        """Wait for the child (killing it past `deadline`) as the arbiter would: reap it,
        then call `worker_exited()`. Return its wait status."""
        while True:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                self.kill()
                _, status = os.waitpid(self.pid, 0)
                break
            time.sleep(0.005)
        self.reaped = True
        os.close(self._result_fd)
        runtime.worker_exited()
        return status

    def result(self, runtime: StateRuntime, timeout: float = CHILD_DEADLINE) -> Any:
        """The value the child's function returned; fails the test if it raised or hung."""
        deadline = time.monotonic() + timeout
        payload = self._read_until_exit(deadline)
        status = self.reap(runtime, deadline)
        outcome, value = msgpack.unpackb(payload) if payload else ("died", status)
        if outcome != "ok" or os.waitstatus_to_exitcode(status) != 0:
            pytest.fail(f"test worker {self.pid} failed ({outcome}): {value}")
        return value

    def _read_until_exit(self, deadline: float) -> bytes:
        chunks = []
        while (remaining := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([self._result_fd], [], [], remaining)
            if not readable:
                break
            chunk = os.read(self._result_fd, 1 << 16)
            if not chunk:  # the child exited, whatever the reason
                break
            chunks.append(chunk)
        return b"".join(chunks)


def fork_child(runtime: StateRuntime, work: Callable[..., Any], *args: Any) -> Child:
    """Fork a worker that attaches to `runtime`, runs `work(*args)` and sends the result."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        exit_code = 1
        try:
            os.close(read_fd)
            runtime.worker_attach()
            reply = ("ok", work(*args))
            exit_code = 0
        except BaseException:
            reply = ("raised", traceback.format_exc())
        finally:
            try:
                os.write(write_fd, msgpack.packb(reply))
            finally:
                os._exit(exit_code)
    os.close(write_fd)
    return Child(pid, read_fd)
