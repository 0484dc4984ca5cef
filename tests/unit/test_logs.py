"""Logging: gunicorn's access log atoms, file targets and their reopening, ``wsgi.errors``."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from hornbeam.config.settings import DEFAULT_ACCESS_LOG_FORMAT
from hornbeam.logs import AccessLog, AccessRecord, ErrorStream, access_logger, configure, error_log

# 2001-09-09 01:46:40 UTC
BILLENNIUM = 1_000_000_000


@pytest.fixture(autouse=True)
def _restore_loggers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Put both hornbeam loggers back as they were, closing any handler a test installed."""
    saved = [
        (logger, list(logger.handlers), logger.level, logger.propagate, logger.disabled)
        for logger in (error_log, access_logger)
    ]
    # a fixed zone, so timestamps are predictable
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    for logger, handlers, level, propagate, disabled in saved:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            if handler not in handlers:
                handler.close()
        for handler in handlers:
            logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
        logger.disabled = disabled
    monkeypatch.undo()
    time.tzset()


RECORD = AccessRecord(
    remote_addr="192.0.2.7",
    method="GET",
    target="/search?q=hornbeam&page=2",
    http_version="1.1",
    status=200,
    body_bytes=1234,
    request_headers={"referer": "http://example.com/", "user-agent": "curl/8.5", "x-id": "abc"},
    response_headers={"content-type": "text/html", "x-served-by": "w1"},
    started=BILLENNIUM,
    duration=1.5,
)


class Files:
    def __init__(self, root: Path) -> None:
        self.error = root / "error.log"
        self.access = root / "access.log"

    def configure(self, level: str = "info", access: bool = True) -> None:
        configure(str(self.error), level, str(self.access) if access else None)

    @staticmethod
    def read(path: Path) -> list[str]:
        for logger in (error_log, access_logger):
            for handler in logger.handlers:
                handler.flush()
        return path.read_text(encoding="utf-8").splitlines()


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return Files(tmp_path)


def access_line(files: Files, log_format: str, record: AccessRecord = RECORD) -> str:
    files.configure()
    log = AccessLog(log_format)
    assert log.enabled
    log.write(record)
    (line,) = files.read(files.access)
    return line


# --- access log ---------------------------------------------------------------------------------


def test_default_format_is_gunicorns_combined_line(files: Files) -> None:
    line = access_line(files, DEFAULT_ACCESS_LOG_FORMAT)
    assert line == (
        "192.0.2.7 - - [09/Sep/2001:01:46:40 +0000] "
        '"GET /search?q=hornbeam&page=2 HTTP/1.1" 200 1234 "http://example.com/" "curl/8.5"'
    )


def test_default_format_without_optional_values(files: Files) -> None:
    bare = replace(RECORD, target="/", status=204, body_bytes=0, request_headers={})
    line = access_line(files, DEFAULT_ACCESS_LOG_FORMAT, bare)
    shape = r'(\S+) - - \[([^\]]+)\] "([^"]*)" (\d{3}) (\S+) "([^"]*)" "([^"]*)"'
    match = re.fullmatch(shape, line)
    assert match is not None, line
    assert match.groups() == (
        "192.0.2.7",
        "09/Sep/2001:01:46:40 +0000",
        "GET / HTTP/1.1",
        "204",
        "-",
        "-",
        "-",
    )


@pytest.mark.parametrize(
    ("atom", "expected"),
    [
        ("h", "192.0.2.7"),
        ("l", "-"),
        ("u", "-"),
        ("t", "[09/Sep/2001:01:46:40 +0000]"),
        ("r", "GET /search?q=hornbeam&page=2 HTTP/1.1"),
        ("m", "GET"),
        ("U", "/search"),
        ("q", "q=hornbeam&page=2"),
        ("H", "HTTP/1.1"),
        ("s", "200"),
        ("B", "1234"),
        ("b", "1234"),
        ("f", "http://example.com/"),
        ("a", "curl/8.5"),
        ("T", "1"),
        ("D", "1500000"),
        ("M", "1500"),
        ("L", "1.500000"),
        ("p", f"<{os.getpid()}>"),
        ("{X-Id}i", "abc"),
        ("{x-id}i", "abc"),
        ("{Missing}i", "-"),
        ("{X-Served-By}o", "w1"),
        ("{Content-Type}o", "text/html"),
        ("{Missing}o", "-"),
        ("{HBT_LOG_VARIABLE}e", "from the environment"),
        ("{HBT_UNSET_VARIABLE}e", "-"),
        ("{X-Id}z", "-"),
        ("unknown", "-"),
    ],
)
def test_atom(files: Files, monkeypatch: pytest.MonkeyPatch, atom: str, expected: str) -> None:
    monkeypatch.setenv("HBT_LOG_VARIABLE", "from the environment")
    monkeypatch.delenv("HBT_UNSET_VARIABLE", raising=False)
    assert access_line(files, f"<%({atom})s>") == f"<{expected}>"


def test_atoms_for_an_empty_body_and_no_query(files: Files) -> None:
    empty = replace(RECORD, target="/plain", body_bytes=0, duration=0.000123)
    line = access_line(files, "%(U)s|%(q)s|%(B)s|%(b)s|%(T)s|%(D)s|%(M)s|%(L)s", empty)
    assert line == "/plain||0|-|0|123|0|0.000123"


def test_access_log_disabled_without_a_target(files: Files) -> None:
    files.configure(access=False)
    log = AccessLog(DEFAULT_ACCESS_LOG_FORMAT)
    assert not log.enabled
    log.write(RECORD)
    assert not files.access.exists()


# --- files and reopening ------------------------------------------------------------------------


def test_configure_writes_the_error_log_in_gunicorns_format(files: Files) -> None:
    files.configure(level="info")
    error_log.debug("hidden below the level")
    error_log.info("Booting worker with pid: %d", 42)
    (line,) = files.read(files.error)
    pattern = (
        r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+0000\] \[(\d+)\] \[INFO\] Booting worker with pid: 42"
    )
    match = re.fullmatch(pattern, line)
    assert match is not None, line
    assert int(match[1]) == os.getpid()


def test_log_level_is_applied(files: Files) -> None:
    files.configure(level="warning")
    error_log.info("not shown")
    error_log.warning("shown")
    assert [line.rsplit("] ", 1)[1] for line in files.read(files.error)] == ["shown"]


def test_reconfigure_reopens_files_after_rotation(files: Files) -> None:
    files.configure()
    log = AccessLog("%(s)s")
    log.write(replace(RECORD, status=201))
    error_log.info("before rotation")
    rotated_access = files.access.with_suffix(".log.1")
    rotated_error = files.error.with_suffix(".log.1")
    os.rename(files.access, rotated_access)
    os.rename(files.error, rotated_error)
    log.write(replace(RECORD, status=202))  # still goes to the open, renamed file
    files.configure()
    log.write(replace(RECORD, status=203))
    error_log.info("after rotation")
    assert files.read(rotated_access) == ["201", "202"]
    assert files.read(files.access) == ["203"]
    assert files.read(rotated_error)[0].endswith("before rotation")
    (line,) = files.read(files.error)
    assert line.endswith("after rotation")


def test_reconfigure_does_not_duplicate_lines(files: Files) -> None:
    for _ in range(3):
        files.configure()
    AccessLog("%(m)s").write(RECORD)
    assert files.read(files.access) == ["GET"]
    assert len(error_log.handlers) == 1
    assert len(access_logger.handlers) == 1


# --- wsgi.errors --------------------------------------------------------------------------------


def test_error_stream_writes_to_the_error_log(files: Files) -> None:
    files.configure()
    stream = ErrorStream()
    assert stream.write("something broke\n") == len("something broke\n")
    assert stream.write("\n") == 1
    assert stream.write("") == 0
    stream.writelines(["first line\n", "second line"])
    stream.flush()
    messages = [line.split("] [ERROR] ", 1)[1] for line in files.read(files.error)]
    assert messages == ["something broke", "first line", "second line"]
    assert files.read(files.access) == []
