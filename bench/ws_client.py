"""The WebSocket benchmark's client: RFC 6455 over raw asyncio streams, loopback only.

Owns the upgrade written by hand (with its Sec-WebSocket-Accept check), client frames masked
by the `websockets` C helper, reading server frames, the close handshake, and opening and
closing many sockets at once. A full client object per connection would weigh more than the
server side being measured; this one is a few objects per connection.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import random
from collections.abc import Sequence

import servers
from websockets.frames import apply_mask  # type: ignore[attr-defined]  # C when built

CONNECT_CONCURRENCY = 100  # handshakes in flight at once: stays well under listen backlogs
CONNECT_TIMEOUT = 10.0

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 1, 8, 9, 10
NORMAL_CLOSURE = (1000).to_bytes(2, "big")  # the close frame payload: code 1000, no reason


class BenchError(servers.BenchError):
    """A WebSocket measurement cannot go on: a refused handshake, a bad frame, a wrong echo."""


def accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept a server must answer to `key`."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + GUID).digest()).decode("ascii")


def upgrade_request(host: str, port: int, key: str, path: str = "/") -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode("ascii")


def check_upgrade_response(head: bytes, key: str) -> None:
    """Raise BenchError unless `head` is a 101 switching to WebSocket that answers `key`."""
    status_line, *lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
    if status_line.split(" ")[1:2] != ["101"]:
        raise BenchError(f"upgrade refused: {status_line!r}")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("upgrade", "").lower() != "websocket":
        raise BenchError(f"101 without 'Upgrade: websocket': {head!r}")
    if headers.get("sec-websocket-accept") != accept_key(key):
        raise BenchError(f"wrong Sec-WebSocket-Accept for key {key}: {head!r}")


def encode_frame(opcode: int, payload: bytes, mask: bytes) -> bytes:
    """One final client frame, masked with the 4-byte `mask` as RFC 6455 requires."""
    size = len(payload)
    if size < 126:
        head = bytes((0x80 | opcode, 0x80 | size))
    elif size < 1 << 16:
        head = bytes((0x80 | opcode, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + size.to_bytes(8, "big")
    return head + mask + apply_mask(payload, mask)


def decode_frame_start(start: bytes) -> tuple[bool, int, int]:
    """FIN, opcode and 7-bit length code (126: 2 length bytes follow, 127: 8) of the first two
    bytes of a server frame; a masked one breaks the protocol."""
    if start[1] & 0x80:
        raise BenchError("the server masked a frame (RFC 6455 section 5.1 forbids it)")
    return bool(start[0] & 0x80), start[0] & 0x0F, start[1] & 0x7F


class RawWebSocket:
    """A client WebSocket over asyncio streams: a few objects per connection, nothing more."""

    __slots__ = ("other_frames", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.other_frames = 0  # frames the client did not ask for: pings, pongs

    @classmethod
    async def open(cls, port: int, path: str = "/") -> RawWebSocket:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            reader, writer = await asyncio.open_connection(servers.HOST, port)
            key = base64.b64encode(os.urandom(16)).decode("ascii")
            writer.write(upgrade_request(servers.HOST, port, key, path))
            try:
                check_upgrade_response(await reader.readuntil(b"\r\n\r\n"), key)
            except BaseException:
                writer.close()
                raise
        return cls(reader, writer)

    def send(self, payload: bytes, opcode: int = OP_TEXT) -> None:
        # random, not secrets: the mask only keeps proxies from reading frames as HTTP
        self.writer.write(encode_frame(opcode, payload, random.randbytes(4)))

    async def _frame(self) -> tuple[bool, int, bytes]:
        fin, opcode, length = decode_frame_start(await self.reader.readexactly(2))
        if length >= 126:
            extra = await self.reader.readexactly(2 if length == 126 else 8)
            length = int.from_bytes(extra, "big")
        return fin, opcode, await self.reader.readexactly(length)

    async def receive(self) -> bytes:
        """The next data message; pings are answered, a close frame raises BenchError."""
        parts: list[bytes] = []
        while True:
            fin, opcode, payload = await self._frame()
            if opcode == OP_CLOSE:
                raise BenchError(f"the server closed the WebSocket: {payload!r}")
            if opcode in (OP_PING, OP_PONG):
                self.other_frames += 1
                if opcode == OP_PING:
                    self.send(payload, OP_PONG)
                continue
            parts.append(payload)
            if fin:
                return b"".join(parts)

    async def echo(self, payload: bytes) -> None:
        self.send(payload)
        if await self.receive() != payload:
            raise BenchError(f"the echo of a {len(payload)}-byte message differs from it")

    async def close(self) -> bool:
        """Close handshake: True when the server answered 1000 and then ended the connection."""
        clean = False
        try:
            if self.writer.is_closing():  # the connection already ended
                raise ConnectionResetError
            self.send(NORMAL_CLOSURE, OP_CLOSE)
            async with asyncio.timeout(CONNECT_TIMEOUT):
                while (frame := await self._frame())[1] != OP_CLOSE:
                    self.other_frames += 1
                clean = frame[2][:2] == NORMAL_CLOSURE and await self.reader.read(1) == b""
        except (OSError, asyncio.IncompleteReadError, TimeoutError, BenchError):
            clean = False
        self.writer.close()
        with contextlib.suppress(OSError):  # a reset after the close handshake changes nothing
            await self.writer.wait_closed()
        return clean


async def open_many(port: int, count: int, path: str = "/") -> tuple[list[RawWebSocket], str]:
    """Open `count` WebSockets, CONNECT_CONCURRENCY handshakes at a time: the opened ones and
    the first failure ("" if none)."""
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one() -> RawWebSocket:
        async with gate:
            return await RawWebSocket.open(port, path)

    outcomes = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
    failures = [o for o in outcomes if not isinstance(o, RawWebSocket)]
    first = f"{type(failures[0]).__name__}: {failures[0]}"[:120] if failures else ""
    return [o for o in outcomes if isinstance(o, RawWebSocket)], first


async def close_many(sockets: Sequence[RawWebSocket]) -> int:
    """Close every socket with a close handshake; how many closed cleanly."""
    return sum(await asyncio.gather(*(ws.close() for ws in sockets)))
