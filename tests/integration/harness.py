"""Starting the real ``hornbeam`` command on a free port and talking to it.

The server binds ``127.0.0.1:0``; the port is read from its "Listening at" log line, so no
two tests race for a port. Readiness is polled with a deadline, never slept for. Every
process is stopped by its own PID.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
APPS = ROOT / "tests" / "apps"
_LISTENING = re.compile(r"Listening at: http://([0-9.]+|\[[0-9a-f:]+\]):(\d+)")


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, every: float = 0.02) -> None:
    """Poll ``predicate`` until it is true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


class Server:
    """A running ``hornbeam`` process."""

    def __init__(self, args: list[str], log_path: Path, cwd: Path, env: dict[str, str]) -> None:
        self.args = args
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hornbeam", *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=env,
        )
        self.host = "127.0.0.1"
        self.port = 0

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_listening(self, timeout: float = 15.0) -> None:
        def listening() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"hornbeam exited early ({self.proc.returncode}):\n{self.log()}")
            match = _LISTENING.search(self.log())
            if match:
                self.host = match.group(1).strip("[]")
                self.port = int(match.group(2))
            return bool(match)

        wait_for(listening, timeout, "the Listening at log line")

    def wait_ready(self, workers: int, timeout: float = 20.0) -> None:
        """Wait until ``workers`` workers have booted (their boot lines are in the log)."""
        self.wait_listening(timeout)
        wait_for(lambda: self.booted() >= workers, timeout, f"{workers} workers to boot")
        wait_for(self._answers, timeout, "the server to answer")

    def booted(self) -> int:
        return len(re.findall(r"Booting worker with pid: \d+", self.log()))

    def worker_pids(self) -> list[int]:
        """PIDs of the arbiter's live children."""
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        try:
            return [int(p) for p in children.read_text().split()]
        except OSError:
            return []

    def _answers(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1):
                return True
        except OSError:
            return False

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        return httpx.get(self.url + path, timeout=10, **kwargs)  # type: ignore[arg-type]

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def wait_exit(self, timeout: float = 15.0) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


@contextlib.contextmanager
def running(
    tmp_path: Path,
    *args: str,
    workers: int = 1,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    ready: bool = True,
) -> Iterator[Server]:
    """Start ``hornbeam ARGS -w WORKERS -b 127.0.0.1:0`` and stop it afterwards."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("HORNBEAM_")}
    full_env.update(env or {})
    full_env.setdefault("PYTHONPATH", str(APPS))
    argv = ["-b", "127.0.0.1:0", "-w", str(workers), "--pythonpath", str(APPS), *args]
    server = Server(argv, tmp_path / f"hornbeam-{time.monotonic_ns()}.log", cwd or tmp_path, full_env)
    try:
        if ready:
            server.wait_ready(workers)
        yield server
    finally:
        server.stop()


def raw_request(host: str, port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes, read until the server closes (or ``timeout``), return what came back."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(data)
        return read_until_closed(sock, timeout)


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    parts = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        parts.append(chunk)
    return b"".join(parts)
