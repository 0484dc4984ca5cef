"""Response heads come from a per-worker cache when the app's headers repeat; headers the
cache cannot key (given as lists, not tuples) are still sent, built afresh every time."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest

from harness import ResponseReader, build_request
from wiring import WiredWorker

Wire = Callable[..., WiredWorker]


def wsgi_list_headers(
    environ: dict[str, Any], start_response: Callable[..., Any]
) -> Iterable[bytes]:
    start_response("200 OK", [["Content-Type", "text/plain"], ["X-Path", environ["PATH_INFO"]]])
    return [b"ok"]


async def asgi_list_headers(scope: dict[str, Any], receive: Any, send: Any) -> None:
    headers = [[b"content-type", b"text/plain"], [b"x-path", scope["path"].encode()]]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.mark.parametrize(
    ("app", "options"),
    [(wsgi_list_headers, {"threads": 2}), (asgi_list_headers, {"asgi": True})],
    ids=["wsgi", "asgi"],
)
def test_headers_given_as_lists_are_sent_every_time(
    wire: Wire, app: Any, options: dict[str, Any]
) -> None:
    client, _ = wire(app, **options).connect()
    reader = ResponseReader(client)
    for path in ("/a", "/b", "/a"):
        client.sendall(build_request(path))
        response = reader.read()
        assert (response.status, response.body) == (200, b"ok")
        assert response.header("X-Path") == path
        assert response.header("Content-Type") == "text/plain"
