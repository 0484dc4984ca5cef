"""How one HTTP/1.x response is framed: its head, its body bytes, its end, its keep-alive.

Shared by the WSGI and ASGI adapters (one implementation, no twins that drift). Rules:
- Content-Length set by the app is honoured: extra bytes are cut (and the connection closed),
  missing bytes close the connection at the end.
- A body whose length is known up front gets a Content-Length.
- Otherwise HTTP/1.1 bodies are chunked and HTTP/1.0 bodies are delimited by closing.
- 1xx/204/304 responses and answers to HEAD carry no body.
- Hop-by-hop headers from the app are dropped; ``Connection: close`` from the app is obeyed.
- Every header is checked: CR, LF or NUL anywhere refuses the response (HeaderError).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from contextlib import suppress

from hornbeam.http1.events import Request
from hornbeam.http1.writer import (
    HOP_BY_HOP,
    LAST_CHUNK,
    SERVER_HEADER,
    HeaderChecker,
    HeaderError,
    body_allowed,
    encode_chunk,
)
from hornbeam.logs import error_log


class _CachedHead:
    __slots__ = ("dated", "header_map", "state")

    def __init__(
        self,
        dated: bool,
        state: tuple[bytes, bytes, bool, int | None, bool, bool],
        header_map: dict[str, str],
    ) -> None:
        self.dated = dated
        self.state = state
        self.header_map = header_map


class HeadCache(dict[Hashable, _CachedHead]):
    """Heads already built and checked, per worker: most responses repeat a few shapes.

    A dict, so a lookup is dict.get itself (no Python call per response). Bounded: when
    full it is emptied, so responses that never repeat (a fresh cookie each time) cost one
    dict insert, not memory.
    """

    __slots__ = ("_limit",)

    def __init__(self, limit: int = 512) -> None:
        super().__init__()
        self._limit = limit

    def put(self, key: Hashable, entry: _CachedHead) -> None:
        if len(self) >= self._limit:
            self.clear()
        self[key] = entry


class ResponseFraming:
    __slots__ = (
        "_request",
        "body_allowed",
        "body_sent",
        "chunked",
        "content_length",
        "header_map",
        "keep_alive",
    )

    def __init__(self, request: Request, draining: bool) -> None:
        self._request = request
        self.keep_alive = request.keep_alive and not draining
        self.content_length: int | None = None
        self.chunked = False
        self.body_allowed = True
        self.body_sent = 0
        self.header_map: dict[str, str] = {}  # lower-cased names, for logs and hooks

    def cached_head(self, cache: HeadCache, key: Hashable, date_line: bytes) -> bytes | None:
        """The head built before for the same ``key`` and request shape, or None (also when
        ``key`` holds something unhashable, such as headers given as lists: such a response
        is built every time)."""
        request = self._request
        try:
            entry = cache.get(
                (key, request.http_version, request.method == b"HEAD", self.keep_alive)
            )
        except TypeError:
            return None
        if entry is None:
            return None
        before, after, self.keep_alive, self.content_length, self.chunked, self.body_allowed = (
            entry.state
        )
        self.header_map = entry.header_map  # shared between responses: read it, never change it
        return before + date_line + after if entry.dated else before + after

    def head(
        self,
        status: int,
        status_text: bytes,
        headers: Iterable[tuple[bytes, bytes]],
        known_length: int | None,
        checker: HeaderChecker,
        date_line: bytes,
        cache: HeadCache | None = None,
        key: Hashable = None,
    ) -> bytes:
        """The response head; ``status_text`` is ``b"200 OK"``. Raises HeaderError.

        With a ``cache`` and a ``key`` naming everything the app gave (status, headers,
        known length), the result is kept for :meth:`cached_head`, unless the key cannot be
        hashed.
        """
        request = self._request
        cache_key = (key, request.http_version, request.method == b"HEAD", self.keep_alive)
        lines = [b"HTTP/%s %s\r\n" % (request.http_version.encode(), status_text)]
        header_map = self.header_map
        for name, value in headers:
            lower = checker.lower_name(name)
            checker.check_value(name, value)
            if lower in HOP_BY_HOP:
                if lower == "connection" and b"close" in value.lower():
                    self.keep_alive = False
                continue
            if lower == "content-length":
                if not value.strip().isdigit():
                    raise HeaderError(f"Content-Length {value!r} is not a whole number")
                self.content_length = int(value)
            header_map[lower] = value.decode("latin-1")
            lines.append(b"%s: %s\r\n" % (name, value))
        if "server" not in header_map:
            lines.append(SERVER_HEADER)
        dated = "date" not in header_map
        before = b"".join(lines)
        lines = []
        self.body_allowed = body_allowed(status, request.method)
        if status >= 200 and status not in (204, 304) and self.content_length is None:
            if known_length is not None:
                self.content_length = known_length
                lines.append(b"Content-Length: %d\r\n" % known_length)
            elif request.method == b"HEAD":
                pass  # the length of a body never sent is unknown; say nothing
            elif request.http_version == "1.1":
                self.chunked = True
                lines.append(b"Transfer-Encoding: chunked\r\n")
            else:
                self.keep_alive = False  # an HTTP/1.0 body ends when the connection does
        if not self.keep_alive:
            lines.append(b"Connection: close\r\n")
        elif request.http_version == "1.0":
            lines.append(b"Connection: keep-alive\r\n")
        lines.append(b"\r\n")
        after = b"".join(lines)
        if cache is not None and key is not None:
            state = (
                before,
                after,
                self.keep_alive,
                self.content_length,
                self.chunked,
                self.body_allowed,
            )
            with suppress(TypeError):  # an unhashable key (headers given as lists): not kept
                cache.put(cache_key, _CachedHead(dated, state, header_map))
        return before + date_line + after if dated else before + after

    def body(self, data: bytes) -> bytes:
        """``data`` framed for the wire (cut to the declared length); counts body bytes."""
        if not self.body_allowed or not data:
            return b""
        if self.content_length is not None:
            room = self.content_length - self.body_sent
            if len(data) > room:
                error_log.error(
                    "app sent more than its Content-Length of %d; extra bytes dropped",
                    self.content_length,
                )
                data = data[:room]
                self.keep_alive = False
                if not data:
                    return b""
        self.body_sent += len(data)
        return encode_chunk(data) if self.chunked else data

    def end(self, trailers: bytes = b"") -> bytes:
        """What ends the body: the last chunk (with trailer lines), or nothing."""
        if self.chunked:
            return b"0\r\n" + trailers + b"\r\n" if trailers else LAST_CHUNK
        declared = self.content_length
        if declared is not None and self.body_allowed and self.body_sent < declared:
            error_log.error(
                "app sent %d of its Content-Length of %d bytes; closing the connection",
                self.body_sent,
                declared,
            )
            self.keep_alive = False
        return b""
