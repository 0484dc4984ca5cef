"""WebSocket benchmark: hornbeam next to uvicorn on the same echo app, in the same run.

Owns the two WebSocket measurements of the ASGI issue and their report:

- `idle`: one worker holds N idle WebSockets (default 10,000). The worker's RSS is read from
  /proc before and with them open (KiB per connection); then, with all of them still open, a
  fresh client must get an HTTP answer and echo 100 messages with a p99 under 50 ms; then
  every idle socket is closed with a close handshake. Server pings are pushed past the test
  so no frame flows on the idle sockets.
- `echo`: 50 connections each send a text message and wait for its echo, again and again,
  for D seconds: messages/s, latency and server CPU per message, with 64 B and 16 KB messages.

The client is this process on a uvloop loop, speaking RFC 6455 over raw asyncio streams
(ws_client.py): a full client object per connection would weigh more than the server side
being measured. The servers are peers.py's, started and stopped by PID with servers.py.
Loopback only.
`python bench/websocket.py [idle|echo|all] [--connections N] [--duration S]`: exit status 1
when a measurement failed or a worker fell short, 2 when file descriptors are too few.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import os
import resource
import shlex
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import peers  # bench/peers.py: the server commands and their environment
import servers  # bench/servers.py: starting, watching and stopping servers by PID
import uvloop
from reporting import RESULTS_DIR, figure, machine_facts, markdown_table, save_report
from ws_client import (
    CONNECT_CONCURRENCY,
    CONNECT_TIMEOUT,
    BenchError,
    RawWebSocket,
    close_many,
    open_many,
)

HOST = servers.HOST
APP = "ws_echo:app"  # bench/apps/ws_echo.py, found through peers.APPS on PYTHONPATH
READY = peers.Case("ws-echo", "asgi", APP, b"websocket echo")  # GET / answers this body
QUIET_SECONDS = 3600  # server ping interval and idle timeout in `idle`: longer than the test
HEALTH_MESSAGES = 100
HEALTH_P99_LIMIT_MS = 50.0
ECHO_CONNECTIONS = 50
ECHO_SIZES = (64, 16 * 1024)
WARM_UP_SECONDS = 1.0
WARM_UP_SOCKETS = 100  # opened and closed before the idle RSS is read: first-use costs
RSS_SETTLE_TIMEOUT = 3.0
PACKAGES = ("hornbeam", "uvicorn", "uvloop", "httptools", "websockets")

Q = str(QUIET_SECONDS)
# Flags added to peers.py's command for each server: first always (uvicorn is told which
# WebSocket implementation to use), then in `idle` only (pings and idle timeouts past the test).
FLAGS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "hornbeam": ((), ("--websocket-ping-interval", Q, "--websocket-timeout", Q)),
    "uvicorn": (("--ws", "websockets"), ("--ws-ping-interval", Q, "--ws-ping-timeout", Q)),
}


# ---- figures ---------------------------------------------------------------------------------
def percentile(values: Sequence[float], share: float) -> float | None:
    """Nearest-rank percentile (`share` 0.99 for p99); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = -(-len(ordered) * share // 1)  # ceil
    return ordered[max(1, int(rank)) - 1]


async def settled_rss_kib(pid: int) -> int:
    """VmRSS once two readings 0.25 s apart agree (freed buffers have settled), or the last
    reading after RSS_SETTLE_TIMEOUT."""
    deadline = time.monotonic() + RSS_SETTLE_TIMEOUT
    last = None
    while True:
        rss = servers.rss_mb(pid)
        if rss is None:
            raise BenchError(f"the worker (PID {pid}) is gone")
        if round(rss * 1024) == last or time.monotonic() > deadline:
            return round(rss * 1024)
        last = round(rss * 1024)
        await asyncio.sleep(0.25)


@dataclass
class IdleResult:
    server: str
    wanted: int
    failure: str = ""  # why the measurement stopped, with the server's last log lines
    note: str = ""
    opened: int = 0
    open_seconds: float | None = None
    first_refusal: str = ""
    rss_idle_kib: int | None = None
    rss_held_kib: int | None = None
    rss_closed_kib: int | None = None
    http_ms: float | None = None
    handshake_ms: float | None = None
    echo_ms: list[float] = field(default_factory=list)
    idle_frames: int = 0
    closed_cleanly: int = 0

    @property
    def kib_per_connection(self) -> float | None:
        if not self.opened or self.rss_idle_kib is None or self.rss_held_kib is None:
            return None
        return (self.rss_held_kib - self.rss_idle_kib) / self.opened

    def problems(self) -> list[str]:
        """What fell short of the issue's bar; empty when the worker held up."""
        found = [self.failure.splitlines()[0][:100]] if self.failure else []
        if self.opened < self.wanted:
            found.append(f"{self.wanted - self.opened} not accepted ({self.first_refusal})")
        p99 = percentile(self.echo_ms, 0.99)
        if len(self.echo_ms) < HEALTH_MESSAGES:
            found.append(f"fresh client echoed {len(self.echo_ms)}/{HEALTH_MESSAGES}")
        elif p99 is not None and p99 >= HEALTH_P99_LIMIT_MS:
            found.append(f"echo p99 {p99:.1f} ms")
        if self.idle_frames:
            found.append(f"{self.idle_frames} frames on idle sockets")
        if self.closed_cleanly < self.opened:
            found.append(f"{self.opened - self.closed_cleanly} not closed cleanly")
        return found


@dataclass
class EchoResult:
    server: str
    size: int
    failure: str = ""
    note: str = ""
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)  # one per round trip
    server_cpu_us: float | None = None  # per message, the server's whole process tree
    client_cpu: float | None = None  # share of one core this process used

    @property
    def per_second(self) -> float | None:
        return len(self.latencies_ms) / self.seconds if self.latencies_ms else None


# ---- measuring -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Started:
    """A running server, the PID of its one worker, and how busy the machine was before."""

    process: servers.ServerProcess
    worker: int
    busy: str  # "" when the machine was idle at start


def server_argv(name: str, port: int, idle: bool) -> list[str]:
    """peers.py's command for server `name` on the echo app with one worker, plus FLAGS."""
    always, quiet = FLAGS[name]
    return [*peers.SERVERS[name].argv(READY, 1, port), *always, *(quiet if idle else ())]


@contextlib.contextmanager
def serving(name: str, idle: bool, log_dir: Path, commands: list[str]) -> Iterator[Started]:
    """Wait for an idle machine, start server `name` with one worker, wait until it answers,
    stop it by PID afterwards."""
    busy = servers.wait_for_idle_machine()
    run = peers.Run(READY, peers.SERVERS[name], 1)
    port = servers.port_to_bind(run.server.reports_port)
    log = log_dir / f"{name}-{'idle' if idle else 'echo'}.log"
    process = servers.ServerProcess(server_argv(name, port, idle), peers.server_env(run), log, port)
    commands.append(process.command)
    with servers.serving(process, READY.expect, 1):
        workers = servers.worker_processes(process.tree())
        if len(workers) != 1:
            raise BenchError(f"{name}: expected one worker, found {len(workers)}")
        yield Started(process, workers[0].pid, busy)


async def check_health(port: int, result: IdleResult) -> None:
    """While the idle sockets stay open: one HTTP GET, then a fresh WebSocket that echoes
    HEALTH_MESSAGES 64-byte messages one after the other."""
    started = time.perf_counter()
    async with asyncio.timeout(CONNECT_TIMEOUT):
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
        answer = await reader.read()  # until the server closes, as Connection: close asks
        writer.close()
        await writer.wait_closed()
    if not answer.startswith(b"HTTP/1.1 200 ") or not answer.endswith(READY.expect):
        raise BenchError(f"GET / with the idle sockets open answered {answer[:200]!r}")
    result.http_ms = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    fresh = await RawWebSocket.open(port)
    result.handshake_ms = (time.perf_counter() - started) * 1000
    try:
        for _ in range(HEALTH_MESSAGES):
            sent = time.perf_counter()
            await fresh.echo(b"h" * 64)
            result.echo_ms.append((time.perf_counter() - sent) * 1000)
    finally:
        await fresh.close()


async def measure_idle(started: Started, result: IdleResult, hold: float) -> None:
    port = started.process.port
    warm, refusal = await open_many(port, WARM_UP_SOCKETS)
    await asyncio.gather(*(ws.echo(b"w" * 64) for ws in warm))
    await close_many(warm)
    if refusal:
        raise BenchError(f"warm-up WebSocket refused: {refusal}")
    result.rss_idle_kib = await settled_rss_kib(started.worker)
    begun = time.perf_counter()
    sockets, result.first_refusal = await open_many(port, result.wanted)
    result.open_seconds = time.perf_counter() - begun
    result.opened = len(sockets)
    try:
        await asyncio.sleep(hold)  # the idle period itself: nothing is sent either way
        result.rss_held_kib = await settled_rss_kib(started.worker)
        await check_health(port, result)
    finally:
        result.closed_cleanly = await close_many(sockets)
        result.idle_frames = sum(ws.other_frames for ws in sockets)
    result.rss_closed_kib = await settled_rss_kib(started.worker)


async def echo_for(sockets: Sequence[RawWebSocket], payload: bytes, seconds: float) -> list[float]:
    """Every socket echoes `payload` one message at a time until `seconds` have passed; the
    round-trip times in ms."""
    until = time.perf_counter() + seconds

    async def loop(ws: RawWebSocket) -> list[float]:
        times = []
        while (sent := time.perf_counter()) < until:
            await ws.echo(payload)
            times.append((time.perf_counter() - sent) * 1000)
        return times

    loops = [asyncio.ensure_future(loop(ws)) for ws in sockets]
    try:
        return [ms for times in await asyncio.gather(*loops) for ms in times]
    finally:  # after a failure, end the other loops before their sockets are closed
        for running in loops:
            running.cancel()
        await asyncio.gather(*loops, return_exceptions=True)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure_echo(started: Started, result: EchoResult, seconds: float) -> None:
    sockets, refusal = await open_many(started.process.port, ECHO_CONNECTIONS)
    try:
        if refusal:
            raise BenchError(f"echo connection refused: {refusal}")
        payload = (b"0123456789abcdef" * (result.size // 16 + 1))[: result.size]
        await echo_for(sockets, payload, WARM_UP_SECONDS)
        tree_before, client_before = started.process.tree(), _cpu_seconds()
        begun = time.perf_counter()
        result.latencies_ms = await echo_for(sockets, payload, seconds)
        result.seconds = time.perf_counter() - begun
        result.client_cpu = (_cpu_seconds() - client_before) / result.seconds
        result.server_cpu_us = servers.cpu_us_per_request(
            tree_before,
            started.process.tree(),
            len(result.latencies_ms),
            os.sysconf("SC_CLK_TCK"),
        )
    finally:
        await close_many(sockets)


def run_idle(connections: int, hold: float, log_dir: Path, commands: list[str]) -> list[IdleResult]:
    results = []
    for server in FLAGS:
        result = IdleResult(server, connections)
        print(f"idle: {server}, {connections:,} WebSockets held {hold:g} s", flush=True)
        try:
            with serving(server, True, log_dir, commands) as started:
                result.note = started.busy
                uvloop.run(measure_idle(started, result, hold))
        except (servers.BenchError, OSError, EOFError) as error:  # EOF: a server quit
            result.failure = str(error) or type(error).__name__
        results.append(result)
    return results


def run_echo(seconds: float, log_dir: Path, commands: list[str]) -> list[EchoResult]:
    results = []
    for server in FLAGS:
        sized = [EchoResult(server, size) for size in ECHO_SIZES]
        print(f"echo: {server}, {ECHO_CONNECTIONS} connections, {seconds:g} s", flush=True)
        try:
            with serving(server, False, log_dir, commands) as started:
                for result in sized:
                    result.note = started.busy
                    uvloop.run(measure_echo(started, result, seconds))
        except (servers.BenchError, OSError, EOFError) as error:  # EOF: a server quit
            for result in sized:
                if not result.latencies_ms:
                    result.failure = str(error) or type(error).__name__
        results += sized
    return results


# ---- report ----------------------------------------------------------------------------------
def _mib(kib: int | None) -> str:
    return figure(None if kib is None else kib / 1024)


def _ratio(ours: float | None, theirs: float | None) -> str:
    return f"{ours / theirs:.2f}x" if ours is not None and theirs else "—"


def _size(size: int) -> str:
    return f"{size // 1024} KB" if size >= 1024 else f"{size} B"


def idle_table(results: Sequence[IdleResult]) -> str:
    header = (
        "server|held / asked|opened in s|worker RSS idle MiB|RSS held MiB|KiB per connection"
        "|RSS after close MiB|GET / ms|new handshake ms|echo p50 ms|echo p99 ms"
        "|frames on idle sockets|closed cleanly|verdict"
    )
    rows = [
        [
            *(r.server, f"{r.opened:,} / {r.wanted:,}", figure(r.open_seconds)),
            *(_mib(r.rss_idle_kib), _mib(r.rss_held_kib), figure(r.kib_per_connection)),
            *(_mib(r.rss_closed_kib), figure(r.http_ms), figure(r.handshake_ms)),
            *(figure(percentile(r.echo_ms, share), 2) for share in (0.5, 0.99)),
            *(str(r.idle_frames), f"{r.closed_cleanly:,}"),
            "; ".join([*(r.problems() or ["healthy"]), *([r.note] if r.note else [])]),
        ]
        for r in results
    ]
    return markdown_table(header.split("|"), rows)


def echo_table(results: Sequence[EchoResult]) -> str:
    header = "message|server|messages/s|p50 ms|p99 ms|server CPU µs/msg|client CPU|note"
    rows = [
        [
            *(_size(r.size), r.server, figure(r.per_second, 0)),
            *(figure(percentile(r.latencies_ms, share), 2) for share in (0.5, 0.99)),
            figure(r.server_cpu_us),
            "—" if r.client_cpu is None else f"{r.client_cpu:.0%}",
            f"failed: {r.failure.splitlines()[0][:100]}" if r.failure else r.note,
        ]
        for r in results
    ]
    return markdown_table(header.split("|"), rows)


def ratio_table(idle: Sequence[IdleResult], echo: Sequence[EchoResult]) -> str:
    """hornbeam's figure over uvicorn's, for each measurement both servers made."""
    rows = []
    held = {r.server: r.kib_per_connection for r in idle}
    if held:
        ratio = _ratio(held.get("hornbeam"), held.get("uvicorn"))
        rows.append(["idle: KiB per connection (below 1: hornbeam lighter)", ratio])
    for size in sorted({r.size for r in echo}):
        pair = {r.server: r for r in echo if r.size == size}
        hornbeam, uvicorn = pair.get("hornbeam"), pair.get("uvicorn")
        for label, reading in (
            ("messages/s (above 1: hornbeam faster)", "per_second"),
            ("server CPU µs/msg (below 1: hornbeam cheaper)", "server_cpu_us"),
        ):
            ours, theirs = (getattr(r, reading) if r else None for r in (hornbeam, uvicorn))
            rows.append([f"echo {_size(size)}: {label}", _ratio(ours, theirs)])
    return markdown_table(["measurement", "hornbeam ÷ uvicorn"], rows)


def run_facts(load: float) -> list[str]:
    """The machine, the packages measured, and what the client may open."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return [
        *machine_facts(PACKAGES),
        f"RLIMIT_NOFILE of the client: {soft:,} soft, {hard:,} hard",
        f"1-minute load average at start: {load:.2f}",
    ]


METHOD = f"""\
- One server at a time, one worker, the same app (`bench/apps/ws_echo.py`), on {HOST} only,
  started by the script and stopped by PID (SIGINT, then SIGKILL), after waiting up to
  {servers.IDLE_MAX_WAIT:.0f} s for CPU use under {servers.IDLE_CPU_THRESHOLD:.0%}. The client is
  this process: one uvloop loop, raw asyncio streams, the upgrade written by hand with a
  random Sec-WebSocket-Key, frames masked by the `websockets` C helper.
- idle: {WARM_UP_SOCKETS} WebSockets open, echo and close first (one-time costs); the worker's
  settled VmRSS is read; N WebSockets open ({CONNECT_CONCURRENCY} handshakes at a time) and are
  held for the duration with nothing sent; VmRSS again. KiB per connection = RSS growth ÷
  connections held (kernel socket buffers are not in RSS). Server pings and idle timeouts are
  set to {QUIET_SECONDS} s. With all of them open, a fresh client sends GET / and echoes
  {HEALTH_MESSAGES} 64-byte messages one at a time on a new WebSocket. Healthy: all N accepted,
  echo p99 under {HEALTH_P99_LIMIT_MS:.0f} ms, no frame on an idle socket, every close handshake
  answered with 1000 and a TCP close.
- echo: {ECHO_CONNECTIONS} connections each send a text message and wait for its echo, over
  and over; {WARM_UP_SECONDS:g} s warm-up, then the duration measured. Server CPU µs/msg:
  utime+stime of the server's process tree ÷ messages. Client CPU near 100% means the client
  set the pace; server CPU µs/msg is then the fairer figure.
- Client and server share the machine: compare the servers within one run only."""


def report(
    title: str,
    facts: Sequence[str],
    idle: Sequence[IdleResult],
    echo: Sequence[EchoResult],
    commands: Sequence[str],
) -> str:
    sections = [title, "## Machine\n\n" + "\n".join(f"- {fact}" for fact in facts)]
    if idle:
        sections.append(f"## Idle WebSockets held by one worker\n\n{idle_table(idle)}")
    if echo:
        sections.append(f"## Echo, {ECHO_CONNECTIONS} connections\n\n{echo_table(echo)}")
    sections += [
        "## hornbeam ÷ uvicorn\n\n" + ratio_table(idle, echo),
        "## Method\n\n" + METHOD,
        "## Commands (from the repository root)\n\n```sh\n" + "\n".join(commands) + "\n```",
    ]
    measured: list[IdleResult | EchoResult] = [*idle, *echo]
    failures = dict.fromkeys(f"{r.server}: {r.failure}" for r in measured if r.failure)
    if failures:
        sections.append("## Failures\n\n```\n" + "\n\n".join(failures) + "\n```")
    return "\n\n".join(sections) + "\n"


# ---- command line ----------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="hornbeam vs uvicorn: idle WebSockets held by one worker, echo messages/s."
    )
    parser.add_argument("mode", nargs="?", choices=("idle", "echo", "all"), default="all")
    parser.add_argument("--connections", type=int, default=10_000, help="idle WebSockets (10000)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds held/measured (5)")
    parser.add_argument("--output", type=Path, help="default: bench/results/websocket-DATE.md")
    args = parser.parse_args(argv)
    if args.connections < 1:
        parser.error("--connections: 1 or more")
    if not args.duration > 0:
        parser.error("--duration: seconds, more than 0")
    return args


def raise_fd_limit(needed: int) -> None:
    """Lift the soft RLIMIT_NOFILE to `needed`; ValueError when the hard limit is lower."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, needed), hard))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    needed = args.connections + 256  # the held sockets, the fresh client, the rest
    try:
        raise_fd_limit(needed)
    except ValueError:
        print(
            f"websocket.py: {needed} file descriptors needed, over the hard RLIMIT_NOFILE: "
            "lower --connections or raise the limit (ulimit -Hn)",
            file=sys.stderr,
        )
        return 2
    started = datetime.datetime.now(datetime.UTC)
    load = float(Path("/proc/loadavg").read_text().split()[0])
    facts = run_facts(load)
    given = sys.argv[1:] if argv is None else list(argv)
    commands = [shlex.join(["python", "bench/websocket.py", *given])]
    idle: list[IdleResult] = []
    echo: list[EchoResult] = []
    with tempfile.TemporaryDirectory(prefix="hornbeam-ws-bench-") as log_dir:  # mode 0700
        try:
            if args.mode in ("idle", "all"):
                idle = run_idle(args.connections, args.duration, Path(log_dir), commands)
            if args.mode in ("echo", "all"):
                echo = run_echo(args.duration, Path(log_dir), commands)
        except KeyboardInterrupt:
            print("\ninterrupted; every server was stopped, nothing saved", file=sys.stderr)
            return 130
    took = (datetime.datetime.now(datetime.UTC) - started).total_seconds()
    title = (
        f"# WebSocket: hornbeam vs uvicorn, {started:%Y-%m-%d}\n\n`{commands[0]}`: started "
        f"{started:%H:%M} UTC, took {took:.0f} s."
    )
    text = report(title, facts, idle, echo, commands)
    output = args.output or RESULTS_DIR / f"websocket-{started:%Y-%m-%d}.md"
    save_report(output, text)
    print(f"\n{text}\nreport written to {output}")
    unhealthy = any(r.problems() for r in idle) or any(r.failure for r in echo)
    return 1 if unhealthy else 0


if __name__ == "__main__":
    sys.exit(main())
