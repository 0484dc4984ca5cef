"""WSGI app of the process-model tests: wsgi_basic's routes plus two that the arbiter tests need.

- ``/hold?s=SECONDS[&mark=NAME]`` first creates the file NAME in the directory named by the
  ``TESTAPP_MARK_DIR`` environment variable (so a test knows the request is in flight before
  it signals the server), then sleeps, then answers with the worker's PID.
- ``/allocate?mb=MB&s=SECONDS`` allocates MB MiB, keeps it for the life of the worker, sleeps,
  then answers with the worker's PID: grows the worker past ``max_worker_memory`` while its
  own request is still in flight.
"""

import os
import time
from pathlib import Path
from urllib.parse import parse_qs

from wsgi_basic import app as basic_app

_kept: list[bytes] = []  # allocations that live as long as the worker


def _query(environ: dict) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(environ.get("QUERY_STRING", "")).items()}


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/hold":
        query = _query(environ)
        mark = query.get("mark")
        if mark is not None:
            if not mark.isalnum():
                start_response("400 Bad Request", [("Content-Type", "text/plain")])
                return [b"mark must be alphanumeric"]
            (Path(os.environ["TESTAPP_MARK_DIR"]) / mark).touch()
        time.sleep(float(query["s"]))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(os.getpid()).encode()]
    if path == "/allocate":
        query = _query(environ)
        # b"x" * n writes every page, so the memory is resident (a zeroed buffer may not be)
        _kept.append(b"x" * (int(query["mb"]) << 20))
        time.sleep(float(query.get("s", "0")))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(os.getpid()).encode()]
    return basic_app(environ, start_response)
