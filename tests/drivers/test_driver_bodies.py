"""Whole response bodies of every size reach the client intact, in order, on one connection.

Bodies from COPY_LIMIT up leave beside their head in one writev instead of being copied
after it; these tests cross that limit both ways, with HEAD requests in between (no body on
the wire) so a response that wrote too much or too little would break the next one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest

from hornbeam.io.connection import COPY_LIMIT

from harness import ResponseReader, build_request
from wiring import WiredWorker

Wire = Callable[..., WiredWorker]
SIZES = [0, 1, COPY_LIMIT - 1, COPY_LIMIT, COPY_LIMIT + 1, 300_000]


def body_of(path: str) -> bytes:
    size = int(path.strip("/"))
    return bytes(i % 251 for i in range(size))


def wsgi_sized(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    body = body_of(environ["PATH_INFO"])
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return [body]


async def asgi_sized(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = body_of(scope["path"])
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


@pytest.mark.parametrize(
    ("app", "options"),
    [(wsgi_sized, {"threads": 2}), (wsgi_sized, {"threads": 0}), (asgi_sized, {"asgi": True})],
    ids=["wsgi-threads", "wsgi-inline", "asgi"],
)
def test_bodies_around_the_copy_limit_arrive_whole(
    wire: Wire, app: Any, options: dict[str, Any]
) -> None:
    client, _ = wire(app, **options).connect()
    reader = ResponseReader(client, timeout=10)
    for size in SIZES:
        client.sendall(build_request(f"/{size}") + build_request(f"/{size}", "HEAD"))
        full, head_only = reader.read(), reader.read("HEAD")
        assert full.complete and full.body == body_of(f"/{size}")
        assert full.header("Content-Length") == str(size)
        assert head_only.body == b"" and head_only.header("Content-Length") == str(size)
