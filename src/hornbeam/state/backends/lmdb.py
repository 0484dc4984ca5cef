"""The shared state store of one machine: an LMDB environment on tmpfs.

One environment (a directory holding data.mdb and lock.mdb) is shared by the arbiter and
every worker. Reads are lock-free MVCC snapshots of a memory map, each call one
transaction; writers are serialised by LMDB's robust mutex, so a writer killed in the
middle of a transaction loses that transaction and nothing else.

Environments never cross a fork. LMDB's locks are fcntl() locks, owned by a (process,
file) pair and not inherited by a child, and its reader slots are tagged with the pid of
the process that opened the environment. A child that used an inherited environment
would read with the parent's reader slot and without any lock of its own: when the
parent reuses its slot or exits, the child's snapshot is unprotected. Closing the
inherited environment in the child is no better: it clears the slots tagged with the
parent's pid (breaking the parent's readers) and closing a descriptor of lock.mdb drops
every fcntl lock the child holds on that file. Both LMDB bindings also refuse to open
an environment that is already open in the process, and an inherited one stays open there.
So every `LmdbStore` closes its environment before a fork (see `records`: with its lock
held, no transaction is running) and opens it again on first use afterwards, in whichever
process that is: the parent reopens its own, a child opens a fresh one with its own
locks and slots. The arbiter therefore holds no environment while it forks.

Syncs are off: on tmpfs an fsync only costs time, and every process sees each commit
through the shared page cache anyway (a persistent state_path on a disk is flushed by
close(); a power cut can lose the writes since the last flush, a process crash loses none).
Writes go straight into a writable map (MDB_WRITEMAP): a commit then costs 0.6 µs instead
of 2.4 µs, two pwrite() calls fewer, about 7% of the seed Flask demo's requests. A writable
map has one hazard, which `MapFile` removes: a write to a page of data.mdb that the
filesystem has not allocated yet allocates it, and on a full tmpfs that write is a SIGBUS
(a dead worker), not an error. Where the file cannot be allocated at all, the store is
opened without writemap, in every process of the server alike.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Generic, cast

from hornbeam.logs import error_log
from hornbeam.state.api import SharedBackend, StateError, StateFullError, StoreLimits
from hornbeam.state.backends.lmdb_binding import DEFAULT, Binding, Environment, Transaction
from hornbeam.state.codec import RECORD_HEADER
from hornbeam.state.records import Body, Clock, P, RecordStore, RecordTxn, T

RUN_DIR_PARENT = "/dev/shm"
RUN_DIR_PREFIX = "hornbeam-state-"
SWEEP_BATCH = 50_000  # records one sweep looks at, so a sweep costs the arbiter milliseconds
DELETE_CHUNK = 1_000  # expired keys deleted per write transaction, to keep writers waiting briefly
# Deleting needs fresh pages too (LMDB copies on write), so a store full at max_size could
# not even delete. Calls that only remove data may grow the map this much past max_size.
REMOVAL_HEADROOM = 8  # max_size // 8

_read_expiry = RECORD_HEADER.unpack_from


class MapAllocationError(StateFullError):
    """The filesystem could not allocate the store's file over its whole map."""


class MapFile:
    """The data file of a store opened with writemap, kept allocated under every map of it.

    Before any process maps n bytes writable, the file is allocated (posix_fallocate) over
    those n bytes, so no write through the map can meet an unallocated page. LMDB truncates
    the file to a process's map size whenever that process maps it (open, set_mapsize), so
    a map size must never be below the file's size, or the pages another process writes
    would be cut off. Hence every change of a map size, in any process, happens inside
    `resizing()` (an flock of mapsize.lock) and uses at least the file's size then: `resize`
    for a store already open, the opening itself for one that is not.
    """

    def __init__(self, directory: str) -> None:
        self._directory = directory
        self._data_path = os.path.join(directory, "data.mdb")
        self._lock_path = os.path.join(directory, "mapsize.lock")

    @contextmanager
    def resizing(self) -> Iterator[int]:
        """Hold the map-size lock; give the data file's size (0 before the store exists)."""
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released by the close, or by the holder's death
            try:
                size = os.stat(self._data_path).st_size
            except FileNotFoundError:
                size = 0
            yield size
        finally:
            os.close(fd)

    def allocate(self, size: int) -> None:
        """Allocate the first `size` bytes of the data file (call inside `resizing()`)."""
        try:
            fd = os.open(self._data_path, os.O_RDWR | os.O_CLOEXEC)
            try:
                # Already allocated (the usual case: a reopen, or adopting another process's
                # growth) unless there is a hole before `size`; the end of the file counts as
                # one. Asking is cheap, allocating again takes a millisecond per 32 MiB.
                if os.lseek(fd, 0, os.SEEK_HOLE) < size:
                    os.posix_fallocate(fd, 0, size)
            finally:
                os.close(fd)
        except OSError as exc:
            raise MapAllocationError(
                f"the state store in {self._directory} cannot take {size} bytes on its "
                f"filesystem: {exc.strerror}. Free space there, delete keys, or give shorter ttls"
            ) from exc

    def resize(self, env: Environment, wanted: int) -> None:
        """Map at least `wanted` bytes of `env`, and at least the whole file (another process
        may have grown it further), allocated first."""
        with self.resizing() as file_size:
            size = max(wanted, file_size)
            self.allocate(size)
            env.set_mapsize(size)


class _Removal(Generic[P, T]):
    """A transaction body that only removes data (so it may use the headroom)."""

    def __init__(self, body: Body[P, T]) -> None:
        self._body = body

    def __call__(self, txn: RecordTxn, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._body(txn, *args, **kwargs)


class LmdbStore(RecordStore):
    """A `StateStore` on the LMDB environment in directory `path`, for this process.

    The environment is opened on first use (or by `open()`), closed before a fork and
    opened again by whichever process uses the handle next. `binding` is the LMDB binding
    it calls (see `lmdb_binding`); every handle on one store must use the same one, and the
    same `writemap` (when the file cannot be allocated, opening with it raises
    `MapAllocationError`).
    """

    def __init__(
        self,
        path: str,
        *,
        limits: StoreLimits | None = None,
        clock: Clock = time.time,
        sweep_batch: int = SWEEP_BATCH,
        binding: Binding = DEFAULT,
        writemap: bool = True,
    ) -> None:
        super().__init__(clock)
        self.path = path
        self._limits = limits or StoreLimits()
        self._sweep_batch = sweep_batch
        self._sweep_resume: bytes | None = None
        self._binding = binding
        self._map_file = MapFile(path) if writemap else None
        self._env: Environment | None = None

    def open(self) -> LmdbStore:
        """Open the environment now, so that a bad path fails here rather than later."""
        with self._lock:
            self._environment()
        return self

    def _environment(self) -> Environment:
        """The environment of this process, opened if needed (call with the lock held)."""
        env = self._env
        if env is None:
            os.makedirs(self.path, mode=0o700, exist_ok=True)
            try:
                if self._map_file is None:
                    env = self._binding.open(self.path, self._limits.map_size, False)
                else:
                    env = self._open_writable(self._map_file)
            except self._binding.error as exc:
                raise StateError(
                    f"cannot open the state store in {self.path}: {exc}; check that the "
                    "directory is writable by this user and not used by another server"
                ) from exc
            self._env = env
        return env

    def _open_writable(self, map_file: MapFile) -> Environment:
        with map_file.resizing() as file_size:
            size = max(self._limits.map_size, file_size)
            if file_size:
                map_file.allocate(size)
            env = self._binding.open(self.path, size, True)
            try:
                # A new store: LMDB has just created the file, as a sparse one.
                map_file.allocate(env.info()["map_size"])
            except BaseException:
                env.close()
                raise
            return env

    def _read(self, body: Body[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        with self._lock:
            env = self._env
            if env is None:
                env = self._environment()
            try:
                txn = env.begin()
            except self._binding.map_resized:
                txn = self._adopt_map_size(env).begin()
            try:
                return body(txn, *args, **kwargs)
            finally:
                txn.abort()

    def _write(self, body: Body[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        with self._lock:
            env = self._env
            if env is None:
                env = self._environment()
            # Retried only after the map grew, which `_grow` stops at a ceiling.
            while True:
                try:
                    txn = env.begin(write=True)
                except self._binding.map_resized:
                    txn = self._adopt_map_size(env).begin(write=True)
                try:
                    result = body(txn, *args, **kwargs)
                    txn.commit()
                    return result
                except self._binding.map_full:
                    txn.abort()
                    self._grow(env, isinstance(body, _Removal))
                except self._binding.disk_full as exc:
                    txn.abort()
                    raise StateFullError(
                        f"the filesystem holding the state store ({self.path}) is full: {exc}. "
                        "Free space there, delete keys, or give shorter ttls"
                    ) from exc
                except BaseException:
                    txn.abort()
                    raise

    def _remove(self, body: Body[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return self._write(_Removal(body), *args, **kwargs)

    def _adopt_map_size(self, env: Environment) -> Environment:
        """Take the map size another process grew the store to (no transaction may be open)."""
        if self._map_file is None:
            env.set_mapsize(0)
        else:
            self._map_file.resize(env, 0)
        return env

    def _grow(self, env: Environment, removing: bool) -> None:
        """Double the map, up to max_size (a little more for a call that only removes)."""
        max_size = self._limits.max_size
        ceiling = max_size + max_size // REMOVAL_HEADROOM if removing else max_size
        size = env.info()["map_size"]
        if size >= ceiling:
            raise StateFullError(
                f"the state store in {self.path} is full: it reached its max_size of "
                f"{max_size} bytes and the call changed nothing. Delete keys, give shorter "
                "ttls, or raise max_size"
            )
        wanted = min(size * 2, ceiling)
        if self._map_file is None:
            env.set_mapsize(wanted)
        else:
            self._map_file.resize(env, wanted)
        if env.info()["map_size"] <= size:
            raise StateError(f"the state store in {self.path} could not grow past {size} bytes")

    def _scan(self, txn: RecordTxn, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        cursor = cast(Transaction, txn).cursor()
        found = cursor.set_range(prefix) if prefix else cursor.first()
        if not found:
            return
        for key, record in cursor.iternext():
            if not key.startswith(prefix):
                return
            yield key, record

    def _release_for_fork(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None

    def reader_check(self) -> int:
        """Free the reader slots of dead processes; return how many were freed."""
        with self._lock:
            return self._environment().reader_check()

    def sweep_expired(self) -> int:
        """Delete expired keys among the next `sweep_batch` records (resuming where the
        previous sweep stopped); return how many were deleted."""
        expired = self._read(self._find_expired_in)
        removed = 0
        for start in range(0, len(expired), DELETE_CHUNK):
            removed += self._remove(self._delete_expired_in, expired[start : start + DELETE_CHUNK])
        return removed

    def _find_expired_in(self, txn: RecordTxn) -> list[bytes]:
        cursor = cast(Transaction, txn).cursor()
        resume, self._sweep_resume = self._sweep_resume, None
        found = cursor.set_range(resume) if resume else cursor.first()
        expired: list[bytes] = []
        if not found:
            return expired
        now = self._clock()
        for seen, (key, record) in enumerate(cursor.iternext()):
            if seen == self._sweep_batch:
                self._sweep_resume = key
                break
            if 0 < _read_expiry(record)[0] <= now:
                expired.append(key)
        return expired

    def _delete_expired_in(self, txn: RecordTxn, candidates: list[bytes]) -> int:
        """Delete the candidates still expired (one may have been set again meanwhile)."""
        now = self._clock()
        removed = 0
        for stored_key in candidates:
            record = txn.get(stored_key)
            if record is not None and 0 < _read_expiry(record)[0] <= now:
                txn.delete(stored_key)
                removed += 1
        return removed

    def close(self) -> None:
        with self._lock:
            if self._env is not None:
                self._env.sync(True)  # matters only for a persistent store on a disk
                self._env.close()
                self._env = None


def make_run_dir() -> str:
    """A new private (0700) directory for a store: on tmpfs when the machine has one."""
    parent = RUN_DIR_PARENT if os.path.isdir(RUN_DIR_PARENT) else tempfile.gettempdir()
    return tempfile.mkdtemp(prefix=RUN_DIR_PREFIX, dir=parent)


class LmdbSharedState(SharedBackend):
    """The LMDB store of one server: its directory, and the arbiter's handle on it.

    Without `state_path` the store lives in a fresh private directory on tmpfs that
    `close()` deletes; with it, the data stays in that directory for the next start.
    `writemap` says whether every process's handle writes through a writable map.
    """

    def __init__(self, state_path: str | None, limits: StoreLimits) -> None:
        self.persistent = state_path is not None
        if state_path is None:
            self.location = make_run_dir()
        else:
            self.location = os.path.abspath(state_path)
            try:
                os.makedirs(self.location, mode=0o700, exist_ok=True)
            except OSError as exc:
                raise StateError(
                    f"cannot create the state directory {self.location}: {exc.strerror}; "
                    "choose a state_path this user can write to"
                ) from exc
        self._limits = limits
        try:
            self.writemap, self._arbiter_store = self._open_first(self.location, limits)
        except BaseException:
            self._remove_run_dir()
            raise

    @staticmethod
    def _open_first(location: str, limits: StoreLimits) -> tuple[bool, LmdbStore]:
        """The arbiter's store, with writemap where its file can be allocated."""
        try:
            return True, LmdbStore(location, limits=limits).open()
        except MapAllocationError as exc:
            error_log.warning("%s; the store goes on without a writable map, a little slower", exc)
            return False, LmdbStore(location, limits=limits, writemap=False).open()

    @property
    def arbiter_store(self) -> LmdbStore:
        return self._arbiter_store

    def open_store(self) -> LmdbStore:
        return LmdbStore(self.location, limits=self._limits, writemap=self.writemap).open()

    def check_readers(self) -> int:
        return self._arbiter_store.reader_check()

    def close(self) -> None:
        self._arbiter_store.close()
        self._remove_run_dir()

    def _remove_run_dir(self) -> None:
        if not self.persistent:
            shutil.rmtree(self.location, ignore_errors=True)
