"""Starting a real ``hornbeam``: how it fails, and the ways it starts (SPEC section 1).

A server that cannot run stops at once with a one-line message and its exit code (README
"Exit codes") instead of respawning workers forever. The ways of starting: ``hornbeam.start()``
from Python, ``--pidfile``, the gunicorn server hooks of a ``-c conf.py``, IPv6 and Unix
socket binds.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
from pathlib import Path

import pytest

from harness import APPS, Server, read_until_closed, running, served_pid, serving, wait_for

APP = "wsgi_supervised:app"
# the exit codes as the README documents them (a contract, so not imported from errors.py)
EXIT_CONFIG, EXIT_WORKER_BOOT, EXIT_APP_LOAD, EXIT_BIND = 2, 3, 4, 5


def exit_of(server: Server, within: float = 8.0) -> tuple[int, str]:
    """Exit code of a server that must stop by itself, and the last line it printed."""
    code = server.wait_exit(within)
    lines = server.log().strip().splitlines()
    return code, lines[-1] if lines else ""


# ---- failures ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "names"),
    [
        ("broken_app:app", "RuntimeError: broken on purpose"),
        ("no_such_module:app", "no_such_module"),
        ("wsgi_basic:missing_attr", "missing_attr"),
    ],
    ids=["import-raises", "no-such-module", "missing-attribute"],
)
def test_app_that_cannot_load_exits_4_without_respawning(
    tmp_path: Path, spec: str, names: str
) -> None:
    (tmp_path / "broken_app.py").write_text('raise RuntimeError("broken on purpose")\n')
    argv = ["-b", "127.0.0.1:0", "-w", "2", "--pythonpath", str(APPS), spec]
    with serving(tmp_path, *argv) as server:
        code, last_line = exit_of(server)
        log = server.log()
    assert code == EXIT_APP_LOAD, log
    assert last_line.startswith("hornbeam: error: app: "), log
    assert names in last_line
    assert log.count("] [ERROR] app: ") <= 2, "workers were started again after failing"


def test_port_in_use_exits_5(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        argv = ["-b", f"127.0.0.1:{port}", "-w", "1", "--pythonpath", str(APPS), APP]
        with serving(tmp_path, *argv) as server:
            code, last_line = exit_of(server)
    assert code == EXIT_BIND, server.log()
    assert last_line.startswith("hornbeam: error: ")
    assert f"127.0.0.1:{port} is already in use" in last_line


def test_bad_setting_exits_2(tmp_path: Path) -> None:
    with serving(tmp_path, "-w", "abc", APP) as server:
        code, last_line = exit_of(server)
    assert code == EXIT_CONFIG, server.log()
    assert last_line.startswith("hornbeam: error: workers: 'abc'")


def test_post_fork_hook_that_raises_exits_3(tmp_path: Path) -> None:
    (tmp_path / "conf.py").write_text(
        "def post_fork(server, worker):\n    raise RuntimeError('post_fork refuses')\n"
    )
    argv = ["-c", "conf.py", "-b", "127.0.0.1:0", "-w", "2", "--pythonpath", str(APPS), APP]
    with serving(tmp_path, *argv) as server:
        code, last_line = exit_of(server)
        log = server.log()
    assert code == EXIT_WORKER_BOOT, log
    assert last_line.startswith("hornbeam: error: ")
    assert "RuntimeError: post_fork refuses" in last_line
    assert log.count("Worker failed to boot") <= 2, "workers were started again after failing"


# ---- ways of starting ----------------------------------------------------------------------------
EMBEDDED = """
import hornbeam

hornbeam.start(
    {spec!r},
    {{"workers": 2, "bind": {bind!r}, "timeout": 30000, "pythonpath": [{apps!r}]}},
)
"""


def test_start_from_python_serves_until_sigterm(tmp_path: Path) -> None:
    script = EMBEDDED.format(spec=APP, bind="127.0.0.1:0", apps=str(APPS))
    with serving(tmp_path, program=("-c", script)) as server:
        server.wait_ready(2)
        workers = server.worker_pids()
        assert len(workers) == 2
        assert served_pid(server) in workers
        server.signal(signal.SIGTERM)
        assert server.wait_exit(10) == 0, server.log()


CATCHING = """
import hornbeam
from hornbeam.errors import HornbeamError

try:
    hornbeam.start({spec!r}, {{"workers": 1, "bind": {bind!r}, "pythonpath": [{apps!r}]}})
except HornbeamError as exc:
    print("raised", type(exc).__name__, exc)
"""


def test_start_from_python_raises_when_the_app_cannot_load_or_the_port_is_taken(
    tmp_path: Path,
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = f"127.0.0.1:{holder.getsockname()[1]}"
        cases = [
            ("no_such_module:app", "127.0.0.1:0", "raised AppLoadError app: "),
            (APP, taken, f"raised BindError bind: {taken} is already in use"),
        ]
        for spec, bind, expected in cases:
            script = CATCHING.format(spec=spec, bind=bind, apps=str(APPS))
            with serving(tmp_path, program=("-c", script)) as server:
                code, last_line = exit_of(server)
            assert code == 0, server.log()
            assert last_line.startswith(expected), server.log()


def test_pidfile_is_private_and_removed_at_exit(tmp_path: Path) -> None:
    pidfile = tmp_path / "hornbeam.pid"
    with running(tmp_path, APP, "--pidfile", str(pidfile)) as server:
        assert pidfile.read_text() == f"{server.pid}\n"
        assert stat.S_IMODE(pidfile.stat().st_mode) == 0o600
        server.signal(signal.SIGTERM)
        assert server.wait_exit(10) == 0
    assert not pidfile.exists()


HOOKS = """
_NOTES = {notes!r}


def _note(*words):
    with open(_NOTES, "a") as notes:
        notes.write(" ".join(str(word) for word in words) + "\\n")


def on_starting(server):
    _note("on_starting", server.pid)


def post_fork(server, worker):
    _note("post_fork", worker.pid)


def worker_exit(server, worker):
    _note("worker_exit", worker.pid)
"""


def test_server_hooks_of_a_python_config_file_run(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    (tmp_path / "conf.py").write_text(HOOKS.format(notes=str(notes)))
    with running(tmp_path, APP, "-c", "conf.py", workers=2) as server:
        workers = {str(pid) for pid in server.worker_pids()}
        server.signal(signal.SIGTERM)
        assert server.wait_exit(10) == 0
    calls = [line.split() for line in notes.read_text().splitlines()]
    assert calls[0] == ["on_starting", str(server.pid)]
    assert sorted(calls[1:]) == sorted(
        [["post_fork", pid] for pid in workers] + [["worker_exit", pid] for pid in workers]
    )


# ---- binds ---------------------------------------------------------------------------------------
def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


PID_REQUEST = b"GET /pid HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"


@pytest.mark.skipif(not ipv6_loopback(), reason="this machine has no IPv6 loopback")
def test_ipv6_bind_serves(tmp_path: Path) -> None:
    argv = ["-b", "[::1]:0", "-w", "1", "--pythonpath", str(APPS), APP]
    with serving(tmp_path, *argv) as server:
        server.wait_ready(1)
        assert server.host == "::1"
        with socket.create_connection(("::1", server.port), timeout=5) as client:
            client.sendall(PID_REQUEST)
            answer = read_until_closed(client, 5.0)
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert answer.endswith(b"\r\n\r\n%d" % server.worker_pids()[0])


def test_unix_socket_bind_serves_and_is_removed_at_exit(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    argv = ["-b", f"unix:{path}", "-w", "2", "--pythonpath", str(APPS), APP]
    with serving(tmp_path, *argv) as server:
        wait_for(lambda: server.booted() >= 2, 15.0, "2 workers to boot")
        assert f"Listening at: unix:{path}" in server.log()
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(5)
            client.connect(str(path))
            client.sendall(PID_REQUEST)
            answer = read_until_closed(client, 5.0)
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert int(answer.rpartition(b"\r\n\r\n")[2]) in server.worker_pids()
        server.signal(signal.SIGTERM)
        assert server.wait_exit(10) == 0
    assert not os.path.exists(path)
