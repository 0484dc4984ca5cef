"""The shared store under the real server: every worker sees one store, and it outlives
worker crashes, recycling and reloads; a full stop removes it unless ``state_path`` is set;
the arbiter sweeps expired keys."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import httpx
import lmdb

from harness import Server, running, wait_for

_RUN_DIR = re.compile(r"Shared state: local in (\S+)")


def _run_dir(server: Server) -> Path:
    match = _RUN_DIR.search(server.log())
    assert match, server.log()
    return Path(match.group(1))


def _incr(server: Server, times: int) -> list[int]:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        return [client.get("/incr").json() for _ in range(times)]


def _new_workers(server: Server, old: set[int], count: int) -> None:
    def replaced() -> bool:
        pids = set(server.worker_pids())
        return len(pids) == count and not pids & old and server.booted() >= count + len(old)

    wait_for(replaced, 20, "new workers")


def test_state_survives_crash_recycling_and_reload(tmp_path: Path) -> None:
    with running(tmp_path, "state_app:app", "--max-requests", "15", workers=2) as server:
        assert _incr(server, 10) == list(range(1, 11))
        victim = server.worker_pids()[0]
        server_pids = set(server.worker_pids())
        os.kill(victim, signal.SIGKILL)
        wait_for(
            lambda: victim not in server.worker_pids() and len(server.worker_pids()) == 2,
            5,
            "the killed worker to be replaced",
        )
        # 30 more requests recycle both workers at least once (max_requests 15)
        assert _incr(server, 30) == list(range(11, 41))
        old = set(server.worker_pids())
        server.signal(signal.SIGHUP)
        _new_workers(server, old, 2)
        assert _incr(server, 1) == [41]
        assert server_pids.isdisjoint(server.worker_pids())


def test_full_stop_removes_the_store_unless_persistent(tmp_path: Path) -> None:
    with running(tmp_path, "state_app:app") as server:
        _incr(server, 3)
        run_dir = _run_dir(server)
        assert run_dir.is_dir()
        assert (run_dir.stat().st_mode & 0o777) == 0o700
        server.signal(signal.SIGTERM)
        assert server.wait_exit() == 0
    assert not run_dir.exists()

    persistent = tmp_path / "state"
    for expected in ([1, 2, 3], [4, 5, 6]):
        with running(tmp_path, "state_app:app", "--state-path", str(persistent)) as server:
            assert _incr(server, 3) == expected
            server.signal(signal.SIGTERM)
            assert server.wait_exit() == 0
        assert persistent.is_dir()


def test_arbiter_sweeps_expired_keys(tmp_path: Path) -> None:
    with running(tmp_path, "state_app:app") as server:
        run_dir = _run_dir(server)
        server.get("/set-many?prefix=tmp:&count=500&ttl=0.5")
        server.get("/set?key=keep&value=1")

        def stored_records() -> int:
            env = lmdb.open(str(run_dir), readonly=True, lock=False, max_dbs=8)
            try:
                with env.begin() as txn:
                    return int(txn.stat()["entries"])
            finally:
                env.close()

        assert stored_records() >= 501
        # Nobody reads the expired keys: only the arbiter's sweep can remove them.
        wait_for(lambda: stored_records() < 10, 10, "the arbiter to sweep expired keys")
        assert server.get("/get?key=keep").json() == "1"
