"""Side-by-side benchmark: hornbeam and the servers users would pick instead, same app, same run.

Owns the case and server matrix, starting and stopping every server by PID, waiting for an
idle machine, driving wrk, reading CPU time and RSS from /proc, and the markdown report with
hornbeam's throughput ratio to each peer. Loopback only. `python bench/peers.py --help`.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import http.client
import importlib.metadata
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hornbeam.errors import EXIT_APP_LOAD, HornbeamError

ROOT = Path(__file__).resolve().parents[1]
APPS = "bench/apps"
DICT_STATE = "bench/apps/dict_state"  # the per-process stand-in for hornbeam_erlang
FLASK_DEMO = "examples/flask_demo"
RESULTS_DIR = ROOT / "bench" / "results"
HOST = "127.0.0.1"
CONNECTIONS = 50
WARM_UP_SECONDS = 1
IDLE_CPU_THRESHOLD = 0.25
IDLE_MAX_WAIT = 30.0
READY_TIMEOUT = 30.0
STOP_GRACE = 10.0
MODES = ("keep-alive", "close")
PACKAGES = (
    *("hornbeam", "gunicorn", "uvicorn", "uvloop", "httptools"),
    *("granian", "hypercorn", "flask", "fastapi"),
)
_LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")


class BenchError(HornbeamError):
    """The benchmark cannot go on: a tool is missing, an argument or an output is wrong."""


@dataclass(frozen=True)
class Case:
    """One app, served by every server that speaks its interface."""

    name: str
    interface: str  # "wsgi" or "asgi"
    app: str
    expect: bytes  # the answer to GET / must contain this, so every server serves the same
    pythonpath: tuple[str, ...] = (APPS,)
    uses_state: bool = False  # peers get the dict stand-in for hornbeam_erlang


@dataclass(frozen=True)
class Server:
    """How to start one server: `python -m` + template, with {app} {workers} {port} {interface}.

    A server that `reports_port` binds port 0 and logs "Listening at: http://127.0.0.1:PORT";
    the others get a port that was free a moment before.
    """

    name: str
    interfaces: frozenset[str]
    template: str  # split on spaces; no part holds one
    reports_port: bool = False
    is_hornbeam: bool = False

    def argv(self, case: Case, workers: int, port: int) -> list[str]:
        values = {"app": case.app, "workers": workers, "port": port, "interface": case.interface}
        return [sys.executable, "-m", *(part.format(**values) for part in self.template.split())]


WSGI, ASGI = frozenset({"wsgi"}), frozenset({"asgi"})
_HORNBEAM = "hornbeam {app} -w {workers} -b 127.0.0.1:{port}"
_GUNICORN = "gunicorn {app} -w {workers} -b 127.0.0.1:{port} --no-control-socket"
_BIND = "--host 127.0.0.1 --port {port} --workers {workers}"
SERVERS = {
    s.name: s
    for s in (
        Server("hornbeam", WSGI | ASGI, _HORNBEAM, reports_port=True, is_hornbeam=True),
        Server("hornbeam-inline", WSGI, f"{_HORNBEAM} --threads 0", True, is_hornbeam=True),
        Server("gunicorn-sync", WSGI, f"{_GUNICORN} -k sync", reports_port=True),
        Server("gunicorn-gthread", WSGI, f"{_GUNICORN} -k gthread --threads 32", True),
        Server(
            "uvicorn",
            ASGI,
            f"uvicorn {{app}} {_BIND} --loop uvloop --http httptools --no-access-log",
        ),
        Server("granian", WSGI | ASGI, f"granian --interface {{interface}} {_BIND} {{app}}"),
        Server("hypercorn", ASGI, "hypercorn -k uvloop -b 127.0.0.1:{port} -w {workers} {app}"),
    )
}
# hornbeam-inline is opt-in: inline apps must never block, and the full matrix has a budget.
DEFAULT_SERVERS = [name for name in SERVERS if name != "hornbeam-inline"]

CASES = {
    c.name: c
    for c in (
        Case("wsgi-hello", "wsgi", "wsgi_apps:hello", b"Hello, World!"),
        Case("asgi-hello", "asgi", "asgi_apps:hello", b"Hello, World!"),
        Case("wsgi-64k", "wsgi", "wsgi_apps:body_64k", b"x" * 65536),
        Case(
            "flask-demo",
            "wsgi",
            "app:application",
            b"Welcome to Flask on Hornbeam!",
            (APPS, FLASK_DEMO),
            uses_state=True,
        ),
        Case("wsgi-block-5ms", "wsgi", "wsgi_apps:blocking_5ms", b"Hello, World!"),
        Case("fastapi-json", "asgi", "fastapi_json:app", b'"ok":true'),
    )
}
FULL = {
    "cases": list(CASES),
    "servers": DEFAULT_SERVERS,
    "workers": [1, 2],
    "modes": list(MODES),
    "duration": 3,
}
QUICK = {
    "cases": ["wsgi-hello"],
    "servers": ["hornbeam", "gunicorn-gthread", "gunicorn-sync"],
    "workers": [2],
    "modes": ["keep-alive"],
    "duration": 3,
}


@dataclass(frozen=True)
class Run:
    """One server started on one case with one worker count; every mode is measured on it."""

    case: Case
    server: Server
    workers: int


def plan_runs(cases: Sequence[str], servers: Sequence[str], workers: Sequence[int]) -> list[Run]:
    """The runs of the matrix, grouped by case and worker count so compared figures are close
    in time; a server is left out of the cases whose interface it does not speak."""
    for kind, names, known in (("case", cases, CASES), ("server", servers, SERVERS)):
        unknown = [name for name in names if name not in known]
        if unknown:
            raise BenchError(f"unknown {kind} {', '.join(unknown)}; choose from {', '.join(known)}")
    runs = [
        Run(CASES[c], SERVERS[s], w)
        for c in cases
        for w in workers
        for s in servers
        if CASES[c].interface in SERVERS[s].interfaces
    ]
    if not runs:
        raise BenchError("no server in --servers speaks the interface of any case in --cases")
    return runs


# ---- wrk -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WrkResult:
    requests: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int  # socket errors plus responses that were not 2xx/3xx


_TIME_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_TIME = r"([\d.]+)(us|ms|s|m|h)"


def parse_wrk(output: str) -> WrkResult:
    """Read the figures out of `wrk --latency` output."""

    def find(pattern: str) -> re.Match[str]:
        match = re.search(pattern, output, re.MULTILINE)
        if match is None:
            raise BenchError(f"wrk output has no line matching {pattern!r}:\n{output}")
        return match

    def ms(pattern: str) -> float:
        match = find(pattern)
        return float(match.group(1)) * _TIME_UNIT_MS[match.group(2)]

    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return WrkResult(
        requests=int(find(r"^\s*(\d+) requests in ").group(1)),
        requests_per_second=float(find(r"^Requests/sec:\s+([\d.]+)").group(1)),
        p50_ms=ms(rf"^\s*50%\s+{_TIME}\s*$"),
        p99_ms=ms(rf"^\s*99%\s+{_TIME}\s*$"),
        errors=sum(map(int, socket_errors.groups() if socket_errors else ()))
        + (int(non_2xx.group(1)) if non_2xx else 0),
    )


def wrk_command(url: str, mode: str, seconds: int) -> list[str]:
    """One wrk thread, 50 connections, latency percentiles; `close` makes every request open
    a new connection."""
    command = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    if mode == "close":
        command += ["-H", "Connection: close"]
    return [*command, url]


def run_wrk(command: list[str], seconds: int) -> WrkResult:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{shlex.join(command)} did not finish in {seconds + 30} s") from None
    if done.returncode != 0:
        raise BenchError(f"{shlex.join(command)} exited with {done.returncode}: {done.stderr}")
    return parse_wrk(done.stdout)


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


def wait_for_idle_machine() -> float | None:
    """Sample CPU use over 1 s until it is below the threshold, for at most IDLE_MAX_WAIT.
    Returns None once idle, else the last busy fraction (the caller warns)."""
    deadline = time.monotonic() + IDLE_MAX_WAIT
    while True:
        before = _cpu_line()
        time.sleep(1.0)  # the sampling window itself, not a wait for readiness
        busy = cpu_busy_fraction(before, _cpu_line())
        if busy < IDLE_CPU_THRESHOLD:
            return None
        if time.monotonic() >= deadline:
            return busy


# ---- servers ---------------------------------------------------------------------------------
class ServerExited(BenchError):
    def __init__(self, returncode: int, log: str) -> None:
        super().__init__(f"server exited with code {returncode}:\n{log[-2000:]}")
        self.returncode = returncode
        self.log = log


@dataclass
class ServerProcess:
    """A server started by this script; stopped by PID, with every descendant it was seen with."""

    argv: list[str]
    env: dict[str, str]
    log_path: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None
    seen: set[tuple[int, int]] = field(default_factory=set)

    def start(self) -> None:
        log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:  # its own session: a Ctrl-C reaches this script, which then stops the server
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env=self.env,
                start_new_session=True,
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

    def wait_ready(self, case: Case, workers: int) -> None:
        """Poll until GET / answers with the case's body and the worker processes exist."""
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
                and _answers(self.port, case.expect)
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


def free_port() -> int:
    """A loopback port free right now, for servers that cannot report a port 0 bind."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def server_env(run: Run) -> dict[str, str]:
    paths = list(run.case.pythonpath)
    if run.case.uses_state and not run.server.is_hornbeam:
        paths.insert(0, DICT_STATE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HORNBEAM_", "GUNICORN_"))}
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


# ---- measuring -------------------------------------------------------------------------------
@dataclass
class Measurement:
    case: str
    server: str
    workers: int
    mode: str
    status: str = "ok"  # ok, skipped or failed
    note: str = ""
    detail: str = ""  # why it failed, with the server's last log lines
    wrk: WrkResult | None = None
    cpu_us: float | None = None
    rss_mb: float | None = None


@dataclass
class RunRecord:
    """The exact commands of one run, for the report."""

    server_command: str
    wrk_commands: list[str] = field(default_factory=list)


def measure_run(
    run: Run, modes: Sequence[str], duration: int, log_dir: Path
) -> tuple[list[Measurement], RunRecord]:
    """Wait for an idle machine, start the run's server, warm it up, measure each mode on it,
    and stop it whatever happens."""
    results = [Measurement(run.case.name, run.server.name, run.workers, m) for m in modes]
    busy = wait_for_idle_machine()
    if busy is not None:
        for result in results:
            result.note = f"machine busy ({busy:.0%} CPU) at start"
    port = 0 if run.server.reports_port else free_port()  # picked late: less time to be taken
    log_path = log_dir / f"{run.case.name}-{run.server.name}-{run.workers}.log"
    server = ServerProcess(
        run.server.argv(run.case, run.workers, port), server_env(run), log_path, port
    )
    record = RunRecord(f"PYTHONPATH={server.env['PYTHONPATH']} {shlex.join(server.argv)}")
    ticks_per_s = os.sysconf("SC_CLK_TCK")
    try:
        server.start()
        server.wait_ready(run.case, run.workers)
        url = f"http://{HOST}:{server.port}/"
        warm_up = wrk_command(url, modes[0], WARM_UP_SECONDS)
        record.wrk_commands.append(f"{shlex.join(warm_up)}  # warm-up")
        run_wrk(warm_up, WARM_UP_SECONDS)
        rss = [v for p in worker_processes(server.tree()) if (v := rss_mb(p.pid)) is not None]
        for result in results:
            command = wrk_command(url, result.mode, duration)
            record.wrk_commands.append(shlex.join(command))
            before = server.tree()
            result.wrk = run_wrk(command, duration)
            after = server.tree()
            result.cpu_us = cpu_us_per_request(before, after, result.wrk.requests, ticks_per_s)
            result.rss_mb = sum(rss) / len(rss) if rss else None
    except BenchError as error:
        status, note = _classify(run, error)
        for result in results:
            if result.wrk is None:
                result.status, result.note, result.detail = status, note, str(error)
    finally:
        server.stop()
    return results, record


def _classify(run: Run, error: BenchError) -> tuple[str, str]:
    """A hornbeam that refuses an ASGI app is a known gap (skipped); anything else failed."""
    if (
        isinstance(error, ServerExited)
        and run.server.is_hornbeam
        and run.case.interface == "asgi"
        and error.returncode == EXIT_APP_LOAD
        and "ASGI app" in error.log
    ):
        return "skipped", "ASGI not supported yet by hornbeam"
    return "failed", str(error).splitlines()[0].rstrip(":")[:100] + " (see Failures)"


# ---- report ----------------------------------------------------------------------------------
RatioKey = tuple[str, int, str, str, str]  # case, workers, mode, hornbeam variant, peer


def hornbeam_ratios(results: Sequence[Measurement]) -> dict[RatioKey, float]:
    """hornbeam req/s ÷ peer req/s for every pair measured on the same case, workers and mode."""
    ok = [m for m in results if m.status == "ok" and m.wrk is not None]
    ours = [m for m in ok if SERVERS[m.server].is_hornbeam]
    peers = [m for m in ok if not SERVERS[m.server].is_hornbeam]
    return {
        (h.case, h.workers, h.mode, h.server, p.server): h.wrk.requests_per_second
        / p.wrk.requests_per_second
        for h in ours
        for p in peers
        if h.wrk and p.wrk and p.wrk.requests_per_second > 0
        if (h.case, h.workers, h.mode) == (p.case, p.workers, p.mode)
    }


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _number(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _ratio(ratios: dict[RatioKey, float], key: RatioKey) -> str:
    return f"{ratios[key]:.2f}x" if key in ratios else "—"


def results_table(results: Sequence[Measurement]) -> str:
    """Every measurement; the last figure is the default hornbeam's req/s over this server's."""
    ratios = hornbeam_ratios(results)
    rows = []
    for m in results:
        w = m.wrk
        figures = [
            _number(w.requests_per_second if w else None, 0),
            _number(w.p50_ms if w else None, 2),
            _number(w.p99_ms if w else None, 2),
            _number(m.cpu_us, 1),
            _number(m.rss_mb, 1),
            str(w.errors) if w else "—",
            _ratio(ratios, (m.case, m.workers, m.mode, "hornbeam", m.server)),
        ]
        note = m.note if m.status == "ok" else f"{m.status}: {m.note}"
        rows.append([m.case, str(m.workers), m.mode, m.server, *figures, note])
    header = "case|workers|mode|server|req/s|p50 ms|p99 ms|CPU µs/req|RSS MB/worker|errors"
    return _table([*header.split("|"), "hornbeam ÷ server", "note"], rows)


def ratio_table(results: Sequence[Measurement]) -> str:
    """One row per case, workers, mode and hornbeam variant; one column per peer."""
    ratios = hornbeam_ratios(results)
    peers = list(dict.fromkeys(m.server for m in results if not SERVERS[m.server].is_hornbeam))
    rows = [
        [m.case, str(m.workers), m.mode, m.server if m.status == "ok" else f"{m.server} ({m.note})"]
        + [_ratio(ratios, (m.case, m.workers, m.mode, m.server, peer)) for peer in peers]
        for m in results
        if SERVERS[m.server].is_hornbeam
    ]
    return _table(["case", "workers", "mode", "hornbeam", *(f"÷ {p}" for p in peers)], rows)


def machine_facts() -> list[str]:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next(
        (ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), "?"
    )
    versions = []
    for package in PACKAGES:
        try:
            versions.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{package} (not installed)")
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    wrk_version = (wrk.stdout + wrk.stderr).strip().splitlines() or ["?"]
    return [
        f"CPUs (nproc): {os.cpu_count()}, {model}",
        f"Kernel: {platform.system()} {platform.release()}",
        f"Python: {platform.python_version()} ({sys.executable})",
        f"wrk: {wrk_version[0].split(' Copyright')[0]}",
        f"Packages: {', '.join(versions)}",
    ]


METHOD = f"""\
- Every server is started by the script on the same app module, bound to {HOST} only, and
  stopped by PID afterwards. Before each server starts, the script waits (at most
  {IDLE_MAX_WAIT:.0f} s) until CPU use over 1 s is below {IDLE_CPU_THRESHOLD:.0%}.
- wrk: 1 thread, {CONNECTIONS} connections, `--latency`; a {WARM_UP_SECONDS} s warm-up, then
  each mode on the same server. `close` sends `Connection: close`: one connection a request.
- CPU µs/req: utime+stime of the server's whole process tree (arbiter and workers) read from
  /proc after minus before the measured wrk run, divided by the requests wrk completed.
- RSS MB/worker: mean VmRSS of the worker processes, idle, right after the warm-up.
- hornbeam ÷ server: hornbeam's req/s divided by that server's, same case, workers and mode.
- The Flask demo runs on hornbeam with the real shared state (`hornbeam_erlang`); the peers
  run it with `{DICT_STATE}` first on PYTHONPATH: a per-process dict, nothing shared.
- wrk runs on the same machine and needs a core of its own: on a small machine the figures
  compare the servers with each other; they are not absolute capacity."""


def write_report(
    path: Path, title: Sequence[str], results: Sequence[Measurement], records: Sequence[RunRecord]
) -> None:
    commands = "\n".join(
        "\n".join([r.server_command, *(f"  {c}" for c in r.wrk_commands)]) for r in records
    )
    sections = [
        "\n".join(title),
        "## Machine\n\n" + "\n".join(f"- {fact}" for fact in machine_facts()),
        "## Results\n\n" + results_table(results),
        "## hornbeam req/s ÷ peer req/s (above 1: hornbeam faster)\n\n" + ratio_table(results),
        "## Method\n\n" + METHOD,
        f"## Commands (from the repository root)\n\n```sh\n{commands}\n```",
    ]
    failures = [m for m in results if m.status == "failed"]
    if failures:
        details = dict.fromkeys(
            f"{m.case} on {m.server} x{m.workers}:\n{m.detail}" for m in failures
        )
        sections.append("## Failures\n\n```\n" + "\n\n".join(details) + "\n```")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join(sections) + "\n")


# ---- command line ----------------------------------------------------------------------------
def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in _names(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give worker counts like 1,2") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: worker counts must be 1 or more")
    return counts


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="hornbeam and its peers on the same apps, in the same run, with wrk."
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="wsgi-hello, 2 workers, hornbeam vs gunicorn gthread and sync, "
        "keep-alive only, 3 s (options given explicitly still win)",
    )
    parser.add_argument("--cases", type=_names, help=f"default: {','.join(CASES)}")
    parser.add_argument(
        "--servers", type=_names, help=f"default: {','.join(DEFAULT_SERVERS)}; also hornbeam-inline"
    )
    parser.add_argument("--workers", type=_counts, help="worker counts (default: 1,2)")
    parser.add_argument("--modes", type=_names, help=f"default: {','.join(MODES)}")
    parser.add_argument("--duration", type=int, help="seconds measured per mode (default: 3)")
    parser.add_argument(
        "--output", type=Path, help="report file (default: bench/results/YYYY-MM-DD-peers.md)"
    )
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if not args.modes or any(mode not in MODES for mode in args.modes):
        parser.error(f"--modes: choose from {', '.join(MODES)}")
    if args.duration < 1:
        parser.error("--duration: whole seconds, 1 or more")
    return args


def estimated_seconds(runs: Sequence[Run], modes: Sequence[str], duration: int) -> float:
    """Per run: idle check 1 s, start and stop about 1.5 s, warm-up, then every mode."""
    return len(runs) * (2.5 + WARM_UP_SECONDS + len(modes) * duration)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("peers.py: wrk is not installed; install it: apt-get install -y wrk", file=sys.stderr)
        return 2
    try:
        runs = plan_runs(args.cases, args.servers, args.workers)
    except BenchError as error:
        print(f"peers.py: {error}", file=sys.stderr)
        return 2
    started = datetime.datetime.now(datetime.UTC)
    load = float(Path("/proc/loadavg").read_text().split()[0])
    estimate = estimated_seconds(runs, args.modes, args.duration)
    print(f"{len(runs)} server runs, about {estimate:.0f} s; 1-minute load average {load:.2f}")
    results: list[Measurement] = []
    records: list[RunRecord] = []
    with tempfile.TemporaryDirectory(prefix="hornbeam-bench-") as log_dir:  # mode 0700
        try:
            for number, run in enumerate(runs, 1):
                print(
                    f"[{number}/{len(runs)}] {run.case.name}: {run.server.name} -w {run.workers}",
                    flush=True,
                )
                measured, record = measure_run(run, args.modes, args.duration, Path(log_dir))
                results += measured
                records.append(record)
        except KeyboardInterrupt:
            print("\ninterrupted; every server was stopped. Partial results (not saved):\n")
            print(results_table(results))
            return 130
    took = (datetime.datetime.now(datetime.UTC) - started).total_seconds()
    print("\n" + results_table(results) + "\n\n" + ratio_table(results))
    command = shlex.join(["python", "bench/peers.py", *(sys.argv[1:] if argv is None else argv)])
    title = [
        f"# hornbeam vs peers, {started:%Y-%m-%d}",
        "",
        f"`{command}`: started {started:%H:%M} UTC, took {took:.0f} s, "
        f"1-minute load average at start {load:.2f}.",
    ]
    output = args.output or RESULTS_DIR / f"{started:%Y-%m-%d}-peers.md"
    write_report(output, title, results, records)
    print(f"\nreport written to {output}")
    return 1 if any(m.status == "failed" for m in results) else 0


if __name__ == "__main__":
    sys.exit(main())
