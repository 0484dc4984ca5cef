"""Keys, values and stored records of the state store: validation and msgpack encoding.

Every backend goes through these functions, so an app sees the same rules whichever
store it runs on:

- a key is a non-empty str of at most 511 bytes in UTF-8 (LMDB's key limit), or bytes
  that are that str's UTF-8 form;
- a value is None, bool, int, float, str, bytes, list, tuple or dict with str keys,
  nested up to `MAX_NESTING` levels. Subclasses are stored as their base type and tuples
  read back as lists. Anything else raises TypeError: values are data, never pickled;
- ints are msgpack ints: from -2**63 to 2**64 - 1. A larger int raises OverflowError
  rather than being wrapped or truncated (store it as a str);
- a record is an 8-byte little-endian float, the expiry as Unix time (0.0 = none),
  followed by the msgpack payload, so a reader checks the expiry without decoding.
"""

from __future__ import annotations

import math
import struct
from typing import Any, NoReturn, TypeAlias

import msgpack  # type: ignore[import-untyped, unused-ignore]

Key: TypeAlias = str | bytes
Value: TypeAlias = (
    bool
    | int
    | float
    | str
    | bytes
    | list["Value"]
    | tuple["Value", ...]
    | dict[str, "Value"]
    | None
)

MAX_KEY_BYTES = 511
MAX_NESTING = 100  # each level costs two Python frames while checking; msgpack allows 511
INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1

RECORD_HEADER = struct.Struct("<d")
HEADER_SIZE = RECORD_HEADER.size
NO_EXPIRY = 0.0

_SCALAR_TYPES = frozenset({type(None), bool, int, float, str, bytes})
_ALLOWED = "None, bool, int, float, str, bytes, list, tuple or dict with str keys"

# One packer for the process: it only ever sees values made of exact builtin types (see
# `_plain`), so packing runs in C without calling back into Python and cannot be
# interleaved by another thread.
_pack = msgpack.Packer(use_bin_type=True).pack
_pack_header = RECORD_HEADER.pack


def key_bytes(key: Key) -> bytes:
    """The stored form of `key`, validated."""
    if type(key) is str:
        try:
            encoded = key.encode()
        except UnicodeEncodeError:
            raise ValueError(
                f"state key {key!r} cannot be encoded as UTF-8 (it holds a lone surrogate)"
            ) from None
    elif isinstance(key, bytes):
        encoded = bytes(key)
        try:
            encoded.decode()
        except UnicodeDecodeError:
            raise ValueError(
                f"state key {key!r} is not valid UTF-8: bytes keys must be the UTF-8 form "
                "of a str key"
            ) from None
    elif isinstance(key, str):
        return key_bytes(str.__str__(key))
    else:
        raise TypeError(f"state keys must be str or bytes, got {type(key).__name__}")
    if not 0 < len(encoded) <= MAX_KEY_BYTES:
        raise ValueError(
            f"state key {key!r} is {len(encoded)} bytes in UTF-8: keys must be 1 to "
            f"{MAX_KEY_BYTES} bytes long"
        )
    return encoded


def prefix_bytes(prefix: Key | None) -> bytes:
    """The stored form of a key prefix; None and '' match every key."""
    if prefix is None:
        return b""
    if isinstance(prefix, str):
        return prefix.encode(errors="strict")
    if isinstance(prefix, bytes):
        return bytes(prefix)
    raise TypeError(f"a state key prefix must be str, bytes or None, got {type(prefix).__name__}")


def key_text(stored: bytes) -> str:
    """The str key of a stored key."""
    return stored.decode()


def encode_value(value: Value) -> bytes:
    """The msgpack payload of `value`; TypeError or OverflowError if it cannot be stored."""
    if type(value) not in _SCALAR_TYPES:
        value = _plain(value, 0)
    try:
        payload: bytes = _pack(value)
    except OverflowError:
        raise OverflowError(
            "state values hold ints from -2**63 to 2**64-1 (msgpack's range); this value "
            "has a larger one: store it as a str"
        ) from None
    return payload


def decode_value(payload: bytes) -> Any:
    """The value a payload made by `encode_value` stands for (lists for tuples)."""
    return msgpack.unpackb(payload)


def plain_copy(value: Value) -> Any:
    """`value` as it would read back from a store, for comparing with stored values."""
    return decode_value(encode_value(value))


def _plain(value: object, depth: int) -> Value:
    """`value` rebuilt from exact builtin types, or TypeError naming what cannot be stored."""
    if depth >= MAX_NESTING:
        raise ValueError(f"state values may nest at most {MAX_NESTING} levels deep")
    kind = type(value)
    if kind in _SCALAR_TYPES:
        return value  # type: ignore[return-value]  # one of the scalar types of Value
    if isinstance(value, list | tuple):
        inner = depth + 1
        return [item if type(item) in _SCALAR_TYPES else _plain(item, inner) for item in value]
    if isinstance(value, dict):
        inner = depth + 1
        return {
            _plain_dict_key(item_key): item if type(item) in _SCALAR_TYPES else _plain(item, inner)
            for item_key, item in value.items()
        }
    # Subclasses of the scalar types (IntEnum, str-based enums, ...) are stored as their
    # base, read through the base type's own conversion (a subclass may override __str__).
    if isinstance(value, int):  # bool cannot be subclassed, so this is not one
        return int.__index__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bytes):
        return bytes(memoryview(value))
    raise TypeError(
        f"cannot store a {kind.__module__}.{kind.__qualname__} in the state store: values "
        f"must be {_ALLOWED} (they are encoded with msgpack, never pickled)"
    )


def _plain_dict_key(item_key: object) -> str:
    if type(item_key) is str:
        return item_key
    if isinstance(item_key, str):
        return str.__str__(item_key)
    raise TypeError(
        f"dicts stored in the state store must have str keys, found a "
        f"{type(item_key).__name__} key {item_key!r}"
    )


def expiry_at(ttl: float | None, now: float) -> float:
    """The record expiry for a `ttl` argument given at Unix time `now`."""
    return NO_EXPIRY if ttl is None else now + lifetime(ttl)


def lifetime(ttl: float | None) -> float:
    """A `ttl` argument checked, in seconds; 0.0 (NO_EXPIRY) for None."""
    if ttl is None:
        return NO_EXPIRY
    if isinstance(ttl, bool) or not isinstance(ttl, int | float):
        raise TypeError(f"ttl must be a number of seconds or None, got {type(ttl).__name__}")
    if not 0 < ttl < math.inf:
        raise ValueError(f"ttl must be a finite number of seconds > 0, or None; got {ttl!r}")
    return float(ttl)


def make_record(payload: bytes, expiry: float) -> bytes:
    """A stored record: expiry header then payload."""
    return _pack_header(expiry) + payload


def int_delta(call: str, key: Key, delta: object) -> int:
    """`delta` if it is an int (and not a bool), else TypeError naming the key."""
    if type(delta) is int:
        return delta
    if isinstance(delta, int) and not isinstance(delta, bool):
        return int(delta)
    _bad_delta(call, key, delta, "an int")


def number_delta(call: str, key: Key, delta: object) -> float:
    """`delta` as a float if it is an int or a float (and not a bool), else TypeError."""
    if type(delta) is float or type(delta) is int:
        return float(delta)
    if isinstance(delta, int | float) and not isinstance(delta, bool):
        return float(delta)
    _bad_delta(call, key, delta, "an int or a float")


def _bad_delta(call: str, key: Key, delta: object, wanted: str) -> NoReturn:
    raise TypeError(
        f"{call}({key!r}): delta must be {wanted} (bool is not), got {type(delta).__name__}"
    )
