"""ASGI apps of the side-by-side benchmark (bench/peers.py), written without a framework.

The hello app answers the lifespan protocol too, so every ASGI server starts it the same way
and none of them logs a lifespan failure.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

HELLO_BODY = b"Hello, World!"
_HELLO_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")],
}
_HELLO_BODY_MESSAGE = {"type": "http.response.body", "body": HELLO_BODY}


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    """The plain-text hello, the ASGI twin of wsgi_apps.hello."""
    if scope["type"] == "lifespan":
        await _run_lifespan(receive, send)
        return
    await send(_HELLO_START)
    await send(_HELLO_BODY_MESSAGE)


async def _run_lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
