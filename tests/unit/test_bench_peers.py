"""The pure parts of bench/peers.py: wrk output parsing, the run matrix, ratios, the tables;
and bench/servers.py, which it starts its servers with: the /proc arithmetic, and one real
hornbeam started, found ready and stopped by PID.

wrk is never run here; the benchmark itself runs by hand.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load_peers() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_peers", BENCH / "peers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    sys.path.insert(0, str(BENCH))  # peers.py imports its neighbours (servers.py) by name
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH))
    return module


peers = _load_peers()
servers = sys.modules["servers"]  # the very module peers.py imported its names from

WRK_KEEP_ALIVE = """\
Running 3s test @ http://127.0.0.1:41234/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.21ms  412.33us   9.87ms   91.20%
    Req/Sec    39.12k     1.02k   40.11k    80.00%
  Latency Distribution
     50%    1.15ms
     75%    1.30ms
     90%    1.52ms
     99%    2.77ms
  117936 requests in 3.01s, 14.52MB read
Requests/sec:  39181.40
Transfer/sec:      4.82MB
"""

WRK_WITH_ERRORS = """\
Running 3s test @ http://127.0.0.1:41234/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    10.02ms   30.10ms 1.20s    98.00%
    Req/Sec     4.10k   300.00     4.50k    70.00%
  Latency Distribution
     50%  812.00us
     75%    1.90ms
     90%    5.00ms
     99%    1.05s
  12400 requests in 3.00s, 1.50MB read
  Socket errors: connect 0, read 7, write 2, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:   4133.33
Transfer/sec:    512.00KB
"""


def test_parse_wrk_reads_throughput_and_percentiles_in_ms() -> None:
    result = peers.parse_wrk(WRK_KEEP_ALIVE)
    assert result.requests == 117936
    assert result.requests_per_second == pytest.approx(39181.40)
    assert result.p50_ms == pytest.approx(1.15)
    assert result.p99_ms == pytest.approx(2.77)
    assert result.errors == 0


def test_parse_wrk_converts_units_and_counts_every_error() -> None:
    result = peers.parse_wrk(WRK_WITH_ERRORS)
    assert result.p50_ms == pytest.approx(0.812)
    assert result.p99_ms == pytest.approx(1050.0)
    assert result.errors == 7 + 2 + 1 + 5


def test_parse_wrk_without_latency_distribution_is_an_error() -> None:
    without_percentiles = "\n".join(
        line for line in WRK_KEEP_ALIVE.splitlines() if "%" not in line or "Stdev" in line
    )
    with pytest.raises(peers.BenchError, match="50%"):
        peers.parse_wrk(without_percentiles)


class FakeApt:
    """apt-get as ensure_wrk() runs it: records each command; installs wrk on the install
    numbered `works_on` (1-based; 0 never)."""

    def __init__(self, works_on: int) -> None:
        self.commands: list[list[str]] = []
        self.installs = 0
        self.works_on = works_on
        self.wrk_installed = False

    def which(self, name: str) -> str | None:
        if name == "wrk":
            return "/usr/bin/wrk" if self.wrk_installed else None
        return f"/usr/bin/{name}"

    def run(self, command: list[str], **kwargs: Any) -> Any:
        assert kwargs["env"]["DEBIAN_FRONTEND"] == "noninteractive" and kwargs["timeout"]
        self.commands.append(command)
        if command[:2] == ["apt-get", "install"]:
            self.installs += 1
            if self.installs != self.works_on:
                raise subprocess.CalledProcessError(100, command)
            self.wrk_installed = True


@pytest.mark.parametrize(
    ("works_on", "steps", "installed"),
    [
        (1, ["install"], True),
        (2, ["install", "update", "install"], True),
        (0, ["install", "update", "install"], False),
    ],
)
def test_a_missing_wrk_is_installed_from_apt_as_root(
    works_on: int, steps: list[str], installed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    apt = FakeApt(works_on)
    monkeypatch.setattr(peers.os, "geteuid", lambda: 0)
    monkeypatch.setattr(peers.shutil, "which", apt.which)
    monkeypatch.setattr(peers.subprocess, "run", apt.run)
    assert peers.ensure_wrk() is installed
    assert [command[1] for command in apt.commands] == steps


def test_without_root_a_missing_wrk_is_only_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    apt = FakeApt(1)
    monkeypatch.setattr(peers.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(peers.shutil, "which", apt.which)
    monkeypatch.setattr(peers.subprocess, "run", apt.run)
    assert peers.ensure_wrk() is False
    assert apt.commands == [] and "sudo apt-get install -y wrk" in capsys.readouterr().err


def test_wrk_command_keep_alive_and_close() -> None:
    url = "http://127.0.0.1:8000/"
    keep_alive = peers.wrk_command(url, "keep-alive", 3)
    close = peers.wrk_command(url, "close", 3)
    assert keep_alive == ["wrk", "-t1", "-c50", "-d3s", "--latency", "--timeout", "5s", url]
    assert close[-3:] == ["-H", "Connection: close", url]
    assert "Connection: close" not in keep_alive


def test_quick_selects_wsgi_hello_on_two_workers_against_gunicorn() -> None:
    args = peers.parse_args(["--quick"])
    runs = peers.plan_runs(args.cases, args.servers, args.workers)
    assert [(r.case.name, r.server.name, r.workers) for r in runs] == [
        ("wsgi-hello", "hornbeam", 2),
        ("wsgi-hello", "gunicorn-gthread", 2),
        ("wsgi-hello", "gunicorn-sync", 2),
    ]
    assert (args.modes, args.duration) == (["keep-alive"], 3)


def test_explicit_options_win_over_quick() -> None:
    args = peers.parse_args(["--quick", "--workers", "1", "--duration", "1"])
    assert (args.workers, args.duration, args.cases) == ([1], 1, ["wsgi-hello"])


def test_full_matrix_pairs_each_case_with_the_servers_of_its_interface() -> None:
    args = peers.parse_args([])
    runs = peers.plan_runs(args.cases, args.servers, args.workers)
    by_case: dict[str, set[str]] = {}
    for run in runs:
        by_case.setdefault(run.case.name, set()).add(run.server.name)
    wsgi = {"hornbeam", "gunicorn-sync", "gunicorn-gthread", "granian"}
    asgi = {"hornbeam", "uvicorn", "granian", "hypercorn"}
    assert by_case == {
        "wsgi-hello": wsgi,
        "asgi-hello": asgi,
        "wsgi-64k": wsgi,
        "flask-demo": wsgi,
        "wsgi-block-5ms": wsgi,
        "fastapi-json": asgi,
    }
    assert {run.workers for run in runs} == {1, 2}
    assert args.modes == ["keep-alive", "close"]
    # the full matrix must fit its budget of 8 minutes
    assert peers.estimated_seconds(runs, args.modes, args.duration) < 8 * 60


def test_each_ceiling_serves_only_the_cases_that_allow_its_answer() -> None:
    args = peers.parse_args(["--servers", "ceiling-static,ceiling-wsgi,hornbeam"])
    runs = peers.plan_runs(args.cases, args.servers, args.workers)

    def cases_of(server: str) -> set[str]:
        return {r.case.name for r in runs if r.server.name == server}

    assert cases_of("ceiling-static") == {"wsgi-hello", "asgi-hello", "wsgi-64k"}
    assert cases_of("ceiling-wsgi") == {"wsgi-hello", "wsgi-64k", "flask-demo"}
    defaults = peers.parse_args([]).servers
    assert not {"ceiling-static", "ceiling-wsgi"} & set(defaults)  # yardsticks, opt-in


def test_unknown_names_and_empty_selections_are_refused() -> None:
    with pytest.raises(peers.BenchError, match="unknown server nginx"):
        peers.plan_runs(["wsgi-hello"], ["nginx"], [1])
    with pytest.raises(peers.BenchError, match="unknown case"):
        peers.plan_runs(["wsgi-hell"], ["hornbeam"], [1])
    with pytest.raises(peers.BenchError, match="speaks the interface"):
        peers.plan_runs(["asgi-hello"], ["gunicorn-sync"], [1])


@pytest.mark.parametrize("bad", [["--workers", "0"], ["--workers", "two"], ["--modes", "h2"]])
def test_bad_command_lines_exit_with_usage(
    bad: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        peers.parse_args(bad)
    assert exit_info.value.code == 2
    assert bad[0] in capsys.readouterr().err


def test_every_server_binds_loopback_only() -> None:
    case = peers.CASES["wsgi-hello"]
    for server in peers.SERVERS.values():
        argv = " ".join(server.argv(case, 2, 8123))
        assert "127.0.0.1" in argv and "0.0.0.0" not in argv, server.name
        assert "wsgi_apps:hello" in argv and "2" in argv.split(), server.name


def test_only_peers_get_the_dict_state_stand_in() -> None:
    flask = peers.CASES["flask-demo"]
    hornbeam_env = peers.server_env(peers.Run(flask, peers.SERVERS["hornbeam"], 1))
    gunicorn_env = peers.server_env(peers.Run(flask, peers.SERVERS["gunicorn-sync"], 1))
    hello_env = peers.server_env(peers.Run(peers.CASES["wsgi-hello"], peers.SERVERS["granian"], 1))
    assert "dict_state" not in hornbeam_env["PYTHONPATH"]
    assert gunicorn_env["PYTHONPATH"].split(":")[0] == "bench/apps/dict_state"
    assert "examples/flask_demo" in gunicorn_env["PYTHONPATH"]
    assert "dict_state" not in hello_env["PYTHONPATH"]


def test_hornbeam_exiting_on_an_asgi_case_fails_every_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asgi_run = peers.Run(peers.CASES["asgi-hello"], peers.SERVERS["hornbeam"], 1)
    exited = servers.ServerExited(4, "app: 'asgi_apps:hello' could not be loaded ...")

    def exits(*_: Any) -> Any:
        raise exited

    # No server is started and no idle wait is spent: the run fails as it begins.
    monkeypatch.setattr(peers, "wait_for_idle_machine", lambda: "")
    monkeypatch.setattr(peers, "serving", exits)
    results, _ = peers.measure_run(asgi_run, ["keep-alive", "close"], 1, tmp_path)
    assert [(m.mode, m.status, m.note) for m in results] == [
        ("keep-alive", "failed", "server exited with code 4 (see Failures)"),
        ("close", "failed", "server exited with code 4 (see Failures)"),
    ]
    assert all(m.detail == str(exited) and m.wrk is None for m in results)


def _measured(server: str, rps: float, mode: str = "keep-alive") -> Any:
    wrk = peers.WrkResult(int(rps * 3), rps, 1.0, 2.0, 0)
    return peers.Measurement("wsgi-hello", server, 2, mode, wrk=wrk, cpu_us=20.0, rss_mb=30.0)


def test_ratios_compare_hornbeam_with_each_peer_in_the_same_group() -> None:
    results = [
        _measured("hornbeam", 30000),
        _measured("gunicorn-gthread", 10000),
        _measured("gunicorn-sync", 20000),
        _measured("gunicorn-sync", 5000, mode="close"),  # no hornbeam in this group
    ]
    ratios = peers.hornbeam_ratios(results)
    assert ratios == {
        ("wsgi-hello", 2, "keep-alive", "hornbeam", "gunicorn-gthread"): pytest.approx(3.0),
        ("wsgi-hello", 2, "keep-alive", "hornbeam", "gunicorn-sync"): pytest.approx(1.5),
    }
    ratio_lines = peers.ratio_table(results).splitlines()
    assert (
        ratio_lines[0]
        == "| case | workers | mode | hornbeam | ÷ gunicorn-gthread | ÷ gunicorn-sync |"
    )
    assert ratio_lines[2] == "| wsgi-hello | 2 | keep-alive | hornbeam | 3.00x | 1.50x |"


def test_results_table_shows_figures_ratio_and_why_a_row_has_none() -> None:
    failed = peers.Measurement(
        "asgi-hello",
        "hornbeam",
        1,
        "keep-alive",
        status="failed",
        note="server exited with code 4 (see Failures)",
    )
    table = peers.results_table(
        [_measured("hornbeam", 30000), _measured("gunicorn-sync", 20000), failed]
    )
    rows = table.splitlines()
    assert len(rows) == 5
    assert rows[3].startswith("| wsgi-hello | 2 | keep-alive | gunicorn-sync | 20,000 | 1.00 |")
    assert "| 1.50x |" in rows[3]
    assert rows[4].endswith("| failed: server exited with code 4 (see Failures) |")
    assert rows[4].count("—") == 7


def _process(pid: int, ppid: int, cpu_ticks: int, cmdline: str = "python -m server") -> Any:
    return servers.ProcessInfo(pid, ppid, start=pid * 10, cpu_ticks=cpu_ticks, cmdline=cmdline)


def test_cpu_per_request_sums_the_tree_and_counts_new_processes_from_zero() -> None:
    before = [_process(100, 1, 50), _process(101, 100, 1000)]
    after = [_process(100, 1, 60), _process(101, 100, 1290), _process(102, 100, 50)]
    # (10 + 290 + 50) ticks at 100 per second = 3.5 s over 35,000 requests = 100 µs each
    assert servers.cpu_us_per_request(before, after, 35000, 100) == pytest.approx(100.0)


def test_workers_are_the_children_minus_the_resource_tracker_or_the_root_alone() -> None:
    tracker = "python -c from multiprocessing.resource_tracker import main;main(6)"
    tree = [_process(100, 1, 0), _process(101, 100, 0, tracker), _process(102, 100, 0)]
    assert [p.pid for p in servers.worker_processes(tree)] == [102]
    assert [p.pid for p in servers.worker_processes(tree[:1])] == [100]


def test_cpu_busy_fraction_from_two_proc_stat_lines() -> None:
    # user nice system idle iowait irq softirq steal
    before = [100, 0, 100, 700, 100, 0, 0, 0]
    after = [160, 0, 140, 780, 120, 0, 0, 0]
    assert servers.cpu_busy_fraction(before, after) == pytest.approx(0.5)
    assert servers.cpu_busy_fraction(before, before) == 0.0


def test_a_port_for_a_server_that_cannot_report_one_is_free_now() -> None:
    assert servers.port_to_bind(True) == 0
    port = servers.port_to_bind(False)
    with socket.socket() as again:
        again.bind((servers.HOST, port))


def test_each_worker_gets_a_cpu_of_its_own_and_wrk_another_where_there_are_enough(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    one = servers.CpuLayout.for_workers(1, [0, 1])
    assert (one.client, one.server) == ((0,), (1,))
    assert one.client_argv(["wrk", "-t1"]) == ["taskset", "-c", "0", "wrk", "-t1"]
    assert one.server_argv(["granian"]) == ["taskset", "-c", "1", "granian"]
    assert servers.CpuLayout.for_workers(2, [4, 5, 6, 7]).server == (5, 6)
    shared = servers.CpuLayout.for_workers(2, [0, 1])
    assert shared.client_argv(["wrk"]) == ["wrk"] and shared.server_argv(["hb"]) == ["hb"]
    monkeypatch.setattr(servers.shutil, "which", lambda name: None)
    assert servers.CpuLayout.for_workers(1, [0, 1]) == servers.CpuLayout()


def test_a_real_server_is_found_ready_then_stopped_with_its_worker(tmp_path: Path) -> None:
    run = peers.Run(peers.CASES["wsgi-hello"], peers.SERVERS["hornbeam"], 1)
    layout = servers.CpuLayout.for_workers(run.workers)
    argv = layout.server_argv(run.server.argv(run.case, run.workers, servers.port_to_bind(True)))
    server = servers.ServerProcess(argv, peers.server_env(run), tmp_path / "server.log", 0)
    assert server.command.startswith("PYTHONPATH=bench/apps ")
    with servers.serving(server, run.case.expect, run.workers):
        assert server.port > 0  # read from the log: hornbeam bound port 0
        tree = server.tree()
        workers = servers.worker_processes(tree)
        assert [p.ppid for p in workers] == [tree[0].pid]
        if layout.server:  # taskset ran the server itself, and its worker inherited the CPUs
            assert os.sched_getaffinity(workers[0].pid) == set(layout.server)
        assert (servers.rss_mb(workers[0].pid) or 0) > 1
    assert server.proc is not None and server.proc.returncode is not None
    assert (tmp_path / "server.log").stat().st_mode & 0o777 == 0o600
    _assert_all_gone(tree)


@pytest.mark.parametrize(
    ("case", "ceiling"),
    [
        ("wsgi-64k", "ceiling-static"),
        ("asgi-hello", "ceiling-static"),
        ("wsgi-hello", "ceiling-wsgi"),
        ("flask-demo", "ceiling-wsgi"),
    ],
)
def test_a_ceiling_answers_like_the_app_on_every_worker_then_stops(
    case: str, ceiling: str, tmp_path: Path
) -> None:
    run = peers.Run(peers.CASES[case], peers.SERVERS[ceiling], 2)
    argv = run.server.argv(run.case, run.workers, 0)
    server = servers.ServerProcess(argv, peers.server_env(run), tmp_path / "server.log", 0)
    with servers.serving(server, run.case.expect, run.workers):
        tree = server.tree()
        assert len(servers.worker_processes(tree)) == 2
        with socket.create_connection((servers.HOST, server.port), timeout=5) as client:
            request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
            client.sendall(
                request * 2 + request.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
            )
            answer = b""
            while chunk := client.recv(1 << 16):  # the third request's close ends the loop
                answer += chunk
        assert answer.count(b"HTTP/1.1 200 OK\r\n") == 3
        assert answer.count(run.case.expect) == 3
        distinct = len(set(answer.split(b"HTTP/1.1 200 OK\r\n")[1:]))
        assert distinct == (3 if case == "flask-demo" else 1)  # views: n, n+1, ...
    _assert_all_gone(tree)


def _assert_all_gone(tree: list[Any]) -> None:
    deadline = time.monotonic() + 5
    while (alive := [p for p in tree if _still_running(p)]) and time.monotonic() < deadline:
        time.sleep(0.01)  # a worker killed by PID may take a moment to be reaped
    assert not alive


def _still_running(process: Any) -> bool:
    now = servers.read_process(process.pid)
    return now is not None and now.start == process.start  # not a reused PID
