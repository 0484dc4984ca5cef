"""The WSGI app thread pool: lazy growth, running work, surviving errors, stall detection."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from hornbeam.wsgi import pool as pool_module
from hornbeam.wsgi.pool import STALL, AppThreadPool

DEADLINE = 5.0
THREAD_PREFIX = "hornbeam-app-"


def app_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)}


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.002)


class Gate:
    """Work items that block until the test releases them, and report when they started."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self._lock = threading.Lock()
        self.started = 0
        self.finished = 0

    def blocked_work(self) -> None:
        with self._lock:
            self.started += 1
        self.release.wait(DEADLINE)
        with self._lock:
            self.finished += 1


@pytest.fixture
def gate() -> Iterator[Gate]:
    opened = Gate()
    yield opened
    opened.release.set()  # never leave a pool thread blocked


@pytest.fixture
def new_threads() -> Callable[[], set[threading.Thread]]:
    """The app threads started since the test began (earlier pools keep their idle threads)."""
    before = app_threads()
    return lambda: app_threads() - before


def test_no_thread_before_work(new_threads: Callable[[], set[threading.Thread]]) -> None:
    pool = AppThreadPool(8)
    assert new_threads() == set()
    assert pool.stalled_for(time.monotonic()) == 0.0


def test_runs_submitted_work_with_its_arguments() -> None:
    pool = AppThreadPool(4)
    results: list[tuple[int, str]] = []
    done = threading.Event()

    def work(number: int, word: str) -> None:
        results.append((number, word))
        if len(results) == 3:
            done.set()

    for number, word in [(1, "one"), (2, "two"), (3, "three")]:
        pool.submit(work, number, word)
    assert done.wait(DEADLINE)
    assert sorted(results) == [(1, "one"), (2, "two"), (3, "three")]


def test_work_submitted_soon_waits_for_the_end_of_the_loop_iteration_then_goes_in_order() -> None:
    soon: list[Callable[[], None]] = []
    pool = AppThreadPool(1, soon=soon.append)
    ran: list[int] = []
    done = threading.Event()

    def work(number: int) -> None:
        ran.append(number)
        if number == 4:
            done.set()

    for number in range(5):
        pool.submit_soon(work, number)
    assert len(soon) == 1  # one hand-over for the whole iteration
    assert not done.wait(0.05) and ran == []
    soon.pop()()
    assert done.wait(DEADLINE)
    assert ran == [0, 1, 2, 3, 4]
    pool.submit_soon(work, 5)
    assert len(soon) == 1  # the next iteration hands its own work over again


def test_while_the_threads_block_work_submitted_soon_goes_at_once_and_the_loop_yields(
    gate: Gate, faked_machine: tuple[FakeClock, FakePressure], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock, _ = faked_machine
    yields: list[None] = []
    monkeypatch.setattr(pool_module.os, "sched_yield", lambda: yields.append(None))
    soon: list[Callable[[], None]] = []
    looks: list[Callable[[], None]] = []
    pool = AppThreadPool(8, lambda delay, look: looks.append(look), soon.append)
    pool.submit_soon(gate.blocked_work)
    soon.pop()()  # the iteration ends: its work goes to a thread
    wait_until(lambda: gate.started == 1)
    assert yields == []  # batched hand-overs leave the CPU to the loop
    clock.wall += STALL / 2  # no CPU used, no task waited for a CPU: the thread blocks
    looks.pop()()
    pool.submit_soon(gate.blocked_work)
    assert len(yields) == 1  # handed over, then the CPU offered to the thread it woke
    wait_until(lambda: gate.started == 2)  # without waiting for the iteration's end
    assert soon == []


def test_without_a_loop_work_submitted_soon_goes_at_once() -> None:
    pool = AppThreadPool(1)
    done = threading.Event()
    pool.submit_soon(done.set)
    assert done.wait(DEADLINE)


def test_sequential_work_reuses_one_thread(
    new_threads: Callable[[], set[threading.Thread]],
) -> None:
    pool = AppThreadPool(8)
    ran_on: list[threading.Thread] = []

    def work(done: threading.Event) -> None:
        ran_on.append(threading.current_thread())
        done.set()

    for _ in range(20):
        done = threading.Event()
        pool.submit(work, done)
        assert done.wait(DEADLINE)
        # the thread reports itself free just after the item returns; nothing public shows
        # that moment, so wait on the pool's own tokens of free threads
        wait_until(lambda: pool._idle.qsize() == 1)
    assert len(new_threads()) == 1
    assert set(ran_on) == new_threads()


def _stuck_longer_than_stall() -> None:
    """Let the running threads pass the pool's STALL mark (the rule is about time)."""
    deadline = time.monotonic() + STALL * 2
    wait_until(lambda: time.monotonic() >= deadline)


def test_grows_only_when_the_running_threads_are_stuck(
    gate: Gate, new_threads: Callable[[], set[threading.Thread]]
) -> None:
    pool = AppThreadPool(3)
    pool.submit(gate.blocked_work)
    wait_until(lambda: gate.started == 1)
    assert len(new_threads()) == 1
    # the only thread is stuck: the next item gets a new thread instead of waiting behind it
    _stuck_longer_than_stall()
    pool.submit(gate.blocked_work)
    wait_until(lambda: gate.started == 2)
    assert len(new_threads()) == 2
    _stuck_longer_than_stall()
    pool.submit(gate.blocked_work)
    wait_until(lambda: gate.started == 3)
    # the pool is full: more work waits for a thread to come free
    _stuck_longer_than_stall()
    pool.submit(gate.blocked_work)
    pool.submit(gate.blocked_work)
    assert len(new_threads()) == 3
    assert gate.started == 3
    gate.release.set()
    wait_until(lambda: gate.finished == 5)
    assert len(new_threads()) == 3


def test_quick_work_stays_on_one_thread(new_threads: Callable[[], set[threading.Thread]]) -> None:
    """Work that never blocks gains nothing from a second thread (the GIL runs one)."""
    pool = AppThreadPool(8)
    done = threading.Event()
    counted: list[int] = []

    def quick(n: int) -> None:
        counted.append(n)
        if len(counted) == 500:
            done.set()

    for n in range(500):
        pool.submit(quick, n)
    assert done.wait(DEADLINE)
    assert len(new_threads()) == 1


def test_waiting_work_is_looked_at_again_after_stall(
    gate: Gate, new_threads: Callable[[], set[threading.Thread]]
) -> None:
    """Work queued while its thread was not yet stuck still gets a thread once it is."""
    timers: list[threading.Timer] = []

    def schedule(delay: float, callback: Callable[[], None]) -> None:
        timer = threading.Timer(delay, callback)
        timers.append(timer)
        timer.start()

    pool = AppThreadPool(2, schedule)
    pool.submit(gate.blocked_work)
    wait_until(lambda: gate.started == 1)
    second = threading.Event()
    pool.submit(second.set)  # queued: the first thread is busy, but not yet for STALL
    assert second.wait(DEADLINE), "the waiting item never got a thread"
    assert len(new_threads()) == 2
    gate.release.set()
    for timer in timers:
        timer.join(DEADLINE)


class FakeClock:
    """Stands in for the pool's ``time`` module: wall and CPU clocks the test moves."""

    def __init__(self) -> None:
        self.wall = 100.0
        self.cpu = 5.0

    def monotonic(self) -> float:
        return self.wall

    def process_time(self) -> float:
        return self.cpu


def test_idle_time_before_work_does_not_read_as_blocking(
    gate: Gate, new_threads: Callable[[], set[threading.Thread]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """CPU use is judged over the look's own window: a worker idle for a minute, then busy
    computing while work waits, gets no second thread to fight over the GIL."""
    clock = FakeClock()
    monkeypatch.setattr(pool_module, "time", clock)
    looks: list[Callable[[], None]] = []
    pool = AppThreadPool(4, lambda delay, look: looks.append(look))
    clock.wall += 60  # no work for a minute
    pool.submit(gate.blocked_work)
    wait_until(lambda: gate.started == 1)
    pool.submit(gate.blocked_work)  # waits: the only thread is busy, and not yet stuck
    clock.wall += STALL / 2
    clock.cpu += STALL / 2  # the process computed through the whole window
    looks.pop()()
    assert len(new_threads()) == 1
    assert gate.started == 1


class FakePressure:
    """Stands in for the machine's CPU pressure counter (PSI, microseconds of waiting)."""

    def __init__(self) -> None:
        self.total = 1_000_000

    def __call__(self) -> int:
        return self.total


@pytest.fixture
def faked_machine(monkeypatch: pytest.MonkeyPatch) -> tuple[FakeClock, FakePressure]:
    """The pool's clocks and the machine's CPU pressure, both moved by the test."""
    clock, pressure = FakeClock(), FakePressure()
    monkeypatch.setattr(pool_module, "time", clock)
    monkeypatch.setattr(pool_module, "_cpu_pressure_us", pressure)
    return clock, pressure


@pytest.mark.parametrize(
    ("waited_share", "threads_after_look"),
    [(0.0, 4), (0.5, 1), (None, 2)],
    ids=["idle-cpu", "contended-cpu", "no-psi"],
)
def test_blocking_threads_get_company_for_all_waiting_work_unless_the_cpu_is_contended(
    gate: Gate,
    new_threads: Callable[[], set[threading.Thread]],
    monkeypatch: pytest.MonkeyPatch,
    waited_share: float | None,
    threads_after_look: int,
) -> None:
    """Little CPU used while work waits means blocking threads only if no task waited for a
    CPU meanwhile: then every waiting request gets a thread at one look. On a contended
    machine the same reading means CPU starvation: no thread more, since another would only
    fight for the GIL. Where PSI cannot tell, one thread more per look."""
    clock, pressure = FakeClock(), FakePressure()
    monkeypatch.setattr(pool_module, "time", clock)
    monkeypatch.setattr(
        pool_module, "_cpu_pressure_us", pressure if waited_share is not None else lambda: None
    )
    looks: list[Callable[[], None]] = []
    pool = AppThreadPool(8, lambda delay, look: looks.append(look))
    for _ in range(4):
        pool.submit(gate.blocked_work)
    wait_until(lambda: gate.started == 1)
    window = STALL / 2  # shorter than STALL: the running thread does not count as stuck
    clock.wall += window  # the process used no CPU meanwhile
    pressure.total += int(window * 1e6 * (waited_share or 0.0))
    looks.pop()()
    wait_until(lambda: gate.started == threads_after_look)
    assert len(new_threads()) == threads_after_look  # the look starts threads before returning


def test_after_a_look_finds_blocking_new_work_gets_a_thread_at_once(
    gate: Gate,
    new_threads: Callable[[], set[threading.Thread]],
    faked_machine: tuple[FakeClock, FakePressure],
) -> None:
    clock, _ = faked_machine
    looks: list[Callable[[], None]] = []
    pool = AppThreadPool(8, lambda delay, look: looks.append(look))
    pool.submit(gate.blocked_work)
    pool.submit(gate.blocked_work)
    wait_until(lambda: gate.started == 1)
    clock.wall += STALL / 2  # no CPU used, no task waited for a CPU: the thread blocks
    looks.pop()()
    wait_until(lambda: gate.started == 2)
    pool.submit(gate.blocked_work)  # no free thread, no look needed
    wait_until(lambda: gate.started == 3)
    assert len(new_threads()) == 3


def test_survives_exceptions_in_work(
    caplog: pytest.LogCaptureFixture, new_threads: Callable[[], set[threading.Thread]]
) -> None:
    pool = AppThreadPool(1)
    done = threading.Event()

    def fails() -> None:
        raise RuntimeError("app bug")

    def exits() -> None:
        raise SystemExit(3)

    with caplog.at_level(logging.ERROR, logger="hornbeam.error"):
        pool.submit(fails)
        pool.submit(exits)
        pool.submit(done.set)
        assert done.wait(DEADLINE)
    assert len(new_threads()) == 1
    assert all(thread.is_alive() for thread in new_threads())
    errors = [r for r in caplog.records if r.message == "unexpected error in an app thread"]
    assert [type(r.exc_info[1]) for r in errors if r.exc_info] == [RuntimeError, SystemExit]


def test_stalled_for_is_zero_while_a_thread_is_free(gate: Gate) -> None:
    pool = AppThreadPool(2)
    pool.submit(gate.blocked_work)
    wait_until(lambda: gate.started == 1)
    assert pool.stalled_for(time.monotonic() + 60) == 0.0


def test_stalled_for_grows_when_every_thread_is_stuck(gate: Gate) -> None:
    pool = AppThreadPool(2)
    pool.submit(gate.blocked_work)
    wait_until(lambda: gate.started == 1)
    _stuck_longer_than_stall()
    pool.submit(gate.blocked_work)
    wait_until(lambda: gate.started == 2)
    now = time.monotonic()
    stalled = pool.stalled_for(now)
    assert 0.0 <= stalled < DEADLINE
    assert pool.stalled_for(now + 30) == pytest.approx(stalled + 30)
    gate.release.set()
    wait_until(lambda: pool.stalled_for(time.monotonic() + 30) == 0.0)
    assert gate.finished == 2


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="SCHED_BATCH is Linux's")
def test_app_threads_run_without_wakeup_preemption() -> None:
    pool = AppThreadPool(1)
    policies: list[int] = []
    done = threading.Event()

    def work() -> None:
        policies.append(os.sched_getscheduler(0))
        done.set()

    pool.submit(work)
    assert done.wait(DEADLINE)
    assert policies == [os.SCHED_BATCH]
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the loop's thread keeps its own


def test_threads_asleep_in_the_kernel_get_company_even_on_a_contended_cpu(
    new_threads: Callable[[], set[threading.Thread]],
    faked_machine: tuple[FakeClock, FakePressure],
) -> None:
    """PSI reads high (this load's own threads, or a neighbour, wait for a CPU), but the
    running requests' threads sleep in a read: blocking, so every waiting request gets a
    thread. Threads waiting on a lock (the contended case above) get none."""
    clock, pressure = faked_machine
    looks: list[Callable[[], None]] = []
    pool = AppThreadPool(8, lambda delay, look: looks.append(look))
    read_end, write_end = os.pipe()
    try:
        for _ in range(4):
            pool.submit(os.read, read_end, 1)
        wait_until(lambda: any(pool._busy_since))
        wait_until(lambda: pool_module._sleeps_outside_futex(pool._thread_ids[0]))
        window = STALL / 2
        clock.wall += window
        pressure.total += int(window * 1e6 * 0.5)  # half the window some task waited for a CPU
        looks.pop()()
        assert len(new_threads()) == 4
    finally:
        os.write(write_end, b"x" * 4)
        os.close(write_end)
        wait_until(lambda: not any(pool._busy_since))
        os.close(read_end)


def test_a_wait_channel_tells_a_sleep_from_a_lock_and_a_running_thread() -> None:
    lock = threading.Lock()
    lock.acquire()
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            pass

    sleeper = threading.Thread(target=time.sleep, args=(DEADLINE,), daemon=True)
    waiter = threading.Thread(target=lock.acquire, args=(True, DEADLINE), daemon=True)
    spinner = threading.Thread(target=spin, daemon=True)
    for thread in (sleeper, waiter, spinner):
        thread.start()
    try:
        assert sleeper.native_id is not None and waiter.native_id is not None
        if not _wait_channels_readable(sleeper.native_id):
            pytest.skip("this kernel does not show wait channels")
        wait_until(lambda: pool_module._sleeps_outside_futex(sleeper.native_id or 0))
        assert not pool_module._sleeps_outside_futex(waiter.native_id)
        assert spinner.native_id is not None
        assert not pool_module._sleeps_outside_futex(spinner.native_id)
        assert not pool_module._sleeps_outside_futex(2**22 + 7)  # no such thread
    finally:
        stop.set()
        lock.release()


def _wait_channels_readable(thread_id: int) -> bool:
    deadline = time.monotonic() + 1
    while time.monotonic() < deadline:
        if pool_module._sleeps_outside_futex(thread_id):
            return True
        time.sleep(0.01)
    return False
