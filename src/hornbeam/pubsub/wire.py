"""The pub/sub wire format between workers and the arbiter's broker: length-prefixed msgpack.

A frame is a 4-byte big-endian length and a msgpack array: ``["sub", topic]``,
``["unsub", topic]``, ``["pub", topic, message]`` (answered ``["count", n]``) and, from the
broker, ``["msg", topic, message]``. msgpack never runs code, so a frame from a socket is
only ever data (no pickle).
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack

from hornbeam.errors import HornbeamError

MAX_FRAME = 64 * 1024 * 1024
_LENGTH = struct.Struct(">I")


class WireError(HornbeamError):
    """A pub/sub peer sent something that is not a frame of this protocol."""


def encode(*fields: Any) -> bytes:
    try:
        body: bytes = msgpack.packb(list(fields), use_bin_type=True)
    except TypeError as exc:
        raise TypeError(f"pub/sub messages must be plain data (no objects): {exc}") from None
    if len(body) > MAX_FRAME:
        raise ValueError(f"pub/sub message of {len(body)} bytes is over {MAX_FRAME}")
    return _LENGTH.pack(len(body)) + body


class FrameReader:
    """Accumulates bytes and yields the complete frames in them."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[list[Any]]:
        buffer = self._buffer
        buffer += data
        frames = []
        while len(buffer) >= 4:
            (size,) = _LENGTH.unpack_from(buffer)
            if size > MAX_FRAME:
                raise WireError(f"pub/sub frame of {size} bytes is over {MAX_FRAME}")
            if len(buffer) < 4 + size:
                break
            frame = msgpack.unpackb(bytes(buffer[4 : 4 + size]), raw=False)
            del buffer[: 4 + size]
            if not isinstance(frame, list) or not frame or not isinstance(frame[0], str):
                raise WireError("pub/sub frame is not a [kind, ...] array")
            frames.append(frame)
        return frames
