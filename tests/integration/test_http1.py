"""HTTP/1.1 on the wire against the real server: keep-alive, pipelining, chunked bodies both
ways, ``Expect: 100-continue``, HEAD, HTTP/1.0, ``Connection: close``, the keep-alive idle
timeout and half-closed clients.

Requests are raw bytes and responses are parsed by hand (``harness.ResponseReader``), so the
tests see exactly what the server framed, not what a forgiving client library made of it.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import Server, build_request, connected, running

APP = "wsgi_wire:app"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(tmp_path_factory.mktemp("http1"), APP, workers=1) as srv:
        yield srv


def test_keep_alive_serves_several_requests_on_one_socket(server: Server) -> None:
    with connected(server) as reader:
        for index in range(5):
            reader.sock.sendall(build_request(f"/echo?n={index}", "POST", body=b"req%d" % index))
            response = reader.read()
            assert response.status == 200
            assert response.body == b"req%d" % index
            assert response.header("Connection") is None
        assert not reader.eof


def test_pipelined_requests_are_answered_in_order(server: Server) -> None:
    # The first one is the slowest: answering in completion order would show up.
    pipelined = (
        build_request("/sleep?s=0.3")
        + build_request("/streamed?n=2&size=3")
        + build_request("/echo", "POST", body=b"third")
    )
    with connected(server) as reader:
        reader.sock.sendall(pipelined)
        bodies = [reader.read().body for _ in range(3)]
    assert bodies == [b"slept 0.3", b"AAABBB", b"third"]


def _chunked(sizes: list[int], extension: str = "", trailers: str = "") -> tuple[bytes, bytes]:
    """A chunked encoding of a body with chunks of ``sizes``; returns (wire bytes, body)."""
    body = bytearray()
    wire = bytearray()
    for index, size in enumerate(sizes):
        data = bytes([48 + index % 10]) * size
        body += data
        wire += b"%x%s\r\n%s\r\n" % (size, extension.encode(), data)
    wire += b"0\r\n" + trailers.encode() + b"\r\n"
    return bytes(wire), bytes(body)


@pytest.mark.parametrize(
    ("sizes", "extension", "trailers"),
    [
        ([1, 2, 3], "", ""),
        ([16, 255, 4096, 100_000], ";name=value", ""),
        ([7, 1], ';flag;quoted="a b"', ""),
        ([10, 20], "", "X-Checksum: abc\r\nX-Other: 1\r\n"),
    ],
    ids=["tiny", "large-with-extension", "extensions", "trailers"],
)
@pytest.mark.parametrize("piece", [0, 7], ids=["one-send", "7-byte-pieces"])
def test_chunked_request_body_is_decoded(
    server: Server, sizes: list[int], extension: str, trailers: str, piece: int
) -> None:
    encoded, body = _chunked(sizes, extension, trailers)
    request = build_request("/echo", "POST", [("Transfer-Encoding", "chunked")]) + encoded
    with connected(server) as reader:
        if piece and len(request) < 5000:
            for start in range(0, len(request), piece):
                reader.sock.sendall(request[start : start + piece])
        else:
            reader.sock.sendall(request)
        response = reader.read()
        assert response.status == 200
        assert response.body == body
        # The body (trailers included) ended where it should: the connection still works.
        reader.sock.sendall(build_request("/echo", "POST", body=b"next"))
        assert reader.read().body == b"next"


def test_generator_response_is_sent_chunked(server: Server) -> None:
    with connected(server) as reader:
        reader.sock.sendall(build_request("/streamed?n=50&size=1000"))
        response = reader.read()
        assert response.header("Transfer-Encoding") == "chunked"
        assert response.header("Content-Length") is None
        assert response.complete
        assert response.body == b"".join(bytes([65 + i % 26]) * 1000 for i in range(50))
        reader.sock.sendall(build_request("/streamed?n=1&size=2"))
        assert reader.read().body == b"AA"


def test_continue_is_sent_when_the_app_reads_the_body(server: Server) -> None:
    body = b"z" * 5000
    head = build_request(
        "/echo", "POST", [("Expect", "100-continue"), ("Content-Length", str(len(body)))]
    )
    with connected(server) as reader:
        reader.sock.sendall(head)
        interim = reader.read()  # the client waits for it before sending the body
        assert interim.status == 100
        reader.sock.sendall(body)
        response = reader.read()
        assert response.status == 200
        assert response.body == body


@pytest.mark.parametrize("status", [413, 401])
def test_no_continue_when_the_app_answers_without_reading(server: Server, status: int) -> None:
    head = build_request(
        f"/reject?status={status}",
        "POST",
        [("Expect", "100-continue"), ("Content-Length", "1000000")],
    )
    with connected(server) as reader:
        reader.sock.sendall(head)
        interim, response = reader.read_final()
        assert interim == []
        assert response.status == status
        # The body was never sent, so the connection cannot carry another request.
        assert b"100 Continue" not in reader.wait_closed()


def test_head_has_the_headers_of_get_and_no_body(server: Server) -> None:
    with connected(server) as reader:
        reader.sock.sendall(
            build_request("/hello")
            + build_request("/hello", "HEAD")
            + build_request("/streamed?n=3", "HEAD")
            + build_request("/echo", "POST", body=b"after")
        )
        get = reader.read()
        head = reader.read("HEAD")
        streamed_head = reader.read("HEAD")
        after = reader.read()

    def without_date(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return [(k, v) for k, v in headers if k.lower() != "date"]

    assert get.body == b"Hello, World!"
    assert without_date(head.headers) == without_date(get.headers)
    assert head.header("Content-Length") == str(len(get.body))
    assert streamed_head.status == 200
    # Any body byte after a HEAD answer would have been read as the next status line.
    assert after.status == 200
    assert after.body == b"after"


def test_http10_closes_after_the_response_by_default(server: Server) -> None:
    with connected(server) as reader:
        reader.sock.sendall(b"GET /hello HTTP/1.0\r\n\r\n")
        response = reader.read()
        assert response.version == "HTTP/1.0"
        assert response.body == b"Hello, World!"
        assert response.header("Connection") in (None, "close")
        assert reader.wait_closed() == b""


def test_http10_keeps_alive_when_asked(server: Server) -> None:
    request = b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    with connected(server) as reader:
        for _ in range(3):
            reader.sock.sendall(request)
            response = reader.read()
            assert response.body == b"Hello, World!"
            assert response.header("Connection") == "keep-alive"
        assert not reader.eof


def test_http10_streaming_body_is_delimited_by_closing(server: Server) -> None:
    request = b"GET /streamed?n=4&size=5 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    with connected(server) as reader:
        reader.sock.sendall(request)
        response = reader.read()
        assert response.header("Transfer-Encoding") is None
        assert response.header("Content-Length") is None
        assert response.body == b"AAAAABBBBBCCCCCDDDDD"
        assert reader.eof


def test_connection_close_is_honoured(server: Server) -> None:
    with connected(server) as reader:
        reader.sock.sendall(build_request("/hello", headers=[("Connection", "close")]))
        response = reader.read()
        assert response.body == b"Hello, World!"
        assert response.header("Connection") == "close"
        assert reader.wait_closed() == b""


def test_half_closed_client_still_gets_its_answer(server: Server) -> None:
    with connected(server) as reader:
        reader.sock.sendall(
            build_request("/sleep?s=0.2") + build_request("/echo", "POST", body=b"half")
        )
        reader.sock.shutdown(socket.SHUT_WR)
        assert reader.read().body == b"slept 0.2"
        assert reader.read().body == b"half"
        assert reader.wait_closed() == b""


def test_idle_keep_alive_connection_is_closed_after_keepalive(tmp_path: Path) -> None:
    with running(tmp_path, APP, "--keepalive", "1", workers=1) as srv, connected(srv) as reader:
        reader.sock.sendall(build_request("/hello"))
        assert reader.read().status == 200
        answered = time.monotonic()
        assert reader.wait_closed() == b""
        idle = time.monotonic() - answered
    # closed by the once-a-second housekeeping tick, one to two seconds after the answer
    assert 0.9 <= idle < 3.0
