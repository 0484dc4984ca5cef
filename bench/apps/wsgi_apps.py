"""WSGI apps of the side-by-side benchmark (bench/peers.py): one callable per case.

Every WSGI server under test runs these very callables, so a difference in the figures is
the server's, not the app's. Each response carries a Content-Length, as a real app's would.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from wsgiref.types import StartResponse, WSGIEnvironment

HELLO_BODY = b"Hello, World!"
LARGE_BODY = b"x" * (64 * 1024)
BLOCKING_SECONDS = 0.005  # a short database or upstream call


def _headers(body: bytes) -> list[tuple[str, str]]:
    return [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]


def hello(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The plain-text hello: measures the server's per-request cost and nothing else."""
    start_response("200 OK", _headers(HELLO_BODY))
    return [HELLO_BODY]


def body_64k(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """A 64 KB response: measures how the server writes a body larger than a socket buffer."""
    start_response("200 OK", _headers(LARGE_BODY))
    return [LARGE_BODY]


def blocking_5ms(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """Blocks its thread for 5 ms: measures how much blocking work the server overlaps."""
    time.sleep(BLOCKING_SECONDS)
    start_response("200 OK", _headers(HELLO_BODY))
    return [HELLO_BODY]
