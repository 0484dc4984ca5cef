"""The practical ceiling of the side-by-side benchmark: the least a Python server can do.

`bench/peers.py --servers ceiling-static,ceiling-wsgi,...` runs it beside the real servers,
on the cases that allow each way of answering (`Case.ceilings`), with the least work each
answer can take:
- `--answer static` (`ceiling-static`: hello, 64 KB): it asks the app once, at start-up, for
  its answer to GET /, and sends those bytes to every request.
- `--answer per-request` (`ceiling-wsgi`: WSGI hello, 64 KB, the Flask demo): it calls the
  app for every request, inline on the loop, with an environ of the method, path, query and
  headers.
Either way the bytes leave from a uvloop + httptools protocol with no header checks, no
Date, no limits or timers, no logs; only keep-alive and `Connection: close` are honoured,
because wrk needs them. It is not a server anyone should run, it is a yardstick: a target
above it is out of reach for any server that parses requests in Python, and a server's
ratio to it shows what its own machinery costs.

    python -m ceiling MODULE:APP --interface wsgi|asgi --answer static|per-request \
        --host 127.0.0.1 --port PORT [--workers N]

With N > 1 it forks N processes that accept on the one listening socket.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib
import io
import os
import signal
import socket
import sys
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, cast

import httptools
import uvloop

Answer = tuple[int, list[tuple[bytes, bytes]], bytes]  # status, headers, body


WSGI_BASE = {
    "REQUEST_METHOD": "GET",
    "SCRIPT_NAME": "",
    "PATH_INFO": "/",
    "QUERY_STRING": "",
    "SERVER_NAME": "127.0.0.1",
    "SERVER_PORT": "80",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "wsgi.version": (1, 0),
    "wsgi.url_scheme": "http",
    "wsgi.errors": sys.stderr,
    "wsgi.multithread": False,
    "wsgi.multiprocess": False,
    "wsgi.run_once": False,
}


def wsgi_answer(app: Callable[..., Any], environ: dict[str, Any]) -> Answer:
    """Call a WSGI app with `environ` (a GET, no body) and collect what it answered."""
    started: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started[:] = [int(status.split()[0]), [(k.encode(), v.encode()) for k, v in headers]]
        return lambda data: None

    environ["wsgi.input"] = io.BytesIO()
    chunks = app(environ, start_response)
    try:
        body = b"".join(chunks)
    finally:
        if hasattr(chunks, "close"):
            chunks.close()
    status, headers = started
    return status, headers, body


def asgi_answer(app: Callable[..., Any]) -> Answer:
    """Run an ASGI app once on a GET / scope and collect what it sent."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], [(bytes(k), bytes(v)) for k, v in start.get("headers", [])], body


def response_bytes(answer: Answer) -> bytes:
    """The whole HTTP/1.1 response, with a Content-Length if the app gave none."""
    status, headers, body = answer
    if not any(name.lower() == b"content-length" for name, _ in headers):
        headers = [*headers, (b"content-length", b"%d" % len(body))]
    head = b"HTTP/1.1 %d %s\r\n" % (status, HTTPStatus(status).phrase.encode())
    head += b"".join(b"%s: %s\r\n" % header for header in headers)
    return head + b"\r\n" + body


class OneAnswerEach(asyncio.Protocol):
    """Parse requests with httptools and write `answer()` for each; keep-alive as asked."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's does not subclass it
        self.parser = httptools.HttpRequestParser(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            raise  # an error of the app or of this module: let the loop report it
        except httptools.HttpParserError:
            self.transport.close()

    def on_message_complete(self) -> None:
        self.transport.write(self.answer())
        if not self.parser.should_keep_alive():
            self.transport.close()

    def answer(self) -> bytes:
        raise NotImplementedError


class FixedAnswer(OneAnswerEach):
    """Answer every request on the connection with the same bytes."""

    def __init__(self, response: bytes) -> None:
        self.response = response

    def answer(self) -> bytes:
        return self.response


class AppPerRequest(OneAnswerEach):
    """Call the WSGI app for every request, inline, with the request's method, path, query
    and headers in its environ."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def answer(self) -> bytes:
        path, _, query = self.url.partition(b"?")
        environ = dict(WSGI_BASE)
        environ["REQUEST_METHOD"] = self.parser.get_method().decode()
        environ["PATH_INFO"] = path.decode("latin-1")
        environ["QUERY_STRING"] = query.decode("latin-1")
        for name, value in self.headers:
            key = "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
            environ[key] = value.decode("latin-1")
        self.url, self.headers = b"", []
        return response_bytes(wsgi_answer(self.app, environ))


def serve(sock: socket.socket, protocol: Callable[[], asyncio.Protocol]) -> None:
    """Serve until SIGINT or SIGTERM; open connections are dropped with the process."""
    loop = uvloop.new_event_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, loop.stop)
    loop.run_until_complete(loop.create_server(protocol, sock=sock, backlog=1024))
    loop.run_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ceiling", description=__doc__.splitlines()[0])
    parser.add_argument("app", help="MODULE:APP whose answer to GET / is served")
    parser.add_argument("--interface", choices=("wsgi", "asgi"), required=True)
    parser.add_argument("--answer", choices=("static", "per-request"), required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    module, _, name = args.app.partition(":")
    app = getattr(importlib.import_module(module), name)
    protocol: Callable[[], asyncio.Protocol]
    if args.answer == "per-request":
        if args.interface != "wsgi":
            parser.error("--answer per-request serves WSGI apps only")
        protocol = functools.partial(AppPerRequest, app)
    elif args.interface == "wsgi":
        protocol = functools.partial(FixedAnswer, response_bytes(wsgi_answer(app, dict(WSGI_BASE))))
    else:
        protocol = functools.partial(FixedAnswer, response_bytes(asgi_answer(app)))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    print(f"Listening at: http://{args.host}:{sock.getsockname()[1]}", flush=True)
    if args.workers == 1:
        serve(sock, protocol)
        return
    children = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:
            serve(sock, protocol)
            os._exit(0)
        children.append(pid)
    # INT or TERM stops the workers (set here: a shell may start it with SIGINT ignored)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.default_int_handler)
    try:
        for pid in children:
            os.waitpid(pid, 0)
    except KeyboardInterrupt:
        for pid in children:
            os.kill(pid, signal.SIGINT)
        for pid in children:
            os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
