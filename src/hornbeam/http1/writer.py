"""Serialising HTTP/1.x responses: status lines, header checks, framing, server error bodies.

Everything here is pure (bytes in, bytes out). Header names and values are checked once on
the way out: a CR, LF or NUL in either is refused with :class:`HeaderError`, so an app can
never split a response. Hop-by-hop headers set by an application are dropped, because the
server alone decides the framing and the connection's fate.
"""

from __future__ import annotations

import re
from email.utils import formatdate
from http import HTTPStatus

from hornbeam import __version__

# Headers that describe one hop; the server owns them (RFC 9110 section 7.6.1).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

# Statuses that never carry a body (RFC 9110 section 6.4.1).
_BODYLESS_STATUSES = frozenset({204, 304})

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FORBIDDEN_IN_VALUE = re.compile(rb"[\r\n\x00]")

SERVER_HEADER = f"Server: hornbeam/{__version__}\r\n".encode("latin-1")
LAST_CHUNK = b"0\r\n\r\n"
CONTINUE_RESPONSE = b"HTTP/1.1 100 Continue\r\n\r\n"
# What the adapters accept from apps, as tuples of types: isinstance() takes those about
# twice as fast as the same types joined with "|".
BYTES_LIKE = (bytes, bytearray, memoryview)  # body chunks
SEQUENCES = (list, tuple)  # headers, and bodies whose length is known up front


class HeaderError(ValueError):
    """A response header name or value the server refuses to send."""


def reason_phrase(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode("latin-1")
    except ValueError:
        return b"Unknown"


_STATUS_LINES: dict[tuple[str, int], bytes] = {}


def status_line(http_version: str, status: int) -> bytes:
    """``b"HTTP/1.1 200 OK\\r\\n"``, cached per version and status."""
    key = (http_version, status)
    line = _STATUS_LINES.get(key)
    if line is None:
        if not 100 <= status <= 999:
            raise HeaderError(f"status {status} is not a three-digit HTTP status code")
        line = b"HTTP/%s %d %s\r\n" % (http_version.encode(), status, reason_phrase(status))
        _STATUS_LINES[key] = line
    return line


def body_allowed(status: int, method: bytes) -> bool:
    """Whether a response with this status to this method may carry a body."""
    return status >= 200 and status not in _BODYLESS_STATUSES and method != b"HEAD"


class HeaderChecker:
    """Validates header names and WSGI status lines once each (bounded caches) and header
    values every time."""

    __slots__ = ("_limit", "_names", "_statuses")

    def __init__(self, cache_limit: int = 1024) -> None:
        # encoded name -> its lower-cased str form
        self._names: dict[bytes, str] = {}
        self._statuses: dict[str, int] = {}  # WSGI status line -> its code
        self._limit = cache_limit

    def status_code(self, status: object) -> int:
        """The code of a WSGI status line like ``"200 OK"``, after checking the line."""
        code = self._statuses.get(status) if type(status) is str else None
        if code is None:
            if not isinstance(status, str) or len(status) < 4 or not status[:3].isdigit():
                raise HeaderError(f"WSGI status {status!r} is not like '200 OK'")
            if "\r" in status or "\n" in status or "\0" in status:
                raise HeaderError("WSGI status contains CR, LF or NUL; refused")
            code = int(status[:3])
            if len(self._statuses) < self._limit:
                self._statuses[status] = code
        return code

    def lower_name(self, name: bytes) -> str:
        """The lower-cased name after checking it is an RFC 9110 token."""
        lowered = self._names.get(name)
        if lowered is None:
            if _TOKEN.fullmatch(name) is None:
                raise HeaderError(f"response header name {name!r} is not a valid token")
            lowered = name.decode("latin-1").lower()
            if len(self._names) < self._limit:
                self._names[name] = lowered
        return lowered

    @staticmethod
    def check_value(name: bytes, value: bytes) -> None:
        if _FORBIDDEN_IN_VALUE.search(value) is not None:
            raise HeaderError(
                f"response header {name.decode('latin-1')!r} contains CR, LF or NUL; refused"
            )


def encode_chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


class DateHeader:
    """The ``Date`` header line, rebuilt at most once a second by the worker's clock tick."""

    __slots__ = ("_second", "line")

    def __init__(self) -> None:
        self.line = b""
        self._second = -1
        self.refresh(0.0)

    def refresh(self, now: float) -> None:
        second = int(now)
        if second != self._second:
            self._second = second
            self.line = b"Date: %s\r\n" % formatdate(now or None, usegmt=True).encode("ascii")


def text_response(
    status: int,
    body: bytes,
    date: DateHeader,
    http_version: str = "1.1",
    keep_alive: bool = False,
    head_only: bool = False,
) -> bytes:
    """A complete short ``text/plain`` response the server makes itself."""
    if not keep_alive:
        connection = b"Connection: close\r\n"
    elif http_version == "1.0":
        connection = b"Connection: keep-alive\r\n"
    else:
        connection = b""
    return b"".join(
        (
            status_line(http_version, status),
            SERVER_HEADER,
            date.line,
            b"Content-Type: text/plain; charset=utf-8\r\n",
            b"Content-Length: %d\r\n" % len(body),
            connection,
            b"\r\n",
            b"" if head_only else body,
        )
    )


def error_response(status: int, detail: str, date: DateHeader, http_version: str = "1.1") -> bytes:
    """A short ``text/plain`` error that also closes the connection."""
    body = f"{reason_phrase(status).decode('latin-1')}\n{detail}\n".encode()
    return text_response(status, body, date, http_version)
