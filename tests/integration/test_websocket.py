"""ASGI WebSocket (SPEC section 3) against the real server.

Most tests use the ``websockets`` asyncio client. Where the test must choose exactly what goes
on the wire (fragments with a ping between them, pongs withheld, invalid frames) it uses
:class:`RawWebSocket`: a blocking socket framed by the library's sans-IO ``ClientProtocol``,
whose outgoing bytes (pongs included) are only sent when the test flushes them.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.http11 import Response as WsResponse
from websockets.protocol import State
from websockets.uri import parse_uri

from harness import Server, build_request, connected, running, served_pid

APP = "asgi_ws:app"
MAX_MESSAGE = 1000
T = TypeVar("T")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Two workers, default keepalive, no compression, messages up to MAX_MESSAGE bytes."""
    workdir = tmp_path_factory.mktemp("websocket")
    flags = ("--websocket-max-frame-size", str(MAX_MESSAGE))
    with running(workdir, APP, *flags, workers=2) as srv:
        yield srv


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Compression on, a ping every 0.2 s of silence, closed after 1 s of silence."""
    workdir = tmp_path_factory.mktemp("websocket_tuned")
    flags = (
        "--websocket-compress",
        "--websocket-ping-interval",
        "0.2",
        "--websocket-timeout",
        "1",
    )
    with running(workdir, APP, *flags) as srv:
        yield srv


def run(coroutine: Coroutine[Any, Any, T], timeout: float = 15.0) -> T:
    """Run one test's client side, bounded in time."""

    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await coroutine

    return asyncio.run(bounded())


def ws_connect(server: Server, path: str, **options: Any) -> connect:
    """The library client with no keepalive of its own (pings here are the server's)."""
    options.setdefault("ping_interval", None)
    return connect(
        f"ws://{server.host}:{server.port}{path}",
        proxy=None,
        open_timeout=5,
        close_timeout=2,
        **options,
    )


async def refused(server: Server, path: str) -> WsResponse:
    """The HTTP response of a handshake the app turned down."""
    with pytest.raises(InvalidStatus) as caught:
        async with ws_connect(server, path):
            pass
    return caught.value.response


async def close_code(ws: ClientConnection) -> int | None:
    """The code of the close frame the server sent (None if it sent none)."""
    with pytest.raises(ConnectionClosed) as caught:
        for _ in range(100):  # whatever was queued before the close
            await ws.recv()
    return caught.value.rcvd.code if caught.value.rcvd is not None else None


class RawWebSocket:
    """A WebSocket client that sends only what the test says, pongs included."""

    def __init__(self, server: Server, path: str, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection((server.host, server.port), timeout=timeout)
        self.protocol = ClientProtocol(parse_uri(f"ws://{server.host}:{server.port}{path}"))
        self.closed = False
        self.protocol.send_request(self.protocol.connect())
        self.flush()
        deadline = time.monotonic() + timeout
        while self.protocol.state is State.CONNECTING:
            self._receive(deadline)
            self.protocol.events_received()  # the handshake response
        assert self.protocol.state is State.OPEN, self.protocol.handshake_exc

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawWebSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def flush(self) -> None:
        """Send everything the protocol has queued (our frames, pongs, a close reply)."""
        for data in self.protocol.data_to_send():
            if data and not self.closed:
                self.sock.sendall(data)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _receive(self, deadline: float) -> bool:
        """Feed what arrives before ``deadline`` to the protocol; False once the server closed."""
        remaining = deadline - time.monotonic()
        if self.closed or remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return False
        except ConnectionResetError:
            data = b""
        if data:
            self.protocol.receive_data(data)
        else:
            self.closed = True
            self.protocol.receive_eof()
        return bool(data)

    def frames(self, duration: float, answer: bool) -> list[Frame]:
        """Frames received during ``duration`` seconds or until the server closes; pings are
        answered only when ``answer`` is true."""
        deadline = time.monotonic() + duration
        received: list[Frame] = []
        while not self.closed and time.monotonic() < deadline:
            self._receive(deadline)
            received += [e for e in self.protocol.events_received() if isinstance(e, Frame)]
            if answer:
                self.flush()
        return received

    def until_closed(self, timeout: float, answer: bool = False) -> list[Frame]:
        received = self.frames(timeout, answer)
        assert self.closed, f"the server did not close within {timeout}s"
        return received


def messages(frames: list[Frame]) -> list[Frame]:
    return [f for f in frames if f.opcode in (Opcode.TEXT, Opcode.BINARY)]


# ---- handshake -------------------------------------------------------------------------------
def test_accept_with_the_offered_subprotocol_and_extra_headers(server: Server) -> None:
    async def client() -> None:
        async with ws_connect(
            server,
            "/accept?room=7",
            subprotocols=["chat.v1", "chat.v2"],
            additional_headers={"X-Client": "yes"},
        ) as ws:
            assert ws.subprotocol == "chat.v2"
            assert ws.response is not None
            assert ws.response.headers["x-session"] == "s-42"
            scope = json.loads(await ws.recv())
            await ws.send("after accept")
            assert await ws.recv() == "after accept"
        assert scope["type"] == "websocket"
        assert scope["scheme"] == "ws"
        assert scope["path"] == "/accept"
        assert scope["query_string"] == "room=7"
        assert scope["subprotocols"] == ["chat.v1", "chat.v2"]
        assert scope["asgi"]["version"] == "3.0"
        assert {"x-client", "sec-websocket-key", "upgrade"} <= set(scope["header_names"])

    run(client())


def test_close_before_accept_answers_403(server: Server) -> None:
    response = run(refused(server, "/refuse"))
    assert response.status_code == 403


def test_denial_response_reaches_the_client(server: Server) -> None:
    response = run(refused(server, "/deny"))
    assert response.status_code == 401
    assert response.headers["x-denied"] == "yes"
    assert response.body == b"go away"


# ---- messages --------------------------------------------------------------------------------
def test_text_and_bytes_are_echoed(server: Server) -> None:
    async def client() -> None:
        async with ws_connect(server, "/echo") as ws:
            await ws.send("héllo ✓")
            assert await ws.recv() == "héllo ✓"
            await ws.send(b"\x00\xffbinary")
            assert await ws.recv() == b"\x00\xffbinary"

    run(client())


def test_fragmented_messages_are_reassembled(server: Server) -> None:
    with RawWebSocket(server, "/echo") as raw:
        protocol = raw.protocol
        protocol.send_text(b"frag", fin=False)
        protocol.send_ping(b"in between")  # control frames may come between fragments
        protocol.send_continuation(b"men", fin=False)
        protocol.send_continuation(b"ted \xe2\x9c", fin=False)  # UTF-8 split across frames
        protocol.send_continuation(b"\x93", fin=True)
        protocol.send_binary(b"\x01", fin=False)
        protocol.send_continuation(b"\x02\x03", fin=True)
        raw.flush()
        received: list[Frame] = []
        for _ in range(50):
            received += raw.frames(0.1, answer=True)
            if len(messages(received)) >= 2:
                break
    assert [(f.opcode, f.data) for f in messages(received)] == [
        (Opcode.TEXT, "fragmented ✓".encode()),
        (Opcode.BINARY, b"\x01\x02\x03"),
    ]
    assert [f.data for f in received if f.opcode is Opcode.PONG] == [b"in between"]


def test_app_pushes_without_being_asked(server: Server) -> None:
    async def client() -> tuple[list[str | bytes], float]:
        async with ws_connect(server, "/push") as ws:
            started = time.monotonic()
            ticks = [await ws.recv() for _ in range(5)]  # the client sends nothing at all
            return ticks, time.monotonic() - started

    ticks, elapsed = run(client())
    assert ticks == [f"tick {n}" for n in range(5)]
    assert elapsed >= 0.15, "ticks should be spread over time (every 50 ms)"


def test_message_of_max_size_passes(server: Server) -> None:
    async def client() -> None:
        async with ws_connect(server, "/echo") as ws:
            await ws.send("m" * MAX_MESSAGE)
            assert await ws.recv() == "m" * MAX_MESSAGE

    run(client())


@pytest.mark.parametrize("fragmented", [False, True], ids=["one-frame", "fragmented"])
def test_message_over_max_size_closes_1009(server: Server, fragmented: bool) -> None:
    async def client() -> int | None:
        async with ws_connect(server, "/echo") as ws:
            if fragmented:  # each frame is small; the message is not
                await ws.send(["x" * 400, "x" * 400, "x" * 400])
            else:
                await ws.send("x" * (MAX_MESSAGE * 2))
            return await close_code(ws)

    assert run(client()) == 1009


# ---- errors ----------------------------------------------------------------------------------
def test_app_exception_after_accept_closes_1011(server: Server) -> None:
    async def client() -> int | None:
        async with ws_connect(server, "/crash") as ws:
            await ws.send("boom")
            return await close_code(ws)

    assert run(client()) == 1011


INVALID_FRAMES = {
    # FIN + RSV1 + text, masked, without an extension that defines RSV1
    "reserved-bits": bytes([0xC1, 0x80 | 2]) + b"\x00\x00\x00\x00" + b"hi",
    # a client frame without the mask bit (RFC 6455 section 5.1)
    "unmasked": bytes([0x81, 2]) + b"hi",
}


@pytest.mark.parametrize("frame", list(INVALID_FRAMES.values()), ids=list(INVALID_FRAMES))
def test_invalid_frame_closes_1002(server: Server, frame: bytes) -> None:
    with RawWebSocket(server, "/echo") as raw:
        raw.send_raw(frame)
        received = raw.until_closed(5.0, answer=True)
        code = raw.protocol.close_code
    assert not messages(received), "an invalid frame must not be delivered"
    assert code == 1002


# ---- keepalive -------------------------------------------------------------------------------
def test_server_pings_and_a_client_that_answers_stays_connected(tuned: Server) -> None:
    with RawWebSocket(tuned, "/echo") as raw:
        received = raw.frames(1.6, answer=True)  # longer than --websocket-timeout 1
        assert not raw.closed, "a client answering every ping was disconnected"
        raw.protocol.send_text(b"still here")
        raw.flush()
        for _ in range(50):
            received += raw.frames(0.1, answer=True)
            if messages(received):
                break
    pings = [f for f in received if f.opcode is Opcode.PING]
    assert len(pings) >= 2, received
    assert [f.data for f in messages(received)] == [b"still here"]


def test_client_that_never_answers_pings_is_closed(tuned: Server) -> None:
    with RawWebSocket(tuned, "/echo") as raw:
        started = time.monotonic()
        received: list[Frame] = []
        while not any(f.opcode is Opcode.CLOSE for f in received):
            assert time.monotonic() - started < 3.5, "no close frame for a silent client"
            received += raw.frames(0.05, answer=False)
        elapsed = time.monotonic() - started
        # the close handshake is not answered either: the server must end the connection
        raw.until_closed(7.0, answer=False)
    assert any(f.opcode is Opcode.PING for f in received), "no ping before giving up"
    assert elapsed >= 0.9, f"closed after {elapsed:.2f}s with --websocket-timeout 1"


# ---- compression -----------------------------------------------------------------------------
def test_permessage_deflate_only_with_websocket_compress(server: Server, tuned: Server) -> None:
    async def extensions(target: Server) -> list[str]:
        async with ws_connect(target, "/echo") as ws:  # the client offers permessage-deflate
            text = "compressible " * 70  # within MAX_MESSAGE
            await ws.send(text)
            assert await ws.recv() == text
            return [extension.name for extension in ws.protocol.extensions]

    assert run(extensions(tuned)) == ["permessage-deflate"]
    assert run(extensions(server)) == []


# ---- load and shutdown -----------------------------------------------------------------------
def test_200_concurrent_clients_each_echo_10_messages(server: Server) -> None:
    async def one_client(number: int) -> int:
        async with ws_connect(server, "/echo") as ws:
            for index in range(10):
                message = f"client {number} message {index}"
                await ws.send(message)
                assert await ws.recv() == message
        return number

    async def all_clients() -> list[int]:
        return await asyncio.gather(*(one_client(n) for n in range(200)))

    assert run(all_clients(), timeout=40) == list(range(200))


def test_sigterm_closes_open_websockets_with_1001(tmp_path: Path) -> None:
    with running(tmp_path, APP) as srv:

        async def clients() -> list[int | None]:
            sockets = [await ws_connect(srv, "/echo") for _ in range(3)]
            try:
                for ws in sockets:
                    await ws.send("ready")
                    assert await ws.recv() == "ready"
                srv.signal(signal.SIGTERM)
                return [await close_code(ws) for ws in sockets]
            finally:
                for ws in sockets:
                    await ws.close()

        assert run(clients()) == [1001, 1001, 1001]
        assert srv.wait_exit(10) == 0, srv.log()


def test_wsgi_app_answers_an_upgrade_request_over_http(tmp_path: Path) -> None:
    upgrade = [
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ]
    with running(tmp_path, "wsgi_basic:app") as srv:
        worker = served_pid(srv)
        with connected(srv) as reader:
            reader.sock.sendall(build_request("/pid", headers=upgrade))
            response = reader.read()
        assert response.status == 200, response
        assert response.body == str(worker).encode()
        assert served_pid(srv) == worker, "the worker died"
        assert "Traceback" not in srv.log()


def test_access_log_has_a_line_per_websocket(tmp_path: Path) -> None:
    with running(tmp_path, APP, "--access-log", "-") as srv:

        async def client() -> None:
            async with ws_connect(srv, "/echo?room=7") as ws:
                await ws.send("hi")
                assert await ws.recv() == "hi"

        run(client())
        deadline = time.monotonic() + 5
        while '"GET /echo?room=7 HTTP/1.1" 101' not in srv.log():
            assert time.monotonic() < deadline, srv.log()
            time.sleep(0.02)


def test_forwarded_headers_from_a_trusted_proxy_set_client_and_wss(server: Server) -> None:
    """127.0.0.1 is a trusted proxy by default (forwarded_allow_ips), as for HTTP."""

    async def client() -> dict[str, Any]:
        headers = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
        async with ws_connect(server, "/accept", additional_headers=headers) as ws:
            return dict(json.loads(await ws.recv()))

    scope = run(client())
    assert scope["scheme"] == "wss"
    assert scope["client_host"] == "203.0.113.9"
