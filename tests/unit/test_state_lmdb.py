"""The LMDB store and its runtime: crashes inside transactions, growth, limits, files."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import hornbeam.state.backends.lmdb as lmdb_backend
from hornbeam.errors import ConfigError
from hornbeam.state import (
    LmdbStore,
    MemoryStore,
    StateFullError,
    StateRuntime,
    StoreLimits,
    default_store,
)
from hornbeam.state.backends import open_shared_backend, register_shared_backend
from hornbeam.state.records import RecordTxn

MIB = 1 << 20


@pytest.fixture
def runtime() -> Iterator[StateRuntime]:
    shared = StateRuntime.create("local", None)
    yield shared
    shared.close()


def _hold_in_transaction(store: LmdbStore, write: bool, ready_fd: int) -> None:
    """In a forked child: open a transaction, say so, and wait to be killed inside it."""

    def body(txn: RecordTxn) -> None:
        if write:
            txn.put(b"uncommitted", b"\0" * 8 + b"\x01")
        os.write(ready_fd, b"in")
        time.sleep(60)

    try:
        (store._write if write else store._read)(body)
    finally:
        os._exit(1)


@pytest.mark.parametrize("write", [True, False], ids=["writer", "reader"])
def test_a_process_killed_inside_a_transaction_blocks_nobody(
    runtime: StateRuntime, write: bool
) -> None:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        runtime.worker_attach()
        default_store().get("anything")  # takes a reader slot, as any worker does
        _hold_in_transaction(default_store(), write, write_fd)  # type: ignore[arg-type]
    os.close(write_fd)
    try:
        assert os.read(read_fd, 2) == b"in"
        # The arbiter has its store open (as after any sweep): were no process left with
        # it open, the next one to open it would rightly reset the lock file instead.
        assert default_store().get("uncommitted") is None
    finally:
        os.close(read_fd)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert runtime.worker_exited() == 1  # its reader slot (writers read too) is freed

    started = time.monotonic()
    default_store().set("after", 1)
    assert time.monotonic() - started < 1.0
    assert default_store().get("uncommitted") is None
    assert runtime.worker_exited() == 0


def test_the_map_grows_as_data_arrives(tmp_path: Path) -> None:
    store = LmdbStore(str(tmp_path), limits=StoreLimits(map_size=MIB, max_size=64 * MIB))
    store.set_multi({f"k:{i}": b"x" * 1024 for i in range(8 * 1024)})
    assert store.size() == 8 * 1024
    assert os.path.getsize(tmp_path / "data.mdb") > 8 * MIB
    store.close()


def test_a_full_store_says_so_changes_nothing_and_can_still_be_emptied(tmp_path: Path) -> None:
    store = LmdbStore(str(tmp_path), limits=StoreLimits(map_size=MIB, max_size=2 * MIB))
    written = 0
    with pytest.raises(StateFullError, match="max_size"):
        for written in range(10_000):
            store.set(f"k:{written}", b"x" * 1024)
    assert store.get(f"k:{written}") is None
    assert store.size() == written
    with pytest.raises(StateFullError):
        store.set_multi({f"big:{i}": b"x" * 1024 for i in range(1_000)})
    assert store.keys("big:") == []
    for i in range(0, written, 2):
        assert store.delete(f"k:{i}")
    store.set("room-again", b"x" * 1024)
    assert store.clear() == written - len(range(0, written, 2)) + 1
    store.close()


def test_sweep_looks_at_a_bounded_batch_and_resumes(tmp_path: Path) -> None:
    now = [time.time()]
    store = LmdbStore(str(tmp_path), clock=lambda: now[0], sweep_batch=10)
    store.set_multi({f"t:{i:02}": i for i in range(35)}, ttl=1)
    store.set("z:live", 1)
    now[0] += 2
    assert [store.sweep_expired() for _ in range(5)] == [10, 10, 10, 5, 0]
    assert store.keys() == ["z:live"]
    store.close()


def test_run_dir_is_private_and_removed_on_close(runtime: StateRuntime) -> None:
    assert stat.S_IMODE(os.stat(runtime.run_dir).st_mode) == 0o700
    assert runtime.run_dir.startswith("/dev/shm/" if os.path.isdir("/dev/shm") else "/")
    for name in ("data.mdb", "lock.mdb"):
        assert stat.S_IMODE(os.stat(os.path.join(runtime.run_dir, name)).st_mode) == 0o600
    runtime.close()
    assert not os.path.exists(runtime.run_dir)
    runtime.close()


def test_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        shared = StateRuntime.create("local", str(tmp_path / "state"))
    finally:
        os.umask(previous)
    try:
        assert stat.S_IMODE(os.stat(shared.run_dir).st_mode) == 0o700
        for name in ("data.mdb", "lock.mdb"):
            assert stat.S_IMODE(os.stat(os.path.join(shared.run_dir, name)).st_mode) == 0o600
    finally:
        shared.close()


def test_without_dev_shm_the_run_dir_goes_to_the_temp_dir(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lmdb_backend, "RUN_DIR_PARENT", "/nonexistent/shm")
    shared = StateRuntime.create("local", None)
    try:
        assert os.path.dirname(shared.run_dir) == tempfile.gettempdir()
    finally:
        shared.close()
    assert not os.path.exists(shared.run_dir)


def test_a_persistent_state_path_keeps_its_data_for_the_next_start(tmp_path: Path) -> None:
    path = str(tmp_path / "kept")
    first = StateRuntime.create("local", path)
    default_store().set("visits", 41)
    default_store().set("session", "s", ttl=3600)
    first.close()
    assert os.path.exists(os.path.join(path, "data.mdb"))
    second = StateRuntime.create("local", path)
    try:
        assert default_store().incr("visits") == 42
        ttl = default_store().ttl("session")
        assert ttl is not None
        assert 3500 < ttl <= 3600
    finally:
        second.close()


def test_close_in_a_forked_child_keeps_the_run_dir(runtime: StateRuntime) -> None:
    pid = os.fork()
    if pid == 0:
        try:
            runtime.close()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert os.path.isdir(runtime.run_dir)
    default_store().set("still", "here")


def test_the_runtime_installs_and_removes_the_default_handle() -> None:
    shared = StateRuntime.create("local", None)
    assert isinstance(default_store(), LmdbStore)
    shared.close()
    assert isinstance(default_store(), MemoryStore)


@pytest.mark.parametrize("spec", ["redis://localhost:6379/0", "rediss://h/1", "unix:///tmp/r"])
def test_redis_is_not_available_yet(spec: str) -> None:
    with pytest.raises(ConfigError, match="state_backend: redis is not available yet"):
        StateRuntime.create(spec, None)


def test_an_unknown_backend_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'memcached'"):
        StateRuntime.create("memcached", None)


def test_a_registered_backend_is_found_by_its_scheme(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import hornbeam.state.backends as registry

    monkeypatch.setattr(registry, "_factories", dict(registry._factories))
    opened: list[str] = []

    def open_test(spec: str, state_path: str | None, limits: StoreLimits) -> object:
        opened.append(spec)
        return lmdb_backend.LmdbSharedState(str(tmp_path), limits)

    register_shared_backend("Test", open_test)  # type: ignore[arg-type]
    shared = open_shared_backend("test://anything", None)
    shared.close()
    assert opened == ["test://anything"]


def _allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


def test_the_data_file_is_allocated_over_the_whole_map_as_it_grows(tmp_path: Path) -> None:
    store = LmdbStore(str(tmp_path), limits=StoreLimits(map_size=MIB, max_size=64 * MIB))
    store.set("first", 1)
    assert _allocated(tmp_path / "data.mdb") >= os.path.getsize(tmp_path / "data.mdb") == MIB
    store.set_multi({f"k:{i}": b"x" * 1024 for i in range(3 * 1024)})
    grown = os.path.getsize(tmp_path / "data.mdb")
    assert grown >= 4 * MIB
    assert _allocated(tmp_path / "data.mdb") >= grown
    store.close()


def test_a_process_opening_with_a_smaller_map_never_shrinks_the_file(tmp_path: Path) -> None:
    limits = StoreLimits(map_size=MIB, max_size=64 * MIB)
    store = LmdbStore(str(tmp_path), limits=limits)
    store.set_multi({f"k:{i}": b"x" * 1024 for i in range(3 * 1024)})
    grown = os.path.getsize(tmp_path / "data.mdb")
    pid = os.fork()
    if pid == 0:  # a worker starting now asks for the first, smaller map
        try:
            late = LmdbStore(str(tmp_path), limits=limits)
            os._exit(0 if late.get("k:0") == b"x" * 1024 else 1)
        finally:
            os._exit(2)
    assert os.waitpid(pid, 0)[1] == 0
    assert os.path.getsize(tmp_path / "data.mdb") == grown
    store.set_multi({f"more:{i}": b"y" * 1024 for i in range(2 * 1024)})  # into the top pages
    assert store.get("more:2047") == b"y" * 1024
    store.close()


_FILL_A_SMALL_TMPFS = """
import os
import sys
from hornbeam.state import StateFullError, StoreLimits
from hornbeam.state.backends.lmdb import LmdbSharedState

shared = LmdbSharedState(sys.argv[1], StoreLimits(map_size=int(sys.argv[2]), max_size=64 << 20))
store = shared.arbiter_store
if sys.argv[3] == "worker" and (pid := os.fork()):
    os._exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
if sys.argv[3] == "worker":
    store = shared.open_store()
written = 0
try:
    for written in range(100_000):
        store.set(f"k:{written}", b"x" * 1024)
except StateFullError as exc:
    assert store.get(f"k:{written - 1}") == b"x" * 1024 and store.get(f"k:{written}") is None
    print(shared.writemap, written, exc)
"""


def _in_a_small_tmpfs(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the fill script with its store on a fresh 4 MiB tmpfs (private mount namespace)."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    shell = 'mount -t tmpfs -o size=4m tmpfs "$1" && shift && exec "$@"'
    command = ["unshare", "-rm", "sh", "-c", shell, "sh", str(mount_point)]
    probe = subprocess.run([*command, "true"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"no private tmpfs mounts here: {probe.stderr.decode().strip()}")
    script = [sys.executable, "-c", _FILL_A_SMALL_TMPFS, str(mount_point / "state"), *args]
    return subprocess.run([*command, *script], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("process", ["arbiter", "worker"])
def test_a_full_tmpfs_is_an_error_for_a_writable_map_never_a_crash(
    tmp_path: Path, process: str
) -> None:
    filled = _in_a_small_tmpfs(tmp_path, str(MIB), process)
    assert filled.returncode == 0, filled.stderr  # a SIGBUS would be -7
    writemap, written, message = filled.stdout.split(" ", 2)
    assert writemap == "True"
    assert 1000 < int(written) < 4000
    assert "cannot take 4194304 bytes on its filesystem: No space left on device" in message


def test_a_first_map_the_filesystem_cannot_hold_means_no_writemap_for_anyone(
    tmp_path: Path,
) -> None:
    filled = _in_a_small_tmpfs(tmp_path, str(8 * MIB), "worker")
    assert filled.returncode == 0, filled.stderr
    writemap, written, message = filled.stdout.split(" ", 2)
    assert writemap == "False"
    assert "without a writable map" in filled.stderr
    assert 1000 < int(written) < 4000
    assert "is full" in message
