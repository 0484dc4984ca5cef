"""The module-level state calls: `hornbeam_erlang` and `hornbeam.state` on the default handle."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest

import hornbeam.state
import hornbeam_erlang
from hornbeam.state import MemoryStore, StateStore, default_store
from hornbeam.state.facade import install_default, uninstall_default

STATE_CALLS = [
    "state_get",
    "state_set",
    "state_delete",
    "state_incr",
    "state_decr",
    "state_get_multi",
    "state_set_multi",
    "state_keys",
    "state_clear",
    "state_size",
    "state_incr_float",
    "state_add",
    "state_ttl",
    "state_touch",
    "state_compare_and_set",
    "state_delete_if",
]
ALIASES = {
    "get": "state_get",
    "set": "state_set",
    "delete": "state_delete",
    "incr": "state_incr",
    "decr": "state_decr",
}


@pytest.fixture
def fresh_default() -> Iterator[StateStore]:
    """A private default handle for the test, removed afterwards."""
    store = MemoryStore()
    install_default(store, reopen=None)
    yield store
    uninstall_default(store)


def test_both_modules_export_the_same_calls_and_aliases() -> None:
    for name in STATE_CALLS:
        assert getattr(hornbeam_erlang, name) is getattr(hornbeam.state, name)
    for alias, name in ALIASES.items():
        assert getattr(hornbeam_erlang, alias) is getattr(hornbeam.state, name)
        assert getattr(hornbeam.state, alias) is getattr(hornbeam.state, name)


def test_outside_a_server_the_default_is_one_in_process_store() -> None:
    assert isinstance(default_store(), MemoryStore)
    assert default_store() is default_store()


def test_every_call_acts_on_the_default_handle(fresh_default: StateStore) -> None:
    he = hornbeam_erlang
    he.set("a", 1)
    assert fresh_default.get("a") == 1
    assert he.incr("n") == 1
    assert he.decr("n", 3) == -2
    assert he.state_incr_float("f", 0.5) == 0.5
    he.state_set_multi({"m:1": 1, "m:2": 2}, ttl=60)
    assert he.state_get_multi(["m:1", "m:2", "x"]) == {"m:1": 1, "m:2": 2}
    assert sorted(he.state_keys("m:")) == ["m:1", "m:2"]
    assert he.state_ttl("m:1") == pytest.approx(60, abs=1)
    assert he.state_touch("m:1", None) is True
    assert he.state_add("lock", "me") is True
    assert he.state_compare_and_set("lock", "me", "you") is True
    assert he.state_delete_if("lock", "you") is True
    assert he.state_size() == fresh_default.size() == 5
    assert he.delete("a") is True
    assert he.state_clear("m:") == 2
    assert he.get("a") is None
    assert sorted(fresh_default.keys()) == ["f", "n"]


def test_the_first_use_from_many_threads_creates_one_store() -> None:
    uninstall_default(default_store())
    seen: list[StateStore] = []
    barrier = threading.Barrier(8)

    def first_use() -> None:
        barrier.wait(timeout=10)
        seen.append(default_store())

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(seen) == 8
    assert all(store is seen[0] for store in seen)


def test_a_forked_child_never_uses_the_parents_in_process_store(
    fresh_default: StateStore,
) -> None:
    hornbeam_erlang.set("parent", 1)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            fresh = default_store() is not fresh_default and hornbeam_erlang.get("parent") is None
            os.write(write_fd, b"y" if fresh else b"n")
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        assert pipe.read() == b"y"
    os.waitpid(pid, 0)
    assert default_store() is fresh_default
