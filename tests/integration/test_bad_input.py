"""Bad input against the real server (SPEC section 8): refusals, limits, smuggling, slow clients.

Every refusal is checked for its exact status, a short text/plain body, and the connection
being closed afterwards with nothing more sent (a second response after a refusal would be a
smuggled request being served).
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import Response, Server, build_request, connected, running

APP = "wsgi_wire:app"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(tmp_path_factory.mktemp("bad-input"), APP, workers=1) as srv:
        yield srv


@pytest.fixture(scope="module")
def small_limits(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    flags = ("--limit-request-line", "100", "--limit-request-body", "1000")
    with running(tmp_path_factory.mktemp("small-limits"), APP, *flags, workers=1) as srv:
        yield srv


@pytest.fixture(scope="module")
def body_limits(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """For errors found in a body the app is already reading (kept apart from the others)."""
    flags = ("--limit-request-body", "1000")
    with running(tmp_path_factory.mktemp("body-limits"), APP, *flags, workers=1) as srv:
        yield srv


def refused(server: Server, data: bytes) -> Response:
    """Send ``data``; the server must answer one short text/plain error and close."""
    with connected(server, timeout=2) as reader:  # a refusal is immediate
        reader.sock.sendall(data)
        response = reader.read()
        after = reader.wait_closed()
    assert response.status >= 400, response
    assert (response.header("Content-Type") or "").startswith("text/plain"), response
    assert response.header("Connection") == "close"
    assert len(response.body) < 512, response.body
    assert after == b"", f"bytes after the refusal: {after!r}"
    return response


def answered(server: Server, data: bytes) -> Response:
    with connected(server) as reader:
        reader.sock.sendall(data)
        return reader.read()


HOST = b"Host: t\r\n"
POST_ECHO = b"POST /echo HTTP/1.1\r\n" + HOST
CHUNKED_ECHO = POST_ECHO + b"Transfer-Encoding: chunked\r\n\r\n"

MALFORMED = {
    "no-target-no-version": b"GET\r\n\r\n",
    "not-a-method": b"GARBAGE\r\n\r\n",
    "extra-word": b"GET / HTTP/1.1 extra\r\n" + HOST + b"\r\n",
    "bad-version-digit": b"GET / HTTP/1.x\r\n" + HOST + b"\r\n",
    "bad-protocol-name": b"GET / FOO/1.1\r\n" + HOST + b"\r\n",
    "control-byte-in-target": b"GET /a\x01b HTTP/1.1\r\n" + HOST + b"\r\n",
    "missing-version": b"GET /hello\r\n" + HOST + b"\r\n",
    "missing-version-trailing-space": b"GET /hello \r\n" + HOST + b"\r\n",
    "obs-fold": b"GET / HTTP/1.1\r\n" + HOST + b"X-A: a\r\n b\r\n\r\n",
    "obs-fold-tab": b"GET / HTTP/1.1\r\n" + HOST + b"X-A: a\r\n\tb\r\n\r\n",
    "field-without-colon": b"GET / HTTP/1.1\r\n" + HOST + b"NoColon\r\n\r\n",
    "space-before-colon": b"GET / HTTP/1.1\r\nHost : t\r\n\r\n",
    "content-length-and-chunked": POST_ECHO
    + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "two-content-lengths": POST_ECHO + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "content-length-list": POST_ECHO + b"Content-Length: 5, 5\r\n\r\nhello",
    "content-length-sign": POST_ECHO + b"Content-Length: +5\r\n\r\nhello",
    "te-gzip": POST_ECHO + b"Transfer-Encoding: gzip\r\n\r\nxxxxx",
    "te-chunked-then-gzip": POST_ECHO
    + b"Transfer-Encoding: chunked, gzip\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "te-xchunked": POST_ECHO + b"Transfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "te-on-http10": b"POST /echo HTTP/1.0\r\n"
    + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "http11-without-host": b"GET /hello HTTP/1.1\r\n\r\n",
    "two-hosts": b"GET /hello HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "host-with-space": b"GET /hello HTTP/1.1\r\nHost: a b\r\n\r\n",
    "nul-in-value": b"GET / HTTP/1.1\r\n" + HOST + b"X-A: a\x00b\r\n\r\n",
    "nul-in-name": b"GET / HTTP/1.1\r\n" + HOST + b"X-\x00A: ab\r\n\r\n",
    "bare-cr-in-value": b"GET / HTTP/1.1\r\n" + HOST + b"X-A: a\rb\r\n\r\n",
    "bare-cr-in-host": b"GET / HTTP/1.1\r\nHost: t\rX: y\r\n\r\n",
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_request_gets_400_and_close(server: Server, data: bytes) -> None:
    assert refused(server, data).status == 400


@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/3.0", b"HTTP/1.2"])
def test_unknown_http_version_gets_505(server: Server, version: bytes) -> None:
    assert refused(server, b"GET /hello " + version + b"\r\n" + HOST + b"\r\n").status == 505


def test_http2_preface_gets_505(server: Server) -> None:
    assert refused(server, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").status == 505


# ---- limits ----------------------------------------------------------------------------------


def test_request_line_over_the_default_limit_gets_414(server: Server) -> None:
    target = "/hello?" + "a" * 4100
    assert refused(server, build_request(target)).status == 414


def _line_of(length: int) -> str:
    """A target making ``GET <target> HTTP/1.1`` exactly ``length`` bytes long."""
    return "/hello?" + "a" * (length - len("GET  HTTP/1.1") - len("/hello?"))


def test_request_line_limit_is_configurable(small_limits: Server) -> None:
    assert answered(small_limits, build_request(_line_of(100))).status == 200
    assert refused(small_limits, build_request(_line_of(101))).status == 414


def test_request_line_arriving_in_pieces_is_refused_before_it_ends(small_limits: Server) -> None:
    with connected(small_limits) as reader:
        reader.sock.sendall(b"GET /hello?" + b"a" * 60)
        reader.sock.sendall(b"a" * 60)  # no line end yet: already past the limit
        assert reader.read().status == 414
        assert reader.wait_closed() == b""


def test_too_many_header_fields_get_431(server: Server) -> None:
    fields = [(f"X-F{i}", "v") for i in range(99)]  # with Host: exactly the limit of 100
    assert answered(server, build_request("/hello", headers=fields)).status == 200
    fields.append(("X-One-Too-Many", "v"))
    assert refused(server, build_request("/hello", headers=fields)).status == 431


def test_header_field_over_the_size_limit_gets_431(server: Server) -> None:
    at_limit = "a" * (8190 - len("X-Long: "))
    assert answered(server, build_request("/hello", headers=[("X-Long", at_limit)])).status == 200
    over = at_limit + "a"
    assert refused(server, build_request("/hello", headers=[("X-Long", over)])).status == 431


def test_body_over_the_limit_by_content_length_gets_413(small_limits: Server) -> None:
    assert answered(small_limits, build_request("/echo", "POST", body=b"b" * 1000)).body == (
        b"b" * 1000
    )
    # refused from the head alone: the client need not send the body
    head = build_request("/echo", "POST", [("Content-Length", "1001")])
    assert refused(small_limits, head).status == 413


def test_content_length_over_the_default_limit_gets_413(server: Server) -> None:
    head = build_request("/echo", "POST", [("Content-Length", str((1 << 30) + 1))])
    assert refused(server, head).status == 413


# ---- errors inside a chunked body, found while the app reads it -----------------------------

BODY_ERRORS = {
    "chunk-size-not-hex": CHUNKED_ECHO + b"zz\r\nhello\r\n0\r\n\r\n",
    "chunk-size-0x": CHUNKED_ECHO + b"0x5\r\nhello\r\n0\r\n\r\n",
    "chunk-size-negative": CHUNKED_ECHO + b"-1\r\nhello\r\n0\r\n\r\n",
    "chunk-data-overrun": CHUNKED_ECHO + b"5\r\nhelloEXTRA\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("data", BODY_ERRORS.values(), ids=BODY_ERRORS.keys())
def test_bad_chunked_body_gets_400_and_close(body_limits: Server, data: bytes) -> None:
    assert refused(body_limits, data).status == 400


def test_chunked_body_over_the_limit_gets_413(body_limits: Server) -> None:
    chunks = b"".join(b"c8\r\n" + b"c" * 200 + b"\r\n" for _ in range(6)) + b"0\r\n\r\n"
    request = build_request("/echo", "POST", [("Transfer-Encoding", "chunked")]) + chunks
    assert refused(body_limits, request).status == 413


# ---- request smuggling -----------------------------------------------------------------------

SMUGGLED = b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"

SMUGGLING = {
    "cl-te": POST_ECHO
    + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    + SMUGGLED,
    "te-cl": POST_ECHO
    + b"Transfer-Encoding: chunked\r\nContent-Length: %d\r\n\r\n" % (len(SMUGGLED) + 5)
    + b"0\r\n\r\n"
    + SMUGGLED,
    "cl-cl": POST_ECHO
    + b"Content-Length: 0\r\nContent-Length: %d\r\n\r\n" % len(SMUGGLED)
    + SMUGGLED,
    "te-obfuscated": POST_ECHO
    + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n"
    + SMUGGLED,
    "te-space-before-colon": POST_ECHO
    + b"Transfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"
    + SMUGGLED,
}


@pytest.mark.parametrize("data", SMUGGLING.values(), ids=SMUGGLING.keys())
def test_smuggled_request_gets_no_response(server: Server, data: bytes) -> None:
    assert refused(server, data).status == 400  # and nothing after it: see refused()


def test_requests_before_a_bad_one_are_still_answered(server: Server) -> None:
    with connected(server) as reader:
        reader.sock.sendall(build_request("/hello") + b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n")
        first = reader.read()
        refusal = reader.read()
        assert reader.wait_closed() == b""
    assert first.body == b"Hello, World!"
    assert refusal.status == 400


# ---- clients that misbehave in time ----------------------------------------------------------


def test_client_leaving_mid_body_does_not_disturb_the_worker(server: Server) -> None:
    workers = server.worker_pids()
    for path in ("/digest", "/echo"):
        with socket.create_connection((server.host, server.port), timeout=5) as sock:
            sock.sendall(build_request(path, "POST", [("Content-Length", "100000")]))
            sock.sendall(b"x" * 1000)
    assert answered(server, build_request("/echo", "POST", body=b"fine")).body == b"fine"
    assert server.worker_pids() == workers
    assert "Traceback" not in server.log()


SLOW_CLIENTS = 50
TRICKLE_EVERY = 0.2


class Trickler(threading.Thread):
    """Slowloris: many connections each sending one more header byte every 0.2 s."""

    def __init__(self, server: Server, deadline: float) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.deadline = deadline
        self.received: dict[socket.socket, bytearray] = {}
        self.closed: set[socket.socket] = set()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._trickle()
        except BaseException as exc:
            self.error = exc

    def _trickle(self) -> None:
        for _ in range(SLOW_CLIENTS):
            sock = socket.create_connection((self.server.host, self.server.port), timeout=5)
            sock.setblocking(False)
            sock.send(b"GET /hello HTTP/1.1\r\nX-Slow: ")
            self.received[sock] = bytearray()
        next_tick = time.monotonic()
        while len(self.closed) < SLOW_CLIENTS and time.monotonic() < self.deadline:
            for sock in self.received.keys() - self.closed:
                with contextlib.suppress(OSError):  # closed by the server: read below
                    sock.send(b"a")
            next_tick += TRICKLE_EVERY
            while (wait := next_tick - time.monotonic()) > 0:
                open_socks = list(self.received.keys() - self.closed)
                if not open_socks:
                    break
                readable, _, _ = select.select(open_socks, [], [], wait)
                for sock in readable:
                    self._receive(sock)

    def _receive(self, sock: socket.socket) -> None:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            data = b""
        except BlockingIOError:
            return
        if data:
            self.received[sock] += data
        else:
            self.closed.add(sock)

    def close_all(self) -> None:
        for sock in self.received:
            sock.close()


def test_slowloris_neither_delays_others_nor_stays_open(tmp_path: Path) -> None:
    with running(tmp_path, APP, "--keepalive", "2", workers=1) as srv:
        trickler = Trickler(srv, deadline=time.monotonic() + 8)
        trickler.start()
        try:
            wait_started = time.monotonic() + 5
            while len(trickler.received) < SLOW_CLIENTS and time.monotonic() < wait_started:
                time.sleep(0.01)  # poll: the slow connections are being opened
            durations: list[float] = []
            while trickler.is_alive() and len(durations) < 200:
                started = time.monotonic()
                with connected(srv) as reader:
                    reader.sock.sendall(build_request("/hello"))
                    assert reader.read().body == b"Hello, World!"
                durations.append(time.monotonic() - started)
            trickler.join(10)
            assert trickler.error is None, trickler.error
            answers = [bytes(data) for data in trickler.received.values()]
            open_count = SLOW_CLIENTS - len(trickler.closed)
        finally:
            trickler.close_all()
    assert open_count == 0, f"{open_count} slow connections still open after 8 s"
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 408 "), answer
        assert b"\r\nContent-Type: text/plain" in answer, answer
        assert len(answer.partition(b"\r\n\r\n")[2]) < 512, answer
    assert len(durations) >= 5
    assert max(durations) < 0.2, f"slowest normal request took {max(durations):.3f}s"
