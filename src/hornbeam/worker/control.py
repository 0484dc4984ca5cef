"""The worker → arbiter control pipe: one-byte messages, plus one error line at boot failure.

A pipe per worker; the worker writes without blocking (a full pipe drops a heartbeat, which
is harmless: the next one follows), the arbiter reads every pipe in its select loop.
"""

from __future__ import annotations

import contextlib
import fcntl
import os

HEARTBEAT = b"."
BOOTED = b"B"
RETIRING = b"R"
ERROR = b"E"  # followed by a UTF-8 message and a newline


class Sender:
    __slots__ = ("_fd",)

    def __init__(self, fd: int) -> None:
        self._fd = fd
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)

    def send(self, message: bytes) -> None:
        with contextlib.suppress(BlockingIOError, BrokenPipeError):
            os.write(self._fd, message)

    def send_error(self, text: str) -> None:
        line = text.replace("\n", " ")[:2000]
        self.send(ERROR + line.encode("utf-8", "replace") + b"\n")


class Receiver:
    """Accumulates what one worker sent and decodes it."""

    __slots__ = ("_pending", "booted", "error", "last_beat", "retiring")

    def __init__(self, now: float) -> None:
        self._pending = b""
        self.last_beat = now
        self.booted = False
        self.retiring = False
        self.error: str | None = None

    def feed(self, data: bytes, now: float) -> None:
        data = self._pending + data
        self._pending = b""
        if ERROR in data:
            data, _, rest = data.partition(ERROR)
            line, newline, _ = rest.partition(b"\n")
            if newline:
                self.error = line.decode("utf-8", "replace")
            else:
                self._pending = ERROR + rest
        if data:
            self.last_beat = now
        if BOOTED in data:
            self.booted = True
        if RETIRING in data:
            self.retiring = True
