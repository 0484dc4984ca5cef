"""Fixtures of the state contract suites: one store per backend, and forked worker processes.

A backend joins the suites by adding a case to `STORE_BACKENDS` (a handle in this
process; the LMDB store once per LMDB binding this build has) and, if it can be shared by
processes, to `SHARED_BACKENDS` (a `state_backend` value for `StateRuntime.create`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hornbeam.state import LmdbStore, MemoryStore, StateRuntime, StateStore
from hornbeam.state.backends.lmdb_binding import AVAILABLE

from state_helpers import Child, Clock, StoreCase, fork_child

LMDB_BINDINGS = {f"lmdb-{binding.name}": binding for binding in AVAILABLE}
STORE_BACKENDS = ["memory", *LMDB_BINDINGS]
SHARED_BACKENDS = ["local"]


@pytest.fixture(params=STORE_BACKENDS)
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreCase]:
    clock = Clock()
    store: StateStore
    if request.param == "memory":
        store = MemoryStore(clock=clock)
    else:
        binding = LMDB_BINDINGS[request.param]
        store = LmdbStore(str(tmp_path / "state"), clock=clock, binding=binding).open()
    yield StoreCase(store, clock)
    store.close()


@pytest.fixture(params=SHARED_BACKENDS)
def runtime(request: pytest.FixtureRequest) -> Iterator[StateRuntime]:
    shared = StateRuntime.create(request.param, None)
    yield shared
    shared.close()


@pytest.fixture
def fork_workers(runtime: StateRuntime) -> Iterator[Callable[..., list[Any]]]:
    """Run `work(index, *args)` in `count` forked workers at once; return their results."""
    started: list[Child] = []

    def run(count: int, work: Callable[..., Any], *args: Any) -> list[Any]:
        children = [fork_child(runtime, work, index, *args) for index in range(count)]
        started.extend(children)
        return [child.result(runtime) for child in children]

    yield run
    for child in started:  # only left unreaped if the test failed early
        if not child.reaped:
            child.kill()
            child.reap(runtime, time.monotonic())
