"""ASGI apps of the side-by-side benchmark (bench/peers.py), written without a framework.

The hello app answers the lifespan protocol too, so every ASGI server starts it the same way
and none of them logs a lifespan failure. Also owns what every ASGI app of the benchmarks
shares (ws_echo.py imports it): the ASGI types, the messages of a plain-text answer, and the
lifespan handling.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def plain_text(body: bytes) -> tuple[Message, Message]:
    """The two messages of a 200 text/plain answer carrying `body`, built once at import."""
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]
    start = {"type": "http.response.start", "status": 200, "headers": headers}
    return start, {"type": "http.response.body", "body": body}


HELLO_BODY = b"Hello, World!"
_HELLO_START, _HELLO_BODY_MESSAGE = plain_text(HELLO_BODY)


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    """The plain-text hello, the ASGI twin of wsgi_apps.hello."""
    if scope["type"] == "lifespan":
        await run_lifespan(receive, send)
        return
    await send(_HELLO_START)
    await send(_HELLO_BODY_MESSAGE)


async def run_lifespan(receive: Receive, send: Send) -> None:
    """Answer startup and shutdown: nothing to set up or tear down."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
