"""ASGI 3 HTTP (SPEC section 3, ASGI HTTP spec 2.4) against the real server.

The scope key by key; ``receive()`` streaming a chunked upload message by message, saying
``http.disconnect`` promptly when the client leaves, and a 300 MB upload hashed without the
worker growing; ``send()`` streaming, honouring the app's Content-Length, trailers only for
``TE: trailers``, ``pathsend``, 103 early hints, and every way an app can get it wrong
(no response, exceptions before and after the start, sending too late or to a departed
client, a header with CR/LF); ``request_timeout`` cancelling the task.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import (
    Response,
    Server,
    build_request,
    connected,
    raw_request,
    receive_until,
    running,
    wait_for,
)

APP = "asgi_http:app"
MB = 1024 * 1024


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("asgi_http")


@pytest.fixture(scope="module")
def server(workdir: Path) -> Iterator[Server]:
    with running(workdir, APP, env={"ASGI_REPORT_DIR": str(workdir)}) as srv:
        yield srv


def report(workdir: Path, name: str, timeout: float = 5.0) -> dict[str, Any]:
    """The JSON report the app wrote as ``name`` (waited for)."""
    path = workdir / f"{name}.json"
    wait_for(path.exists, timeout, f"the app's report {name!r}")
    result: dict[str, Any] = json.loads(path.read_text())
    return result


def fetch(server: Server, request: bytes) -> Response:
    with connected(server) as reader:
        reader.sock.sendall(request)
        return reader.read()


def unhex(value: Any) -> Any:
    """Undo the app's JSON encoding of bytes (``{"hex": ...}``)."""
    if isinstance(value, dict):
        if set(value) == {"hex"}:
            return bytes.fromhex(value["hex"])
        return {key: unhex(item) for key, item in value.items()}
    if isinstance(value, list):
        return [unhex(item) for item in value]
    return value


def split_raw(raw: bytes) -> tuple[bytes, bytes]:
    head, separator, body = raw.partition(b"\r\n\r\n")
    assert separator, raw
    return head, body


# ---- scope -------------------------------------------------------------------------------------
def test_http_scope_has_every_key_of_spec_2_4(server: Server) -> None:
    request = build_request(
        "/scope/caf%C3%A9%20x%2Fy?q=a%20b&r=%C3%A9",
        "POST",
        [("X-Dup", "one"), ("Mixed-Case", "Kept"), ("X-Dup", "two")],
        body=b"abc",
    )
    with connected(server) as reader:
        reader.sock.sendall(request)
        response = reader.read()
        client_port = reader.sock.getsockname()[1]
    assert response.status == 200, response
    scope = unhex(json.loads(response.body))
    types = scope.pop("types")
    assert set(types) >= {
        "type", "asgi", "http_version", "method", "scheme", "path", "raw_path",
        "query_string", "root_path", "headers", "client", "server", "state",
    }  # fmt: skip
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "POST"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/scope/café x/y"  # percent-decoded, then UTF-8 decoded
    assert types["path"] == "str"
    assert scope["raw_path"] == b"/scope/caf%C3%A9%20x%2Fy"  # exactly as received
    assert types["raw_path"] == "bytes"
    assert scope["query_string"] == b"q=a%20b&r=%C3%A9"  # undecoded
    assert types["query_string"] == "bytes"
    assert scope["root_path"] == ""
    assert scope["headers"] == [
        [b"host", b"test"],
        [b"x-dup", b"one"],
        [b"mixed-case", b"Kept"],  # names lower-cased, values untouched
        [b"x-dup", b"two"],
        [b"content-length", b"3"],
    ]
    assert types["headers"] == "list"
    assert {pair.split(":", 1)[1] for pair in scope["header_pair_types"]} == {"bytes:bytes"}
    assert scope["client"] == ["127.0.0.1", client_port]
    assert scope["server"] == ["127.0.0.1", server.port]
    assert types["state"] == "dict"
    assert scope["state"]["greeting"] == "hello from startup"


def test_http_scope_of_an_http_1_0_get(server: Server) -> None:
    response = fetch(server, build_request("/scope", version="1.0", host=None))
    assert response.status == 200, response
    scope = unhex(json.loads(response.body))
    assert scope["http_version"] == "1.0"
    assert scope["method"] == "GET"
    assert scope["path"] == "/scope"
    assert scope["raw_path"] == b"/scope"
    assert scope["query_string"] == b""
    assert scope["headers"] == []


# ---- receive -----------------------------------------------------------------------------------
def test_receive_yields_each_chunk_of_a_chunked_upload_as_it_arrives(server: Server) -> None:
    head = build_request("/upload-echo", "POST", [("Transfer-Encoding", "chunked")])
    with connected(server) as reader:
        reader.sock.sendall(head + b"5\r\nhello\r\n")
        # the app answers each message as it gets it: the next chunk is not even sent yet
        receive_until(reader, b'"hello"')
        reader.sock.sendall(b"6\r\nworld!\r\n")
        receive_until(reader, b'"world!"')
        reader.sock.sendall(b"0\r\n\r\n")
        response = reader.read()
    assert response.status == 200 and response.complete, response
    messages = [json.loads(line) for line in response.body.splitlines()]
    assert {m["type"] for m in messages} == {"http.request"}
    assert messages[0] == {"type": "http.request", "body": "hello", "more_body": True}
    assert messages[1] == {"type": "http.request", "body": "world!", "more_body": True}
    assert messages[-1]["more_body"] is False
    assert all(m["more_body"] for m in messages[:-1])
    assert "".join(m["body"] for m in messages) == "helloworld!"


def test_receive_says_disconnect_within_100ms_of_the_client_closing(
    server: Server, workdir: Path
) -> None:
    sock = socket.create_connection((server.host, server.port), timeout=5)
    try:
        sock.sendall(build_request("/wait-disconnect?report=gone", "POST", body=b"x" * 100))
        report(workdir, "gone-ready")
    finally:
        closed_at = time.monotonic()
        sock.close()
    seen = report(workdir, "gone", timeout=3.0)
    assert seen["type"] == "http.disconnect"
    assert seen["at"] - closed_at < 0.1, f"disconnect seen {seen['at'] - closed_at:.3f}s late"


def _rss(pid: int) -> int:
    """Resident set size of ``pid`` in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def test_300_mb_upload_streams_through_receive_without_growing_the_worker(
    server: Server,
) -> None:
    (worker,) = server.worker_pids()
    warm_up = fetch(server, build_request("/hash", "POST", body=b"warm-up"))
    assert warm_up.status == 200, warm_up
    baseline = _rss(worker)
    block = os.urandom(MB)
    blocks = 300
    expected = hashlib.sha256()
    peak = baseline
    with connected(server, timeout=30) as reader:
        reader.sock.sendall(build_request("/hash", "POST", [("Content-Length", str(blocks * MB))]))
        for index in range(blocks):
            reader.sock.sendall(block)
            expected.update(block)
            if index % 10 == 0:
                peak = max(peak, _rss(worker))
        response = reader.read()
    peak = max(peak, _rss(worker))
    assert response.status == 200, response
    assert json.loads(response.body) == {"sha256": expected.hexdigest(), "size": blocks * MB}
    growth = peak - baseline
    assert growth < 50 * MB, f"worker RSS grew by {growth / MB:.1f} MB during the upload"


# ---- send --------------------------------------------------------------------------------------
def test_streamed_body_goes_out_chunked(server: Server) -> None:
    raw = raw_request(
        server.host, server.port, build_request("/stream?n=3", headers=[("Connection", "close")])
    )
    head, body = split_raw(raw)
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"\r\ntransfer-encoding: chunked" in head.lower()
    assert b"content-length" not in head.lower()
    chunks, rest = [], body
    for _ in range(10):
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        chunks.append(rest[:size])
        assert rest[size : size + 2] == b"\r\n"
        rest = rest[size + 2 :]
    assert rest == b"\r\n", "the last chunk must end the body"
    assert b"".join(chunks) == b"part-0;part-1;part-2;"


def test_content_length_set_by_the_app_is_honoured(server: Server) -> None:
    with connected(server) as reader:
        for _ in range(2):  # the framing must leave the connection usable
            reader.sock.sendall(build_request("/content-length"))
            response = reader.read()
            assert response.status == 200, response
            assert response.header("Content-Length") == "10"
            assert response.header("Transfer-Encoding") is None
            assert response.body == b"0123456789"


def test_trailers_are_sent_only_when_the_client_sent_te_trailers(server: Server) -> None:
    asked = raw_request(
        server.host,
        server.port,
        build_request("/trailers", headers=[("TE", "trailers"), ("Connection", "close")]),
    )
    head, body = split_raw(asked)
    assert b"transfer-encoding: chunked" in head.lower()
    assert body.endswith(b"\r\n0\r\nx-checksum: c0ffee\r\n\r\n"), body

    not_asked = raw_request(
        server.host, server.port, build_request("/trailers", headers=[("Connection", "close")])
    )
    assert b"c0ffee" not in not_asked
    with connected(server) as reader:
        reader.sock.sendall(build_request("/trailers"))
        response = reader.read()
    assert response.complete and response.body == b"payload-end"
    assert response.trailers == []


def test_pathsend_sends_the_file(server: Server, workdir: Path) -> None:
    content = os.urandom(700 * 1024)  # several read blocks
    path = workdir / "to-send.bin"
    path.write_bytes(content)
    response = fetch(server, build_request(f"/pathsend?path={path}"))
    assert response.status == 200, response
    assert response.header("Content-Length") == str(len(content))
    assert response.body == content


def test_early_hints_103_arrive_before_the_final_response(server: Server) -> None:
    with connected(server) as reader:
        reader.sock.sendall(build_request("/early-hints"))
        interim, final = reader.read_final()
    assert [r.status for r in interim] == [103]
    assert interim[0].header("Link") == "</style.css>; rel=preload; as=style"
    assert final.status == 200 and final.body == b"final"


def test_app_returning_without_a_response_gives_500(server: Server) -> None:
    response = fetch(server, build_request("/no-response"))
    assert response.status == 500, response


def test_exception_before_start_gives_500_without_traceback_to_the_client(
    server: Server,
) -> None:
    response = fetch(server, build_request("/raise-before-start"))
    assert response.status == 500, response
    assert (response.header("Content-Type") or "").startswith("text/plain")
    assert b"Traceback" not in response.body
    assert b"secret detail" not in response.body
    wait_for(lambda: "secret detail the client must not see" in server.log(), 5, "the error log")
    log = server.log()
    assert "Traceback (most recent call last)" in log
    assert "raise_before_start" in log


def test_exception_after_start_cuts_the_body_short(server: Server) -> None:
    with connected(server) as reader:
        reader.sock.sendall(build_request("/raise-after-start"))
        response = reader.read()
    assert response.status == 200
    assert response.body.startswith(b"partial")
    assert not response.complete, "the client must see an incomplete body"


def test_send_after_the_response_completed_raises_runtime_error_in_the_app(
    server: Server, workdir: Path
) -> None:
    response = fetch(server, build_request("/send-after-complete?report=late"))
    assert response.status == 200 and response.body == b"done"
    assert report(workdir, "late")["raised"] == "RuntimeError"


def test_send_after_the_client_left_raises_oserror_in_the_app(
    server: Server, workdir: Path
) -> None:
    with connected(server) as reader:
        reader.sock.sendall(build_request("/send-after-disconnect?report=left"))
        receive_until(reader, b"xxxx")
    outcome = report(workdir, "left", timeout=8.0)
    assert outcome["raised"] is not None, "send() kept succeeding after the client left"
    assert outcome["is_oserror"], outcome


def test_response_header_with_cr_lf_gives_500(server: Server) -> None:
    raw = raw_request(
        server.host, server.port, build_request("/bad-header", headers=[("Connection", "close")])
    )
    assert raw.startswith(b"HTTP/1.1 500 "), raw
    assert b"x-injected" not in raw.lower()
    assert b"must not be sent" not in raw


def test_request_timeout_cancels_the_task_with_504_while_others_are_served(
    tmp_path: Path,
) -> None:
    env = {"ASGI_REPORT_DIR": str(tmp_path)}
    with running(tmp_path, APP, "--request-timeout", "1", env=env) as server:
        with connected(server) as slow:
            started = time.monotonic()
            slow.sock.sendall(build_request("/slow?report=slow"))
            fast = fetch(server, build_request("/fast"))
            assert fast.status == 200 and fast.body == b"fast"
            assert time.monotonic() - started < 0.9, "the slow request held up the fast one"
            response = slow.read()
            elapsed = time.monotonic() - started
        assert response.status == 504, response
        assert 0.9 <= elapsed < 4.0, elapsed
        assert report(tmp_path, "slow") == {"cancelled": True}


def test_a_burst_of_connection_close_clients_is_answered_in_full(server: Server) -> None:
    """Forty clients connect at once, each for one request: the worker takes them from its
    backlog in batches (io/server.py), and every one gets its whole answer, then the close."""
    with contextlib.ExitStack() as stack:
        readers = [stack.enter_context(connected(server)) for _ in range(40)]
        request = build_request("/fast", headers=[("Connection", "close")])
        for reader in readers:
            reader.sock.sendall(request)
        for reader in readers:
            response = reader.read()
            assert (response.status, response.body) == (200, b"fast")
            assert response.header("Connection") == "close"
            assert reader.wait_closed() == b""
