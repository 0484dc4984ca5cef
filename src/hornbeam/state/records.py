"""Every `StateStore` call written once, over transactions on raw records.

A backend that can run a function inside an atomic read or write transaction over
`bytes key -> record` (see `codec`: expiry header + msgpack payload) subclasses
`RecordStore` and supplies `_read`, `_write`, `_remove` and `_scan`; the semantics of
SPEC section 4 (expiry, counters, compare-and-set, ...) live here and nowhere else.

Stores also take part in fork safety: before any `os.fork()` each store's lock is taken
and the store drops what must not cross a fork (the LMDB environment); the lock is
released on both sides afterwards, so a child never inherits a store in the middle of a
call or holding a parent's environment.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from hornbeam.state.api import StateStore
from hornbeam.state.codec import (
    HEADER_SIZE,
    INT64_MAX,
    INT64_MIN,
    NO_EXPIRY,
    RECORD_HEADER,
    Key,
    Value,
    decode_value,
    encode_value,
    expiry_at,
    int_delta,
    key_bytes,
    key_text,
    lifetime,
    make_record,
    number_delta,
    plain_copy,
    prefix_bytes,
)

P = ParamSpec("P")
T = TypeVar("T")
Clock = Callable[[], float]

_read_expiry = RECORD_HEADER.unpack_from
_pack_header = RECORD_HEADER.pack
_FOREVER = _pack_header(NO_EXPIRY)  # the header of a record without expiry


class RecordTxn(Protocol):
    """The part of a transaction the calls need (an `lmdb.Transaction` is one)."""

    def get(self, key: bytes, /) -> bytes | None: ...

    def put(self, key: bytes, value: bytes, /) -> bool: ...

    def delete(self, key: bytes, /) -> bool: ...


Body = Callable[Concatenate[RecordTxn, P], T]


class RecordStore(StateStore):
    """A `StateStore` over atomic transactions; subclasses provide the transactions.

    `clock` gives the current Unix time; expiries are absolute Unix times so that every
    process (and a later server reusing a persistent store) agrees on them.
    """

    def __init__(self, clock: Clock = time.time) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        _fork_guarded.add(self)

    # -- what a backend provides ------------------------------------------------------

    @abstractmethod
    def _read(self, body: Body[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `body(txn, ...)` in a read-only snapshot and return its result."""

    @abstractmethod
    def _write(self, body: Body[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `body(txn, ...)` in one atomic write transaction; nothing is kept if it raises."""

    def _remove(self, body: Body[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`_write` for a body that only removes data (may use room kept for that)."""
        return self._write(body, *args, **kwargs)

    @abstractmethod
    def _scan(self, txn: RecordTxn, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """The (key, record) pairs whose key starts with `prefix`."""

    def _release_for_fork(self) -> None:
        """Drop, with the lock held, whatever must not be inherited by a forked child."""

    # -- the calls -------------------------------------------------------------------

    def get(self, key: Key) -> Any:
        return self._read(self._get_in, key_bytes(key))

    def set(self, key: Key, value: Value, ttl: float | None = None) -> None:
        expiry = NO_EXPIRY if ttl is None else expiry_at(ttl, self._clock())
        record = make_record(encode_value(value), expiry)
        self._write(_put_in, key_bytes(key), record)

    def delete(self, key: Key) -> bool:
        return self._remove(self._delete_in, key_bytes(key))

    def incr(self, key: Key, delta: int = 1, ttl: float | None = None) -> int:
        if type(delta) is not int:
            delta = int_delta("incr", key, delta)
        seconds = NO_EXPIRY if ttl is None else lifetime(ttl)
        return self._write(self._incr_in, key_bytes(key), delta, seconds)

    def incr_float(self, key: Key, delta: float, ttl: float | None = None) -> float:
        amount = number_delta("incr_float", key, delta)
        return self._write(self._incr_float_in, key_bytes(key), amount, lifetime(ttl))

    def get_multi(self, keys: Iterable[Key]) -> dict[Key, Any]:
        wanted = [(key, key_bytes(key)) for key in keys]
        return self._read(self._get_multi_in, wanted)

    def set_multi(self, mapping: Mapping[Key, Value], ttl: float | None = None) -> None:
        expiry = expiry_at(ttl, self._clock())
        records = [
            (key_bytes(key), make_record(encode_value(value), expiry))
            for key, value in mapping.items()
        ]
        self._write(_put_all_in, records)

    def keys(self, prefix: Key | None = None) -> list[str]:
        return self._read(self._keys_in, prefix_bytes(prefix))

    def clear(self, prefix: Key | None = None) -> int:
        return self._remove(self._clear_in, prefix_bytes(prefix))

    def size(self) -> int:
        return self._read(self._size_in)

    def add(self, key: Key, value: Value, ttl: float | None = None) -> bool:
        record = make_record(encode_value(value), expiry_at(ttl, self._clock()))
        return self._write(self._add_in, key_bytes(key), record)

    def ttl(self, key: Key) -> float | None:
        return self._read(self._ttl_in, key_bytes(key))

    def touch(self, key: Key, ttl: float | None) -> bool:
        header = _pack_header(expiry_at(ttl, self._clock()))
        return self._write(self._touch_in, key_bytes(key), header)

    def compare_and_set(
        self, key: Key, expected: Value, new: Value, ttl: float | None = None
    ) -> bool:
        record = make_record(encode_value(new), expiry_at(ttl, self._clock()))
        return self._write(self._swap_in, key_bytes(key), plain_copy(expected), record)

    def delete_if(self, key: Key, expected: Value) -> bool:
        return self._remove(self._swap_in, key_bytes(key), plain_copy(expected), None)

    # -- the calls inside a transaction ----------------------------------------------

    def _is_live(self, record: bytes) -> bool:
        expiry = _read_expiry(record)[0]
        return not expiry or expiry > self._clock()

    def _get_in(self, txn: RecordTxn, stored_key: bytes) -> Any:
        record = txn.get(stored_key)
        if record is None:
            return None
        expiry = _read_expiry(record)[0]
        if expiry and expiry <= self._clock():
            return None
        return decode_value(record[HEADER_SIZE:])

    def _delete_in(self, txn: RecordTxn, stored_key: bytes) -> bool:
        record = txn.get(stored_key)
        if record is None:
            return False
        live = self._is_live(record)
        txn.delete(stored_key)
        return live

    def _incr_in(self, txn: RecordTxn, stored_key: bytes, delta: int, seconds: float) -> int:
        """Add to a live int, keeping its expiry, or create the key to live `seconds`
        from now (0.0: forever): the window starts when the key is created, not when the
        call began waiting for the writer lock."""
        record = txn.get(stored_key)
        if record is not None and self._is_live(record):
            current = decode_value(record[HEADER_SIZE:])
            if type(current) is not int:
                raise TypeError(
                    f"incr({key_text(stored_key)!r}): the key holds a {type(current).__name__}, "
                    "not an int; incr counts ints only (incr_float adds to floats)"
                )
            result = current + delta
            header = record[:HEADER_SIZE]
        else:
            result = delta
            header = _pack_header(self._clock() + seconds if seconds else NO_EXPIRY)
        if not INT64_MIN <= result <= INT64_MAX:
            raise OverflowError(
                f"incr({key_text(stored_key)!r}): the result {result} is outside the signed "
                "64-bit range counters use; the value was left unchanged"
            )
        txn.put(stored_key, header + encode_value(result))
        return result

    def _incr_float_in(
        self, txn: RecordTxn, stored_key: bytes, delta: float, seconds: float
    ) -> float:
        record = txn.get(stored_key)
        if record is not None and self._is_live(record):
            current = decode_value(record[HEADER_SIZE:])
            if type(current) is not float and type(current) is not int:
                raise TypeError(
                    f"incr_float({key_text(stored_key)!r}): the key holds a "
                    f"{type(current).__name__}, not an int or a float"
                )
            result = current + delta
            header = record[:HEADER_SIZE]
        else:
            result = delta
            header = _pack_header(self._clock() + seconds if seconds else NO_EXPIRY)
        txn.put(stored_key, header + encode_value(result))
        return result

    def _get_multi_in(self, txn: RecordTxn, wanted: list[tuple[Key, bytes]]) -> dict[Key, Any]:
        found: dict[Key, Any] = {}
        now = self._clock()
        for key, stored_key in wanted:
            record = txn.get(stored_key)
            if record is None:
                continue
            expiry = _read_expiry(record)[0]
            if not expiry or expiry > now:
                found[key] = decode_value(record[HEADER_SIZE:])
        return found

    def _keys_in(self, txn: RecordTxn, prefix: bytes) -> list[str]:
        now = self._clock()
        return [
            key_text(stored_key)
            for stored_key, record in self._scan(txn, prefix)
            if record.startswith(_FOREVER) or _read_expiry(record)[0] > now
        ]

    def _size_in(self, txn: RecordTxn) -> int:
        now = self._clock()
        return sum(
            1
            for _stored_key, record in self._scan(txn, b"")
            if record.startswith(_FOREVER) or _read_expiry(record)[0] > now
        )

    def _clear_in(self, txn: RecordTxn, prefix: bytes) -> int:
        now = self._clock()
        doomed = [(key, _read_expiry(record)[0]) for key, record in self._scan(txn, prefix)]
        for stored_key, _expiry in doomed:
            txn.delete(stored_key)
        return sum(1 for _key, expiry in doomed if not expiry or expiry > now)

    def _add_in(self, txn: RecordTxn, stored_key: bytes, record: bytes) -> bool:
        existing = txn.get(stored_key)
        if existing is not None and self._is_live(existing):
            return False
        txn.put(stored_key, record)
        return True

    def _ttl_in(self, txn: RecordTxn, stored_key: bytes) -> float | None:
        record = txn.get(stored_key)
        if record is None:
            return None
        expiry = _read_expiry(record)[0]
        if not expiry:
            return None
        left = expiry - self._clock()
        return left if left > 0 else None

    def _touch_in(self, txn: RecordTxn, stored_key: bytes, header: bytes) -> bool:
        record = txn.get(stored_key)
        if record is None or not self._is_live(record):
            return False
        txn.put(stored_key, header + record[HEADER_SIZE:])
        return True

    def _swap_in(
        self, txn: RecordTxn, stored_key: bytes, expected: Any, replacement: bytes | None
    ) -> bool:
        """Compare-and-set, or compare-and-delete when `replacement` is None."""
        record = txn.get(stored_key)
        if record is None or not self._is_live(record):
            return False
        if decode_value(record[HEADER_SIZE:]) != expected:
            return False
        if replacement is None:
            txn.delete(stored_key)
        else:
            txn.put(stored_key, replacement)
        return True


def _put_in(txn: RecordTxn, stored_key: bytes, record: bytes) -> None:
    txn.put(stored_key, record)


def _put_all_in(txn: RecordTxn, records: list[tuple[bytes, bytes]]) -> None:
    for stored_key, record in records:
        txn.put(stored_key, record)


# -- fork safety ----------------------------------------------------------------------

_fork_guarded: weakref.WeakSet[RecordStore] = weakref.WeakSet()
_held_across_fork: list[RecordStore] = []


def _before_fork() -> None:
    # No call holds two store locks, so taking them all here cannot deadlock; a call in
    # progress on another thread finishes first.
    for store in list(_fork_guarded):
        store._lock.acquire()
        _held_across_fork.append(store)
        store._release_for_fork()


def _after_fork() -> None:
    while _held_across_fork:
        _held_across_fork.pop()._lock.release()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork, after_in_child=_after_fork)
