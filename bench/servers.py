"""Server processes under measurement, for every benchmark script that starts one.

Owns which CPUs a server and its load generator run on (`CpuLayout`); starting a server in
its own process group with its log in a 0600 file, polling until it answers, watching its
process tree, and stopping it and every descendant it was seen with by PID; the /proc readers
the figures come from (process tree, CPU ticks, RSS, machine-wide CPU use); waiting for an
idle machine before a start; and free loopback ports. Loopback only.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hornbeam.errors import HornbeamError

ROOT = Path(__file__).resolve().parents[1]  # servers run from here: app paths are relative
HOST = "127.0.0.1"
IDLE_CPU_THRESHOLD = 0.25
IDLE_MAX_WAIT = 30.0
READY_TIMEOUT = 30.0
STOP_GRACE = 10.0
_LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")


class BenchError(HornbeamError):
    """The benchmark cannot go on: a tool is missing, an argument or an output is wrong."""


class ServerExited(BenchError):
    def __init__(self, returncode: int, log: str) -> None:
        super().__init__(f"server exited with code {returncode}:\n{log[-2000:]}")
        self.returncode = returncode
        self.log = log


# ---- CPUs ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CpuLayout:
    """The CPUs the load generator and a server run on; empty means every CPU.

    Where the machine has more CPUs than the server has workers, the load generator gets
    one CPU and the server `workers` others, so every server gets exactly as many cores as
    it has workers, whatever its threads do: a Rust I/O thread cannot borrow the load
    generator's core, and a Python worker cannot be crowded off its own. Otherwise every
    process shares every CPU. Either way all of them stay in this script's scheduling
    group: a server in a session of its own would be a separate autogroup, weighed against
    wrk as a whole (granian's hello on one worker measured 38,000-41,000 req/s that way,
    and 62,000-77,000 in wrk's group or pinned to a core of its own).
    """

    client: tuple[int, ...] = ()
    server: tuple[int, ...] = ()

    @classmethod
    def for_workers(cls, workers: int, cpus: Sequence[int] | None = None) -> CpuLayout:
        available = sorted(os.sched_getaffinity(0) if cpus is None else cpus)
        if len(available) <= workers or shutil.which("taskset") is None:
            return cls()
        return cls((available[0],), tuple(available[1 : 1 + workers]))

    @staticmethod
    def _pinned(argv: Sequence[str], cpus: tuple[int, ...]) -> list[str]:
        if not cpus:
            return list(argv)
        return ["taskset", "-c", ",".join(map(str, cpus)), *argv]

    def client_argv(self, argv: Sequence[str]) -> list[str]:
        return self._pinned(argv, self.client)

    def server_argv(self, argv: Sequence[str]) -> list[str]:
        return self._pinned(argv, self.server)


# ---- /proc -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    ppid: int
    start: int  # start time in clock ticks since boot: tells a PID apart from its reuse
    cpu_ticks: int  # utime + stime
    cmdline: str


def read_process(pid: int) -> ProcessInfo | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the name in parentheses may hold spaces
    cpu_ticks = int(fields[11]) + int(fields[12])
    return ProcessInfo(pid, int(fields[1]), int(fields[19]), cpu_ticks, cmdline)


def process_tree(root: int) -> list[ProcessInfo]:
    """`root` and all its descendants (root first), found by parent PID across /proc."""
    pids = [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]
    by_parent: dict[int, list[ProcessInfo]] = {}
    tree = []
    for info in filter(None, map(read_process, pids)):
        by_parent.setdefault(info.ppid, []).append(info)
        if info.pid == root:
            tree.append(info)
    for info in tree:  # grows while it is walked: breadth first
        tree.extend(by_parent.get(info.pid, []))
    return tree


def worker_processes(tree: Sequence[ProcessInfo]) -> list[ProcessInfo]:
    """The processes that serve requests: the root's descendants (minus multiprocessing's
    resource tracker), or the root itself when it serves alone (uvicorn with one worker)."""
    children = [p for p in tree[1:] if "multiprocessing.resource_tracker" not in p.cmdline]
    return children or list(tree[:1])


def rss_mb(pid: int) -> float | None:
    with contextlib.suppress(FileNotFoundError):
        status = Path(f"/proc/{pid}/status").read_text()
        if match := re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE):
            return int(match.group(1)) / 1024
    return None


def cpu_us_per_request(
    before: Sequence[ProcessInfo], after: Sequence[ProcessInfo], requests: int, ticks_per_s: int
) -> float:
    """CPU time the tree spent between two snapshots, per request; a process born in between
    counts from zero."""
    start_ticks = {(p.pid, p.start): p.cpu_ticks for p in before}
    spent = sum(p.cpu_ticks - start_ticks.get((p.pid, p.start), 0) for p in after)
    return spent / ticks_per_s * 1e6 / max(requests, 1)


def cpu_busy_fraction(before: Sequence[int], after: Sequence[int]) -> float:
    """Share of CPU time not idle between two readings of the /proc/stat `cpu` line."""
    deltas = [b - a for a, b in zip(before, after, strict=True)]
    total = sum(deltas)
    idle = deltas[3] + deltas[4]  # idle + iowait
    return 1.0 - idle / total if total > 0 else 0.0


def _cpu_line() -> list[int]:
    with open("/proc/stat") as stat:
        return [int(value) for value in stat.readline().split()[1:]]


def wait_for_idle_machine() -> str:
    """Sample CPU use over 1 s until it is below the threshold, for at most IDLE_MAX_WAIT.
    Returns "" once idle, else a note with the last busy fraction for the results."""
    deadline = time.monotonic() + IDLE_MAX_WAIT
    while True:
        before = _cpu_line()
        time.sleep(1.0)  # the sampling window itself, not a wait for readiness
        busy = cpu_busy_fraction(before, _cpu_line())
        if busy < IDLE_CPU_THRESHOLD:
            return ""
        if time.monotonic() >= deadline:
            return f"machine busy ({busy:.0%} CPU) at start"


# ---- servers ---------------------------------------------------------------------------------
def port_to_bind(reports_port: bool) -> int:
    """0 for a server that logs the port it bound; else a port free right now (picked as late
    as possible: less time for another process to take it)."""
    if reports_port:
        return 0
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


@dataclass
class ServerProcess:
    """A server started by this script; stopped by PID, with every descendant it was seen with.

    With `port` 0 the server must log "Listening at: http://127.0.0.1:PORT"; `port` is then
    read from its log while it gets ready.
    """

    argv: list[str]
    env: dict[str, str]
    log_path: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None
    seen: set[tuple[int, int]] = field(default_factory=set)

    @property
    def command(self) -> str:
        """The command as typed from the repository root, for the report."""
        return f"PYTHONPATH={self.env['PYTHONPATH']} {shlex.join(self.argv)}"

    def start(self) -> None:
        log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        # Its own process group, so a Ctrl-C reaches only this script, which then stops the
        # server; not its own session (see CpuLayout).
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env=self.env,
                process_group=0,
            )
        finally:
            os.close(log_fd)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tree(self) -> list[ProcessInfo]:
        assert self.proc is not None
        tree = process_tree(self.proc.pid)
        self.seen.update((p.pid, p.start) for p in tree[1:])
        return tree

    def wait_ready(self, expect: bytes, workers: int) -> None:
        """Poll until GET / answers 200 with `expect` in the body and the worker processes
        exist."""
        assert self.proc is not None
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerExited(self.proc.returncode, self.log())
            if self.port == 0 and (match := _LISTENING.search(self.log())):
                self.port = int(match.group(1))
            if (
                self.port
                and len(worker_processes(self.tree())) >= workers
                and _answers(self.port, expect)
            ):
                return
            time.sleep(0.05)
        raise BenchError(f"server not ready after {READY_TIMEOUT:.0f} s:\n{self.log()[-2000:]}")

    def stop(self) -> None:
        """SIGINT, SIGKILL after STOP_GRACE, then SIGKILL any descendant still alive."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.tree()
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_GRACE)
        for pid, start in self.seen:
            info = read_process(pid)
            if info is not None and info.start == start:  # the same process, not a reused PID
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def serving(server: ServerProcess, expect: bytes, workers: int) -> Iterator[ServerProcess]:
    """Start `server`, wait until it is ready, and stop it by PID whatever happens."""
    try:
        server.start()
        server.wait_ready(expect, workers)
        yield server
    finally:
        server.stop()


def _answers(port: int, expect: bytes) -> bool:
    connection = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        return response.status == 200 and expect in response.read()
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()
