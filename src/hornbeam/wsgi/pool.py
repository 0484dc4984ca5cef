"""The WSGI app threads: as few running at once as keep the GIL busy, more when they block.

The GIL runs one thread at a time, so a second thread running Python only fights the first
for it (measured with the Flask demo on one worker: 1 app thread 8,700 req/s, 2 threads
5,500). Yet a request that blocks (a database, ``time.sleep``) must not hold up the others.
So the rule is: a request goes to a thread that is free; when none is, it waits for the next
one to finish, unless the running threads are blocked: every one of them has been on its
request for ``STALL`` seconds, or they are blocking: the process used less than ``BUSY`` of
a CPU while work waited. Then one more thread starts or wakes, and the check repeats every
``STALL``. Low CPU use alone is ambiguous: blocked threads, or a process starved of CPU by
others. Linux's CPU pressure counter (PSI) tells them apart:
- no task waited for a CPU meanwhile: the threads are blocking, so every waiting request
  gets a thread at once, and so does new work that finds none free, as long as one running
  request has lasted ``BLOCKED`` (a route sleeping 5 ms: 0.85x -> 0.95-0.98x granian, p99
  26 -> 7 ms). That last condition keeps a misreading (a look that falls where a load
  stops) from growing threads for quick requests;
- tasks waited: the process may be starved rather than blocked. Unless a thread of the
  latest requests running for ``BLOCKED`` sleeps in the kernel on something other than a
  lock (its wait channel, /proc/self/task/<tid>/wchan: a sleep, a poll, a socket read),
  only the stall rule adds threads (the Flask demo on 2 workers, where each look added
  one, ran on 64 threads at 17,400 req/s against 22,600 on one). The wait channel matters
  where a load's own threads, or its neighbours, make PSI read high: the 5 ms route on a
  core of its own read above 0.1 at most looks; reading its threads' sleep as blocking took
  it from 8,700-9,230 to 9,000-9,350 req/s (alternating runs), p99 from 7.8-9.8 ms to
  6.3-9.0 ms.
Without PSI, low CPU use adds one thread per look. When the CPU is full, a running thread
parks. Up to ``size`` threads; idle ones cost nothing.

Work reaches the threads once per event loop iteration (``submit_soon``), not request by
request. uvloop takes the GIL for each I/O callback and lets go of it after; a thread woken
by the first request of a burst would take it at each such gap and the loop would wait to
get it back, over and over. Handed over together after the callbacks, the burst is served
in one stretch (one worker on one core: WSGI hello 67,900-69,700 -> 85,400-87,700 req/s,
64 KB bodies 45,500-45,800 -> 54,000-55,100). Except while a look finds the threads
blocking: requests then last milliseconds and the GIL gaps cost little beside them. Handed
over at once, a route sleeping 5 ms went from 8,709-9,064 to 8,826-9,295 req/s in five
alternating runs (mean +1.8%, p99 7.0-8.1 -> 6.2-8.0 ms); the WSGI hello, never blocking,
is unchanged. The wait from a request parsed to its thread starting stayed about the same at
the median (41-44 µs before, 40-49 µs after): a woken app thread still waited for the loop
thread to block. It could not start sooner: the thread is woken under SCHED_BATCH (below),
and each time uvloop let go of the GIL between callbacks, the loop thread, still on the CPU,
took it back before the woken thread could run. So after each such hand-over the loop
thread now calls ``sched_yield``, which lets go of the GIL and of the CPU together: the
thread starts the request and lets go of both when it blocks. One worker on one core, the 5
ms route, five alternating runs: 9,307-9,498 -> 9,526-9,573 req/s (granian 9,549-9,622 in
the same runs), p99 5.8-6.3 -> 5.6-5.7 ms; on two workers, at granian's figure before and
after.

App threads run under Linux's SCHED_BATCH policy: the same share of the CPU, but a thread
woken up does not preempt the one running. Without it, a request handed over woke its
thread straight onto the CPU, where it found the loop thread holding the GIL and went back
to sleep: two context switches for nothing (one worker on one core: WSGI hello +5%, 64 KB
+4-9%, the 5 ms route +4%; the Flask demo unchanged). Threads an app starts from a request
inherit the policy.

The queues are C-level ``SimpleQueue``s and no Python lock is held per request: a lock
contended under the GIL turns into a convoy (measured: 32 threads behind one
``threading.Lock`` served 6,500 req/s where tokens served 50,000).
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from hornbeam.logs import error_log

STALL = 0.01  # seconds on one request after which a thread counts as blocked
# Once a look found the threads blocking, seconds on one request after which they count as
# blocked: far longer than a request that computes without blocking takes.
BLOCKED = 0.001
BUSY = 0.8  # below this share of a CPU while work waits, the running threads are blocking
SATURATED = 0.95  # above it, more running threads only fight over the GIL
# Share of the time some task on this machine waited for a CPU (Linux PSI), below which a
# process using little CPU is taken to be blocking, not starved of CPU.
UNCONTENDED = 0.1
SAMPLED = 3  # longest-running requests whose threads' wait channels a look reads
_PSI_CPU = "/proc/pressure/cpu"

Schedule = Callable[[float, Callable[[], None]], object]
Soon = Callable[[Callable[[], None]], object]


class AppThreadPool:
    def __init__(
        self, size: int, schedule: Schedule | None = None, soon: Soon | None = None
    ) -> None:
        self._size = size
        self._schedule = schedule  # loop.call_later, to look again at waiting work
        self._soon = soon  # loop.call_soon, to hand an iteration's work over after its I/O
        self._batch: list[tuple[Callable[..., None], tuple[Any, ...]]] = []
        self._work: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]]] = (
            queue.SimpleQueue()
        )
        self._idle: queue.SimpleQueue[None] = queue.SimpleQueue()  # a token per waiting thread
        self._parked: list[threading.Event] = []
        self._threads: list[threading.Thread] = []
        # busy_since[i]: when thread i took its current request, 0.0 while it has none. Each
        # slot is written by its own thread only, so no lock is needed.
        self._busy_since: list[float] = []
        self._thread_ids: list[int] = []  # kernel thread ids, for their wait channels
        self._relief_pending = False
        # CPU use is measured from when a look is armed to when it runs: idle time before work
        # arrived must not read as "the threads are blocking".
        self._wall_mark, self._cpu_mark = 0.0, 0.0
        self._busy = 1.0
        self._pressure_mark: int | None = None
        # The last look found the threads blocking (idle CPU, little CPU use): until a look
        # finds otherwise, work that finds no free thread gets one at once.
        self._blocking = False
        self._surplus = 0  # running threads asked to park at their next free moment

    # ---- the loop's side ---------------------------------------------------------------------
    def submit_soon(self, fn: Callable[..., None], *args: Any) -> None:
        """Submit ``fn(*args)`` with the rest of this loop iteration's work, once its I/O
        callbacks have run; at once without a loop's ``soon``, or while the threads block
        (then a request waiting for the iteration to end waits for nothing they gain, and
        the loop thread yields the CPU to the thread it woke)."""
        if self._soon is None or self._blocking:
            self.submit(fn, *args)
            if self._blocking:
                # Let go of the GIL and the CPU together, so the woken thread starts now,
                # not when the loop next waits for I/O (see the module docstring).
                os.sched_yield()
            return
        batch = self._batch
        batch.append((fn, args))
        if len(batch) == 1:
            self._soon(self._submit_batch)

    def _submit_batch(self) -> None:
        batch, self._batch = self._batch, []
        for fn, args in batch:
            self.submit(fn, *args)

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        self._work.put((fn, args))
        try:
            self._idle.get_nowait()  # a waiting thread takes it
        except queue.Empty:
            now = time.monotonic()
            if (self._blocking and self._held_longest(now) >= BLOCKED) or self._all_stalled(now):
                self._add_thread()
        # A token may be stale (its thread took older work meanwhile): look again soon.
        self._arm()

    def _relieve(self) -> None:
        """Work still waits after STALL: add a thread if the running ones are stuck, or if
        the process used less than ``BUSY`` of a CPU meanwhile (its threads are blocking)."""
        self._relief_pending = False
        now, cpu = time.monotonic(), time.process_time()
        elapsed = now - self._wall_mark
        busy = (cpu - self._cpu_mark) / elapsed if elapsed > 0 else 1.0
        self._busy = busy = 0.7 * self._busy + 0.3 * busy  # smoothed: GIL switches are bursty
        contended = self._cpu_contended(elapsed) if busy < BUSY else None
        self._blocking = contended is False or (busy < BUSY and self._running_sleep_in_kernel(now))
        waiting = self._work.qsize()
        if not waiting:
            return
        if self._blocking and self._held_longest(now) >= BLOCKED:
            for _ in range(waiting):
                self._add_thread()
        elif (busy < BUSY and contended is None) or self._all_stalled(now):
            self._add_thread()
        elif busy > SATURATED and len(self._threads) - len(self._parked) > 1:
            self._surplus = 1  # the CPU is full: one running thread fewer fights less for it
        self._arm()

    def _arm(self) -> None:
        """One look at waiting work STALL from now (at most one pending)."""
        if self._schedule is not None and not self._relief_pending:
            self._relief_pending = True
            self._wall_mark, self._cpu_mark = time.monotonic(), time.process_time()
            self._pressure_mark = _cpu_pressure_us()
            self._schedule(STALL, self._relieve)

    def _cpu_contended(self, elapsed: float) -> bool | None:
        """Some task of this machine waited for a CPU for ``UNCONTENDED`` of the ``elapsed``
        seconds since the look was armed (None when that cannot be known)."""
        pressure = _cpu_pressure_us()
        if pressure is None or self._pressure_mark is None or elapsed <= 0:
            return None
        return (pressure - self._pressure_mark) / (elapsed * 1e6) >= UNCONTENDED

    def _running_sleep_in_kernel(self, now: float) -> bool:
        """One of the ``SAMPLED`` requests that started last, of those running for
        ``BLOCKED`` already, has its thread asleep in the kernel on something other than a
        futex. A futex is the GIL or a lock: waiting for this process, not blocking it. The
        oldest requests are the wrong sample: they are the ones about to finish, most of
        them awake and waiting for the GIL."""
        started_before = now - BLOCKED
        running = sorted(
            (
                (since, index)
                for index, since in enumerate(self._busy_since)
                if 0 < since <= started_before
            ),
            reverse=True,
        )[:SAMPLED]
        return any(_sleeps_outside_futex(self._thread_ids[index]) for _, index in running)

    def _held_longest(self, now: float) -> float:
        """How long the oldest request still running has been running (0.0 for none)."""
        return now - min((since for since in self._busy_since if since), default=now)

    def _all_stalled(self, now: float) -> bool:
        """Every running thread has been on its request for STALL (called per queued item:
        it stops at the first thread that is not)."""
        fresh = now - STALL
        running = 0
        for since in self._busy_since:
            if since:
                if since > fresh:
                    return False
                running += 1
        # a thread neither running nor parked is between requests: it will take the work
        return running + len(self._parked) >= len(self._threads)

    def _add_thread(self) -> None:
        try:
            self._parked.pop().set()
        except IndexError:
            if len(self._threads) < self._size:
                self._start_thread()

    def _start_thread(self) -> None:
        index = len(self._threads)
        self._busy_since.append(0.0)
        self._thread_ids.append(0)  # set by the thread itself
        thread = threading.Thread(
            target=self._serve, args=(index,), name=f"hornbeam-app-{index}", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    # ---- the threads' side -------------------------------------------------------------------
    def _serve(self, index: int) -> None:
        self._thread_ids[index] = threading.get_native_id()
        _no_wakeup_preemption()
        work = self._work
        busy = self._busy_since
        item = work.get()
        while True:
            fn, args = item
            busy[index] = time.monotonic()
            try:
                fn(*args)
            except BaseException:  # a thread must survive anything an app does
                error_log.exception("unexpected error in an app thread")
            busy[index] = 0.0
            if self._surplus:
                self._surplus = 0
                self._park()
                item = work.get()
                continue
            try:
                item = work.get_nowait()  # waiting work first, without a token
                continue
            except queue.Empty:
                pass
            if not self._idle.empty():
                self._park()  # another thread already waits for work: don't compete
            else:
                self._idle.put(None)
            item = work.get()

    def _park(self) -> None:
        """Sleep until ``_add_thread`` wakes this thread for waiting work."""
        wake = threading.Event()
        self._parked.append(wake)
        wake.wait()

    def stalled_for(self, now: float) -> float:
        """How long every thread has been stuck, or 0 when any thread is free."""
        if len(self._threads) < self._size:
            return 0.0
        busy = self._busy_since
        if not busy or 0.0 in busy:
            return 0.0
        return now - max(busy)


def _no_wakeup_preemption() -> None:
    """Put the calling thread under SCHED_BATCH where the OS has it (Linux)."""
    batch = getattr(os, "SCHED_BATCH", None)
    if batch is not None:
        # Refused in some sandboxes: the default policy only costs some speed.
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, batch, os.sched_param(0))


def _sleeps_outside_futex(thread_id: int) -> bool:
    """The thread sleeps in the kernel, and not on a futex ("0": running, or unknown here)."""
    try:
        with open(f"/proc/self/task/{thread_id}/wchan", "rb") as wchan:
            channel = wchan.read()
    except OSError:
        return False
    return channel not in (b"", b"0") and not channel.startswith(b"futex")


def _cpu_pressure_us() -> int | None:
    """Microseconds some task of this machine has waited for a CPU (PSI), None if unknown."""
    try:
        with open(_PSI_CPU, "rb") as pressure:
            first = pressure.readline()
    except OSError:
        return None
    _, _, total = first.rpartition(b"total=")
    return int(total) if total.strip().isdigit() else None
