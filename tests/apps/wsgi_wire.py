"""WSGI apps for the wire-level HTTP/1.1 and PEP 3333 integration tests (routed by path).

Paths not handled here fall through to ``wsgi_basic.app`` (/echo, /digest, /sleep, /cookies,
/stream, /error, /bad-header, ...). ``close()`` calls of tracked responses are appended to the
file named by the ``WIRE_CLOSE_LOG`` environment variable, so a test can prove they happened.
"""

import json
import os
import sys
from urllib.parse import parse_qs

from wsgi_basic import app as basic_app

CHUNK = 64 * 1024


def _query(environ):
    return {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def _text(start_response, status, body, extra=()):
    start_response(status, [("Content-Type", "text/plain"), *extra])
    return [body]


class TrackedBody:
    """A response iterable that records its close() in WIRE_CLOSE_LOG."""

    def __init__(self, tag, mode):
        self.tag = tag
        self.mode = mode

    def __iter__(self):
        yield b"first chunk\n"
        if self.mode == "raise":
            raise RuntimeError("boom in the middle of the body")
        if self.mode == "endless":
            block = b"x" * CHUNK
            for _ in range(4096):  # 256 MiB at most: the client leaves long before
                yield block

    def close(self):
        with open(os.environ["WIRE_CLOSE_LOG"], "a") as log:
            log.write(f"{self.tag}\n")


def _environ_report(environ, start_response):
    report = {}
    for key, value in environ.items():
        if isinstance(value, str | bool | int | tuple):
            report[key] = value
        else:
            report[key] = f"<{type(value).__name__}>"
    report["file_wrapper_callable"] = callable(environ.get("wsgi.file_wrapper"))
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(report).encode()]


def _lines(environ, start_response):
    stream = environ["wsgi.input"]
    mode = _query(environ).get("mode", "readline")
    if mode == "readline":
        lines = []
        while line := stream.readline():
            lines.append(line)
    elif mode == "readline-limit":
        lines = []
        while line := stream.readline(4):
            lines.append(line)
    elif mode == "readlines":
        lines = stream.readlines()
    else:
        lines = list(stream)
    return _text(
        start_response, "200 OK", json.dumps([x.decode("latin-1") for x in lines]).encode()
    )


def _streamed(environ, start_response):
    query = _query(environ)
    count, size = int(query.get("n", "5")), int(query.get("size", "10"))
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return (bytes([65 + i % 26]) * size for i in range(count))


def _content_length(environ, start_response):
    query = _query(environ)
    declared, sent = int(query["declared"]), int(query["sent"])
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(declared))])
    body = b"y" * sent
    if query.get("shape") == "list":
        return [body]
    return (body[i : i + 3] for i in range(0, sent, 3))


def _hop_by_hop(environ, start_response):
    start_response(
        "200 OK",
        [
            ("Content-Type", "text/plain"),
            ("Connection", "upgrade"),
            ("Keep-Alive", "timeout=999"),
            ("Proxy-Connection", "keep-alive"),
            ("Transfer-Encoding", "gzip"),
            ("Upgrade", "h2c"),
            ("TE", "trailers"),
            ("Trailer", "X-Checksum"),
            ("X-End-To-End", "kept"),
        ],
    )
    return [b"hop-by-hop headers dropped"]


def _write_callable(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"written-1;")
    write(b"written-2;")
    return [b"returned"]


def _start_twice(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    start_response("201 Created", [("Content-Type", "text/plain")])
    return [b"should not be sent"]


def _exc_info_before(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    try:
        raise ValueError("failed before any body byte")
    except ValueError:
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
    return [b"the app's own error page"]


def _exc_info_after(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"partial body"
    try:
        raise ValueError("failed after the head was sent")
    except ValueError:
        start_response("500 Internal Server Error", [], sys.exc_info())  # re-raises
    yield b"never sent"


def _error_mid_stream(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"partial body"
    raise RuntimeError("boom after the response started")


def _log_to_errors(environ, start_response):
    message = _query(environ).get("message", "")
    environ["wsgi.errors"].write(message + "\n")
    environ["wsgi.errors"].flush()
    return _text(start_response, "200 OK", b"logged")


def _reject(environ, start_response):
    status = _query(environ).get("status", "413")
    return _text(start_response, f"{status} Refused", b"refused without reading the body")


def _file(environ, start_response):
    path = _query(environ)["path"]
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return environ["wsgi.file_wrapper"](open(path, "rb"))  # closed by the server


def _tracked(environ, start_response):
    query = _query(environ)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return TrackedBody(query["tag"], query.get("mode", "ok"))


ROUTES = {
    "/environ": _environ_report,
    "/lines": _lines,
    "/streamed": _streamed,
    "/content-length": _content_length,
    "/hop-by-hop": _hop_by_hop,
    "/write": _write_callable,
    "/start-twice": _start_twice,
    "/exc-info-before": _exc_info_before,
    "/exc-info-after": _exc_info_after,
    "/error-mid-stream": _error_mid_stream,
    "/reject": _reject,
    "/log-to-errors": _log_to_errors,
    "/file": _file,
    "/tracked": _tracked,
}


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path.startswith("/environ/"):  # any path below it: PATH_INFO decoding is under test
        return _environ_report(environ, start_response)
    route = ROUTES.get(path, basic_app)
    return route(environ, start_response)
