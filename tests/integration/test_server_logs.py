"""Access and error logs in gunicorn's formats, to stdout/stderr or to files."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from harness import running, wait_for

# gunicorn's default: %(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"
_DEFAULT_LINE = re.compile(
    r"^127\.0\.0\.1 - - \[\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] "
    r'"GET /pid\?x=1 HTTP/1\.1" 200 \d+ "https://ref\.example/" "agent/1\.0"$',
    re.M,
)


def test_access_log_to_stdout_in_gunicorn_format(tmp_path: Path) -> None:
    with running(tmp_path, "wsgi_basic:app", "--access-log", "-") as server:
        server.get(
            "/pid?x=1", headers={"Referer": "https://ref.example/", "User-Agent": "agent/1.0"}
        )
        wait_for(lambda: bool(_DEFAULT_LINE.search(server.log())), 5, "the access log line")


def test_access_log_file_custom_format_and_error_log_file(tmp_path: Path) -> None:
    access = tmp_path / "access.log"
    errors = tmp_path / "error.log"
    fmt = "%(m)s %(U)s %(q)s %(s)s %(B)s %(D)s %({x-trace}i)s %({content-type}o)s"
    with running(
        tmp_path,
        "wsgi_basic:app",
        "--access-log",
        str(access),
        "--access-log-format",
        fmt,
        "--error-log",
        str(errors),
        ready=False,
    ) as server:
        # the "Listening at" line goes to the error log file, not to the process output
        wait_for(lambda: errors.exists() and "Listening at" in errors.read_text(), 15, "boot")
        port = int(re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", errors.read_text())[1])  # type: ignore[index]
        wait_for(lambda: "Booting worker" in errors.read_text(), 15, "the worker")
        httpx.get(f"http://127.0.0.1:{port}/pid?a=b", headers={"X-Trace": "t-42"}, timeout=10)
        httpx.get(f"http://127.0.0.1:{port}/error", timeout=10)
        pattern = re.compile(r"^GET /pid a=b 200 \d+ \d+ t-42 text/plain$", re.M)
        wait_for(lambda: bool(pattern.search(access.read_text())), 5, "the custom access line")
        wait_for(lambda: "GET /error" in access.read_text(), 5, "the 500 in the access log")
        assert re.search(r"^GET /error  500 \d+ \d+ - text/plain", access.read_text(), re.M)
        wait_for(lambda: "RuntimeError: boom from the app" in errors.read_text(), 5, "traceback")
        assert "Listening at" not in server.log()
