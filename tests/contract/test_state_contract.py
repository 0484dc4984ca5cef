"""The state store contract (SPEC section 4), run against every backend in one process."""

from __future__ import annotations

import enum
import math
import threading
from collections import OrderedDict
from typing import Any

import pytest

from hornbeam.state import StateStore

from state_helpers import StoreCase

ROUND_TRIP = [
    None,
    True,
    False,
    0,
    -1,
    2**63 - 1,
    -(2**63),
    2**64 - 1,
    1.5,
    -0.0,
    math.inf,
    "",
    "héllo ✓",
    b"",
    b"\x00\xff",
    [],
    [1, "a", None, [2.5, b"x"]],
    {},
    {"a": {"b": [1, {"c": None}]}, "é": b"bytes"},
]


class Colour(enum.IntEnum):
    RED = 1


class Name(str, enum.Enum):  # noqa: UP042  (str() of it is not its value)
    ADA = "ada"


@pytest.fixture
def store(case: StoreCase) -> StateStore:
    return case.store


# -- get, set, delete ---------------------------------------------------------------------


def test_get_of_a_missing_key_is_none(store: StateStore) -> None:
    assert store.get("missing") is None


@pytest.mark.parametrize("value", ROUND_TRIP, ids=repr)
def test_every_data_type_reads_back_equal_and_of_the_same_type(
    store: StateStore, value: Any
) -> None:
    store.set("k", value)
    got = store.get("k")
    assert got == value
    assert type(got) is type(value)


def test_nan_reads_back_as_nan(store: StateStore) -> None:
    store.set("k", math.nan)
    assert math.isnan(store.get("k"))


def test_tuples_read_back_as_lists_at_every_depth(store: StateStore) -> None:
    store.set("k", (1, (2, 3), {"t": (4,)}))
    assert store.get("k") == [1, [2, 3], {"t": [4]}]


def test_subclasses_are_stored_as_their_base_type(store: StateStore) -> None:
    store.set("k", {"colour": Colour.RED, "name": Name.ADA, "od": OrderedDict(a=1)})
    store.set(Name.ADA, Name.ADA)
    got = store.get("k")
    assert got == {"colour": 1, "name": "ada", "od": {"a": 1}}
    assert store.get("ada") == "ada"
    assert type(got["colour"]) is int
    assert type(got["name"]) is str
    assert type(got["od"]) is dict


@pytest.mark.parametrize(
    "value",
    [object(), {1, 2}, frozenset(), 1j, bytearray(b"x"), {1: "int key"}, {b"k": 1}, [object()]],
    ids=repr,
)
def test_values_that_are_not_data_raise_type_error_and_change_nothing(
    store: StateStore, value: Any
) -> None:
    store.set("k", "before")
    with pytest.raises(TypeError, match="state"):
        store.set("k", value)
    assert store.get("k") == "before"


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, [1, 2**70], {"n": -(2**100)}], ids=repr)
def test_ints_beyond_msgpack_range_raise_overflow_error(store: StateStore, value: Any) -> None:
    store.set("k", "before")
    with pytest.raises(OverflowError, match="str"):
        store.set("k", value)
    assert store.get("k") == "before"


def test_values_nested_too_deep_are_refused(store: StateStore) -> None:
    value: list[Any] = []
    for _ in range(150):
        value = [value]
    with pytest.raises(ValueError, match="nest"):
        store.set("k", value)


def test_values_are_copies_in_both_directions(store: StateStore) -> None:
    original = {"items": [1]}
    store.set("k", original)
    original["items"].append(2)
    read = store.get("k")
    read["items"].append(3)
    assert store.get("k") == {"items": [1]}


def test_bytes_keys_are_the_same_key_as_their_utf8_str(store: StateStore) -> None:
    store.set("ключ", 1)
    assert store.get("ключ".encode()) == 1
    store.set(b"k", 2)
    assert store.get("k") == 2
    assert sorted(store.keys()) == ["k", "ключ"]


@pytest.mark.parametrize(
    ("key", "error"),
    [
        (1, TypeError),
        (None, TypeError),
        (("a",), TypeError),
        ("", ValueError),
        (b"", ValueError),
        ("x" * 512, ValueError),
        ("é" * 256, ValueError),
        (b"\xff\xfe", ValueError),
        ("\ud800", ValueError),
    ],
    ids=repr,
)
def test_bad_keys_are_refused(store: StateStore, key: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        store.set(key, 1)
    with pytest.raises(error):
        store.get(key)


def test_the_longest_key_is_511_bytes(store: StateStore) -> None:
    store.set("x" * 511, 1)
    assert store.get("x" * 511) == 1


def test_set_replaces_the_value_and_the_expiry(case: StoreCase) -> None:
    case.store.set("k", 1, ttl=10)
    case.store.set("k", 2)
    assert case.store.ttl("k") is None
    case.advance(20)
    assert case.store.get("k") == 2


def test_delete_removes_and_tells_whether_the_key_was_there(store: StateStore) -> None:
    store.set("k", 1)
    assert store.delete("k") is True
    assert store.get("k") is None
    assert store.delete("k") is False
    assert store.delete(b"never") is False


def test_a_stored_none_is_a_key_that_exists(store: StateStore) -> None:
    store.set("k", None)
    assert store.keys() == ["k"]
    assert store.size() == 1
    assert store.add("k", 1) is False
    assert store.get_multi(["k"]) == {"k": None}


# -- counters -----------------------------------------------------------------------------


def test_incr_starts_a_missing_key_at_zero_and_counts(store: StateStore) -> None:
    assert store.incr("n") == 1
    assert store.incr("n", 5) == 6
    assert store.incr("n", -10) == -4
    assert store.decr("n") == -5
    assert store.decr("n", 5) == -10
    assert store.decr("fresh", 3) == -3
    assert store.get("n") == -10


@pytest.mark.parametrize("stored", ["3", 1.5, True, None, [1], {"n": 1}, b"1"], ids=repr)
def test_incr_of_a_value_that_is_not_an_int_names_the_key(store: StateStore, stored: Any) -> None:
    store.set("hits", stored)
    with pytest.raises(TypeError, match="'hits'"):
        store.incr("hits")
    assert store.get("hits") == stored


@pytest.mark.parametrize("delta", [True, 1.0, "1", None], ids=repr)
def test_incr_and_decr_with_a_delta_that_is_not_an_int_name_the_key(
    store: StateStore, delta: Any
) -> None:
    with pytest.raises(TypeError, match="'hits'"):
        store.incr("hits", delta)
    with pytest.raises(TypeError, match="'hits'"):
        store.decr("hits", delta)
    assert store.get("hits") is None


def test_incr_accepts_int_subclasses_other_than_bool(store: StateStore) -> None:
    assert store.incr("n", Colour.RED) == 1


@pytest.mark.parametrize(
    ("start", "delta"), [(2**63 - 1, 1), (-(2**63), -1), (None, 2**63), (2**64 - 1, 0)]
)
def test_incr_never_wraps_past_64_bits(store: StateStore, start: int | None, delta: int) -> None:
    if start is not None:
        store.set("n", start)
    with pytest.raises(OverflowError, match="'n'"):
        store.incr("n", delta)
    assert store.get("n") == start


def test_incr_ttl_applies_only_when_the_call_creates_the_key(case: StoreCase) -> None:
    store = case.store
    assert store.incr("window", ttl=10) == 1
    case.advance(6)
    assert store.incr("window", ttl=100) == 2
    assert store.ttl("window") == pytest.approx(4)
    case.advance(4.5)
    assert store.get("window") is None
    assert store.incr("window", ttl=10) == 1
    assert store.ttl("window") == pytest.approx(10)


def test_incr_keeps_the_expiry_of_an_existing_key(case: StoreCase) -> None:
    case.store.set("n", 5, ttl=10)
    assert case.store.incr("n") == 6
    assert case.store.ttl("n") == pytest.approx(10)


def test_incr_float_adds_and_starts_at_zero(store: StateStore) -> None:
    assert store.incr_float("sum", 0.5) == 0.5
    assert store.incr_float("sum", 2) == 2.5
    store.set("int", 2)
    result = store.incr_float("int", 0.25)
    assert result == 2.25
    assert type(result) is float
    assert type(store.get("sum")) is float


def test_incr_float_refuses_non_numbers_naming_the_key(store: StateStore) -> None:
    store.set("label", "x")
    with pytest.raises(TypeError, match="'label'"):
        store.incr_float("label", 1.0)
    for delta in (True, "1", None):
        with pytest.raises(TypeError, match="'sum'"):
            store.incr_float("sum", delta)  # type: ignore[arg-type]


def test_incr_refuses_the_floats_incr_float_made(store: StateStore) -> None:
    store.incr_float("sum", 1.0)
    with pytest.raises(TypeError, match="'sum'"):
        store.incr("sum")


def test_incr_float_ttl_applies_only_on_creation(case: StoreCase) -> None:
    case.store.incr_float("f", 1.0, ttl=10)
    case.advance(5)
    case.store.incr_float("f", 1.0, ttl=100)
    assert case.store.ttl("f") == pytest.approx(5)


def test_counters_are_atomic_across_threads(store: StateStore) -> None:
    def count() -> None:
        for _ in range(2000):
            store.incr("n")
            store.incr_float("f", 0.5)

    threads = [threading.Thread(target=count) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert store.get("n") == 16000
    assert store.get("f") == 8000.0


# -- several keys -------------------------------------------------------------------------


def test_get_multi_returns_only_live_keys_under_the_keys_given(case: StoreCase) -> None:
    store = case.store
    store.set_multi({"a": 1, "b": None})
    store.set("old", 1, ttl=1)
    case.advance(2)
    assert store.get_multi(["a", b"b", "missing", "old"]) == {"a": 1, b"b": None}
    assert store.get_multi(key for key in ["a"]) == {"a": 1}
    assert store.get_multi([]) == {}


def test_set_multi_is_all_or_nothing(store: StateStore) -> None:
    with pytest.raises(TypeError):
        store.set_multi({"a": 1, "b": object()})
    assert store.size() == 0
    store.set_multi({"a": 1, b"b": (2,)}, ttl=30)
    assert store.get_multi(["a", "b"]) == {"a": 1, "b": [2]}
    assert store.ttl("b") == pytest.approx(30)


def test_keys_filters_by_prefix_and_gives_str(store: StateStore) -> None:
    store.set_multi({"user:1": 1, "user:2": 2, "users": 3, "x": 4, "é:1": 5})
    assert sorted(store.keys("user:")) == ["user:1", "user:2"]
    assert sorted(store.keys(b"user")) == ["user:1", "user:2", "users"]
    assert store.keys("é") == ["é:1"]
    assert store.keys("zzz") == []
    assert (
        sorted(store.keys()) == sorted(store.keys("")) == ["user:1", "user:2", "users", "x", "é:1"]
    )
    with pytest.raises(TypeError):
        store.keys(1)  # type: ignore[arg-type]


def test_clear_removes_by_prefix_and_counts_live_keys(case: StoreCase) -> None:
    store = case.store
    store.set_multi({"s:1": 1, "s:2": 2, "t:1": 3})
    store.set("s:old", 1, ttl=1)
    case.advance(2)
    assert store.clear("s:") == 2
    assert store.keys() == ["t:1"]
    assert store.clear() == 1
    assert store.size() == 0


def test_size_counts_live_keys(store: StateStore) -> None:
    assert store.size() == 0
    store.set_multi({"a": 1, "b": 2})
    assert store.size() == 2


# -- atomic conditional calls -------------------------------------------------------------


def test_add_stores_only_when_absent(store: StateStore) -> None:
    assert store.add("lock", "owner-1", ttl=30) is True
    assert store.add("lock", "owner-2") is False
    assert store.get("lock") == "owner-1"
    assert store.ttl("lock") == pytest.approx(30)


def test_ttl_reports_seconds_left(case: StoreCase) -> None:
    store = case.store
    assert store.ttl("missing") is None
    store.set("forever", 1)
    assert store.ttl("forever") is None
    store.set("k", 1, ttl=10)
    case.advance(2.5)
    assert store.ttl(b"k") == pytest.approx(7.5)


def test_touch_changes_only_the_expiry(case: StoreCase) -> None:
    store = case.store
    assert store.touch("missing", 10) is False
    store.set("k", {"v": 1}, ttl=5)
    assert store.touch("k", 60) is True
    case.advance(30)
    assert store.get("k") == {"v": 1}
    assert store.touch("k", None) is True
    assert store.ttl("k") is None
    case.advance(1000)
    assert store.get("k") == {"v": 1}


@pytest.mark.parametrize(
    ("ttl", "error"),
    [
        (0, ValueError),
        (-1, ValueError),
        (math.inf, ValueError),
        (math.nan, ValueError),
        ("5", TypeError),
        (True, TypeError),
    ],
    ids=repr,
)
def test_bad_ttls_are_refused_by_every_call(
    store: StateStore, ttl: Any, error: type[Exception]
) -> None:
    store.set("k", 1)
    calls = [
        lambda: store.set("k", 2, ttl),
        lambda: store.set_multi({"k": 2}, ttl),
        lambda: store.add("new", 2, ttl),
        lambda: store.incr("k", 1, ttl),
        lambda: store.incr_float("f", 1.0, ttl),
        lambda: store.touch("k", ttl),
        lambda: store.compare_and_set("k", 1, 2, ttl),
    ]
    for call in calls:
        with pytest.raises(error):
            call()
    assert store.get("k") == 1
    assert store.keys() == ["k"]


def test_fractional_ttls_work(case: StoreCase) -> None:
    case.store.set("k", 1, ttl=0.5)
    case.advance(0.4)
    assert case.store.get("k") == 1
    case.advance(0.2)
    assert case.store.get("k") is None


def test_compare_and_set_swaps_only_on_a_match(case: StoreCase) -> None:
    store = case.store
    store.set("lease", "me", ttl=10)
    assert store.compare_and_set("lease", "someone else", "them") is False
    assert store.get("lease") == "me"
    assert store.compare_and_set("lease", "me", "me", ttl=60) is True
    assert store.ttl("lease") == pytest.approx(60)
    assert store.compare_and_set("lease", "me", "done") is True
    assert store.ttl("lease") is None
    assert store.get("lease") == "done"


def test_compare_and_set_compares_values_as_they_read_back(store: StateStore) -> None:
    store.set("k", {"a": [1, 2], "b": None})
    assert store.compare_and_set("k", {"b": None, "a": (1, 2)}, 1) is True
    store.set("none", None)
    assert store.compare_and_set("none", None, 2) is True
    assert store.get("none") == 2


def test_compare_and_set_never_creates_a_key(store: StateStore) -> None:
    assert store.compare_and_set("missing", None, 1) is False
    assert store.get("missing") is None
    with pytest.raises(TypeError):
        store.compare_and_set("k", object(), 1)


def test_delete_if_deletes_only_on_a_match(store: StateStore) -> None:
    store.set("lease", "me")
    assert store.delete_if("lease", "you") is False
    assert store.get("lease") == "me"
    assert store.delete_if("lease", "me") is True
    assert store.get("lease") is None
    assert store.delete_if("lease", "me") is False


# -- expiry -------------------------------------------------------------------------------


def test_expired_keys_are_absent_for_every_call(case: StoreCase) -> None:
    store = case.store
    store.set("live", 1)
    store.set_multi({"gone": 7, "gone:2": "x"}, ttl=1)
    case.advance(1.001)
    assert store.get("gone") is None
    assert store.get_multi(["gone", "live"]) == {"live": 1}
    assert store.keys() == ["live"]
    assert store.keys("gone") == []
    assert store.size() == 1
    assert store.ttl("gone") is None
    assert store.touch("gone", 10) is False
    assert store.compare_and_set("gone", 7, 8) is False
    assert store.delete_if("gone", 7) is False
    assert store.delete("gone:2") is False
    assert store.incr("gone") == 1
    assert store.incr_float("gone:2", 1.0) == 1.0
    store.set("again", 1, ttl=1)
    case.advance(2)
    assert store.add("again", 2) is True
    assert store.get("again") == 2
    assert store.ttl("again") is None


def test_sweep_deletes_expired_keys_only(case: StoreCase) -> None:
    store = case.store
    store.set_multi({f"t:{i}": i for i in range(50)}, ttl=5)
    store.set_multi({f"p:{i}": i for i in range(20)})
    case.advance(6)
    assert store.sweep_expired() == 50
    assert store.sweep_expired() == 0
    assert store.size() == 20


def test_close_is_idempotent(store: StateStore) -> None:
    store.close()
    store.close()
