"""The WSGI adapter (SPEC section 2, PEP 3333) against the real server.

environ keys, streaming ``wsgi.input`` (with the worker's memory watched during a 200 MB
upload), response header rules, ``start_response`` / ``write()`` / ``exc_info``, errors before
and after the response started, ``close()`` of the app's iterable in every case,
``wsgi.file_wrapper``, app threads versus inline mode, and trusted forwarded headers.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import ResponseReader, Server, build_request, connected, running, wait_for

APP = "wsgi_wire:app"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wsgi")


@pytest.fixture(scope="module")
def close_log(workdir: Path) -> Path:
    path = workdir / "closed.log"
    path.touch()
    return path


@pytest.fixture(scope="module")
def server(workdir: Path, close_log: Path) -> Iterator[Server]:
    with running(workdir, APP, workers=1, env={"WIRE_CLOSE_LOG": str(close_log)}) as srv:
        yield srv


def _environ(server: Server, request: bytes) -> tuple[dict[str, Any], int]:
    """The environ the app saw for ``request``, and the client port it came from."""
    with connected(server) as reader:
        reader.sock.sendall(request)
        response = reader.read()
        port = reader.sock.getsockname()[1]
    assert response.status == 200, response
    return json.loads(response.body), port


# ---- environ ---------------------------------------------------------------------------------


def test_environ_has_every_key_the_spec_lists(server: Server) -> None:
    target = "/environ/caf%C3%A9%20x%2Fy?q=a%20b&r=1"
    request = build_request(
        target,
        "POST",
        [
            ("Content-Type", "text/plain"),
            ("X-Dup", "one"),
            ("X-Dup", "two"),
            ("Cookie", "a=1"),
            ("Cookie", "b=2"),
        ],
        body=b"abc",
    )
    environ, client_port = _environ(server, request)
    assert environ["REMOTE_ADDR"] == "127.0.0.1"
    assert environ["REMOTE_PORT"] == str(client_port)
    assert environ["SERVER_NAME"] == "127.0.0.1"
    assert environ["SERVER_PORT"] == str(server.port)
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert environ["REQUEST_METHOD"] == "POST"
    assert environ["SCRIPT_NAME"] == ""
    assert environ["RAW_URI"] == target
    # PEP 3333: the decoded path bytes as latin-1 str; %2F decoded too, the query left alone
    assert environ["PATH_INFO"] == "/environ/caf\u00c3\u00a9 x/y"
    assert environ["QUERY_STRING"] == "q=a%20b&r=1"
    assert environ["CONTENT_TYPE"] == "text/plain"
    assert environ["CONTENT_LENGTH"] == "3"
    assert "HTTP_CONTENT_TYPE" not in environ
    assert "HTTP_CONTENT_LENGTH" not in environ
    assert environ["HTTP_HOST"] == "test"
    assert environ["HTTP_X_DUP"] == "one,two"
    assert environ["HTTP_COOKIE"] == "a=1; b=2"
    assert environ["wsgi.version"] == [1, 0]
    assert environ["wsgi.url_scheme"] == "http"
    assert environ["wsgi.multithread"] is True
    assert environ["wsgi.multiprocess"] is True
    assert environ["wsgi.run_once"] is False
    assert environ["wsgi.input_terminated"] is True
    assert environ["file_wrapper_callable"] is True
    assert environ["wsgi.input"].startswith("<")
    assert environ["wsgi.errors"].startswith("<")


def test_forwarded_headers_are_believed_from_localhost_by_default(server: Server) -> None:
    request = build_request(
        "/environ/", headers=[("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")]
    )
    environ, _ = _environ(server, request)
    assert environ["REMOTE_ADDR"] == "203.0.113.7"
    assert environ["wsgi.url_scheme"] == "https"


def test_forwarded_headers_from_an_untrusted_peer_are_ignored(tmp_path: Path) -> None:
    request = build_request(
        "/environ/", headers=[("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")]
    )
    with running(tmp_path, APP, "--forwarded-allow-ips", "10.0.0.1", workers=1) as srv:
        environ, _ = _environ(srv, request)
    assert environ["REMOTE_ADDR"] == "127.0.0.1"
    assert environ["wsgi.url_scheme"] == "http"
    assert environ["HTTP_X_FORWARDED_FOR"] == "203.0.113.7"  # passed on, not believed


def test_header_names_with_underscores_are_dropped(server: Server) -> None:
    """``X_Forwarded_For`` would land on the same environ key as ``X-Forwarded-For``."""
    request = build_request("/environ/", headers=[("X_Forwarded_For", "203.0.113.7")])
    environ, _ = _environ(server, request)
    assert environ["REMOTE_ADDR"] == "127.0.0.1"
    assert "HTTP_X_FORWARDED_FOR" not in environ


def test_wsgi_errors_goes_to_the_error_log(server: Server) -> None:
    with connected(server) as reader:
        reader.sock.sendall(build_request("/log-to-errors?message=note-from-the-app-42"))
        assert reader.read().body == b"logged"
    wait_for(lambda: "note-from-the-app-42" in server.log(), 5, "the wsgi.errors line")


# ---- wsgi.input ------------------------------------------------------------------------------


def _vm_rss(pid: int) -> int:
    """Resident memory of ``pid`` in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def test_large_upload_streams_through_bounded_memory(server: Server) -> None:
    (worker,) = server.worker_pids()
    block = hashlib.sha256(b"seed").digest() * (1 << 15)  # 1 MiB, not all one byte
    blocks = 200
    with connected(server, timeout=30) as reader:
        reader.sock.sendall(build_request("/digest", "POST", body=b"warm-up"))
        assert reader.read().status == 200
        baseline = peak = _vm_rss(worker)
        digest = hashlib.sha256()
        head = build_request("/digest", "POST", [("Content-Length", str(len(block) * blocks))])
        reader.sock.sendall(head)
        for _ in range(blocks):
            reader.sock.sendall(block)
            digest.update(block)
            peak = max(peak, _vm_rss(worker))
        response = reader.read()
    assert response.body == f"{len(block) * blocks} {digest.hexdigest()}".encode()
    assert peak - baseline < 50 * 1024 * 1024, f"worker RSS grew by {peak - baseline} bytes"


LINES_BODY = b"one\ntwo\n\nthree\n" + b"".join(b"line %d\n" % i for i in range(500)) + b"tail"


def _expected_lines(mode: str) -> list[str]:
    text = LINES_BODY.decode()
    lines = text.splitlines(keepends=True)
    if mode != "readline-limit":
        return lines
    return [line[i : i + 4] for line in lines for i in range(0, len(line), 4)]


@pytest.mark.parametrize("mode", ["readline", "readline-limit", "readlines", "iter"])
@pytest.mark.parametrize("delivery", ["whole", "trickled"])
def test_wsgi_input_lines(server: Server, mode: str, delivery: str) -> None:
    """Lines come out right whether the body is all there or arrives while the app reads."""
    with connected(server) as reader:
        if delivery == "whole":
            reader.sock.sendall(build_request(f"/lines?mode={mode}", "POST", body=LINES_BODY))
        else:
            # 100-continue makes the body arrive only after the app started reading it, so
            # the app reads from the live stream; 5-byte chunks split lines across reads.
            head = [("Expect", "100-continue"), ("Transfer-Encoding", "chunked")]
            reader.sock.sendall(build_request(f"/lines?mode={mode}", "POST", head))
            assert reader.read().status == 100
            for start in range(0, len(LINES_BODY), 5):
                piece = LINES_BODY[start : start + 5]
                reader.sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            reader.sock.sendall(b"0\r\n\r\n")
        response = reader.read()
    assert response.status == 200
    assert json.loads(response.body) == _expected_lines(mode)


# ---- response headers -----------------------------------------------------------------------


def test_repeated_set_cookie_headers_are_all_sent(server: Server) -> None:
    with connected(server) as reader:
        reader.sock.sendall(build_request("/cookies"))
        response = reader.read()
    assert response.headers_named("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/"]


def test_hop_by_hop_headers_from_the_app_are_dropped(server: Server) -> None:
    with connected(server) as reader:
        reader.sock.sendall(build_request("/hop-by-hop"))
        response = reader.read()
        names = {name.lower() for name, _ in response.headers}
        assert names.isdisjoint(
            {"connection", "keep-alive", "proxy-connection", "upgrade", "te", "trailer"}
        )
        assert response.header("Transfer-Encoding") is None
        assert response.header("X-End-To-End") == "kept"
        assert response.body == b"hop-by-hop headers dropped"
        reader.sock.sendall(build_request("/hello"))  # the app's "Connection" changed nothing
        assert reader.read().body == b"Hello, World!"


def test_response_header_with_crlf_is_refused(server: Server) -> None:
    with connected(server) as reader:
        reader.sock.sendall(build_request("/bad-header", headers=[("Connection", "close")]))
        response = reader.read()
        rest = reader.wait_closed()
    assert response.status == 500
    assert response.header("X-Evil") is None
    assert response.header("Injected") is None
    assert b"Injected" not in response.body + rest
    assert b"never sent" not in response.body


# ---- Content-Length set by the app -----------------------------------------------------------


@pytest.mark.parametrize("shape", ["gen", "list"])
def test_app_content_length_with_too_few_bytes_closes(server: Server, shape: str) -> None:
    with connected(server) as reader:
        reader.sock.sendall(build_request(f"/content-length?declared=10&sent=5&shape={shape}"))
        response = reader.read()
        assert response.header("Content-Length") == "10"
        assert response.body == b"yyyyy"
        assert not response.complete  # the server closed instead of leaving the client waiting


@pytest.mark.parametrize("shape", ["gen", "list"])
def test_app_content_length_with_too_many_bytes_is_truncated(server: Server, shape: str) -> None:
    with connected(server) as reader:
        reader.sock.sendall(build_request(f"/content-length?declared=5&sent=12&shape={shape}"))
        response = reader.read()
        assert response.header("Content-Length") == "5"
        assert response.body == b"yyyyy"
        assert reader.wait_closed() == b""  # the extra bytes never reach the wire


def test_app_content_length_is_used_for_a_streamed_body(server: Server) -> None:
    with connected(server) as reader:
        reader.sock.sendall(build_request("/content-length?declared=9&sent=9"))
        response = reader.read()
        assert response.header("Content-Length") == "9"
        assert response.header("Transfer-Encoding") is None
        assert response.body == b"y" * 9
        reader.sock.sendall(build_request("/hello"))
        assert reader.read().body == b"Hello, World!"


# ---- start_response, write(), exc_info -------------------------------------------------------


def test_write_callable_output_comes_before_the_returned_body(server: Server) -> None:
    with connected(server) as reader:
        reader.sock.sendall(build_request("/write"))
        response = reader.read()
    assert response.status == 200
    assert response.body == b"written-1;written-2;returned"


def test_start_response_twice_without_exc_info_is_a_500(server: Server) -> None:
    with connected(server) as reader:
        reader.sock.sendall(build_request("/start-twice"))
        response = reader.read()
    assert response.status == 500
    assert b"should not be sent" not in response.body


def test_exc_info_before_the_head_replaces_the_response(server: Server) -> None:
    with connected(server) as reader:
        reader.sock.sendall(build_request("/exc-info-before"))
        response = reader.read()
    assert response.status == 503
    assert response.body == b"the app's own error page"


@pytest.mark.parametrize("path", ["/exc-info-after", "/error-mid-stream"])
def test_error_after_the_response_started_cuts_the_body(server: Server, path: str) -> None:
    with connected(server) as reader:
        reader.sock.sendall(build_request(path))
        response = reader.read()
        assert response.status == 200
        assert not response.complete
        assert response.body == b"partial body"
        assert reader.eof


def test_error_before_the_response_is_a_plain_500(server: Server) -> None:
    with connected(server) as reader:
        reader.sock.sendall(build_request("/error"))
        response = reader.read()
    assert response.status == 500
    assert (response.header("Content-Type") or "").startswith("text/plain")
    assert len(response.body) < 200
    assert b"Traceback" not in response.body
    assert b"boom" not in response.body
    wait_for(lambda: "RuntimeError: boom from the app" in server.log(), 5, "the traceback")
    assert "Traceback (most recent call last)" in server.log()


# ---- close() of the app's iterable -----------------------------------------------------------


def _closed_tags(close_log: Path) -> list[str]:
    return close_log.read_text().split()


def test_close_is_called_after_a_normal_response(server: Server, close_log: Path) -> None:
    with connected(server) as reader:
        reader.sock.sendall(build_request("/tracked?tag=normal"))
        assert reader.read().body == b"first chunk\n"
    wait_for(lambda: "normal" in _closed_tags(close_log), 5, "close() after a normal response")


def test_close_is_called_when_the_app_raises_mid_iteration(server: Server, close_log: Path) -> None:
    with connected(server) as reader:
        reader.sock.sendall(build_request("/tracked?tag=raised&mode=raise"))
        assert not reader.read().complete
    wait_for(lambda: "raised" in _closed_tags(close_log), 5, "close() after the app raised")


def test_close_is_called_when_the_client_leaves_mid_stream(server: Server, close_log: Path) -> None:
    with connected(server) as reader:
        reader.sock.sendall(build_request("/tracked?tag=left&mode=endless"))
        reader.sock.recv(65536)  # the response has started streaming
    wait_for(lambda: "left" in _closed_tags(close_log), 5, "close() after the client left")
    with connected(server) as reader:  # and the worker carries on
        reader.sock.sendall(build_request("/hello"))
        assert reader.read().body == b"Hello, World!"


# ---- wsgi.file_wrapper -----------------------------------------------------------------------


def test_file_wrapper_sends_a_real_file_intact(server: Server, tmp_path: Path) -> None:
    content = os.urandom(20 * 1024 * 1024)
    path = tmp_path / "big.bin"
    path.write_bytes(content)
    with connected(server, timeout=10) as reader:
        started = time.monotonic()
        reader.sock.sendall(build_request(f"/file?path={path}"))
        response = reader.read()
        elapsed = time.monotonic() - started
        assert response.header("Content-Length") == str(len(content))
        assert hashlib.sha256(response.body).digest() == hashlib.sha256(content).digest()
        reader.sock.sendall(build_request("/hello"))  # framed exactly: the connection goes on
        assert reader.read().body == b"Hello, World!"
    assert elapsed < 3.0, f"20 MB took {elapsed:.2f}s"


# ---- concurrency -----------------------------------------------------------------------------


def test_a_slow_request_does_not_delay_the_others(server: Server) -> None:
    with socket.create_connection((server.host, server.port), timeout=10) as slow:
        slow.sendall(build_request("/sleep?s=2"))
        started = time.monotonic()
        with connected(server) as reader:
            for index in range(10):
                reader.sock.sendall(build_request("/echo", "POST", body=b"fast%d" % index))
                assert reader.read().body == b"fast%d" % index
        fast_total = time.monotonic() - started
        assert fast_total < 1.0, f"10 fast requests took {fast_total:.2f}s"
        readable, _, _ = select.select([slow], [], [], 0)
        assert not readable, "the slow request should still be running"
        slow_reader = ResponseReader(slow, timeout=5)
        assert slow_reader.read().body == b"slept 2"


def test_inline_mode_serves_simple_apps(tmp_path: Path) -> None:
    body = os.urandom(300 * 1024)  # more than the streaming buffer's high-water mark
    with running(tmp_path, APP, "--threads", "0", workers=1) as srv, connected(srv) as reader:
        reader.sock.sendall(build_request("/environ/"))
        environ = json.loads(reader.read().body)
        assert environ["wsgi.multithread"] is False
        reader.sock.sendall(build_request("/echo", "POST", body=body))
        assert reader.read().body == body
        encoded = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        reader.sock.sendall(
            build_request("/echo", "POST", [("Transfer-Encoding", "chunked")]) + encoded
        )
        assert reader.read().body == b"hello world"
        reader.sock.sendall(build_request("/streamed?n=3&size=2"))
        assert reader.read().body == b"AABBCC"


def test_many_concurrent_clients_on_one_worker(server: Server) -> None:
    """Twenty clients at once, each with several keep-alive requests, all answered right."""
    errors: list[BaseException] = []

    def client(index: int) -> None:
        try:
            with connected(server) as reader:
                for step in range(5):
                    payload = b"%d-%d" % (index, step)
                    reader.sock.sendall(build_request("/echo", "POST", body=payload))
                    assert reader.read().body == payload
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads)
