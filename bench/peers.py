"""Side-by-side benchmark: hornbeam and the servers users would pick instead, same app, same run.

Owns the case and server matrix (the command and environment of every server), driving wrk,
and the markdown report with hornbeam's throughput ratio to each peer. Every server starts on
an idle machine and is watched and stopped by PID with servers.py, which also reads its CPU
time and RSS from /proc. Loopback only. `python bench/peers.py --help`.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reporting import RESULTS_DIR, figure, machine_facts, markdown_table, save_report
from servers import (
    HOST,
    IDLE_CPU_THRESHOLD,
    IDLE_MAX_WAIT,
    BenchError,
    CpuLayout,
    ServerProcess,
    cpu_us_per_request,
    port_to_bind,
    rss_mb,
    serving,
    wait_for_idle_machine,
    worker_processes,
)

APPS = "bench/apps"
DICT_STATE = "bench/apps/dict_state"  # the per-process stand-in for hornbeam_erlang
FLASK_DEMO = "examples/flask_demo"
CONNECTIONS = 50
WARM_UP_SECONDS = 1
MODES = ("keep-alive", "close")
PACKAGES = (
    *("hornbeam", "gunicorn", "uvicorn", "uvloop", "httptools"),
    *("granian", "hypercorn", "flask", "fastapi"),
)


@dataclass(frozen=True)
class Case:
    """One app, served by every server that speaks its interface."""

    name: str
    interface: str  # "wsgi" or "asgi"
    app: str
    expect: bytes  # the answer to GET / must contain this, so every server serves the same
    pythonpath: tuple[str, ...] = (APPS,)
    uses_state: bool = False  # peers get the dict stand-in for hornbeam_erlang
    # How bench/apps/ceiling.py may answer it: "static" (the same bytes every time: the app
    # does no work), "per-request" (a WSGI app called inline); empty: not at all.
    ceilings: frozenset[str] = frozenset()


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
    ceiling: str = ""  # a yardstick answering this way: only the cases that allow it

    def argv(self, case: Case, workers: int, port: int) -> list[str]:
        values = {
            "app": case.app,
            "workers": workers,
            "port": port,
            "interface": case.interface,
            "ceiling": self.ceiling,
        }
        return [sys.executable, "-m", *(part.format(**values) for part in self.template.split())]


WSGI, ASGI = frozenset({"wsgi"}), frozenset({"asgi"})
_HORNBEAM = "hornbeam {app} -w {workers} -b 127.0.0.1:{port}"
_CEILING = (
    "ceiling {app} --interface {interface} --answer {ceiling} --host 127.0.0.1"
    " --port {port} --workers {workers}"
)
_BOTH_CEILINGS = frozenset({"static", "per-request"})
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
        Server("ceiling-static", WSGI | ASGI, _CEILING, reports_port=True, ceiling="static"),
        Server("ceiling-wsgi", WSGI, _CEILING, reports_port=True, ceiling="per-request"),
    )
}
# Opt-in: inline apps must never block, the ceilings (bench/apps/ceiling.py) are yardsticks,
# not servers, and the full matrix has a budget.
DEFAULT_SERVERS = [
    name for name, s in SERVERS.items() if name != "hornbeam-inline" and not s.ceiling
]

CASES = {
    c.name: c
    for c in (
        Case("wsgi-hello", "wsgi", "wsgi_apps:hello", b"Hello, World!", ceilings=_BOTH_CEILINGS),
        Case(
            "asgi-hello",
            "asgi",
            "asgi_apps:hello",
            b"Hello, World!",
            ceilings=frozenset({"static"}),
        ),
        Case("wsgi-64k", "wsgi", "wsgi_apps:body_64k", b"x" * 65536, ceilings=_BOTH_CEILINGS),
        Case(
            "flask-demo",
            "wsgi",
            "app:application",
            b"Welcome to Flask on Hornbeam!",
            (APPS, FLASK_DEMO),
            uses_state=True,
            ceilings=frozenset({"per-request"}),
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
        if not SERVERS[s].ceiling or SERVERS[s].ceiling in CASES[c].ceilings
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


APT_INSTALL_WRK = ["apt-get", "install", "-y", "--no-install-recommends", "wrk"]
APT_TIMEOUT = 300  # seconds for each apt-get step


def ensure_wrk() -> bool:
    """True once wrk is on PATH. Where it is missing, it is installed from apt when this
    process may (root, apt-get present): an install, then an index update and one more try
    if the first fails. Otherwise, or if that fails, it says how to install it."""
    if shutil.which("wrk") is not None:
        return True
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print(
            "peers.py: wrk is not installed; install it: sudo apt-get install -y wrk",
            file=sys.stderr,
        )
        return False
    print(f"peers.py: wrk is not installed; running {shlex.join(APT_INSTALL_WRK)}", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (APT_INSTALL_WRK, ["apt-get", "update"], APT_INSTALL_WRK):
        try:
            subprocess.run(command, env=env, timeout=APT_TIMEOUT, check=True)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
            print(f"peers.py: {error}", file=sys.stderr)
            continue
        if command is APT_INSTALL_WRK and shutil.which("wrk") is not None:
            return True
    print("peers.py: could not install wrk from apt; install it by hand", file=sys.stderr)
    return False


def run_wrk(command: list[str], seconds: int) -> WrkResult:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{shlex.join(command)} did not finish in {seconds + 30} s") from None
    if done.returncode != 0:
        raise BenchError(f"{shlex.join(command)} exited with {done.returncode}: {done.stderr}")
    return parse_wrk(done.stdout)


# ---- servers ---------------------------------------------------------------------------------
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
    status: str = "ok"  # ok or failed
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
    busy = wait_for_idle_machine()
    results = [
        Measurement(run.case.name, run.server.name, run.workers, m, note=busy) for m in modes
    ]
    port = port_to_bind(run.server.reports_port)
    log_path = log_dir / f"{run.case.name}-{run.server.name}-{run.workers}.log"
    layout = CpuLayout.for_workers(run.workers)
    server_argv = layout.server_argv(run.server.argv(run.case, run.workers, port))
    server = ServerProcess(server_argv, server_env(run), log_path, port)
    record = RunRecord(server.command)
    ticks_per_s = os.sysconf("SC_CLK_TCK")
    try:
        with serving(server, run.case.expect, run.workers):
            url = f"http://{HOST}:{server.port}/"
            warm_up = layout.client_argv(wrk_command(url, modes[0], WARM_UP_SECONDS))
            record.wrk_commands.append(f"{shlex.join(warm_up)}  # warm-up")
            run_wrk(warm_up, WARM_UP_SECONDS)
            workers = worker_processes(server.tree())
            rss = [v for p in workers if (v := rss_mb(p.pid)) is not None]
            for result in results:
                command = layout.client_argv(wrk_command(url, result.mode, duration))
                record.wrk_commands.append(shlex.join(command))
                before = server.tree()
                result.wrk = run_wrk(command, duration)
                after = server.tree()
                result.cpu_us = cpu_us_per_request(before, after, result.wrk.requests, ticks_per_s)
                result.rss_mb = sum(rss) / len(rss) if rss else None
    except BenchError as error:
        note = str(error).splitlines()[0].rstrip(":")[:100] + " (see Failures)"
        for result in results:
            if result.wrk is None:
                result.status, result.note, result.detail = "failed", note, str(error)
    return results, record


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


def _ratio(ratios: dict[RatioKey, float], key: RatioKey) -> str:
    return f"{ratios[key]:.2f}x" if key in ratios else "—"


def results_table(results: Sequence[Measurement]) -> str:
    """Every measurement; the last figure is the default hornbeam's req/s over this server's."""
    ratios = hornbeam_ratios(results)
    rows = []
    for m in results:
        w = m.wrk
        figures = [
            figure(w.requests_per_second if w else None, 0),
            figure(w.p50_ms if w else None, 2),
            figure(w.p99_ms if w else None, 2),
            figure(m.cpu_us, 1),
            figure(m.rss_mb, 1),
            str(w.errors) if w else "—",
            _ratio(ratios, (m.case, m.workers, m.mode, "hornbeam", m.server)),
        ]
        note = m.note if m.status == "ok" else f"{m.status}: {m.note}"
        rows.append([m.case, str(m.workers), m.mode, m.server, *figures, note])
    header = "case|workers|mode|server|req/s|p50 ms|p99 ms|CPU µs/req|RSS MB/worker|errors"
    return markdown_table([*header.split("|"), "hornbeam ÷ server", "note"], rows)


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
    return markdown_table(["case", "workers", "mode", "hornbeam", *(f"÷ {p}" for p in peers)], rows)


def run_facts() -> list[str]:
    """The machine, the load generator and the packages measured."""
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    wrk_version = (wrk.stdout + wrk.stderr).strip().splitlines() or ["?"]
    return machine_facts(PACKAGES, [f"wrk: {wrk_version[0].split(' Copyright')[0]}"])


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
- CPUs: where the machine has more CPUs than the server has workers, `taskset` gives wrk
  one CPU and the server one CPU per worker, so no server, whatever its threads, uses more
  cores than it has workers; otherwise every process shares every CPU (see each command).
  Servers run in this script's session, not one of their own: a separate session is a
  separate autogroup to Linux's scheduler, which halved granian's figures.
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
        "## Machine\n\n" + "\n".join(f"- {fact}" for fact in run_facts()),
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
    save_report(path, "\n\n".join(sections) + "\n")


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
        "--servers",
        type=_names,
        help=f"default: {','.join(DEFAULT_SERVERS)}; also "
        + ", ".join(name for name in SERVERS if name not in DEFAULT_SERVERS),
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
    if not ensure_wrk():
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
