"""Starting the real ``hornbeam`` command on a free port and talking to it.

The server binds ``127.0.0.1:0``; the port is read from its "Listening at" log line, so no
two tests race for a port. Readiness is polled with a deadline, never slept for. Every
process is stopped by its own PID.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
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

    def __init__(
        self,
        args: list[str],
        log_path: Path,
        cwd: Path,
        env: dict[str, str],
        program: Sequence[str] = ("-m", "hornbeam"),
    ) -> None:
        self.args = args
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, *program, *args],
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
                raise AssertionError(
                    f"hornbeam exited early ({self.proc.returncode}):\n{self.log()}"
                )
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
    argv = ["-b", "127.0.0.1:0", "-w", str(workers), "--pythonpath", str(APPS), *args]
    with serving(tmp_path, *argv, env=env, cwd=cwd) as server:
        if ready:
            server.wait_ready(workers)
        yield server


@contextlib.contextmanager
def serving(
    tmp_path: Path,
    *argv: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    program: Sequence[str] = ("-m", "hornbeam"),
) -> Iterator[Server]:
    """Start ``python PROGRAM ARGV`` with exactly that ARGV (no bind or worker flag added,
    readiness not awaited) and stop it afterwards. PROGRAM defaults to the hornbeam command."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("HORNBEAM_")}
    full_env.update(env or {})
    full_env.setdefault("PYTHONPATH", str(APPS))
    log_path = tmp_path / f"hornbeam-{time.monotonic_ns()}.log"
    server = Server(list(argv), log_path, cwd or tmp_path, full_env, program)
    try:
        yield server
    finally:
        server.stop()


def served_pid(server: Server, timeout: float = 10.0) -> int:
    """PID of the worker that answers ``/pid`` on a fresh connection (apps with that route)."""
    with connected(server, timeout) as reader:
        reader.sock.sendall(build_request("/pid", headers=[("Connection", "close")]))
        response = reader.read()
    assert response.status == 200, response
    return int(response.body)


def open_keep_alive(server: Server, timeout: float = 10.0) -> http.client.HTTPConnection:
    """A connected keep-alive HTTP/1.1 client (the caller closes it)."""
    connection = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
    connection.connect()
    return connection


def wait_workers(
    server: Server,
    count: int,
    replacing: set[int] | frozenset[int] = frozenset(),
    timeout: float = 10.0,
) -> set[int]:
    """Wait until the arbiter has exactly ``count`` children, none of them in ``replacing``;
    return their PIDs. Fails at once if the server exits."""
    found: set[int] = set()

    def settled() -> bool:
        nonlocal found
        if server.proc.poll() is not None:
            raise AssertionError(f"hornbeam exited ({server.proc.returncode}):\n{server.log()}")
        found = set(server.worker_pids())
        return len(found) == count and not found & replacing

    wait_for(settled, timeout, f"{count} workers, none of {sorted(replacing)}")
    return found


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


def build_request(
    path: str = "/",
    method: str = "GET",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    version: str = "1.1",
    host: str | None = "test",
) -> bytes:
    """Raw bytes of one request; a Content-Length is added for a body unless headers set one."""
    lines = [f"{method} {path} HTTP/{version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    given = headers or []
    lines += [f"{name}: {value}" for name, value in given]
    framed = any(n.lower() in ("content-length", "transfer-encoding") for n, _ in given)
    if body and not framed:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class Response:
    """One HTTP/1.x response as it came off the wire."""

    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]  # as sent: case, order and repeats kept
    body: bytes
    complete: bool  # False when the connection ended before the framing said the body ended
    trailers: list[tuple[str, str]] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        values = self.headers_named(name)
        return values[0] if values else None

    def headers_named(self, name: str) -> list[str]:
        lowered = name.lower()
        return [value for key, value in self.headers if key.lower() == lowered]


class ResponseReader:
    """Reads responses one at a time from a connected socket, keeping what follows them.

    Every read is bounded by ``timeout`` seconds; running out of time fails the test, so a
    server that hangs instead of answering or closing is caught.
    """

    def __init__(self, sock: socket.socket, timeout: float = 5.0) -> None:
        self.sock = sock
        self.timeout = timeout
        self.buffer = bytearray()
        self.eof = False

    def _fill(self, deadline: float) -> bool:
        """Receive more bytes; False once the peer has closed (FIN or reset)."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no answer within {self.timeout}s; got {bytes(self.buffer)!r}")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(1 << 20)
        except TimeoutError:
            raise AssertionError(
                f"no answer within {self.timeout}s; got {bytes(self.buffer)!r}"
            ) from None
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buffer += chunk
        return True

    def _line(self, deadline: float) -> bytes | None:
        while (end := self.buffer.find(b"\r\n")) < 0:
            if not self._fill(deadline):
                return None
        line = bytes(self.buffer[:end])
        del self.buffer[: end + 2]
        return line

    def _exactly(self, size: int, deadline: float) -> bytes:
        while len(self.buffer) < size and self._fill(deadline):
            pass
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def _fields(self, deadline: float) -> list[tuple[str, str]] | None:
        fields = []
        while (line := self._line(deadline)) != b"":
            if line is None:
                return None
            name, _, value = line.decode("latin-1").partition(":")
            fields.append((name, value.strip()))
        return fields

    def read(self, method: str = "GET") -> Response:
        """The next response (a 1xx included); fails if the connection closes before its head."""
        deadline = time.monotonic() + self.timeout
        status_line = self._line(deadline)
        headers = self._fields(deadline) if status_line else None
        if status_line is None or headers is None:
            raise AssertionError(
                f"connection closed before a response head: {bytes(self.buffer)!r}"
            )
        version, status, *reason = status_line.decode("latin-1").split(" ", 2)
        response = Response(version, int(status), " ".join(reason), headers, b"", complete=True)
        coding = (response.header("Transfer-Encoding") or "").lower()
        length = response.header("Content-Length")
        if method == "HEAD" or response.status < 200 or response.status in (204, 304):
            return response
        if coding == "chunked":
            self._read_chunked(response, deadline)
        elif length is not None:
            response.body = self._exactly(int(length), deadline)
            response.complete = len(response.body) == int(length)
        else:  # delimited by the end of the connection
            while self._fill(deadline):
                pass
            response.body = bytes(self.buffer)
            self.buffer.clear()
        return response

    def _read_chunked(self, response: Response, deadline: float) -> None:
        parts = []
        while True:
            size_line = self._line(deadline)
            if size_line is None:
                response.complete = False
                break
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                trailers = self._fields(deadline)
                response.complete = trailers is not None
                response.trailers = trailers or []
                break
            data = self._exactly(size, deadline)
            parts.append(data)
            if len(data) < size or self._line(deadline) != b"":
                response.complete = False
                break
        response.body = b"".join(parts)

    def read_final(self, method: str = "GET") -> tuple[list[Response], Response]:
        """The 1xx responses before the final one, and the final one."""
        interim = []
        while (response := self.read(method)).status < 200:
            interim.append(response)
        return interim, response

    def wait_closed(self) -> bytes:
        """Wait for the server to close the connection; return what arrived before it."""
        deadline = time.monotonic() + self.timeout
        while self._fill(deadline):
            pass
        rest = bytes(self.buffer)
        self.buffer.clear()
        return rest


@contextlib.contextmanager
def connected(server: Server, timeout: float = 5.0) -> Iterator[ResponseReader]:
    """A fresh connection to ``server`` with a reader over it; closed afterwards."""
    with socket.create_connection((server.host, server.port), timeout=timeout) as sock:
        yield ResponseReader(sock, timeout)


def receive_until(reader: ResponseReader, marker: bytes) -> None:
    """Receive into ``reader.buffer`` until ``marker`` is in it (within ``reader.timeout``),
    for responses read while they are still being produced; ``reader.read()`` still parses
    everything afterwards."""
    deadline = time.monotonic() + reader.timeout
    while marker not in reader.buffer:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"{marker!r} not received; got {bytes(reader.buffer)!r}")
        reader.sock.settimeout(remaining)
        try:
            chunk = reader.sock.recv(1 << 16)
        except TimeoutError:
            continue
        if not chunk:
            raise AssertionError(f"closed before {marker!r}; got {bytes(reader.buffer)!r}")
        reader.buffer += chunk


@dataclass
class Finished:
    """A server run that stopped by itself: its exit code and its two output streams."""

    code: int
    stdout: str
    stderr: str


def run_to_exit(
    tmp_path: Path,
    *args: str,
    workers: int = 1,
    env: dict[str, str] | None = None,
    timeout: float = 15.0,
) -> Finished:
    """Run ``hornbeam ARGS -w WORKERS -b 127.0.0.1:0`` that must stop by itself within
    ``timeout``, keeping stdout and stderr apart. A server still running then is stopped
    (SIGINT, then SIGKILL) and the test fails."""
    argv = ["-b", "127.0.0.1:0", "-w", str(workers), "--pythonpath", str(APPS), *args]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("HORNBEAM_")}
    full_env.update(env or {})
    full_env.setdefault("PYTHONPATH", str(APPS))
    with subprocess.Popen(
        [sys.executable, "-m", "hornbeam", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        cwd=tmp_path,
        env=full_env,
        text=True,
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            try:
                stdout, stderr = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                stdout, stderr = proc.communicate()
            raise AssertionError(
                f"hornbeam still running after {timeout}s:\n{stdout}\n{stderr}"
            ) from None
    return Finished(proc.returncode, stdout, stderr)
