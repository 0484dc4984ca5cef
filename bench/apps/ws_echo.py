"""The ASGI app of the WebSocket benchmark (bench/websocket.py), written without a framework.

Every WebSocket is accepted and every message is sent back as it came (text as text, bytes
as bytes) until the client leaves. A plain HTTP request gets a short text answer, so the
benchmark can check readiness and that the server still answers HTTP while it holds many
idle WebSockets. Lifespan is answered too (asgi_apps.py's handling), so every server starts
it the same way.
"""

from __future__ import annotations

from asgi_apps import Receive, Scope, Send, plain_text, run_lifespan

HTTP_BODY = b"websocket echo"
_HTTP_START, _HTTP_BODY_MESSAGE = plain_text(HTTP_BODY)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    kind = scope["type"]
    if kind == "websocket":
        await _echo(receive, send)
    elif kind == "http":
        await send(_HTTP_START)
        await send(_HTTP_BODY_MESSAGE)
    elif kind == "lifespan":
        await run_lifespan(receive, send)


async def _echo(receive: Receive, send: Send) -> None:
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return  # websocket.disconnect
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})
