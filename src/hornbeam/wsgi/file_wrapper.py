"""``wsgi.file_wrapper``: lets the server send a file with ``os.sendfile`` when it can."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any


class FileWrapper:
    """Iterates a file in blocks; the server bypasses iteration with sendfile when possible."""

    def __init__(self, filelike: Any, blksize: int = 64 * 1024) -> None:
        self.filelike = filelike
        self.blksize = blksize
        close = getattr(filelike, "close", None)
        if close is not None:
            self.close = close

    def fileno(self) -> int | None:
        """The descriptor to sendfile from, or None when the object is not a real file."""
        try:
            fd = self.filelike.fileno()
        except (AttributeError, OSError, ValueError):
            return None
        return fd if isinstance(fd, int) else None

    def sendfile_span(self) -> tuple[int, int, int] | None:
        """``(fd, offset, count)`` from the current position to the end of a regular file."""
        fd = self.fileno()
        if fd is None:
            return None
        try:
            size = os.fstat(fd).st_size
            offset = self.filelike.tell()
        except (AttributeError, OSError, ValueError):
            return None
        return fd, offset, max(0, size - offset)

    def __iter__(self) -> Iterator[bytes]:
        read = self.filelike.read
        while block := read(self.blksize):
            yield block
