"""Whole response bodies of every size reach the client intact, in order, on one connection.

Bodies from COPY_LIMIT up leave beside their head in one writev instead of being copied
after it; these tests cross that limit both ways, with HEAD requests in between (no body on
the wire) so a response that wrote too much or too little would break the next one.
"""

from __future__ import annotations

import time
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


CHUNK = 64 * 1024
STREAM_CHUNKS = 800  # 50 MiB: far more than the socket and transport buffers hold


def test_asgi_stream_waits_for_a_client_that_does_not_read(wire: Wire) -> None:
    """``send`` with more_body blocks while the transport is over its high-water mark, so an
    app streaming to a client that stopped reading does not pile the body up in memory."""
    sent: list[int] = []

    async def stream(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for index in range(STREAM_CHUNKS):
            await send({"type": "http.response.body", "body": b"x" * CHUNK, "more_body": True})
            sent.append(index)
        await send({"type": "http.response.body", "body": b""})

    client, _ = wire(stream, asgi=True).connect()
    client.sendall(build_request("/"))
    deadline = time.monotonic() + 5
    previous = -1
    while time.monotonic() < deadline:  # wait until the app stops making progress
        time.sleep(0.1)
        if len(sent) == previous:
            break
        previous = len(sent)
    assert len(sent) < STREAM_CHUNKS // 4, f"{len(sent)} chunks sent to a client reading nothing"
    reader = ResponseReader(client, timeout=30)
    response = reader.read()
    assert response.complete and len(response.body) == CHUNK * STREAM_CHUNKS
    assert len(sent) == STREAM_CHUNKS
