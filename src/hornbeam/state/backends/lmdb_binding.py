"""Which LMDB binding the state store calls, and the one interface both bindings present.

``hornbeam.state._lmdb`` is hornbeam's own binding: a small C module, built when LMDB's
headers are present (``apt-get install liblmdb-dev``), that holds the GIL through each LMDB
call. py-lmdb releases the GIL around every call, a microsecond or two each; in a worker,
each release hands the GIL to the event loop thread and the app thread waits to get it
back. The seed Flask demo (three counters per request, one worker) served 9,200-9,700
req/s with py-lmdb and 10,400-11,200 with this module (alternating runs). Where the C
module was not built, py-lmdb is used: the same LMDB files and the same semantics, only
slower under threads.

Both expose the same calls: ``begin(write=)``, ``get/put/delete/commit/abort/cursor`` on a
transaction, ``first/set_range/iternext`` on a cursor, ``set_mapsize/info/reader_check/
sync/close`` on the environment, and the errors ``Error`` (the base), ``MapFullError``,
``MapResizedError`` and ``DiskError``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import lmdb

from hornbeam.state.records import RecordTxn

MAX_READERS = 1024  # reader slots: one per process at a time, workers + hook workers + children


class Cursor(Protocol):
    def first(self) -> bool: ...

    def set_range(self, key: bytes, /) -> bool: ...

    def iternext(self) -> Iterator[tuple[bytes, bytes]]: ...


class Transaction(RecordTxn, Protocol):
    def commit(self) -> None: ...

    def abort(self) -> None: ...

    def cursor(self) -> Cursor: ...


class Environment(Protocol):
    def begin(self, *, write: bool = False) -> Transaction: ...

    def set_mapsize(self, size: int, /) -> None: ...

    def info(self) -> dict[str, int]: ...

    def reader_check(self) -> int: ...

    def sync(self, force: bool = False, /) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Binding:
    name: str
    # open(directory, map_size, writemap): the environment in an existing directory, files
    # mode 0600, without syncs, its read transactions not tied to a thread; with writemap,
    # writes go straight into a writable map (see LmdbStore for when that is safe)
    open: Callable[[str, int, bool], Environment]
    error: type[Exception]
    map_full: type[Exception]
    map_resized: type[Exception]
    disk_full: type[Exception]


def _open_with_py_lmdb(path: str, map_size: int, writemap: bool) -> Environment:
    env = lmdb.open(
        path,
        map_size=map_size,
        subdir=True,
        create=False,
        mode=0o600,
        sync=False,
        metasync=False,
        writemap=writemap,
        max_readers=MAX_READERS,
        max_spare_txns=1,
    )
    return env  # type: ignore[return-value]  # its stubs are generic over buffer types


PY_LMDB = Binding(
    "py-lmdb",
    _open_with_py_lmdb,
    lmdb.Error,
    lmdb.MapFullError,
    lmdb.MapResizedError,
    lmdb.DiskError,
)


def _gil_holding() -> Binding | None:
    try:
        from hornbeam.state import _lmdb
    except ImportError:  # built without LMDB's headers
        return None

    def open_holding_gil(path: str, map_size: int, writemap: bool) -> Environment:
        return _lmdb.open(
            path, map_size=map_size, max_readers=MAX_READERS, mode=0o600, writemap=writemap
        )

    return Binding(
        "hornbeam",
        open_holding_gil,
        _lmdb.Error,
        _lmdb.MapFullError,
        _lmdb.MapResizedError,
        _lmdb.DiskError,
    )


GIL_HOLDING = _gil_holding()
# What every store uses unless told otherwise.
DEFAULT = GIL_HOLDING or PY_LMDB
AVAILABLE = [binding for binding in (GIL_HOLDING, PY_LMDB) if binding is not None]
