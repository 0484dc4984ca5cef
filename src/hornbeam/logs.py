"""Error and access logging in gunicorn's formats, to stdout/stderr or files.

Two stdlib loggers: ``hornbeam.error`` (server messages, app tracebacks, ``wsgi.errors``) and
``hornbeam.access`` (one line per response, only when ``access_log`` is set). Files are
reopened on SIGUSR1 so log rotation works.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TextIO

from hornbeam.http1.events import Request

error_log = logging.getLogger("hornbeam.error")
access_logger = logging.getLogger("hornbeam.access")

_ERROR_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"
_DATE_FORMAT = "%Y-%m-%d %H:%M:%S %z"


def _open_target(target: str, default: TextIO) -> logging.Handler:
    if target == "-":
        return logging.StreamHandler(default)
    handler = logging.FileHandler(target, encoding="utf-8", delay=False)
    os.chmod(target, 0o640)
    return handler


def configure(error_target: str, level: str, access_target: str | None) -> None:
    """(Re)install the handlers of both loggers; safe to call again on reload or SIGUSR1."""
    for logger in (error_log, access_logger):
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()
        logger.propagate = False
    handler = _open_target(error_target, sys.stderr)
    handler.setFormatter(logging.Formatter(_ERROR_FORMAT, _DATE_FORMAT))
    error_log.addHandler(handler)
    error_log.setLevel(level.upper())
    if access_target is None:
        access_logger.disabled = True
        return
    access_logger.disabled = False
    access = _open_target(access_target, sys.stdout)
    access.setFormatter(logging.Formatter("%(message)s"))
    access_logger.addHandler(access)
    access_logger.setLevel(logging.INFO)


class ErrorStream:
    """``wsgi.errors``: a text stream whose lines go to the error log."""

    def write(self, text: str) -> int:
        stripped = text.rstrip("\n")
        if stripped:
            error_log.error("%s", stripped)
        return len(text)

    def writelines(self, lines: list[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        for handler in error_log.handlers:
            handler.flush()


@dataclass(frozen=True, slots=True)
class AccessRecord:
    """What the access log needs to know about one finished response."""

    remote_addr: str
    method: str
    target: str
    http_version: str
    status: int
    body_bytes: int
    request_headers: Mapping[str, str]
    response_headers: Mapping[str, str]
    started: float  # time.time() when the request head arrived
    duration: float  # seconds


class AccessLog:
    """Formats :class:`AccessRecord` with gunicorn's ``%(atom)s`` access log format."""

    def __init__(self, log_format: str) -> None:
        self._format = log_format

    @property
    def enabled(self) -> bool:
        return not access_logger.disabled and bool(access_logger.handlers)

    def write(self, record: AccessRecord) -> None:
        access_logger.info(self._format, _Atoms(record))

    def response(
        self,
        request: Request,
        started: float,
        remote_addr: str,
        status: int,
        body_bytes: int,
        response_headers: Mapping[str, str],
    ) -> None:
        """Log one finished response to ``request`` (received at ``started``, time.time())."""
        self.write(
            AccessRecord(
                remote_addr=remote_addr or "-",
                method=request.method.decode("latin-1"),
                target=request.target.decode("latin-1"),
                http_version=request.http_version,
                status=status,
                body_bytes=body_bytes,
                request_headers={
                    k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.headers
                },
                response_headers=response_headers,
                started=started,
                duration=time.time() - started,
            )
        )


def _timestamp(r: AccessRecord) -> str:
    return time.strftime("[%d/%b/%Y:%H:%M:%S %z]", time.localtime(r.started))


_SIMPLE_ATOMS: dict[str, Callable[[AccessRecord], str]] = {
    "h": lambda r: r.remote_addr,
    "l": lambda r: "-",
    "u": lambda r: "-",
    "t": _timestamp,
    "r": lambda r: f"{r.method} {r.target} HTTP/{r.http_version}",
    "m": lambda r: r.method,
    "U": lambda r: r.target.split("?", 1)[0],
    "q": lambda r: r.target.partition("?")[2],
    "H": lambda r: f"HTTP/{r.http_version}",
    "s": lambda r: str(r.status),
    "B": lambda r: str(r.body_bytes),
    "b": lambda r: str(r.body_bytes) if r.body_bytes else "-",
    "f": lambda r: r.request_headers.get("referer", "-"),
    "a": lambda r: r.request_headers.get("user-agent", "-"),
    "T": lambda r: str(int(r.duration)),
    "D": lambda r: str(int(r.duration * 1_000_000)),
    "M": lambda r: str(int(r.duration * 1000)),
    "L": lambda r: f"{r.duration:.6f}",
    "p": lambda r: f"<{os.getpid()}>",
}


class _Atoms(Mapping[str, str]):
    """gunicorn's atoms, computed lazily: only those the format names are built."""

    __slots__ = ("_record",)

    def __init__(self, record: AccessRecord) -> None:
        self._record = record

    def __getitem__(self, key: str) -> str:
        atom = _SIMPLE_ATOMS.get(key)
        if atom is not None:
            return atom(self._record)
        # {Header-Name}i, {Header-Name}o, {VARIABLE}e
        if key.startswith("{") and len(key) > 3 and key[-2] == "}":
            name, kind = key[1:-2], key[-1]
            if kind == "i":
                return self._record.request_headers.get(name.lower(), "-")
            if kind == "o":
                return self._record.response_headers.get(name.lower(), "-")
            if kind == "e":
                return os.environ.get(name, "-")
        return "-"

    def __iter__(self) -> Iterator[str]:
        return iter(_SIMPLE_ATOMS)

    def __len__(self) -> int:
        return len(_SIMPLE_ATOMS)
