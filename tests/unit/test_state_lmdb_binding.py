"""The LMDB bindings: both present the calls the store makes, with the same results, and
hornbeam's own (which holds the GIL) refuses every use that could touch freed memory."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

from hornbeam.state.backends.lmdb_binding import AVAILABLE, GIL_HOLDING, Binding, Environment

MIB = 1 << 20


@pytest.fixture(params=AVAILABLE, ids=lambda binding: binding.name)
def binding(request: pytest.FixtureRequest) -> Binding:
    chosen: Binding = request.param
    return chosen


@pytest.fixture(params=[False, True], ids=["read-only-map", "writemap"])
def writemap(request: pytest.FixtureRequest) -> bool:
    chosen: bool = request.param
    return chosen


def _open(
    binding: Binding, directory: Path, map_size: int = MIB, writemap: bool = False
) -> Environment:
    directory.mkdir(exist_ok=True)
    return binding.open(str(directory), map_size, writemap)


@pytest.fixture
def env(binding: Binding, writemap: bool, tmp_path: Path) -> Iterator[Environment]:
    environment = _open(binding, tmp_path / "env", writemap=writemap)
    yield environment
    environment.close()


@pytest.fixture
def own_binding() -> Binding:
    """hornbeam's own binding (the test is skipped where it was not built)."""
    if GIL_HOLDING is None:
        pytest.skip("hornbeam.state._lmdb was not built (no LMDB headers)")
    return GIL_HOLDING


@pytest.fixture
def own_env(own_binding: Binding, tmp_path: Path) -> Iterator[Environment]:
    environment = _open(own_binding, tmp_path / "env")
    yield environment
    environment.close()


def _fill(env: Environment, items: dict[bytes, bytes]) -> None:
    txn = env.begin(write=True)
    for key, value in items.items():
        txn.put(key, value)
    txn.commit()


def test_the_gil_holding_binding_is_built_where_lmdb_headers_are() -> None:
    include = Path(sysconfig.get_config_var("INCLUDEDIR") or "/usr/include")
    headers = any(p.exists() for p in (include / "lmdb.h", Path("/usr/include/lmdb.h")))
    if not headers or os.environ.get("HORNBEAM_COMPILE") == "0":
        pytest.skip("no LMDB headers here: py-lmdb is the only binding")
    assert GIL_HOLDING is not None


def test_get_put_delete_and_commit(env: Environment) -> None:
    _fill(env, {b"a": b"1", b"b": b"2"})
    txn = env.begin(write=True)
    assert txn.get(b"a") == b"1"
    assert txn.delete(b"a") is True
    assert txn.delete(b"missing") is False
    assert txn.get(b"a") is None
    txn.commit()
    read = env.begin()
    assert (read.get(b"a"), read.get(b"b")) == (None, b"2")
    read.abort()


def test_an_aborted_write_keeps_nothing_and_abort_after_commit_is_harmless(
    env: Environment,
) -> None:
    txn = env.begin(write=True)
    txn.put(b"k", b"v")
    txn.abort()
    txn.abort()
    read = env.begin()
    assert read.get(b"k") is None
    read.commit()
    read.abort()


def test_a_reused_read_transaction_sees_later_commits(env: Environment) -> None:
    for round_ in range(3):
        _fill(env, {b"n": str(round_).encode()})
        read = env.begin()
        assert read.get(b"n") == str(round_).encode()
        read.abort()


def test_a_cursor_yields_its_current_item_then_the_rest(env: Environment) -> None:
    _fill(env, {b"a1": b"x", b"b1": b"y", b"b2": b"z", b"c1": b"w"})
    txn = env.begin()
    cursor = txn.cursor()
    assert cursor.set_range(b"b") is True
    assert list(cursor.iternext()) == [(b"b1", b"y"), (b"b2", b"z"), (b"c1", b"w")]
    assert cursor.first() is True
    assert next(iter(cursor.iternext())) == (b"a1", b"x")
    assert txn.cursor().set_range(b"d") is False
    txn.abort()


def test_a_cursor_of_an_empty_store_finds_nothing(env: Environment) -> None:
    txn = env.begin()
    assert txn.cursor().first() is False
    txn.abort()


def test_a_full_map_raises_map_full_and_a_bigger_map_takes_the_write(
    binding: Binding, env: Environment
) -> None:
    value = b"\0" * 4096
    txn = env.begin(write=True)
    with pytest.raises(binding.map_full):
        for index in range(1000):
            txn.put(b"%d" % index, value)
    txn.abort()
    env.set_mapsize(16 * MIB)
    _fill(env, {b"%d" % index: value for index in range(1000)})
    assert env.info()["map_size"] == 16 * MIB


def test_a_map_grown_by_another_process_is_adopted(
    binding: Binding, writemap: bool, tmp_path: Path
) -> None:
    env = _open(binding, tmp_path / "env", writemap=writemap)
    _fill(env, {b"before": b"1"})
    grower = (
        "import sys\n"
        "from hornbeam.state.backends.lmdb_binding import AVAILABLE\n"
        "binding = next(b for b in AVAILABLE if b.name == sys.argv[2])\n"
        "env = binding.open(sys.argv[1], 1 << 20, sys.argv[3] == 'writemap')\n"
        "env.set_mapsize(8 << 20)\n"
        "txn = env.begin(write=True)\n"
        "for index in range(1000):\n"
        "    txn.put(b'%d' % index, bytes(4096))\n"
        "txn.commit()\n"
        "env.close()\n"
    )
    subprocess.run(
        [
            sys.executable,
            "-c",
            grower,
            str(tmp_path / "env"),
            binding.name,
            "writemap" if writemap else "read-only",
        ],
        check=True,
        timeout=60,
    )
    with pytest.raises(binding.map_resized):
        env.begin()
    env.set_mapsize(0)
    txn = env.begin()
    assert txn.get(b"999") == bytes(4096)
    txn.abort()
    env.close()


def test_a_missing_directory_is_an_error_that_names_it(binding: Binding, tmp_path: Path) -> None:
    with pytest.raises(binding.error, match="nowhere"):
        binding.open(str(tmp_path / "nowhere"), MIB, False)


# ---- hornbeam's binding: every misuse is an error, never a crash -----------------------------


def test_one_transaction_at_a_time(own_env: Environment) -> None:
    txn = own_env.begin(write=True)
    with pytest.raises(Exception, match="a transaction is open"):
        own_env.begin()
    with pytest.raises(Exception, match="a transaction is open"):
        own_env.set_mapsize(2 * MIB)
    txn.abort()
    own_env.begin().abort()


def test_an_ended_transaction_and_its_cursors_refuse_calls(own_env: Environment) -> None:
    _fill(own_env, {b"k": b"v"})
    for write in (False, True):
        txn = own_env.begin(write=write)
        cursor = txn.cursor()
        assert cursor.first()
        txn.commit()
        with pytest.raises(Exception, match="the transaction has ended"):
            txn.get(b"k")
        with pytest.raises(Exception, match="the transaction has ended"):
            txn.put(b"k", b"v")
        with pytest.raises(Exception, match="the transaction has ended"):
            txn.commit()
        with pytest.raises(Exception, match="transaction has ended"):
            list(cursor.iternext())
        del cursor  # freed after its transaction ended: closed only if LMDB has not


def test_a_cursor_of_a_reset_read_transaction_stays_dead_when_it_is_reused(
    own_env: Environment,
) -> None:
    _fill(own_env, {b"k": b"v"})
    first = own_env.begin()
    stale = first.cursor()
    first.abort()
    second = own_env.begin()  # renews the same LMDB read transaction
    with pytest.raises(Exception, match="transaction has ended"):
        stale.first()
    assert second.get(b"k") == b"v"
    second.abort()


def test_closing_the_environment_ends_its_transaction(own_binding: Binding, tmp_path: Path) -> None:
    env = _open(own_binding, tmp_path / "env")
    txn = env.begin(write=True)
    txn.put(b"k", b"v")
    env.close()
    env.close()
    with pytest.raises(Exception, match="the transaction has ended"):
        txn.get(b"k")
    with pytest.raises(Exception, match="the environment is closed"):
        env.begin()
    reopened = _open(own_binding, tmp_path / "env")
    lost = reopened.begin()
    assert lost.get(b"k") is None  # the open write transaction was aborted, not committed
    lost.abort()
    reopened.close()


def test_an_environment_opens_once_per_process(
    own_binding: Binding, own_env: Environment, tmp_path: Path
) -> None:
    with pytest.raises(own_binding.error, match="already open in this process"):
        own_binding.open(str(tmp_path / "env"), MIB, False)
    with pytest.raises(own_binding.error, match="already open in this process"):
        own_binding.open(
            str(tmp_path / "." / "env"), MIB, False
        )  # the same directory, spelled apart


def test_keys_and_values_must_be_bytes(own_env: Environment) -> None:
    txn = own_env.begin(write=True)
    with pytest.raises(TypeError):
        txn.put("text", b"v")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        txn.get(None)  # type: ignore[arg-type]
    txn.abort()


def test_bad_sizes_are_refused(own_binding: Binding, tmp_path: Path) -> None:
    (tmp_path / "env").mkdir()
    with pytest.raises(ValueError, match="must be positive"):
        own_binding.open(str(tmp_path / "env"), 0, False)
