"""ASGI lifespan (SPEC section 3) against the real server.

``auto`` with an app that supports it (startup in every worker, shutdown on SIGTERM) and with
one that raises (served anyway, logged); ``on`` with that app, ``startup.failed`` and a hung
startup stop the server; ``off`` never calls the app with a lifespan scope; ``scope["state"]``
filled at startup reaches each request as its own shallow copy.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from harness import build_request, connected, run_to_exit, running

EXIT_WORKER_BOOT = 3  # README "Exit codes" (a contract, so not imported from errors.py)


def events(log: Path) -> list[tuple[str, int]]:
    """The app's notes as ``(what, pid)``, in the order written."""
    if not log.exists():
        return []
    notes = []
    for line in log.read_text().splitlines():
        what, _, pid = line.rpartition(" ")
        notes.append((what, int(pid)))
    return notes


def error_line(stderr: str) -> str:
    """The one-line reason the server printed last when it stopped."""
    lines = stderr.strip().splitlines()
    assert lines and lines[-1].startswith("hornbeam: error: "), stderr
    return lines[-1]


def test_startup_runs_in_every_worker_and_shutdown_on_sigterm(tmp_path: Path) -> None:
    log = tmp_path / "lifespan.log"
    with running(tmp_path, "asgi_lifespan:app", workers=2, env={"LIFESPAN_LOG": str(log)}) as srv:
        workers = set(srv.worker_pids())
        assert len(workers) == 2
        started = {pid for what, pid in events(log) if what == "startup"}
        assert started == workers, events(log)
        answered = int(srv.get("/").text)
        assert answered in workers
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit(15) == 0, srv.log()
    notes = events(log)
    stopped = {pid for what, pid in notes if what == "shutdown"}
    assert stopped == workers, notes
    for pid in workers:
        order = [what for what, who in notes if who == pid and what in ("startup", "shutdown")]
        assert order == ["startup", "shutdown"], notes


def test_auto_serves_an_app_that_raises_on_the_lifespan_scope(tmp_path: Path) -> None:
    log = tmp_path / "lifespan.log"
    with running(tmp_path, "asgi_lifespan:unsupported", env={"LIFESPAN_LOG": str(log)}) as srv:
        response = srv.get("/")
        assert response.status_code == 200
        assert int(response.text) in srv.worker_pids()
        server_log = srv.log()
    assert ("call lifespan", int(response.text)) in events(log), "lifespan was not tried"
    assert "lifespan not supported" in server_log.lower(), server_log


def test_on_stops_the_server_when_the_app_does_not_support_lifespan(tmp_path: Path) -> None:
    log = tmp_path / "lifespan.log"
    finished = run_to_exit(
        tmp_path, "asgi_lifespan:unsupported", "--lifespan", "on", env={"LIFESPAN_LOG": str(log)}
    )
    assert finished.code != 0, finished
    reason = error_line(finished.stderr)
    assert "lifespan" in reason and "is not handled here" in reason, reason
    assert "call lifespan" in (w for w, _ in events(log))
    assert "Booting worker" not in finished.stderr + finished.stdout, "a worker served anyway"


def test_startup_failed_stops_the_server_with_exit_3_and_the_message(tmp_path: Path) -> None:
    finished = run_to_exit(tmp_path, "asgi_lifespan:failing", workers=2)
    assert finished.code == EXIT_WORKER_BOOT, finished
    assert "db down" in error_line(finished.stderr)


def test_startup_longer_than_lifespan_timeout_stops_the_server(tmp_path: Path) -> None:
    log = tmp_path / "lifespan.log"
    started = time.monotonic()
    finished = run_to_exit(
        tmp_path,
        "asgi_lifespan:hanging",
        "--lifespan-timeout",
        "1",
        env={"LIFESPAN_LOG": str(log)},
        timeout=10,
    )
    elapsed = time.monotonic() - started
    assert finished.code != 0, finished
    assert "startup-begun" in (w for w, _ in events(log))
    assert elapsed >= 1.0, "stopped before the lifespan timeout passed"
    assert "lifespan" in error_line(finished.stderr)


def test_off_never_calls_the_app_with_a_lifespan_scope(tmp_path: Path) -> None:
    log = tmp_path / "lifespan.log"
    with running(
        tmp_path, "asgi_lifespan:app", "--lifespan", "off", env={"LIFESPAN_LOG": str(log)}
    ) as srv:
        assert srv.get("/").status_code == 200
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit(15) == 0, srv.log()
    notes = [what for what, _ in events(log)]
    assert "call http" in notes
    assert not {"call lifespan", "startup", "shutdown"} & set(notes), notes


def test_state_from_startup_is_a_shallow_copy_in_each_request(tmp_path: Path) -> None:
    with running(tmp_path, "asgi_http:app", env={"ASGI_REPORT_DIR": str(tmp_path)}) as srv:
        (worker,) = srv.worker_pids()
        with connected(srv) as reader:
            states = []
            for target in ("/state?mutate=1", "/state", "/state"):
                reader.sock.sendall(build_request(target))
                response = reader.read()
                assert response.status == 200, response
                states.append(json.loads(response.body))
    expected = {"greeting": "hello from startup", "worker_pid": worker}
    assert states == [expected, expected, expected], "a request's changes leaked into state"
