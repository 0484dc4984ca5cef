"""Driver tests: HttpConnection + ServerContext + WsgiHandler in this process, over socketpairs.

The same wiring as a worker process (see ``wiring.py``), on asyncio and on uvloop, with the
test as the client. Here the connection's own state can be watched while it works: whether
it reads the socket (flow control), what it sends first (100-continue), what it answers by
itself (health path, 504).
"""

from __future__ import annotations

import asyncio
import hashlib
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from hornbeam.io.connection import MAX_PIPELINE
from hornbeam.io.server import DRAIN_IDLE_GRACE

from harness import ResponseReader, build_request, wait_for
from wiring import WiredWorker

Wire = Callable[..., WiredWorker]
StartResponse = Callable[..., Any]
Environ = dict[str, Any]


def path_app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """Answers ``<path>:<body>``; /slow first sleeps a little."""
    if environ["PATH_INFO"] == "/slow":
        time.sleep(0.2)
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [environ["PATH_INFO"].encode() + b":" + body]


def test_pipelined_requests_are_answered_in_order(wire: Wire) -> None:
    client, _ = wire(path_app).connect()
    reader = ResponseReader(client)
    client.sendall(
        build_request("/slow") + build_request("/a") + build_request("/b", "POST", body=b"x")
    )
    assert [reader.read().body for _ in range(3)] == [b"/slow:", b"/a:", b"/b:x"]


def test_a_pipeline_longer_than_the_queue_is_answered_in_full(wire: Wire) -> None:
    count = MAX_PIPELINE * 3  # reading pauses at MAX_PIPELINE waiting requests, then resumes
    client, _ = wire(path_app).connect()
    reader = ResponseReader(client)
    client.sendall(b"".join(build_request(f"/r{i}") for i in range(count)))
    assert [reader.read().body for _ in range(count)] == [b"/r%d:" % i for i in range(count)]


# ---- flow control ----------------------------------------------------------------------------


class Sender(threading.Thread):
    """Sends ``total`` bytes of body as fast as the socket takes them, counting what went."""

    def __init__(self, sock: socket.socket, head: bytes, block: bytes, total: int) -> None:
        super().__init__(daemon=True)
        self.sock, self.head, self.block, self.total = sock, head, block, total
        self.sent = 0
        self.error: OSError | None = None

    def run(self) -> None:
        try:
            self.sock.sendall(self.head)
            while self.sent < self.total:
                self.sock.sendall(self.block)
                self.sent += len(self.block)
        except OSError as exc:
            self.error = exc


def test_a_slow_reading_app_pauses_socket_reading(wire: Wire) -> None:
    gate = threading.Event()

    def slow_digest(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        stream = environ["wsgi.input"]
        digest = hashlib.sha256(stream.read(65536))
        gate.wait(10)  # the app is busy; the body keeps coming
        while chunk := stream.read(65536):
            digest.update(chunk)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [digest.hexdigest().encode()]

    worker = wire(slow_digest)
    client, conn = worker.connect()
    block = bytes(range(256)) * 256  # 64 KiB
    total = 20 * 1024 * 1024
    head = build_request("/upload", "POST", [("Content-Length", str(total))])
    sender = Sender(client, head, block, total)
    sender.start()
    try:
        is_reading = conn.transport.is_reading  # type: ignore[union-attr]
        wait_for(lambda: not worker.loop_thread.call(is_reading), 5, "reading to pause")
        # The sender stalls once the socket buffers are full; it must not get far.
        last = -1
        deadline = time.monotonic() + 5
        while sender.sent != last and time.monotonic() < deadline:
            last = sender.sent
            time.sleep(0.1)  # poll for the sender's progress to stop
        assert sender.sent == last, "the sender never stalled"
        assert sender.sent < 4 * 1024 * 1024, f"{sender.sent} bytes taken while the app slept"
        assert not worker.loop_thread.call(is_reading)
    finally:
        gate.set()
    sender.join(10)
    assert sender.error is None
    expected = hashlib.sha256(block * (total // len(block))).hexdigest().encode()
    assert ResponseReader(client, timeout=10).read().body == expected
    assert worker.loop_thread.call(is_reading)  # reading resumed for the next request


# ---- 100-continue ----------------------------------------------------------------------------


def test_continue_is_sent_only_once_the_app_reads(wire: Wire) -> None:
    gate = threading.Event()

    def gated_echo(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        gate.wait(10)
        return [environ["wsgi.input"].read()]

    client, _ = wire(gated_echo).connect()
    reader = ResponseReader(client)
    body = b"b" * 3000
    client.sendall(
        build_request("/", "POST", [("Expect", "100-continue"), ("Content-Length", str(len(body)))])
    )
    try:
        readable, _, _ = select.select([client], [], [], 0.2)
        assert not readable, "something was sent before the app read the body"
    finally:
        gate.set()
    assert reader.read().status == 100
    client.sendall(body)
    final = reader.read()
    assert final.status == 200
    assert final.body == body


def test_continue_goes_out_before_a_response_written_right_after_reading(wire: Wire) -> None:
    def peek(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        first = environ["wsgi.input"].read(1)  # posts the 100, then answers at once
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"first byte " + first]

    client, _ = wire(peek).connect()
    reader = ResponseReader(client)
    head = build_request("/", "POST", [("Expect", "100-continue"), ("Content-Length", "20")])
    client.sendall(head + b"0123456789")  # half the body, without waiting for the 100
    interim, final = reader.read_final()
    assert [r.status for r in interim] == [100]
    assert final.body == b"first byte 0"
    assert reader.wait_closed() == b""  # the rest of the body never came: no keep-alive


def test_no_continue_when_the_app_answers_without_reading(wire: Wire) -> None:
    def refuse(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("413 Content Too Large", [("Content-Type", "text/plain")])
        return [b"too large"]

    client, _ = wire(refuse).connect()
    reader = ResponseReader(client)
    client.sendall(
        build_request("/", "POST", [("Expect", "100-continue"), ("Content-Length", "99999")])
    )
    interim, final = reader.read_final()
    assert interim == []
    assert final.status == 413
    assert reader.wait_closed() == b""


# ---- answers the server makes itself ---------------------------------------------------------


def test_health_path_is_answered_without_the_app(wire: Wire) -> None:
    reached_app: list[str] = []

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        reached_app.append(environ["PATH_INFO"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"from the app"]

    worker = wire(app, health_path="/_hornbeam/health")
    client, _ = worker.connect()
    reader = ResponseReader(client)
    client.sendall(
        build_request("/_hornbeam/health")
        + build_request("/_hornbeam/health?probe=1")
        + build_request("/_hornbeam/health", "HEAD")
        + build_request("/_hornbeam/healthz")
    )
    plain, with_query = reader.read(), reader.read()
    head, other = reader.read("HEAD"), reader.read()
    assert (plain.status, plain.body) == (200, b"ok\n")
    assert (with_query.status, with_query.body) == (200, b"ok\n")
    assert head.status == 200
    assert head.header("Content-Length") == "3"
    assert other.body == b"from the app"
    assert reached_app == ["/_hornbeam/healthz"]

    worker.loop_thread.call(setattr, worker.ctx, "draining", True)
    client.sendall(build_request("/_hornbeam/health"))
    draining = reader.read()
    assert (draining.status, draining.body) == (503, b"draining\n")
    assert draining.header("Connection") == "close"
    assert reader.wait_closed() == b""


def test_request_timeout_answers_504_and_asks_for_recycling(wire: Wire) -> None:
    release = threading.Event()

    def stuck(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        release.wait(10)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"too late"]

    worker = wire(stuck, request_timeout=0.3)
    client, _ = worker.connect()
    reader = ResponseReader(client)
    try:
        started = time.monotonic()
        client.sendall(build_request("/stuck"))
        response = reader.read()
        elapsed = time.monotonic() - started
        assert reader.wait_closed() == b""
    finally:
        release.set()
    assert response.status == 504
    assert (response.header("Content-Type") or "").startswith("text/plain")
    assert 0.25 <= elapsed < 2.0
    assert worker.stuck_reports, "a WSGI thread past request_timeout should retire the worker"


# ---- app threads -----------------------------------------------------------------------------


def test_a_blocked_app_thread_does_not_hold_up_another_connection(wire: Wire) -> None:
    entered, release = threading.Event(), threading.Event()

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/block":
            entered.set()
            release.wait(10)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["PATH_INFO"].encode()]

    worker = wire(app, threads=4)
    blocked, _ = worker.connect()
    other, _ = worker.connect()
    try:
        blocked.sendall(build_request("/block"))
        assert entered.wait(5)
        other.sendall(build_request("/free"))
        assert ResponseReader(other, timeout=1).read().body == b"/free"
    finally:
        release.set()
    assert ResponseReader(blocked).read().body == b"/block"


def test_client_leaving_mid_body_releases_the_reading_app_at_once(wire: Wire) -> None:
    outcome: list[str] = []
    reading = threading.Event()

    def reader_app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        reading.set()
        try:
            environ["wsgi.input"].read()
        except OSError as exc:
            outcome.append(type(exc).__name__)
            raise
        outcome.append("read everything")
        start_response("200 OK", [])
        return [b""]

    worker = wire(reader_app)
    client, _ = worker.connect()
    client.sendall(build_request("/", "POST", [("Content-Length", "100000")]) + b"x" * 1000)
    assert reading.wait(2)
    client.close()
    # body_timeout is 10 s here: the app must be woken by the disconnect, not by the timeout
    wait_for(lambda: bool(outcome), 2, "the app to see the disconnect")
    assert outcome == ["ClientDisconnected"]
    wait_for(lambda: not worker.ctx.connections, 2, "the connection to be dropped")


def test_a_draining_worker_answers_a_request_sent_just_after_a_response(wire: Wire) -> None:
    """A keep-alive client may be sending its next request as the worker starts draining:
    that request is answered (with Connection: close), not lost to an abrupt close."""
    worker = wire(path_app)
    client, _ = worker.connect()
    reader = ResponseReader(client)
    client.sendall(build_request("/first"))
    assert reader.read().body == b"/first:"
    loop = worker.loop_thread.loop
    drained = asyncio.run_coroutine_threadsafe(worker.ctx.drain(5.0), loop)
    wait_for(lambda: worker.loop_thread.call(lambda: worker.ctx.draining), 5.0, "draining")
    client.sendall(build_request("/second"))
    response = reader.read()
    assert (response.body, response.header("Connection")) == (b"/second:", "close")
    assert reader.wait_closed() == b""
    assert drained.result(5.0) is True


def test_a_draining_worker_closes_a_quiet_keep_alive_connection_after_the_grace(
    wire: Wire,
) -> None:
    worker = wire(path_app)
    client, _ = worker.connect()
    reader = ResponseReader(client)
    client.sendall(build_request("/only"))
    assert reader.read().body == b"/only:"
    started = time.monotonic()
    assert worker.loop_thread.run(worker.ctx.drain(5.0)) is True
    assert DRAIN_IDLE_GRACE / 2 <= time.monotonic() - started < 5.0
    assert reader.wait_closed() == b""
