"""One WSGI response: ``start_response``, framing, and handing bytes to the connection.

Runs on the app thread (or the loop in inline mode); every byte reaches the socket through
``post(conn.write, ...)`` so only the loop thread touches the transport. Framing rules:
Content-Length set by the app is honoured (extra bytes are cut and the connection closed;
missing bytes close the connection); a list/tuple body gets a computed Content-Length and
goes out in one write; other bodies are chunked on HTTP/1.1 and close-delimited on HTTP/1.0.
"""

from __future__ import annotations

import os
import select
import threading
from collections.abc import Callable, Iterable
from typing import Any

from hornbeam.http1.writer import (
    HOP_BY_HOP,
    LAST_CHUNK,
    SERVER_HEADER,
    HeaderChecker,
    HeaderError,
    body_allowed,
    encode_chunk,
)
from hornbeam.io.connection import HttpConnection, RequestCycle
from hornbeam.logs import error_log
from hornbeam.wsgi.file_wrapper import FileWrapper

# Bytes posted to the loop but not yet confirmed written, before a streaming thread waits.
STREAM_WINDOW = 512 * 1024

Post = Callable[..., None]


class ResponseAborted(Exception):
    """The connection is gone or the response can no longer be completed."""


class WsgiResponse:
    __slots__ = (
        "_chunked",
        "_conn",
        "_cycle",
        "_head",
        "_post",
        "_unconfirmed",
        "body_allowed",
        "body_sent",
        "checker",
        "content_length",
        "header_map",
        "headers",
        "keep_alive",
        "status",
        "status_code",
    )

    def __init__(
        self, conn: HttpConnection, cycle: RequestCycle, post: Post, checker: HeaderChecker
    ) -> None:
        self._conn = conn
        self._cycle = cycle
        self._post = post
        self.checker = checker
        self.status: str | None = None
        self.status_code = 0
        self.headers: list[tuple[str, str]] = []
        self.header_map: dict[str, str] = {}
        self.keep_alive = cycle.event.keep_alive
        self.content_length: int | None = None
        self.body_allowed = True
        self.body_sent = 0
        self._head: bytes | None = None  # built, not yet sent
        self._chunked = False
        self._unconfirmed = 0

    @property
    def head_sent(self) -> bool:
        return self._head == b""

    # ---- PEP 3333 ----------------------------------------------------------------------------
    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        if exc_info:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response() called again without exc_info (PEP 3333)")
        if not isinstance(status, str) or len(status) < 3 or not status[:3].isdigit():
            raise HeaderError(f"WSGI status {status!r} is not like '200 OK'")
        if "\r" in status or "\n" in status:
            raise HeaderError("WSGI status contains CR or LF; refused")
        if not isinstance(headers, list):
            raise TypeError(f"WSGI response headers must be a list, not {type(headers).__name__}")
        self.status = status
        self.status_code = int(status[:3])
        self.headers = headers
        self._head = None
        return self.write

    def write(self, data: bytes) -> None:
        """The legacy ``write()`` callable of PEP 3333, and the path of every body chunk."""
        if self.status is None:
            raise AssertionError("write() before start_response() (PEP 3333)")
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"WSGI body chunks must be bytes, not {type(data).__name__}")
        self._send(self._frame(bytes(data)), final=False)

    def replaced_by_server_error(self, response: bytes) -> None:
        """The server answers 500 instead of the app: log what was really sent."""
        self.status_code = 500
        self.header_map = {"content-type": "text/plain; charset=utf-8"}
        self.body_sent = len(response) - response.index(b"\r\n\r\n") - 4

    # ---- framing -----------------------------------------------------------------------------
    def _build_head(self, known_length: int | None) -> bytes:
        assert self.status is not None
        event = self._cycle.event
        checker = self.checker
        lines = [b"HTTP/%s %s\r\n" % (event.http_version.encode(), self.status.encode("latin-1"))]
        header_map = self.header_map
        for name, value in self.headers:
            if not isinstance(name, str) or not isinstance(value, str):
                raise TypeError(f"WSGI header {name!r}: {value!r} must be a pair of str")
            name_b = name.encode("latin-1")
            value_b = value.encode("latin-1")
            lower = checker.lower_name(name_b)
            checker.check_value(name_b, value_b)
            if lower in HOP_BY_HOP:
                if lower == "connection" and "close" in value.lower():
                    self.keep_alive = False
                continue
            if lower == "content-length":
                if not value.strip().isdigit():
                    raise HeaderError(f"Content-Length {value!r} is not a whole number")
                self.content_length = int(value)
            header_map[lower] = value
            lines.append(b"%s: %s\r\n" % (name_b, value_b))
        if "server" not in header_map:
            lines.append(SERVER_HEADER)
        if "date" not in header_map:
            lines.append(self._conn.ctx.date.line)
        self.body_allowed = body_allowed(self.status_code, event.method)
        if (
            self.status_code >= 200
            and self.status_code not in (204, 304)
            and (self.content_length is None)
        ):
            if known_length is not None:
                self.content_length = known_length
                lines.append(b"Content-Length: %d\r\n" % known_length)
            elif event.method == b"HEAD":
                pass
            elif event.http_version == "1.1":
                self._chunked = True
                lines.append(b"Transfer-Encoding: chunked\r\n")
            else:
                self.keep_alive = False  # HTTP/1.0 body delimited by closing
        if self._conn.ctx.draining:
            self.keep_alive = False
        if not self.keep_alive:
            lines.append(b"Connection: close\r\n")
        elif event.http_version == "1.0":
            lines.append(b"Connection: keep-alive\r\n")
        lines.append(b"\r\n")
        return b"".join(lines)

    def _frame(self, data: bytes) -> bytes:
        """Head (once) plus ``data`` framed for the wire; counts body bytes."""
        head = self._head
        if head is None:
            head = self._build_head(None)
        self._head = b""
        if not self.body_allowed or not data:
            return head
        if self.content_length is not None:
            room = self.content_length - self.body_sent
            if len(data) > room:
                error_log.error(
                    "app sent more than its Content-Length of %d; extra bytes dropped",
                    self.content_length,
                )
                data = data[:room]
                self.keep_alive = False
        self.body_sent += len(data)
        if self._chunked:
            return head + encode_chunk(data) if data else head
        return head + data

    def _end_framing(self) -> bytes:
        if self._chunked:
            return LAST_CHUNK
        if (
            self.content_length is not None
            and self.body_sent < self.content_length
            and self.body_allowed
        ):
            error_log.error(
                "app sent %d of its Content-Length of %d bytes; closing the connection",
                self.body_sent,
                self.content_length,
            )
            self.keep_alive = False
        return b""

    # ---- sending -----------------------------------------------------------------------------
    def _send(self, data: bytes, final: bool) -> None:
        conn = self._conn
        if conn.closed or self._cycle.abandoned:
            raise ResponseAborted("client disconnected")
        if final:
            self._post(conn.write_and_finish, self._cycle, data, self.keep_alive)
            return
        if data:
            self._post(conn.write, self._cycle, data)
            self._unconfirmed += len(data)
            if self._unconfirmed > STREAM_WINDOW:
                self._wait_drained()

    def _wait_drained(self) -> None:
        drained = threading.Event()
        self._post(self._conn.wait_drained, self._cycle, drained)
        if threading.current_thread() is threading.main_thread():
            return  # inline mode: the loop thread itself wrote it
        if not drained.wait(self._conn.ctx.body_timeout or None):
            raise ResponseAborted("client stopped reading the response")
        self._unconfirmed = 0

    def send_iterable(self, result: Iterable[bytes]) -> None:
        """Send the app's whole response body, then finish the request."""
        if isinstance(result, list | tuple) and self.status is not None and self._head is None:
            # The whole body is known: one write with a Content-Length.
            body = b"".join(result)
            self._head = self._build_head(len(body))
            self._send(self._frame(body) + self._end_framing(), final=True)
            return
        if isinstance(result, FileWrapper) and self._try_sendfile(result):
            return
        for chunk in result:
            if chunk:
                self.write(chunk)
            if self._conn.closed:
                raise ResponseAborted("client disconnected")
        if self.status is None:
            raise AssertionError("the app returned without calling start_response() (PEP 3333)")
        self._send(self._frame(b"") + self._end_framing(), final=True)

    def _try_sendfile(self, wrapper: FileWrapper) -> bool:
        """Send a regular file with ``os.sendfile``; False when that is not possible here."""
        transport = self._conn.transport
        if (
            self.status is None
            or self._head == b""
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
        self._head = self._build_head(count)  # an app's own Content-Length wins
        head = self._frame(b"")
        if not self.body_allowed:
            self._send(head + self._end_framing(), final=True)
            return True
        count = min(count, self.content_length if self.content_length is not None else count)
        self._send(head, final=False)
        # The head must be on the wire before the file: wait for an empty transport buffer.
        flushed = threading.Event()
        self._post(self._conn.wait_flushed, self._cycle, flushed)
        if not flushed.wait(self._conn.ctx.body_timeout or None) or self._conn.closed:
            raise ResponseAborted("client stopped reading the response")
        _sendfile_blocking(sock.fileno(), fd, offset, count, self._conn.ctx.body_timeout)
        self.body_sent += count
        self._send(self._end_framing(), final=True)
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
