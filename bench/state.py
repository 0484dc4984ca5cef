"""Benchmark of the shared state store: microseconds per call, hornbeam against its peers.

Measures get, set, incr and keys(prefix) from 1 and 4 processes, in one run, against:
- hornbeam: the LMDB store through `hornbeam_erlang`, as an app under hornbeam calls it;
- Redis over a Unix socket (redis-py with hiredis), a server this script starts and stops;
- a `multiprocessing.Manager` dict (incr under a Manager lock: it has no atomic add).
Values are the same small dict for every store (msgpack for Redis, as an app storing data
there would; pickle for the Manager, which does that itself).

Run `python bench/state.py`: it prints a markdown table and writes it to
bench/results/state-YYYY-MM-DD.md. It takes about half a minute.
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from multiprocessing.managers import SyncManager
from typing import Any, Protocol

import msgpack  # type: ignore[import-untyped, unused-ignore]
import redis
from reporting import RESULTS_DIR, machine_line, markdown_table, print_report
from state_store import VALUE, lmdb_versions, local_store

import hornbeam_erlang

OPERATIONS = ("get", "set", "incr", "keys")
PROCESS_COUNTS = (1, 4)
PREFIX = "bench:k:"
MATCHING_KEYS = 100  # keys under PREFIX, which keys(prefix) returns
OTHER_KEYS = 900  # keys elsewhere, which keys(prefix) must skip
BATCH = 50  # calls between two looks at the clock
REDIS_START_TIMEOUT = 10.0


class Client(Protocol):
    """One process's connection to a store, with the four measured calls."""

    def get(self, key: str) -> Any: ...

    def set(self, key: str, value: Any) -> None: ...

    def incr(self, key: str) -> int: ...

    def keys(self, prefix: str) -> list[str]: ...


class HornbeamClient:
    """The calls an app makes under hornbeam: the module-level functions."""

    get = staticmethod(hornbeam_erlang.state_get)
    set = staticmethod(hornbeam_erlang.state_set)
    incr = staticmethod(hornbeam_erlang.state_incr)
    keys = staticmethod(hornbeam_erlang.state_keys)


class RedisClient:
    def __init__(self, socket_path: str) -> None:
        self._redis = redis.Redis(unix_socket_path=socket_path)

    def get(self, key: str) -> Any:
        raw = self._redis.get(key)
        return None if raw is None else msgpack.unpackb(raw)

    def set(self, key: str, value: Any) -> None:
        self._redis.set(key, msgpack.packb(value))

    def incr(self, key: str) -> int:
        return int(self._redis.incr(key))

    def keys(self, prefix: str) -> list[str]:
        found: list[bytes] = self._redis.keys(prefix + "*")  # type: ignore[assignment]
        return [key.decode() for key in found]


class ManagerClient:
    def __init__(self, data: Any, lock: Any) -> None:
        self._data = data
        self._lock = lock

    def get(self, key: str) -> Any:
        return self._data.get(key)

    def set(self, key: str, value: Any) -> None:
        self._data[key] = value

    def incr(self, key: str) -> int:
        with self._lock:
            value: int = self._data.get(key, 0) + 1
            self._data[key] = value
        return value

    def keys(self, prefix: str) -> list[str]:
        # keys() fetches the key list in one round trip; iterating the proxy takes one per key
        return [key for key in self._data.keys() if key.startswith(prefix)]  # noqa: SIM118


@dataclass
class Store:
    """A store under test: its name, and how a (forked) process gets a client for it."""

    name: str
    connect: Callable[[], Client]


@dataclass
class Cell:
    """The result of one operation on one store from some processes."""

    microseconds: float  # per call, as each process sees it (mean over processes)
    calls_per_second: float  # all processes together


def call_for(operation: str, client: Client, process: int) -> Callable[[], object]:
    """The call to time, bound to its arguments (partial adds less than a lambda)."""
    if operation == "get":
        return partial(client.get, "bench:get")
    if operation == "set":
        return partial(client.set, f"bench:set:{process}", VALUE)
    if operation == "incr":
        return partial(client.incr, "bench:counter")
    return partial(client.keys, PREFIX)


def measure(
    store: Store,
    operation: str,
    process: int,
    seconds: float,
    start: Any,
    results: Any,
) -> None:
    """In a benchmark process: warm up, wait for the others, then call for `seconds`."""
    call = call_for(operation, store.connect(), process)
    for _ in range(BATCH):
        call()
    start.wait(timeout=30)
    calls = 0
    began = time.perf_counter()
    deadline = began + seconds
    while True:
        for _ in range(BATCH):
            call()
        calls += BATCH
        now = time.perf_counter()
        if now >= deadline:
            break
    results.put((calls, now - began))


def run_cell(store: Store, operation: str, processes: int, seconds: float) -> Cell:
    context = multiprocessing.get_context("fork")
    start = context.Barrier(processes)
    results = context.Queue()
    workers = [
        context.Process(target=measure, args=(store, operation, index, seconds, start, results))
        for index in range(processes)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=seconds + 60) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    results.close()
    results.join_thread()
    latency = sum(elapsed / calls for calls, elapsed in outcomes) / processes
    throughput = sum(calls / elapsed for calls, elapsed in outcomes)
    return Cell(latency * 1e6, throughput)


def populate(client: Client) -> None:
    client.set("bench:get", VALUE)
    for i in range(MATCHING_KEYS):
        client.set(f"{PREFIX}{i}", i)
    for i in range(OTHER_KEYS):
        client.set(f"bench:other:{i}", i)


@contextmanager
def hornbeam_store() -> Iterator[Store]:
    with local_store() as runtime:

        def connect() -> Client:
            runtime.worker_attach()
            return HornbeamClient()

        populate(HornbeamClient())
        yield Store("hornbeam", connect)


@contextmanager
def redis_store() -> Iterator[Store]:
    """A private redis-server on a Unix socket in a temporary directory (no TCP port)."""
    workdir = tempfile.mkdtemp(prefix="hornbeam-bench-redis-")
    socket_path = os.path.join(workdir, "redis.sock")
    server = subprocess.Popen(
        [
            shutil.which("redis-server") or "/usr/bin/redis-server",
            "--port", "0",
            "--unixsocket", socket_path,
            "--unixsocketperm", "700",
            "--save", "",
            "--appendonly", "no",
            "--dir", workdir,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_redis(socket_path, server)
        populate(RedisClient(socket_path))
        yield Store("Redis (unix socket)", lambda: RedisClient(socket_path))
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def wait_for_redis(socket_path: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + REDIS_START_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"redis-server exited with status {server.returncode}")
        if os.path.exists(socket_path):
            probe = redis.Redis(unix_socket_path=socket_path)
            try:
                if probe.ping():
                    return
            except redis.ConnectionError:
                pass
            finally:
                probe.close()
        time.sleep(0.02)
    raise RuntimeError(
        f"redis-server did not answer on {socket_path} within {REDIS_START_TIMEOUT}s"
    )


@contextmanager
def manager_store() -> Iterator[Store]:
    with SyncManager(ctx=multiprocessing.get_context("fork")) as manager:
        data = manager.dict()
        lock = manager.Lock()
        populate(ManagerClient(data, lock))
        yield Store("Manager dict", lambda: ManagerClient(data, lock))


def redis_versions() -> str:
    server = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=False
    ).stdout.split()[2]
    return f"Redis {server.removeprefix('v=')} (redis-py {redis.__version__})"


def table(results: dict[tuple[str, str, int], Cell], stores: list[str]) -> str:
    hornbeam, peer = stores[0], stores[1]
    header = ["call", "processes", *(f"{name} µs" for name in stores)]
    header += [f"{peer} ÷ {hornbeam}", f"{hornbeam} calls/s"]
    rows = []
    for operation in OPERATIONS:
        for processes in PROCESS_COUNTS:
            ours = results[(hornbeam, operation, processes)]
            theirs = results[(peer, operation, processes)]
            row = ["keys(prefix)" if operation == "keys" else operation, str(processes)]
            row += [f"{results[(name, operation, processes)].microseconds:.1f}" for name in stores]
            row += [f"{theirs.microseconds / ours.microseconds:.1f}x"]
            row += [f"{ours.calls_per_second:,.0f}"]
            rows.append(row)
    return markdown_table(header, rows)


def verdict(results: dict[tuple[str, str, int], Cell], hornbeam: str, peer: str) -> list[str]:
    get = results[(hornbeam, "get", 1)].microseconds
    incr = results[(hornbeam, "incr", 1)].microseconds
    ratio = results[(peer, "get", 1)].microseconds / get
    return [
        f"- get from one process: {get:.2f} µs (target ≤ 3 µs): {'met' if get <= 3 else 'MISSED'}",
        f"- incr from one process: {incr:.2f} µs (target ≤ 10 µs): "
        f"{'met' if incr <= 10 else 'MISSED'}",
        f"- get vs Redis: {ratio:.1f}x faster (target ≥ 10x): {'met' if ratio >= 10 else 'MISSED'}",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.8, help="timed seconds per cell")
    parser.add_argument("--no-write", action="store_true", help="print only, write no file")
    options = parser.parse_args()

    machine = machine_line(lmdb_versions(), redis_versions())
    results: dict[tuple[str, str, int], Cell] = {}
    stores: list[str] = []
    began = time.monotonic()
    for open_store in (hornbeam_store, redis_store, manager_store):
        with open_store() as store:
            stores.append(store.name)
            for operation in OPERATIONS:
                for processes in PROCESS_COUNTS:
                    cell = run_cell(store, operation, processes, options.seconds)
                    results[(store.name, operation, processes)] = cell
                    print(f"{store.name:22} {operation:5} x{processes}: "
                          f"{cell.microseconds:9.2f} µs", file=sys.stderr)  # fmt: skip

    today = datetime.date.today().isoformat()
    report = [
        f"# State store: µs per call, {today}",
        "",
        f"Machine: {machine}. Run of `python bench/state.py` "
        f"({options.seconds:g} s per cell, {time.monotonic() - began:.0f} s in all).",
        "",
        "µs per call is the mean time one process waits for a call; calls/s adds up all "
        "processes. Values are a 3-item dict; `keys(prefix)` returns 100 of ~1,000 keys.",
        "",
        table(results, stores),
        "",
        *verdict(results, stores[0], stores[1]),
        "",
    ]
    print_report(report, None if options.no_write else RESULTS_DIR / f"state-{today}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
