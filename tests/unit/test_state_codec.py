"""Keys, values and records of the state store."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from hornbeam.state.codec import (
    HEADER_SIZE,
    MAX_NESTING,
    NO_EXPIRY,
    decode_value,
    encode_value,
    expiry_at,
    int_delta,
    key_bytes,
    key_text,
    make_record,
    number_delta,
    plain_copy,
    prefix_bytes,
)


def test_a_record_is_an_expiry_header_then_msgpack() -> None:
    record = make_record(encode_value({"a": [1]}), 1234.5)
    assert struct.unpack_from("<d", record) == (1234.5,)
    assert decode_value(record[HEADER_SIZE:]) == {"a": [1]}
    assert decode_value(memoryview(record)[HEADER_SIZE:]) == {"a": [1]}


def test_keys_are_stored_as_utf8() -> None:
    assert key_bytes("é") == b"\xc3\xa9"
    assert key_bytes(b"\xc3\xa9") == b"\xc3\xa9"
    assert key_text(b"\xc3\xa9") == "é"

    class Path(str):
        def __str__(self) -> str:
            return "not the key"

    assert key_bytes(Path("p")) == b"p"


@pytest.mark.parametrize(
    ("prefix", "stored"), [(None, b""), ("", b""), ("a:", b"a:"), (b"a:", b"a:")]
)
def test_prefixes(prefix: Any, stored: bytes) -> None:
    assert prefix_bytes(prefix) == stored


def test_values_may_nest_up_to_the_limit() -> None:
    value: list[Any] = []
    for _ in range(MAX_NESTING - 1):
        value = [value]
    assert plain_copy(value) == value
    with pytest.raises(ValueError, match=str(MAX_NESTING)):
        encode_value([value, [value]])


def test_error_for_an_unstorable_value_names_its_type_and_says_why() -> None:
    class Point:
        pass

    with pytest.raises(TypeError, match=r"Point.*never pickled"):
        encode_value({"p": Point()})


def test_expiry_is_absolute_unix_time() -> None:
    assert expiry_at(None, 100.0) == NO_EXPIRY
    assert expiry_at(5, 100.0) == 105.0
    assert expiry_at(0.25, 100.0) == 100.25


def test_deltas() -> None:
    assert int_delta("incr", "k", 3) == 3
    assert number_delta("incr_float", "k", 3) == 3.0
    assert type(number_delta("incr_float", "k", 3)) is float
    with pytest.raises(TypeError, match=r"incr\('k'\)"):
        int_delta("incr", "k", False)
    with pytest.raises(TypeError, match=r"incr_float\(b'k'\)"):
        number_delta("incr_float", b"k", "1")
