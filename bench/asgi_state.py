"""Benchmark: do `hornbeam_erlang` state calls made inside `async def` handlers stall the loop?

The calls are synchronous: an ASGI handler makes them on the event loop thread, which runs
nothing else meanwhile. This measures by how much, in one process on a uvloop loop, against
the real shared store (LMDB on tmpfs, set up as the arbiter does):

- a probe task sleeps 1 ms again and again and records how late it wakes up (the loop lag);
- traffic tasks play handlers: each makes `--batch` state calls in a row, then yields to the
  loop (as a handler does at its next `await`), as fast as it can.

Scenarios: the probe alone; traffic tasks that only yield (the cost of a busy loop without
state calls); `state_get` traffic; `state_incr` traffic; and `state_incr` traffic while
another process writes to the store too (LMDB has one writer at a time, so an incr may wait).
Reported per scenario: µs per state call and the slowest batch, p50 / p99 / max loop lag,
and how often the process slept (waited for a lock) or was preempted by the kernel.

Run `python bench/asgi_state.py` on a quiet machine (about 12 s): it prints a markdown table
and writes it to bench/results/asgi-state-YYYY-MM-DD.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib.metadata
import os
import resource
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvloop
from reporting import RESULTS_DIR, machine_line, markdown_table, print_report
from state_store import VALUE, lmdb_versions, local_store

import hornbeam_erlang
from hornbeam.state import StateRuntime

PROBE_SLEEP = 0.001  # seconds the probe asks to sleep
WARM_UP_SECONDS = 0.3
WRITER_OVERLAP = 0.2  # seconds the other writers go on past the measurement
WRITER_EXIT_TIMEOUT = 5.0  # seconds a writer process may take to finish after its deadline
READ_KEY = "bench:session"  # what state_get reads: VALUE, the dict bench/state.py stores
COUNTER_KEY = "bench:counter"
# A loop lag under a millisecond is below what an HTTP client can tell from network noise.
NOTICEABLE_LAG_US = 1000.0
MAX_QUIET_PREEMPTIONS = 20  # more in one scenario: another process competed for the core
CONTROL = "tasks yielding, no state calls"  # the scenario the state rows compare with


@dataclass(frozen=True)
class Scenario:
    name: str
    call: Callable[[], object] | None  # the state call the traffic tasks make; None: none
    traffic_tasks: bool
    other_writers: int = 0


@dataclass(frozen=True)
class Outcome:
    scenario: Scenario
    lags_us: list[float]  # sorted
    calls: int
    call_seconds: float  # spent inside the state calls
    longest_batch_us: float  # the slowest run of `batch` calls in a row
    seconds: float  # the scenario's length
    sleeps: int  # times the process waited in the kernel (the loop's poll, a lock)
    preemptions: int  # times the kernel gave its core to another process

    def lag(self, fraction: float) -> float:
        return self.lags_us[min(len(self.lags_us) - 1, int(len(self.lags_us) * fraction))]

    @property
    def call_us(self) -> float | None:
        return self.call_seconds / self.calls * 1e6 if self.calls else None


def scenarios() -> list[Scenario]:
    get = hornbeam_erlang.state_get
    incr = hornbeam_erlang.state_incr
    return [
        Scenario("probe alone", None, traffic_tasks=False),
        Scenario(CONTROL, None, traffic_tasks=True),
        Scenario("state_get", lambda: get(READ_KEY), traffic_tasks=True),
        Scenario("state_incr", lambda: incr(COUNTER_KEY), traffic_tasks=True),
        Scenario(
            "state_incr, another process writing",
            lambda: incr(COUNTER_KEY),
            traffic_tasks=True,
            other_writers=1,
        ),
    ]


async def measure(scenario: Scenario, seconds: float, tasks: int, batch: int) -> Outcome:
    """Run the probe, and the scenario's traffic tasks, for ``seconds``."""
    stop_at = time.perf_counter() + seconds
    lags: list[float] = []
    calls = 0
    call_seconds = 0.0
    longest_batch = 0.0
    usage_before = resource.getrusage(resource.RUSAGE_SELF)

    async def probe() -> None:
        loop = asyncio.get_running_loop()
        while time.perf_counter() < stop_at:
            # The lag is counted from when the timer is due by the loop's own clock:
            # uvloop's is libuv's cached millisecond clock (CLOCK_MONOTONIC, as
            # time.monotonic), so a timer may fire less than 1 ms after it was set.
            due = loop.time() + PROBE_SLEEP
            await asyncio.sleep(PROBE_SLEEP)
            lags.append((time.monotonic() - due) * 1e6)

    async def traffic(call: Callable[[], object] | None) -> None:
        nonlocal calls, call_seconds, longest_batch
        while time.perf_counter() < stop_at:
            if call is not None:
                began = time.perf_counter()
                for _ in range(batch):
                    call()
                spent = time.perf_counter() - began
                call_seconds += spent
                longest_batch = max(longest_batch, spent)
                calls += batch
            await asyncio.sleep(0)  # the handler's next await: other tasks may run

    workers = [traffic(scenario.call) for _ in range(tasks if scenario.traffic_tasks else 0)]
    await asyncio.gather(probe(), *workers)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return Outcome(
        scenario,
        sorted(lags),
        calls,
        call_seconds,
        longest_batch * 1e6,
        seconds,
        sleeps=usage.ru_nvcsw - usage_before.ru_nvcsw,
        preemptions=usage.ru_nivcsw - usage_before.ru_nivcsw,
    )


@contextmanager
def other_writers(runtime: StateRuntime, count: int, seconds: float) -> Iterator[None]:
    """``count`` forked processes calling state_incr for ``seconds``, as busy workers would."""
    stop_at = time.monotonic() + seconds + WRITER_OVERLAP
    pids = []
    for _ in range(count):
        pid = os.fork()
        if pid == 0:  # the writer: never returns into the benchmark
            exit_code = 1
            try:
                runtime.worker_attach()
                while time.monotonic() < stop_at:
                    hornbeam_erlang.state_incr(COUNTER_KEY)
                exit_code = 0
            finally:
                os._exit(exit_code)
        pids.append(pid)
    try:
        yield
    finally:
        for pid in pids:
            _reap(pid, stop_at + WRITER_EXIT_TIMEOUT)
        runtime.worker_exited()


def _reap(pid: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        if os.waitpid(pid, os.WNOHANG)[0]:
            return
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def run_scenario(
    runtime: StateRuntime, scenario: Scenario, seconds: float, tasks: int, batch: int
) -> Outcome:
    # writers are forked before this scenario's loop exists: no loop crosses a fork
    with (
        other_writers(runtime, scenario.other_writers, seconds),
        asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner,
    ):
        return runner.run(measure(scenario, seconds, tasks, batch))


def table(outcomes: list[Outcome]) -> str:
    header = ["traffic", "µs per state call", "longest batch µs", "state calls/s"]
    header += [
        "loop lag p50 µs",
        "loop lag p99 µs",
        "loop lag max µs",
        "probes",
        "sleeps / preemptions",
    ]
    rows = []
    for outcome in outcomes:
        call_us = outcome.call_us
        row = [outcome.scenario.name]
        if call_us is None:
            row += ["-", "-", "-"]
        else:
            row += [f"{call_us:.2f}", f"{outcome.longest_batch_us:.0f}"]
            row += [f"{outcome.calls / outcome.seconds:,.0f}"]
        row += [f"{outcome.lag(0.50):.0f}", f"{outcome.lag(0.99):.0f}"]
        row += [f"{outcome.lags_us[-1]:.0f}", f"{len(outcome.lags_us):,}"]
        row += [f"{outcome.sleeps:,} / {outcome.preemptions:,}"]
        rows.append(row)
    return markdown_table(header, rows)


def verdict(outcomes: list[Outcome], batch: int) -> list[str]:
    """What the figures say. A row's own p99 lag is judged (it bounds what the state calls
    added), next to the busy loop without state calls for reference."""
    by_name = {outcome.scenario.name: outcome for outcome in outcomes}
    control = by_name[CONTROL]
    lines = []
    for outcome in outcomes:
        call_us = outcome.call_us
        if call_us is None:
            continue
        p99 = outcome.lag(0.99)
        noticeable = "noticeable" if p99 >= NOTICEABLE_LAG_US else "not noticeable"
        lines.append(
            f"- {outcome.scenario.name}: {call_us:.2f} µs per call, so a handler making {batch} "
            f"calls in a row holds the loop for {call_us * batch:.0f} µs; p99 loop lag "
            f"{p99:.0f} µs, {noticeable} (threshold {NOTICEABLE_LAG_US:.0f} µs; tasks "
            f"without state calls: {control.lag(0.99):.0f} µs)"
        )
    disturbed = [o.scenario.name for o in outcomes if o.preemptions > MAX_QUIET_PREEMPTIONS]
    if disturbed:
        lines.append(
            f"- Other processes took this one's core more than {MAX_QUIET_PREEMPTIONS} times "
            f"during: {', '.join(disturbed)}. Their lags include that wait; rerun on a quiet "
            f"machine to compare them."
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per scenario")
    parser.add_argument("--tasks", type=int, default=4, help="traffic tasks (handlers) at once")
    parser.add_argument("--batch", type=int, default=10, help="state calls between two awaits")
    parser.add_argument("--no-write", action="store_true", help="print only, write no file")
    options = parser.parse_args()

    machine = machine_line(f"uvloop {importlib.metadata.version('uvloop')}", lmdb_versions())
    began = time.monotonic()
    with local_store() as runtime:
        hornbeam_erlang.state_set(READ_KEY, VALUE)
        hornbeam_erlang.state_set(COUNTER_KEY, 0)
        plan = scenarios()
        for scenario in plan:  # warm up code paths and the store's pages
            run_scenario(runtime, scenario, WARM_UP_SECONDS, options.tasks, options.batch)
        outcomes = []
        for scenario in plan:
            outcome = run_scenario(runtime, scenario, options.seconds, options.tasks, options.batch)
            outcomes.append(outcome)
            print(f"{scenario.name:38} p99 lag {outcome.lag(0.99):8.0f} µs", file=sys.stderr)

    today = datetime.date.today().isoformat()
    report = [
        f"# State calls inside async handlers: event-loop lag, {today}",
        "",
        f"Machine: {machine}. Run of `python bench/asgi_state.py` ({options.seconds:g} s per "
        f"scenario, {time.monotonic() - began:.0f} s in all).",
        "",
        f"One process, one uvloop loop, the real shared store (LMDB on tmpfs). A probe task "
        f"sleeps {PROBE_SLEEP * 1e3:g} ms again and again; its loop lag is how late it wakes up. "
        f"{options.tasks} traffic tasks each make {options.batch} state calls in a row, then "
        f'await (`asyncio.sleep(0)`), as fast as they can. "State calls/s" is the rate all '
        f"traffic tasks reached together while the probe ran. The lag counts from the moment the "
        f"timer was due by the loop's clock. An idle uvloop sleeps in whole milliseconds, so "
        f"the probe alone wakes up to 1 ms late; the baseline for the state rows is the row of "
        f"tasks that only yield, which keeps the loop as busy without touching the store. "
        f'"Longest batch" is the slowest run of {options.batch} calls in a row. '
        f'"Sleeps / preemptions" count the process\'s voluntary context switches (it waited: '
        f"for the loop's poll, or for LMDB's write lock while another process held it) and "
        f"involuntary ones (the kernel gave its core to another process): both show up as "
        f"lag, and only the first can come from the store.",
        "",
        table(outcomes),
        "",
        *verdict(outcomes, options.batch),
        "",
    ]
    print_report(report, None if options.no_write else RESULTS_DIR / f"asgi-state-{today}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
