"""The state contract across processes: forked workers sharing one store, as under hornbeam.

Each test creates the store as the arbiter does (`StateRuntime.create` in this process),
forks workers that call `worker_attach()` and use `hornbeam_erlang`, and reaps them with
`worker_exited()`.
"""

from __future__ import annotations

import collections
import itertools
import os
import time
from collections.abc import Callable
from typing import Any

import pytest

import hornbeam_erlang as state
from hornbeam.state import StateRuntime, StoreLimits, default_store

from state_helpers import fork_child

Workers = Callable[..., list[Any]]


def _count(index: int, times: int) -> int:
    for _ in range(times):
        state.state_incr("hits")
    return times


def test_incr_from_four_processes_loses_no_update(fork_workers: Workers) -> None:
    assert fork_workers(4, _count, 20_000) == [20_000] * 4
    assert state.state_get("hits") == 80_000


def _take_ids(index: int, count: int) -> list[int]:
    return [state.state_incr("next-id") for _ in range(count)]


def test_ids_taken_with_incr_are_unique_and_gap_free(fork_workers: Workers) -> None:
    taken = [ident for ids in fork_workers(4, _take_ids, 2_500) for ident in ids]
    assert sorted(taken) == list(range(1, 10_001))


def _claim(index: int, keys: int) -> list[int]:
    return [i for i in range(keys) if state.state_add(f"lock:{i}", index, ttl=60)]


def test_add_gives_each_key_to_exactly_one_process(fork_workers: Workers) -> None:
    claims = fork_workers(4, _claim, 500)
    winners = collections.Counter(i for claimed in claims for i in claimed)
    assert sorted(winners) == list(range(500))
    assert set(winners.values()) == {1}
    for index, claimed in enumerate(claims):
        assert all(state.state_get(f"lock:{i}") == index for i in claimed)


def _cas_increment(index: int, times: int) -> int:
    retries = 0
    for _ in range(times):
        for _attempt in range(10_000):
            current = state.state_get("cas")
            if state.state_compare_and_set("cas", current, current + 1):
                break
            retries += 1
        else:
            raise AssertionError("compare_and_set never succeeded")
    return retries


def test_compare_and_set_increments_lose_no_update(fork_workers: Workers) -> None:
    state.state_set("cas", 0)
    fork_workers(4, _cas_increment, 1_000)
    assert state.state_get("cas") == 4_000


def _release(index: int, keys: int) -> int:
    return sum(state.state_delete_if(f"lease:{i}", "token") for i in range(keys))


def test_delete_if_releases_each_lease_once(fork_workers: Workers) -> None:
    state.state_set_multi({f"lease:{i}": "token" for i in range(1_000)})
    assert sum(fork_workers(4, _release, 1_000)) == 1_000
    assert state.state_keys("lease:") == []


def _float_sum(index: int, times: int) -> int:
    for _ in range(times):
        state.state_incr_float("seconds", 0.25)
    return times


def test_incr_float_from_four_processes_loses_no_update(fork_workers: Workers) -> None:
    fork_workers(4, _float_sum, 5_000)
    assert state.state_get("seconds") == 5_000.0


def _rate_limit(index: int, window: float, duration: float) -> list[tuple[int, float, float]]:
    """Count requests in fixed windows as a rate limiter does: (count, called, returned)."""
    seen = []
    end = time.time() + duration
    for _ in range(100_000):
        called = time.time()
        if called > end:
            break
        seen.append((state.state_incr("window", ttl=window), called, time.time()))
    return seen


def test_incr_with_ttl_opens_each_window_exactly_once(fork_workers: Workers) -> None:
    window = 0.2
    counts = [tuple(item) for seen in fork_workers(4, _rate_limit, window, 0.9) for item in seen]
    openings = sorted((called, returned) for count, called, returned in counts if count == 1)
    assert len(openings) >= 3
    # A window opens only when the previous one expired, `window` seconds after it was
    # opened: two openings happened at least that far apart.
    for (called, returned), (later_called, later_returned) in itertools.pairwise(openings):
        assert max(later_returned - called, returned - later_called) >= window
    # Within a window every count is handed out once: count n is seen as often as
    # windows reached n, so the tally never rises with n.
    tally = collections.Counter(count for count, _called, _returned in counts)
    assert all(tally[n] >= tally[n + 1] for n in range(1, max(tally)))
    assert tally[1] == len(openings)


def _set_with_ttl(index: int) -> None:
    state.state_set("short", "lived", ttl=0.3)
    state.state_set("kept", "forever")


def test_expiry_is_seen_by_every_process_and_swept(
    runtime: StateRuntime, fork_workers: Workers
) -> None:
    fork_workers(1, _set_with_ttl)
    assert state.state_get("short") == "lived"
    deadline = time.monotonic() + 5
    while state.state_get("short") is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert state.state_get("short") is None
    assert state.state_keys() == ["kept"]
    assert runtime.sweep_expired() == 1
    assert runtime.sweep_expired() == 0
    assert state.state_keys() == ["kept"]


def _write_steadily(index: int, batch: int) -> None:
    """Commit batches of keys, each with the number of the last batch, until killed."""
    for i in range(10_000_000):
        state.state_set_multi({**{f"k:{i}:{j}": j for j in range(batch)}, "last": i})
        state.state_get("last")  # holds a reader slot too


@pytest.mark.parametrize("batch", [1, 2_000], ids=["small-writes", "long-writes"])
@pytest.mark.parametrize("kill", range(3))
def test_a_worker_killed_mid_write_leaves_the_store_usable_and_whole(
    runtime: StateRuntime, kill: int, batch: int
) -> None:
    child = fork_child(runtime, _write_steadily, 0, batch)
    wanted = (kill + 1) * (200 if batch == 1 else 3)
    deadline = time.monotonic() + 30
    while (state.state_get("last") or 0) < wanted and time.monotonic() < deadline:
        time.sleep(0.001)
    child.kill()  # long writes spend most of their time holding LMDB's writer lock
    child.reap(runtime, time.monotonic() + 10)  # reaps, then worker_exited()

    started = time.monotonic()
    state.state_incr("after-kill")
    assert time.monotonic() - started < 1.0
    assert runtime.worker_exited() == 0  # the dead worker's reader slot was already freed
    last = state.state_get("last")
    assert last >= wanted
    assert len(state.state_keys("k:")) == (last + 1) * batch
    assert state.state_get_multi(f"k:{last}:{j}" for j in range(batch)) == {
        f"k:{last}:{j}": j for j in range(batch)
    }
    assert state.state_keys(f"k:{last + 1}:") == []


def _read_and_write(index: int, rounds: int) -> int:
    for i in range(rounds):
        state.state_keys("k:")
        state.state_incr("survivors")
        state.state_set(f"survivor:{index}", i)
    return rounds


def test_other_workers_keep_going_while_one_is_killed(runtime: StateRuntime) -> None:
    victim = fork_child(runtime, _write_steadily, 0, 10)
    survivors = [fork_child(runtime, _read_and_write, index, 300) for index in range(2)]
    deadline = time.monotonic() + 30
    while (state.state_get("last") or 0) < 100 and time.monotonic() < deadline:
        time.sleep(0.001)
    victim.kill()
    victim.reap(runtime, time.monotonic() + 10)
    assert [child.result(runtime, timeout=30) for child in survivors] == [300, 300]
    assert state.state_get("survivors") == 600


def _fill_when_told(index: int, megabytes: int) -> int:
    deadline = time.monotonic() + 30
    while state.state_get("go") != index and time.monotonic() < deadline:
        time.sleep(0.001)
    chunk = b"x" * 1024
    for i in range(megabytes * 1024):
        state.state_set(f"fill:{index}:{i}", chunk)
    return megabytes


def test_the_store_grows_past_its_initial_map_in_any_process() -> None:
    limits = StoreLimits(map_size=1 << 20, max_size=64 << 20)
    small = StateRuntime.create("local", None, limits=limits)
    try:
        for index in range(2):
            child = fork_child(small, _fill_when_told, index, 4)
            state.state_set("go", index)  # the arbiter's store is open while the child grows it
            assert child.result(small) == 4
            assert state.state_get(f"fill:{index}:4095") == b"x" * 1024  # adopts the new size
        assert default_store().size() == 8 * 1024 + 1
    finally:
        small.close()


def _use_store_and_fork_again(index: int) -> int:
    state.state_incr("generations")
    pid = os.fork()
    if pid == 0:  # a process forked by a worker gets its own handle on the same store
        try:
            state.state_incr("generations")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    return state.state_incr("generations")


def test_forks_at_any_time_never_share_a_handle(
    runtime: StateRuntime, fork_workers: Workers
) -> None:
    for _ in range(3):
        runtime.sweep_expired()  # the arbiter's own handle is open when it forks
        runtime.worker_exited()
        state.state_incr("generations")
        fork_workers(2, _use_store_and_fork_again)
    assert state.state_get("generations") == 3 + 3 * 2 * 3
