"""Signals to the arbiter of a real ``hornbeam`` (SPEC section 1, "Process model and signals").

SIGTERM drains (in-flight requests finish, ``health_path`` answers 503) and exits 0; SIGHUP
reloads code and config with fresh workers and no failed request, and keeps the old workers
when the new code cannot load; SIGTTIN/SIGTTOU add and remove a worker; SIGUSR1 reopens the
access log.
"""

from __future__ import annotations

import http.client
import signal
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from harness import (
    APPS,
    open_keep_alive,
    running,
    served_pid,
    serving,
    wait_for,
    wait_workers,
)

APP = "wsgi_supervised:app"
HEALTH = "/_hornbeam/health"


def get_status(connection: http.client.HTTPConnection, path: str) -> int:
    connection.request("GET", path)
    response = connection.getresponse()
    response.read()
    return response.status


# ---- SIGTERM -------------------------------------------------------------------------------------
def test_sigterm_drains_in_flight_requests_then_exits_0(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    env = {"TESTAPP_MARK_DIR": str(marks)}
    with running(tmp_path, APP, "--health-path", HEALTH, workers=1, env=env) as server:
        (worker,) = server.worker_pids()
        probe = open_keep_alive(server)  # opened before the stop; it stays open while draining
        try:
            assert get_status(probe, HEALTH) == 200
            with ThreadPoolExecutor(1) as pool:
                in_flight = pool.submit(httpx.get, server.url + "/hold?s=3&mark=held", timeout=15)
                wait_for((marks / "held").exists, 5.0, "the request to reach the app")
                server.signal(signal.SIGTERM)
                wait_for(lambda: get_status(probe, HEALTH) == 503, 2.0, "health to say 503")
                assert not in_flight.done(), "health answered 503 only after the drain"
                response = in_flight.result(15)
        finally:
            probe.close()
        assert response.status_code == 200
        assert response.text == str(worker)
        assert server.wait_exit(10) == 0
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((server.host, server.port), timeout=2).close()


# ---- SIGHUP --------------------------------------------------------------------------------------
RELOADABLE_APP = """
import os

TEXT = {text!r}


def app(environ, start_response):
    body = str(os.getpid()) if environ["PATH_INFO"] == "/pid" else TEXT
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body.encode()]
"""
BROKEN_APP = 'raise RuntimeError("this version of the app cannot be imported")\n'


def write_app(directory: Path, source: str) -> None:
    # Versions differ in length, so the bytecode cache (keyed on mtime and size) never serves
    # an older one that was written within the same second.
    (directory / "reloadable_app.py").write_text(source)


class Traffic:
    """A thread sending requests until stopped, alternating fresh and keep-alive connections."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="traffic")

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(20)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as keep_alive:
            for _ in range(5000):  # a bound, far above what a test waits for
                if self._stop.is_set():
                    return
                for send in (keep_alive.get, self._fresh_get):
                    try:
                        response = send(self.url)
                    except httpx.HTTPError as exc:
                        self.failures.append(repr(exc))
                        continue
                    if response.status_code == 200:
                        self.answers.append(response.text)
                    else:
                        self.failures.append(f"{response.status_code} {response.text}")
                self._stop.wait(0.005)  # pacing: leave CPU to the workers booting

    @staticmethod
    def _fresh_get(url: str) -> httpx.Response:
        return httpx.get(url, timeout=10, headers={"Connection": "close"})


def test_sighup_reloads_code_with_new_workers_and_refuses_nothing(tmp_path: Path) -> None:
    write_app(tmp_path, RELOADABLE_APP.format(text="version one"))
    with running(tmp_path, "reloadable_app:app", workers=2) as server:
        old = set(server.worker_pids())
        with Traffic(server.url + "/") as traffic:
            wait_for(lambda: len(traffic.answers) >= 20, 5.0, "traffic to flow")
            write_app(tmp_path, RELOADABLE_APP.format(text="version two, reloaded"))
            server.signal(signal.SIGHUP)
            new = wait_workers(server, 2, replacing=old, timeout=10.0)
            seen = len(traffic.answers)
            wait_for(lambda: len(traffic.answers) >= seen + 20, 5.0, "traffic after the reload")
        assert traffic.failures == []
        assert set(traffic.answers) == {"version one", "version two, reloaded"}
        assert traffic.answers[-1] == "version two, reloaded"
        assert served_pid(server) in new


def test_sighup_reloads_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "hornbeam.toml"
    config.write_text("workers = 2\n")
    argv = ["-c", "hornbeam.toml", "-b", "127.0.0.1:0", "--pythonpath", str(APPS), APP]
    with serving(tmp_path, *argv) as server:
        server.wait_ready(2)
        old = wait_workers(server, 2)
        config.write_text("workers = 3\n")
        server.signal(signal.SIGHUP)
        new = wait_workers(server, 3, replacing=old, timeout=10.0)
        wait_for(lambda: served_pid(server) in new, 5.0, "a new worker to answer")


def test_sighup_with_code_that_cannot_load_keeps_the_old_workers(tmp_path: Path) -> None:
    write_app(tmp_path, RELOADABLE_APP.format(text="version one"))
    with running(tmp_path, "reloadable_app:app", workers=2) as server:
        old = set(server.worker_pids())
        write_app(tmp_path, BROKEN_APP)
        server.signal(signal.SIGHUP)
        wait_for(lambda: "Reload failed" in server.log(), 10.0, "the reload to fail")
        assert wait_workers(server, 2, timeout=5.0) == old
        assert server.proc.poll() is None, "the server stopped:\n" + server.log()
        assert server.get("/").text == "version one"
        # the failed reload left the arbiter able to reload again
        write_app(tmp_path, RELOADABLE_APP.format(text="version three, fixed"))
        server.signal(signal.SIGHUP)
        wait_workers(server, 2, replacing=old, timeout=10.0)
        assert server.get("/").text == "version three, fixed"


# ---- SIGTTIN / SIGTTOU ---------------------------------------------------------------------------
def test_sigttin_adds_a_worker_and_sigttou_removes_one(tmp_path: Path) -> None:
    with running(tmp_path, APP, workers=2) as server:
        first = set(server.worker_pids())
        server.signal(signal.SIGTTIN)
        (added,) = wait_workers(server, 3, timeout=5.0) - first
        wait_for(lambda: f"Booting worker with pid: {added}" in server.log(), 5.0, "boot")
        server.signal(signal.SIGTTOU)
        wait_workers(server, 2, timeout=10.0)
        server.signal(signal.SIGTTOU)
        (last,) = wait_workers(server, 1, timeout=10.0)
        server.signal(signal.SIGTTOU)  # one worker is the minimum
        wait_for(lambda: "SIGTTOU ignored" in server.log(), 5.0, "the last SIGTTOU")
        assert server.worker_pids() == [last]
        assert served_pid(server) == last


# ---- SIGUSR1 -------------------------------------------------------------------------------------
def test_sigusr1_reopens_the_access_log(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    rotated = tmp_path / "access.log.1"
    flags = ("--access-log", str(log), "--access-log-format", "%(r)s %(s)s %(p)s")
    with running(tmp_path, APP, *flags, workers=2) as server:
        workers = server.worker_pids()
        server.get("/pid?before")
        wait_for(lambda: "GET /pid?before " in log.read_text(), 5.0, "the first access line")
        log.rename(rotated)
        server.signal(signal.SIGUSR1)
        wait_for(log.exists, 5.0, "a new access log at the original path")
        # every worker writes to the new file once it has reopened
        tries = iter(range(500))

        def every_worker_writes_the_new_file() -> bool:
            server.get(f"/pid?after={next(tries)}")
            lines = log.read_text()
            return all(f"<{pid}>" in lines for pid in workers)

        wait_for(every_worker_writes_the_new_file, 5.0, "every worker to reopen")
        for n in range(10):
            server.get(f"/pid?final={n}")
        final = [f"GET /pid?final={n} " for n in range(10)]
        wait_for(lambda: all(line in log.read_text() for line in final), 5.0, "final lines")
        old_lines = rotated.read_text()
        assert "GET /pid?before " in old_lines
        assert not any(line in old_lines for line in final)
