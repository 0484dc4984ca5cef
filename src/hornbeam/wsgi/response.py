"""One WSGI response: ``start_response``, ``write()``, the body iterable, sendfile.

Runs on the app thread (or the loop in inline mode); every byte reaches the socket through
``post(conn.write, ...)`` so only the loop thread touches the transport. Framing is
:class:`~hornbeam.http1.framing.ResponseFraming`'s; a list/tuple body gets a computed
Content-Length and leaves in one write. A streaming body is throttled: past
``STREAM_WINDOW`` unconfirmed bytes the thread waits until the transport drains.
"""

from __future__ import annotations

import os
import select
import threading
from collections.abc import Callable, Iterable
from typing import Any

from hornbeam.http1.framing import HeadCache, ResponseFraming
from hornbeam.http1.writer import BYTES_LIKE, SEQUENCES, HeaderChecker
from hornbeam.io.connection import HttpConnection, RequestCycle
from hornbeam.wsgi.file_wrapper import FileWrapper

# Bytes posted to the loop but not yet confirmed written, before a streaming thread waits.
STREAM_WINDOW = 512 * 1024

Post = Callable[..., None]


class ResponseAborted(Exception):
    """The connection is gone or the response can no longer be completed."""


class WsgiResponse:
    __slots__ = (
        "_cache",
        "_conn",
        "_cycle",
        "_post",
        "_unconfirmed",
        "checker",
        "framing",
        "head_sent",
        "headers",
        "status",
        "status_code",
    )

    def __init__(
        self,
        conn: HttpConnection,
        cycle: RequestCycle,
        post: Post,
        checker: HeaderChecker,
        cache: HeadCache,
    ) -> None:
        self._conn = conn
        self._cache = cache
        self._cycle = cycle
        self._post = post
        self.checker = checker
        self.framing = ResponseFraming(cycle.event, conn.ctx.draining)
        self.status: str | None = None
        self.status_code = 0
        # What the app passed, checked here with messages that name the problem (typed Any
        # so that compiled builds do not refuse it first with a bare TypeError).
        self.headers: Any = []
        self.head_sent = False
        self._unconfirmed = 0

    @property
    def body_sent(self) -> int:
        return self.framing.body_sent

    @property
    def header_map(self) -> dict[str, str]:
        return self.framing.header_map

    # ---- PEP 3333 ----------------------------------------------------------------------------
    def start_response(
        self, status: Any, headers: Any, exc_info: Any = None
    ) -> Callable[[bytes], None]:
        if exc_info:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response() called again without exc_info (PEP 3333)")
        code = self.checker.status_code(status)
        if not isinstance(headers, list):
            raise TypeError(f"WSGI response headers must be a list, not {type(headers).__name__}")
        self.status = status
        self.status_code = code
        self.headers = headers
        return self.write

    def write(self, data: Any) -> None:
        """The legacy ``write()`` callable of PEP 3333, and the path of every body chunk."""
        if self.status is None:
            raise AssertionError("write() before start_response() (PEP 3333)")
        if not isinstance(data, BYTES_LIKE):
            raise TypeError(f"WSGI body chunks must be bytes, not {type(data).__name__}")
        self._send(self._head(None) + self.framing.body(bytes(data)), final=False)

    def replaced_by_server_error(self, response: bytes) -> None:
        """The server answers 500 instead of the app: log what was really sent."""
        self.status_code = 500
        self.framing.header_map = {"content-type": "text/plain; charset=utf-8"}
        self.framing.body_sent = len(response) - response.index(b"\r\n\r\n") - 4

    # ---- internals ---------------------------------------------------------------------------
    def _head(self, known_length: int | None) -> bytes:
        """The head the first time (built now, or taken from the cache), then nothing."""
        if self.head_sent:
            return b""
        if self.status is None:
            raise AssertionError("the app returned without calling start_response() (PEP 3333)")
        date_line = self._conn.ctx.date.line
        key: Any = (self.status, tuple(self.headers), known_length)
        head = self.framing.cached_head(self._cache, key, date_line)
        if head is None:
            head = self._build_head(known_length, date_line, key)
        self.head_sent = True
        return head

    def _build_head(self, known_length: int | None, date_line: bytes, key: Any) -> bytes:
        assert self.status is not None
        encoded = []
        for name, value in self.headers:
            if not isinstance(name, str) or not isinstance(value, str):
                raise TypeError(f"WSGI header {name!r}: {value!r} must be a pair of str")
            encoded.append((name.encode("latin-1"), value.encode("latin-1")))
        return self.framing.head(
            self.status_code,
            self.status.encode("latin-1"),
            encoded,
            known_length,
            self.checker,
            date_line,
            self._cache,
            key,
        )

    def _send(self, data: bytes, final: bool, body: bytes = b"") -> None:
        """Hand ``data`` (and, when final, a whole ``body`` kept apart) to the connection."""
        conn = self._conn
        if conn.closed or self._cycle.abandoned:
            raise ResponseAborted("client disconnected")
        if final:
            self._post(conn.write_and_finish, self._cycle, data, self.framing.keep_alive, body)
            return
        if data:
            self._post(conn.write, self._cycle, data)
            self._unconfirmed += len(data)
            if self._unconfirmed > STREAM_WINDOW:
                self._wait(conn.wait_drained)

    def _wait(self, barrier: Callable[[RequestCycle, threading.Event], None]) -> None:
        """Block this app thread until the loop runs ``barrier`` and it releases us."""
        if threading.current_thread() is threading.main_thread():
            return  # inline mode: the loop thread itself already wrote everything
        released = threading.Event()
        self._post(barrier, self._cycle, released)
        if not released.wait(self._conn.ctx.body_timeout or None) or self._conn.closed:
            raise ResponseAborted("client stopped reading the response")
        self._unconfirmed = 0

    def send_iterable(self, result: Iterable[bytes]) -> None:
        """Send the app's whole response body, then finish the request."""
        framing = self.framing
        if isinstance(result, SEQUENCES) and not self.head_sent:
            # The whole body is known: one write with a Content-Length.
            body = b"".join(result)
            head = self._head(len(body))
            self._send(head, final=True, body=framing.body(body) + framing.end())
            return
        if isinstance(result, FileWrapper) and self._try_sendfile(result):
            return
        for chunk in result:
            if chunk:
                self.write(chunk)
            if self._conn.closed:
                raise ResponseAborted("client disconnected")
        self._send(self._head(None) + framing.end(), final=True)

    def _try_sendfile(self, wrapper: FileWrapper) -> bool:
        """Send a regular file with ``os.sendfile``; False when that is not possible here."""
        transport = self._conn.transport
        if (
            self.status is None
            or self.head_sent
            or transport is None
            or transport.get_extra_info("sslcontext") is not None
            or threading.current_thread() is threading.main_thread()  # inline mode
        ):
            return False
        sock = transport.get_extra_info("socket")
        span = wrapper.sendfile_span()
        if sock is None or span is None:
            return False
        fd, offset, count = span
        head = self._head(count)  # an app's own Content-Length wins
        framing = self.framing
        if not framing.body_allowed:
            self._send(head + framing.end(), final=True)
            return True
        if framing.content_length is not None:
            count = min(count, framing.content_length)
        self._send(head, final=False)
        # The head must be on the wire before the file: wait for an empty transport buffer.
        self._wait(self._conn.wait_flushed)
        _sendfile_blocking(sock.fileno(), fd, offset, count, self._conn.ctx.body_timeout)
        framing.body_sent += count
        self._send(framing.end(), final=True)
        return True


def _sendfile_blocking(sock_fd: int, file_fd: int, offset: int, count: int, timeout: float) -> None:
    """``os.sendfile`` on the (non-blocking) socket from an app thread, waiting when full."""
    end = offset + count
    while offset < end:
        try:
            sent = os.sendfile(sock_fd, file_fd, offset, end - offset)
        except BlockingIOError:
            _, writable, _ = select.select([], [sock_fd], [], timeout or None)
            if not writable:
                raise ResponseAborted("client stopped reading the file") from None
            continue
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise ResponseAborted("client disconnected") from exc
        if sent == 0:
            raise ResponseAborted("file shrank while being sent")
        offset += sent
