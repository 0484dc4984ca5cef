"""HTTP/1.1 request parsing, sans-IO: bytes in, request events out (over httptools / llhttp).

Owns how the server reads requests: the limits of SPEC section 1, the refusals of SPEC
section 8 and the status each one is answered with. llhttp does the byte-level work in C;
this module adds the rules llhttp leaves out. Per request the Python work stays small: the
callbacks only collect, and the Request event is built once, when the head is complete.

Rules (RFC 9112). A refusal raises ProtocolError; the server answers it and closes.

  refused by llhttp itself                                                           400
    request line: unknown method, bad target bytes (NUL, CR, non-ASCII), version syntax
    field lines: space before the colon, bad name byte, NUL or bare CR in a value, bare LF
      line ends, obs-fold (a line starting with whitespace)
    framing: Transfer-Encoding with Content-Length, two Content-Length fields (even equal),
      a Content-Length that is not 1*DIGIT ("1, 1", "+1", "-1", "0x1", empty), a last
      coding other than chunked or "chunked, chunked", a bad chunk size ("0x5", " 5",
      "5 "), chunk data longer than its size
  added here
    no HTTP version (llhttp reads it as HTTP/0.9; an explicit HTTP/0.9 looks the same)  400
    a well-formed version other than 1.0 and 1.1 (HTTP/1.2, HTTP/2.0, HTTP/3.0)        505
    the HTTP/2 preface "PRI * HTTP/2.0" (h2c prior knowledge is not spoken here)      505
    HTTP/1.1 without Host, more than one Host, a Host value outside the URI authority
      characters (RFC 9112 section 3.2)                                              400
    a Transfer-Encoding other than exactly one field saying "chunked" ("gzip, chunked",
      two fields): no other coding can be decoded; any on HTTP/1.0 (section 6.1)      400
    an upgrade or CONNECT request with a chunked body                                 400
  limits (Limits; 0 turns one off)
    request line longer than request_line: method + SP + target + SP + "HTTP/1.1"     414
    more than `fields` header fields (trailer fields are counted apart)               431
    a field line longer than field_size: name + ": " + value                         431
    a body larger than `body`: by Content-Length from the head alone, before any body
      byte; a chunked body as it arrives                                              413
    a Content-Length or chunk size beyond 2**64 - 1 (llhttp: overflow)                 413
  a line still unfinished when a read ends (request line, field, chunk-size or trailer
  line) is measured in raw bytes as they arrive, so an endless line is refused without
  waiting for its end: 414 while in the request line, 431 after. Raw bytes include any
  whitespace padding the finished-line rules above do not count, so a line padded past
  its limit is refused only when it arrives in pieces.

After a request with keep_alive=False nothing more is parsed: RFC 9112 section 9.6 forbids
processing later requests on that connection, so their bytes are dropped. After an upgrade
request (Connection: upgrade + Upgrade) or CONNECT, and its EndOfMessage, the bytes are kept
for take_upgrade_bytes() instead. Such a request says keep_alive=False, so a server that
declines the switch answers it and closes.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, fields

import httptools

from hornbeam.errors import ConfigError, HornbeamError
from hornbeam.http1.events import Data, EndOfMessage, Event, Request

_NO_LIMIT = sys.maxsize

# Parser states, in this order: in_message is True from _HEAD to _SWITCHING_BODY, and
# llhttp is fed only before _SWITCHING_BODY.
_IDLE = 0  # between requests
_HEAD = 1  # request line and header fields
_BODY = 2  # body and trailers of a request whose head is complete
_SWITCHING_BODY = 3  # an upgrade request's Content-Length body, cut from the bytes after it
_SWITCHED = 4  # after an upgrade or CONNECT request: bytes are kept, not parsed
_CLOSING = 5  # after a request without keep-alive: later bytes are dropped (RFC 9112 9.6)
_FAILED = 6

# What a line left unfinished by a read is, for the limit that applies to it.
_REQUEST_LINE = 0
_FIELD_LINE = 1  # a header field; in a chunked body a chunk-size or trailer line
_UNKNOWN_LINE = 2  # a head that began after another request in the same read

# The header fields that decide framing; every other field passes through untouched.
_HOST, _CONTENT_LENGTH, _TRANSFER_ENCODING, _EXPECT, _UPGRADE = range(5)
_FRAMING_FIELDS = {
    b"host": _HOST,
    b"content-length": _CONTENT_LENGTH,
    b"transfer-encoding": _TRANSFER_ENCODING,
    b"expect": _EXPECT,
    b"upgrade": _UPGRADE,
}

# Bytes a Host value may hold: RFC 3986 reg-name, IP-literal brackets, ":" before the port.
_HOST_BYTES = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=%:[]"

# llhttp refusals that are not a plain 400, keyed by llhttp's reason text.
_LLHTTP_REFUSALS = {
    "Content-Length overflow": (413, "Content-Length beyond 2**64: larger than any body accepted"),
    "Chunk size overflow": (413, "chunk size beyond 2**64: larger than any body accepted"),
    "Pause on PRI/Upgrade": (505, "HTTP/2 connection preface; this connection speaks HTTP/1.1"),
}

# A request line is method + SP + target + SP + "HTTP/1.1".
_REQUEST_LINE_FRAME = len(b"  HTTP/1.1")

_END_OF_MESSAGE = EndOfMessage()  # the common case, no trailers: one shared frozen instance


@dataclass(frozen=True, slots=True)
class Limits:
    """Request size limits (SPEC section 1, gunicorn's names and defaults); 0 means none."""

    request_line: int = 4094  # longer request line -> 414
    fields: int = 100  # more header fields -> 431
    field_size: int = 8190  # a field line (name + ": " + value) longer -> 431
    body: int = 1 << 30  # larger body (Content-Length or chunked total) -> 413

    def __post_init__(self) -> None:
        for limit in fields(self):
            value = getattr(self, limit.name)
            if value < 0:
                raise ConfigError(
                    f"request limit {limit.name} is {value}; give a size >= 0 (0 means no limit)"
                )


class ProtocolError(HornbeamError):
    """Bytes that are not an acceptable request: answer ``status`` with ``reason`` and close.

    ``events`` are those the same ``feed()`` call completed before the bad bytes (a pipelined
    request ahead of a broken one), so they can still be answered first.
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason
        self.events: list[Event] = []


class _NoCallbacks:
    """The protocol of the C parser a released RequestParser keeps: it is never fed."""


_RELEASED = httptools.HttpRequestParser(_NoCallbacks())


class RequestParser:
    """One connection's request stream: ``feed(bytes) -> [Request, Data..., EndOfMessage, ...]``.

    The httptools callbacks (``on_*``) are called from inside ``feed``; they are not API.
    """

    __slots__ = (
        "_body_left",
        "_chunked",
        "_events",
        "_failure",
        "_fields",
        "_in_chunk_data",
        "_keep_alive",
        "_kept",
        "_line_kind",
        "_line_len",
        "_llhttp",
        "_max_body",
        "_max_field",
        "_max_field_content",
        "_max_fields",
        "_max_line",
        "_state",
        "_switch_body_left",
        "_target",
        "_valid_host",
    )

    def __init__(self, limits: Limits) -> None:
        self._max_line = limits.request_line or _NO_LIMIT
        self._max_fields = limits.fields or _NO_LIMIT
        self._max_field = limits.field_size or _NO_LIMIT
        self._max_field_content = self._max_field - len(b": ")
        self._max_body = limits.body or _NO_LIMIT
        self._state = _IDLE
        self._events: list[Event] = []
        self._target = b""
        self._fields: list[tuple[bytes, bytes]] = []
        self._chunked = False
        self._keep_alive = True
        self._in_chunk_data = False
        self._body_left = 0
        self._switch_body_left = 0
        self._line_len = 0
        self._line_kind = _REQUEST_LINE
        self._kept: list[bytes] = []
        self._failure: ProtocolError | None = None
        # The last Host value found valid: a connection sends the same one every time, and
        # checking its bytes costs more than comparing it with this.
        self._valid_host = b""
        self._llhttp = httptools.HttpRequestParser(self)
        # Let every digit.digit version through llhttp, so that on_headers_complete can answer
        # 505 to a well-formed unsupported one; malformed versions are still llhttp's 400.
        self._llhttp.set_dangerous_leniencies(lenient_version=True)

    # ---- API ---------------------------------------------------------------------------------
    def feed(self, data: bytes) -> list[Event]:
        """The events ``data`` completes, in order. Raises ProtocolError on bad input."""
        state_before = self._state
        if state_before >= _SWITCHING_BODY:
            return self._feed_after_stop(data)
        events: list[Event] = []
        self._events = events
        try:
            self._llhttp.feed_data(data)
        except httptools.HttpParserUpgrade as stop:
            self._cut_switch_body(data[stop.args[0] :])
        except httptools.HttpParserCallbackError as exc:
            refusal = exc.__context__  # what our callback raised
            if isinstance(refusal, ProtocolError):
                raise self._fail(refusal) from None
            raise
        except httptools.HttpParserError as exc:
            if self._state == _CLOSING:
                return events  # llhttp refuses data after "Connection: close"; we ignore it
            raise self._fail(_llhttp_refusal(str(exc))) from None
        state = self._state
        if state == _HEAD or (state == _BODY and self._chunked):
            self._bound_unfinished_line(data, state_before)
        return events

    def release(self) -> None:
        """Let go of the C parser once the connection is over. It holds this object's
        callbacks, so the two form a reference cycle that otherwise waits for the garbage
        collector: with ``Connection: close`` that was 16 objects a connection, a gen-0
        collection every 60 connections and 5% of the worker's CPU."""
        self._llhttp = _RELEASED

    def take_upgrade_bytes(self) -> bytes:
        """The bytes received after an upgrade or CONNECT request, not parsed; then forgets them."""
        kept = b"".join(self._kept)
        self._kept.clear()
        return kept

    @property
    def in_message(self) -> bool:
        """True while a request head or body has started and not ended."""
        return _HEAD <= self._state <= _SWITCHING_BODY

    # ---- httptools callbacks -----------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._state = _HEAD
        self._target = b""
        self._fields = []

    def on_url(self, piece: bytes) -> None:
        target = self._target + piece  # llhttp hands the target over in pieces as reads end
        self._target = target
        if len(self._llhttp.get_method()) + len(target) + _REQUEST_LINE_FRAME > self._max_line:
            raise ProtocolError(414, f"request line longer than {self._max_line} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        value = value.rstrip(b" \t")  # llhttp drops the whitespace before a value, not after
        fields = self._fields  # the head's fields, or after a chunked body its trailers
        fields.append((name, value))
        if len(fields) > self._max_fields:
            raise ProtocolError(431, f"more than {self._max_fields} header fields")
        if len(name) + len(value) > self._max_field_content:
            raise ProtocolError(
                431, f"header field {name.decode('latin-1')} longer than {self._max_field} bytes"
            )

    def on_headers_complete(self) -> None:
        llhttp = self._llhttp
        version = llhttp.get_http_version()
        if version != "1.1" and version != "1.0":
            raise _version_refusal(version)
        fields = self._fields
        host, content_length, chunked, expect_continue, upgrade = _framing(fields, version)
        if host != self._valid_host:
            if host.translate(None, _HOST_BYTES):
                raise ProtocolError(400, "the Host header field is not a host[:port]")
            self._valid_host = host
        if content_length is not None and content_length > self._max_body:
            raise ProtocolError(
                413, f"body of {content_length} bytes; the limit is {self._max_body}"
            )
        method = llhttp.get_method()
        keep_alive = llhttp.should_keep_alive()
        state = _BODY
        if llhttp.should_upgrade():
            # llhttp stops after this request (and skips its body): read a Content-Length body
            # from the bytes it leaves; a chunked one could not be decoded from there.
            if chunked:
                raise ProtocolError(400, "a request switching protocols cannot have a chunked body")
            # No request after this one is read on this connection: a server that declines
            # the switch answers and closes. After CONNECT the bytes are a tunnel's.
            state = _SWITCHING_BODY
            self._switch_body_left = content_length or 0
            keep_alive = False
            if method == b"CONNECT":
                upgrade = None
        else:
            upgrade = None  # an Upgrade field without "Connection: upgrade" asks for nothing
        self._events.append(
            Request(
                method,
                self._target,
                version,
                tuple(fields),
                keep_alive,
                expect_continue,
                content_length,
                chunked,
                upgrade,
            )
        )
        self._fields = []  # collects the trailers from here on
        self._state = state
        self._keep_alive = keep_alive
        self._chunked = chunked
        if chunked:
            self._body_left = self._max_body
            self._in_chunk_data = False

    def on_body(self, body: bytes) -> None:
        if self._chunked:
            self._in_chunk_data = True
            left = self._body_left - len(body)
            if left < 0:
                raise ProtocolError(413, f"chunked body larger than {self._max_body} bytes")
            self._body_left = left
        self._events.append(Data(body))

    def on_chunk_complete(self) -> None:
        self._in_chunk_data = False

    def on_message_complete(self) -> None:
        if self._state == _SWITCHING_BODY:
            return  # EndOfMessage follows the body, cut from the bytes llhttp leaves
        trailers = self._fields
        self._events.append(EndOfMessage(tuple(trailers)) if trailers else _END_OF_MESSAGE)
        self._state = _IDLE if self._keep_alive else _CLOSING

    # ---- internals ---------------------------------------------------------------------------
    def _feed_after_stop(self, data: bytes) -> list[Event]:
        """Bytes after llhttp stopped: an upgrade's body and bytes, or after a closing request."""
        state = self._state
        if state == _FAILED:
            assert self._failure is not None
            raise ProtocolError(self._failure.status, self._failure.reason)
        events: list[Event] = []
        self._events = events
        if state == _SWITCHING_BODY:
            self._cut_switch_body(data)
        elif state == _SWITCHED and data:
            self._kept.append(data)
        return events

    def _cut_switch_body(self, data: bytes) -> None:
        """Take what is left of an upgrade request's body from ``data``; keep the rest."""
        left = self._switch_body_left
        if left:
            body = data[:left]
            if body:
                self._events.append(Data(body))
                left -= len(body)
                self._switch_body_left = left
                data = data[len(body) :]
        if left == 0:
            self._events.append(_END_OF_MESSAGE)
            self._state = _SWITCHED
            if data:
                self._kept.append(data)

    def _bound_unfinished_line(self, data: bytes, state_before: int) -> None:
        """Refuse a line that is already too long although the read ended before its end.

        Finished lines are checked in the callbacks. An unfinished one is invisible there, yet
        httptools keeps growing its field name or value, so it is measured here in raw bytes:
        those after the last LF of this read, plus those of earlier reads when it has none.
        """
        if self._state == _HEAD:
            if self._events:
                # Another request ended earlier in this read (its EndOfMessage is there), so
                # where this head starts is unknown: measure from the next read on.
                self._line_len = 0
                self._line_kind = _UNKNOWN_LINE
                return
            if state_before != _HEAD:
                # The head began in this read, after at most some empty lines (RFC 9112 2.2).
                data = data.lstrip(b"\r\n")
                self._line_len = 0
                self._line_kind = _REQUEST_LINE
        elif self._in_chunk_data:
            return  # the read ended inside chunk data, which has no lines
        lf = data.rfind(b"\n")
        if lf < 0:
            line_len = self._line_len + len(data)
            kind = self._line_kind
        else:
            line_len = len(data) - lf - 1
            kind = _FIELD_LINE  # a line of this head or chunked body ended: the next is a field
        if data.endswith(b"\r"):
            line_len -= 1  # the CR of a line end whose LF is still to come
        self._line_len = line_len
        self._line_kind = kind
        if kind == _REQUEST_LINE:
            if line_len > self._max_line:
                raise self._fail(
                    ProtocolError(414, f"request line longer than {self._max_line} bytes")
                )
        elif kind == _FIELD_LINE:
            if line_len > self._max_field:
                raise self._fail(
                    ProtocolError(431, f"header or chunk line longer than {self._max_field} bytes")
                )
        elif line_len > max(self._max_field, self._max_line):
            raise self._fail(ProtocolError(431, "request line or header field too long"))

    def _fail(self, error: ProtocolError) -> ProtocolError:
        error.events = self._events
        self._events = []
        self._failure = error
        self._state = _FAILED
        return error


def _framing(
    fields: list[tuple[bytes, bytes]], version: str
) -> tuple[bytes, int | None, bool, bool, bytes | None]:
    """Host, Content-Length, chunked, Expect: 100-continue, Upgrade; refuses bad codings and
    a missing or repeated Host (the caller checks the Host value)."""
    hosts = 0
    host = b""
    content_length = None
    codings = 0
    coding = b""
    expect = b""
    upgrade = None
    for name, value in fields:
        role = _FRAMING_FIELDS.get(name.lower())
        if role is None:
            continue
        if role == _HOST:
            hosts += 1
            host = value
        elif role == _CONTENT_LENGTH:
            content_length = int(value)  # llhttp has checked 1*DIGIT and that it is the only one
        elif role == _TRANSFER_ENCODING:
            codings += 1
            coding = value
        elif role == _EXPECT:
            expect = value
        else:
            upgrade = value.lower()
    if hosts != 1 and (hosts or version == "1.1"):
        raise ProtocolError(400, "an HTTP/1.1 request needs exactly one Host header field")
    if codings and (codings > 1 or coding.lower() != b"chunked" or version == "1.0"):
        raise ProtocolError(
            400, "Transfer-Encoding must be exactly one field saying chunked, on HTTP/1.1"
        )
    expect_continue = version == "1.1" and expect.lower() == b"100-continue"
    return host, content_length, codings != 0, expect_continue, upgrade


def _version_refusal(version: str) -> ProtocolError:
    if version == "0.9":
        return ProtocolError(400, "request line without an HTTP version")
    return ProtocolError(505, f"HTTP/{version} is not supported; use HTTP/1.1")


def _llhttp_refusal(reason: str) -> ProtocolError:
    status, text = _LLHTTP_REFUSALS.get(reason, (400, f"malformed request: {reason}"))
    return ProtocolError(status, text)
