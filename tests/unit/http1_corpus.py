"""Raw HTTP/1.1 requests and what the request parser must make of them.

VALID cases list the events expected (adjacent Data merged); INVALID cases the status of the
ProtocolError, plus the events of complete requests that came before the bad bytes. The
parser tests replay every case whole, byte by byte and in random chunkings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hornbeam.http1.events import Data, EndOfMessage, Event, Request
from hornbeam.http1.parser import Limits

HOST = (b"Host", b"example.com")
END = EndOfMessage()


@dataclass(frozen=True)
class Case:
    name: str
    raw: bytes
    # expected; for an invalid case, those of the requests completed before the bad bytes
    events: tuple[Event, ...] = ()
    status: int | None = None  # the ProtocolError status of an invalid case
    upgrade_bytes: bytes = b""  # what take_upgrade_bytes() returns at the end
    limits: Limits = field(default_factory=Limits)


def request(
    method: bytes = b"GET",
    target: bytes = b"/",
    headers: tuple[tuple[bytes, bytes], ...] = (HOST,),
    *,
    version: str = "1.1",
    keep_alive: bool | None = None,
    expect_continue: bool = False,
    content_length: int | None = None,
    chunked: bool = False,
    upgrade: bytes | None = None,
) -> Request:
    """The expected Request event; keep_alive defaults to the version's default."""
    if keep_alive is None:
        keep_alive = version == "1.1"
    return Request(
        method,
        target,
        version,
        headers,
        keep_alive,
        expect_continue,
        content_length,
        chunked,
        upgrade,
    )


def head(request_line: bytes, *fields: bytes) -> bytes:
    """A request head: the request line, the field lines, the empty line."""
    return b"\r\n".join((request_line, *fields)) + b"\r\n\r\n"


CHUNKED = (HOST, (b"Transfer-Encoding", b"chunked"))
TYPICAL_GET = head(
    b"GET /index.html?page=2 HTTP/1.1",
    b"Host: localhost:8000",
    b"User-Agent: curl/8.5.0",
    b"Accept: */*",
    b"Accept-Encoding: gzip, br",
    b"Connection: keep-alive",
)

VALID: list[Case] = [
    Case("get", head(b"GET / HTTP/1.1", b"Host: example.com"), (request(), END)),
    Case(
        "get with typical headers",
        TYPICAL_GET,
        (
            request(
                target=b"/index.html?page=2",
                headers=(
                    (b"Host", b"localhost:8000"),
                    (b"User-Agent", b"curl/8.5.0"),
                    (b"Accept", b"*/*"),
                    (b"Accept-Encoding", b"gzip, br"),
                    (b"Connection", b"keep-alive"),
                ),
            ),
            END,
        ),
    ),
    Case("head", head(b"HEAD /x HTTP/1.1", b"Host: example.com"), (request(b"HEAD", b"/x"), END)),
    Case(
        "options asterisk",
        head(b"OPTIONS * HTTP/1.1", b"Host: example.com"),
        (request(b"OPTIONS", b"*"), END),
    ),
    Case(
        "options path",
        head(b"OPTIONS /api HTTP/1.1", b"Host: example.com"),
        (request(b"OPTIONS", b"/api"), END),
    ),
    Case(
        "post with content-length",
        head(b"POST /form HTTP/1.1", b"Host: example.com", b"Content-Length: 11") + b"a=1&b=2&c=3",
        (
            request(b"POST", b"/form", (HOST, (b"Content-Length", b"11")), content_length=11),
            Data(b"a=1&b=2&c=3"),
            END,
        ),
    ),
    Case(
        "post with empty body",
        head(b"POST / HTTP/1.1", b"Host: example.com", b"Content-Length: 0"),
        (request(b"POST", headers=(HOST, (b"Content-Length", b"0")), content_length=0), END),
    ),
    Case(
        "put body holding CRLFs and a request line",
        head(b"PUT /f HTTP/1.1", b"Host: example.com", b"Content-Length: 20")
        + b"GET / HTTP/1.1\r\n\r\n\r\n",
        (
            request(b"PUT", b"/f", (HOST, (b"Content-Length", b"20")), content_length=20),
            Data(b"GET / HTTP/1.1\r\n\r\n\r\n"),
            END,
        ),
    ),
    Case(
        "content-length with leading zeros and trailing space",
        head(b"PATCH /p HTTP/1.1", b"Host: example.com", b"Content-Length: 003 ") + b"abc",
        (
            request(b"PATCH", b"/p", (HOST, (b"Content-Length", b"003")), content_length=3),
            Data(b"abc"),
            END,
        ),
    ),
    Case(
        "delete",
        head(b"DELETE /item/7 HTTP/1.1", b"Host: example.com"),
        (request(b"DELETE", b"/item/7"), END),
    ),
    Case(
        "http/1.0 without host closes",
        head(b"GET / HTTP/1.0"),
        (request(headers=(), version="1.0"), END),
    ),
    Case(
        "http/1.0 keep-alive",
        head(b"GET / HTTP/1.0", b"Connection: Keep-Alive"),
        (request(headers=((b"Connection", b"Keep-Alive"),), version="1.0", keep_alive=True), END),
    ),
    Case(
        "nothing after a request without keep-alive is parsed",
        head(b"GET / HTTP/1.0") + head(b"GET /2 HTTP/1.0") + b"\x00garbage",
        (request(headers=(), version="1.0"), END),
    ),
    Case(
        "http/1.1 connection close",
        head(b"GET / HTTP/1.1", b"Host: example.com", b"Connection: close"),
        (request(headers=(HOST, (b"Connection", b"close")), keep_alive=False), END),
    ),
    Case(
        "pipelined request after connection close is ignored",
        head(b"GET / HTTP/1.1", b"Host: example.com", b"Connection: close")
        + head(b"POST /2 HTTP/1.1", b"Host: example.com", b"Content-Length: 1")
        + b"x",
        (request(headers=(HOST, (b"Connection", b"close")), keep_alive=False), END),
    ),
    Case(
        "http/1.1 close among other options",
        head(b"GET / HTTP/1.1", b"Host: example.com", b"Connection: keep-alive, close"),
        (request(headers=(HOST, (b"Connection", b"keep-alive, close")), keep_alive=False), END),
    ),
    Case(
        "pipelined gets",
        head(b"GET /1 HTTP/1.1", b"Host: example.com")
        + head(b"GET /2 HTTP/1.1", b"Host: example.com")
        + head(b"HEAD /3 HTTP/1.1", b"Host: example.com"),
        (request(target=b"/1"), END, request(target=b"/2"), END, request(b"HEAD", b"/3"), END),
    ),
    Case(
        "pipelined post then get",
        head(b"POST /a HTTP/1.1", b"Host: example.com", b"Content-Length: 4")
        + b"dataGET /b HTTP/1.1\r\nHost: example.com\r\n\r\n",
        (
            request(b"POST", b"/a", (HOST, (b"Content-Length", b"4")), content_length=4),
            Data(b"data"),
            END,
            request(target=b"/b"),
            END,
        ),
    ),
    Case(
        "chunked with extensions and trailers",
        head(b"POST /up HTTP/1.1", b"Host: example.com", b"Transfer-Encoding: chunked")
        + b'5;name=value;quoted="a b"\r\nhello\r\nA\r\n, world!!!\r\n0;last\r\n'
        + b"X-Checksum: abc123\r\nX-Count: 2\r\n\r\n",
        (
            request(b"POST", b"/up", CHUNKED, chunked=True),
            Data(b"hello, world!!!"),
            EndOfMessage(((b"X-Checksum", b"abc123"), (b"X-Count", b"2"))),
        ),
    ),
    Case(
        "chunked coding name in capitals, hex sizes either case",
        head(b"POST / HTTP/1.1", b"Host: example.com", b"Transfer-Encoding: Chunked")
        + b"a\r\n0123456789\r\nB\r\nabcdefghijk\r\n0\r\n\r\n",
        (
            request(b"POST", headers=(HOST, (b"Transfer-Encoding", b"Chunked")), chunked=True),
            Data(b"0123456789abcdefghijk"),
            END,
        ),
    ),
    Case(
        "chunked coding after a tab",
        head(b"POST / HTTP/1.1", b"Host: example.com", b"Transfer-Encoding:\tchunked")
        + b"0\r\n\r\n",
        (request(b"POST", headers=CHUNKED, chunked=True), END),
    ),
    Case(
        "chunked then pipelined get",
        head(b"POST / HTTP/1.1", b"Host: example.com", b"Transfer-Encoding: chunked")
        + b"3\r\nabc\r\n0\r\n\r\n"
        + head(b"GET /next HTTP/1.1", b"Host: example.com"),
        (
            request(b"POST", headers=CHUNKED, chunked=True),
            Data(b"abc"),
            END,
            request(target=b"/next"),
            END,
        ),
    ),
    Case(
        "expect 100-continue",
        head(
            b"PUT /big HTTP/1.1",
            b"Host: example.com",
            b"Content-Length: 5",
            b"Expect: 100-Continue",
        )
        + b"12345",
        (
            request(
                b"PUT",
                b"/big",
                (HOST, (b"Content-Length", b"5"), (b"Expect", b"100-Continue")),
                expect_continue=True,
                content_length=5,
            ),
            Data(b"12345"),
            END,
        ),
    ),
    Case(
        "expect on http/1.0 is ignored",
        head(b"POST / HTTP/1.0", b"Content-Length: 1", b"Expect: 100-continue") + b"x",
        (
            request(
                b"POST",
                headers=((b"Content-Length", b"1"), (b"Expect", b"100-continue")),
                version="1.0",
                content_length=1,
            ),
            Data(b"x"),
            END,
        ),
    ),
    Case(
        "websocket upgrade keeps the frames",
        head(
            b"GET /chat HTTP/1.1",
            b"Host: example.com",
            b"Connection: Upgrade",
            b"Upgrade: WebSocket",
            b"Sec-WebSocket-Version: 13",
        )
        + b"\x81\x85frame",
        (
            request(
                target=b"/chat",
                headers=(
                    HOST,
                    (b"Connection", b"Upgrade"),
                    (b"Upgrade", b"WebSocket"),
                    (b"Sec-WebSocket-Version", b"13"),
                ),
                keep_alive=False,
                upgrade=b"websocket",
            ),
            END,
        ),
        upgrade_bytes=b"\x81\x85frame",
    ),
    Case(
        "h2c upgrade with a body, then the HTTP/2 bytes",
        head(
            b"POST /h2 HTTP/1.1",
            b"Host: example.com",
            b"Connection: Upgrade, HTTP2-Settings",
            b"Upgrade: h2c",
            b"HTTP2-Settings: AAMAAABkAAQAAP__",
            b"Content-Length: 3",
        )
        + b"abcPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        (
            request(
                b"POST",
                b"/h2",
                (
                    HOST,
                    (b"Connection", b"Upgrade, HTTP2-Settings"),
                    (b"Upgrade", b"h2c"),
                    (b"HTTP2-Settings", b"AAMAAABkAAQAAP__"),
                    (b"Content-Length", b"3"),
                ),
                keep_alive=False,
                content_length=3,
                upgrade=b"h2c",
            ),
            Data(b"abc"),
            END,
        ),
        upgrade_bytes=b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ),
    Case(
        "upgrade field without connection upgrade asks for nothing",
        head(b"GET / HTTP/1.1", b"Host: example.com", b"Upgrade: websocket")
        + head(b"GET /2 HTTP/1.1", b"Host: example.com"),
        (
            request(headers=(HOST, (b"Upgrade", b"websocket"))),
            END,
            request(target=b"/2"),
            END,
        ),
    ),
    Case(
        "connect stops parsing and closes",
        head(b"CONNECT example.com:443 HTTP/1.1", b"Host: example.com:443") + b"\x16\x03\x01tls",
        (
            request(
                b"CONNECT",
                b"example.com:443",
                ((b"Host", b"example.com:443"),),
                keep_alive=False,
            ),
            END,
        ),
        upgrade_bytes=b"\x16\x03\x01tls",
    ),
    Case(
        "percent-encoded target kept raw",
        head(b"GET /a%20b/%E2%82%AC/%00?q=%2F&x=%zz HTTP/1.1", b"Host: example.com"),
        (request(target=b"/a%20b/%E2%82%AC/%00?q=%2F&x=%zz"), END),
    ),
    Case(
        "absolute-form target",
        head(b"GET http://example.com:8080/p/q?x=1#frag HTTP/1.1", b"Host: example.com"),
        (request(target=b"http://example.com:8080/p/q?x=1#frag"), END),
    ),
    Case(
        "repeated fields keep order and duplicates",
        head(
            b"GET / HTTP/1.1",
            b"Accept: text/html",
            b"Host: example.com",
            b"X-Forwarded-For: 10.0.0.1",
            b"Accept: application/json",
            b"X-Forwarded-For: 10.0.0.2",
        ),
        (
            request(
                headers=(
                    (b"Accept", b"text/html"),
                    HOST,
                    (b"X-Forwarded-For", b"10.0.0.1"),
                    (b"Accept", b"application/json"),
                    (b"X-Forwarded-For", b"10.0.0.2"),
                )
            ),
            END,
        ),
    ),
    Case(
        "field names keep their case",
        head(b"GET / HTTP/1.1", b"hOsT: example.com", b"X-MiXeD-CaSe: Value"),
        (request(headers=((b"hOsT", b"example.com"), (b"X-MiXeD-CaSe", b"Value"))), END),
    ),
    Case(
        "empty lines before a request",
        b"\r\n\r\n" + head(b"GET / HTTP/1.1", b"Host: example.com"),
        (request(), END),
    ),
    Case(
        "whitespace around values is not part of them",
        head(b"GET / HTTP/1.1", b"Host:example.com", b"X-A:   padded \t ", b"X-B:\tin ner\t"),
        (request(headers=(HOST, (b"X-A", b"padded"), (b"X-B", b"in ner"))), END),
    ),
    Case(
        "empty value and obs-text value",
        head(b"GET / HTTP/1.1", b"Host: example.com", b"X-Empty:", b"X-Latin: caf\xe9"),
        (request(headers=(HOST, (b"X-Empty", b""), (b"X-Latin", b"caf\xe9"))), END),
    ),
    Case(
        "host as ipv6 literal with port",
        head(b"GET / HTTP/1.1", b"Host: [::1]:8000"),
        (request(headers=((b"Host", b"[::1]:8000"),)), END),
    ),
    Case(
        "empty host is allowed",
        head(b"GET / HTTP/1.1", b"Host:"),
        (request(headers=((b"Host", b""),)), END),
    ),
    Case(
        "get with a body",
        head(b"GET /search HTTP/1.1", b"Host: example.com", b"Content-Length: 2") + b"{}",
        (
            request(target=b"/search", headers=(HOST, (b"Content-Length", b"2")), content_length=2),
            Data(b"{}"),
            END,
        ),
    ),
]


def _invalid(
    name: str,
    status: int,
    raw: bytes,
    *,
    events: tuple[Event, ...] = (),
    limits: Limits | None = None,
) -> Case:
    return Case(name, raw, events, status, limits=limits or Limits())


def _post(*fields: bytes) -> bytes:
    return head(b"POST / HTTP/1.1", b"Host: example.com", *fields)


_TE_CHUNKED = b"Transfer-Encoding: chunked"

INVALID: list[Case] = [
    # request line
    _invalid("no http version", 400, head(b"GET /", b"Host: example.com")),
    _invalid("explicit http/0.9", 400, head(b"GET / HTTP/0.9")),
    _invalid("version then trailing space", 400, head(b"GET / HTTP/1.1 ", b"Host: example.com")),
    _invalid("http/2.0 request line", 505, head(b"GET / HTTP/2.0", b"Host: example.com")),
    _invalid("http/1.2", 505, head(b"GET / HTTP/1.2", b"Host: example.com")),
    _invalid("http/3.0", 505, head(b"GET / HTTP/3.0", b"Host: example.com")),
    _invalid("http/2 preface", 505, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    _invalid("version x.y", 400, head(b"GET / HTTP/x.y", b"Host: example.com")),
    _invalid("version 1.23", 400, head(b"GET / HTTP/1.23", b"Host: example.com")),
    _invalid("version without dot", 400, head(b"GET / HTTP/11", b"Host: example.com")),
    _invalid("lower-case protocol name", 400, head(b"GET / http/1.1", b"Host: example.com")),
    _invalid("invalid method token", 400, head(b"G@T / HTTP/1.1", b"Host: example.com")),
    _invalid("lower-case method", 400, head(b"get / HTTP/1.1", b"Host: example.com")),
    # llhttp knows the registered methods only; any other is refused rather than passed on
    _invalid("unregistered method", 400, head(b"BREW / HTTP/1.1", b"Host: example.com")),
    _invalid("tab after method", 400, head(b"GET\t/ HTTP/1.1", b"Host: example.com")),
    _invalid("nul in target", 400, head(b"GET /a\x00b HTTP/1.1", b"Host: example.com")),
    _invalid("nul in query", 400, head(b"GET /?a=\x00 HTTP/1.1", b"Host: example.com")),
    _invalid("space inside target", 400, head(b"GET /a b HTTP/1.1", b"Host: example.com")),
    _invalid("del in target", 400, head(b"GET /a\x7f HTTP/1.1", b"Host: example.com")),
    _invalid("utf-8 bytes in target", 400, head(b"GET /caf\xc3\xa9 HTTP/1.1", b"Host: a")),
    _invalid("bare lf after request line", 400, b"GET / HTTP/1.1\nHost: example.com\r\n\r\n"),
    _invalid("bare cr after request line", 400, b"GET / HTTP/1.1\rHost: example.com\r\n\r\n"),
    # field lines
    _invalid("obs-fold", 400, head(b"GET / HTTP/1.1", b"Host: example.com", b"X: a", b" b")),
    _invalid("space before colon", 400, head(b"GET / HTTP/1.1", b"Host : example.com")),
    _invalid("nul in value", 400, head(b"GET / HTTP/1.1", b"Host: a", b"X: a\x00b")),
    _invalid("bare cr in value", 400, head(b"GET / HTTP/1.1", b"Host: a", b"X: a\rb")),
    _invalid("bare lf line end", 400, b"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n"),
    _invalid("nul in name", 400, head(b"GET / HTTP/1.1", b"Host: a", b"X\x00Y: b")),
    _invalid("empty name", 400, head(b"GET / HTTP/1.1", b"Host: a", b": b")),
    _invalid("line without colon", 400, head(b"GET / HTTP/1.1", b"Host: a", b"NoColon")),
    _invalid("cr without lf ending the head", 400, b"GET / HTTP/1.1\r\nHost: a\r\n\rX"),
    # host
    _invalid("http/1.1 without host", 400, head(b"GET / HTTP/1.1", b"Accept: */*")),
    _invalid("two hosts", 400, head(b"GET / HTTP/1.1", b"Host: a", b"host: b")),
    _invalid("two hosts on http/1.0", 400, head(b"GET / HTTP/1.0", b"Host: a", b"Host: a")),
    _invalid("host with a space", 400, head(b"GET / HTTP/1.1", b"Host: exa mple.com")),
    _invalid("host with a path", 400, head(b"GET / HTTP/1.1", b"Host: example.com/x")),
    _invalid("host with userinfo", 400, head(b"GET / HTTP/1.1", b"Host: user@example.com")),
    # request smuggling: content-length
    _invalid("two equal content-lengths", 400, _post(b"Content-Length: 1", b"Content-Length: 1")),
    _invalid("two content-lengths", 400, _post(b"Content-Length: 1", b"Content-Length: 2")),
    _invalid("content-length list", 400, _post(b"Content-Length: 1, 1") + b"x"),
    _invalid("content-length with plus", 400, _post(b"Content-Length: +1") + b"x"),
    _invalid("negative content-length", 400, _post(b"Content-Length: -1") + b"x"),
    _invalid("space inside content-length", 400, _post(b"Content-Length: 1 0") + b"x"),
    _invalid("hex content-length", 400, _post(b"Content-Length: 0x1") + b"x"),
    _invalid("empty content-length", 400, _post(b"Content-Length:")),
    # request smuggling: transfer-encoding
    _invalid("content-length then chunked", 400, _post(b"Content-Length: 3", _TE_CHUNKED)),
    _invalid("chunked then content-length", 400, _post(_TE_CHUNKED, b"Content-Length: 3")),
    _invalid("xchunked", 400, _post(b"Transfer-Encoding: xchunked") + b"0\r\n\r\n"),
    _invalid("chunked twice in one field", 400, _post(b"Transfer-Encoding: chunked, chunked")),
    _invalid("chunked in two fields", 400, _post(_TE_CHUNKED, _TE_CHUNKED) + b"0\r\n\r\n"),
    _invalid("gzip then chunked", 400, _post(b"Transfer-Encoding: gzip, chunked") + b"0\r\n\r\n"),
    _invalid(
        "gzip and chunked fields",
        400,
        _post(b"Transfer-Encoding: gzip", _TE_CHUNKED) + b"0\r\n\r\n",
    ),
    _invalid("chunked then gzip", 400, _post(b"Transfer-Encoding: chunked, gzip")),
    _invalid("identity coding", 400, _post(b"Transfer-Encoding: identity")),
    _invalid("space before te colon", 400, _post(b"Transfer-Encoding : chunked")),
    _invalid("tab before te colon", 400, _post(b"Transfer-Encoding\t: chunked")),
    _invalid(
        "te folded onto another field", 400, _post(b"X-Padding: a", b" Transfer-Encoding: chunked")
    ),
    _invalid(
        "te as the first line indented",
        400,
        b"POST / HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: a\r\n\r\n0\r\n\r\n",
    ),
    _invalid(
        "chunked on http/1.0",
        400,
        head(b"POST / HTTP/1.0", _TE_CHUNKED) + b"0\r\n\r\n",
    ),
    # chunked framing
    _invalid("chunk size with 0x", 400, _post(_TE_CHUNKED) + b"0x5\r\nhello\r\n0\r\n\r\n"),
    _invalid("chunk size after space", 400, _post(_TE_CHUNKED) + b" 5\r\nhello\r\n0\r\n\r\n"),
    _invalid("space after chunk size", 400, _post(_TE_CHUNKED) + b"5 \r\nhello\r\n0\r\n\r\n"),
    _invalid("negative chunk size", 400, _post(_TE_CHUNKED) + b"-5\r\nhello\r\n0\r\n\r\n"),
    _invalid("chunk size not hex", 400, _post(_TE_CHUNKED) + b"g\r\nhello\r\n0\r\n\r\n"),
    _invalid("bare lf after chunk size", 400, _post(_TE_CHUNKED) + b"5\nhello\r\n0\r\n\r\n"),
    _invalid("chunk data overrun", 400, _post(_TE_CHUNKED) + b"5\r\nhelloXX\r\n0\r\n\r\n"),
    _invalid("chunk without crlf", 400, _post(_TE_CHUNKED) + b"5\r\nhello0\r\n\r\n"),
    _invalid("nul in chunk extension", 400, _post(_TE_CHUNKED) + b"5;\x00\r\nhello\r\n0\r\n\r\n"),
    _invalid("nul in trailer", 400, _post(_TE_CHUNKED) + b"0\r\nX: a\x00\r\n\r\n"),
    _invalid("folded trailer", 400, _post(_TE_CHUNKED) + b"0\r\n X: a\r\n\r\n"),
    _invalid("chunk size overflow", 413, _post(_TE_CHUNKED) + b"10000000000000000\r\nx\r\n"),
    # upgrades
    _invalid(
        "upgrade with a chunked body",
        400,
        _post(b"Connection: upgrade", b"Upgrade: h2c", _TE_CHUNKED) + b"0\r\n\r\n",
    ),
    # sizes
    _invalid("largest content-length", 413, _post(b"Content-Length: 18446744073709551615")),
    _invalid("content-length overflow", 413, _post(b"Content-Length: 18446744073709551616")),
    _invalid(
        "content-length over the body limit",
        413,
        _post(b"Content-Length: 11") + b"0123456789a",
        limits=Limits(body=10),
    ),
    _invalid(
        "chunked body over the body limit",
        413,
        _post(_TE_CHUNKED) + b"6\r\n012345\r\n5\r\n6789a\r\n0\r\n\r\n",
        limits=Limits(body=10),
    ),
    _invalid(
        "request line over the limit",
        414,
        head(b"GET /" + b"a" * 30 + b" HTTP/1.1", b"Host: a"),
        limits=Limits(request_line=32),
    ),
    _invalid(
        "too many fields",
        431,
        head(b"GET / HTTP/1.1", b"Host: a", b"A: 1", b"B: 2", b"C: 3"),
        limits=Limits(fields=3),
    ),
    _invalid(
        "field over the limit",
        431,
        head(b"GET / HTTP/1.1", b"Host: a", b"Cookie: " + b"c" * 40),
        limits=Limits(field_size=32),
    ),
    _invalid(
        "trailer over the limit",
        431,
        _post(_TE_CHUNKED) + b"0\r\nX-Sum: " + b"f" * 40 + b"\r\n\r\n",
        limits=Limits(field_size=32),
    ),
    # a good request before a bad one is still reported
    _invalid(
        "pipelined good request then a bad one",
        400,
        head(b"GET /ok HTTP/1.1", b"Host: example.com") + b"GET /bad HTTP/1.1\r\nX: a\x00\r\n\r\n",
        events=(request(target=b"/ok"), END),
    ),
]
