"""``wsgi.input``: the request body as a stream an app thread reads while the loop receives it.

The event loop feeds chunks in; an app thread reads them out. The buffer is bounded: past
``high_water`` bytes the loop stops reading the socket, and once the reader has taken enough
it asks the loop to read again, so a 1 GiB upload never sits in memory. A body that has fully
arrived before the app runs is served from a plain :class:`io.BytesIO` instead (no lock).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator

from hornbeam.errors import ClientDisconnected

HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024


class StreamingInput:
    """A file-like, read-only, thread-safe request body."""

    def __init__(
        self,
        pause: Callable[[], None],
        resume: Callable[[], None],
        read_timeout: float,
        bounded: bool = True,
    ) -> None:
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._complete = False
        self._error: OSError | None = None
        self._cond = threading.Condition(threading.Lock())
        self._on_first_read: Callable[[], None] | None = None
        # Unbounded only where the app runs after the whole body is in (inline mode): nobody
        # would read to make room. The parser's limit_request_body still bounds it.
        self._high_water = HIGH_WATER if bounded else None
        self._pause = pause  # called on the loop thread
        self._resume = resume  # called from the reading thread; must be thread-safe
        self._paused = False
        self._read_timeout = read_timeout or None

    # ---- loop side -------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        with self._cond:
            self._chunks.append(data)
            self._buffered += len(data)
            high = self._high_water
            if high is not None and self._buffered > high and not self._paused:
                self._paused = True
                self._pause()
            self._cond.notify()

    def set_first_read_hook(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` when the app first reads (to send ``100 Continue`` only if needed)."""
        self._on_first_read = hook

    def finish(self) -> None:
        with self._cond:
            self._complete = True
            self._cond.notify_all()

    def abort(self, reason: str) -> None:
        with self._cond:
            if not self._complete:
                self._error = ClientDisconnected(reason)
            self._cond.notify_all()

    @property
    def complete(self) -> bool:
        return self._complete

    def take_all_buffered(self) -> bytes:
        """The whole body, for a request whose body fully arrived before dispatch."""
        with self._cond:
            data = b"".join(self._chunks)
            self._chunks.clear()
            self._buffered = 0
            return data

    # ---- reader side -----------------------------------------------------------------------
    def _wait_for_data(self) -> bool:
        """Block until a chunk is buffered; False at the end of the body. Lock held."""
        if self._on_first_read is not None:
            notify, self._on_first_read = self._on_first_read, None
            notify()
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._complete:
                return False
            if not self._cond.wait(self._read_timeout):
                raise ClientDisconnected("timed out waiting for the request body")
        return True

    def _took(self, size: int) -> None:
        self._buffered -= size
        if self._paused and self._buffered < LOW_WATER:
            self._paused = False
            self._resume()

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            parts = []
            with self._cond:
                while self._wait_for_data():
                    chunk = self._chunks.popleft()
                    parts.append(chunk)
                    self._took(len(chunk))
            return b"".join(parts)
        if size == 0:
            return b""
        parts = []
        wanted = size
        with self._cond:
            # file semantics: ``size`` bytes unless the body ends first
            while wanted and self._wait_for_data():
                chunk = self._chunks.popleft()
                if len(chunk) > wanted:
                    self._chunks.appendleft(chunk[wanted:])
                    chunk = chunk[:wanted]
                parts.append(chunk)
                wanted -= len(chunk)
                self._took(len(chunk))
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def readline(self, size: int | None = -1) -> bytes:
        limit = -1 if size is None else size
        parts: list[bytes] = []
        taken = 0
        with self._cond:
            while (limit < 0 or taken < limit) and self._wait_for_data():
                chunk = self._chunks.popleft()
                end = chunk.find(b"\n") + 1
                if limit >= 0:
                    room = limit - taken
                    end = min(end, room) if end else min(len(chunk), room)
                elif not end:
                    end = len(chunk)
                if end < len(chunk):
                    self._chunks.appendleft(chunk[end:])
                    chunk = chunk[:end]
                parts.append(chunk)
                taken += len(chunk)
                self._took(len(chunk))
                if chunk.endswith(b"\n"):
                    break
        return b"".join(parts)

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines = []
        total = 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


class _EmptyInput:
    """``wsgi.input`` of a request without a body: one shared, stateless instance."""

    __slots__ = ()

    def read(self, size: int | None = -1) -> bytes:
        return b""

    def readline(self, size: int | None = -1) -> bytes:
        return b""

    def readlines(self, hint: int = -1) -> list[bytes]:
        return []

    def __iter__(self) -> Iterator[bytes]:
        return iter(())


EMPTY_INPUT = _EmptyInput()
