"""ASGI WebSocket app for the WebSocket tests (routed by path), plus a plain HTTP answer."""

import asyncio
import json


async def _connect(receive):
    message = await receive()
    assert message["type"] == "websocket.connect", message


async def _echo_until_disconnect(receive, send):
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def echo(scope, receive, send):
    await _connect(receive)
    await send({"type": "websocket.accept"})
    await _echo_until_disconnect(receive, send)


async def accept_offered(scope, receive, send):
    """Accept with the last subprotocol the client offered and an extra header; first
    message: what the scope said."""
    await _connect(receive)
    offered = scope["subprotocols"]
    await send(
        {
            "type": "websocket.accept",
            "subprotocol": offered[-1] if offered else None,
            "headers": [(b"x-session", b"s-42")],
        }
    )
    report = {
        "type": scope["type"],
        "scheme": scope["scheme"],
        "path": scope["path"],
        "query_string": scope["query_string"].decode("latin-1"),
        "subprotocols": list(offered),
        "asgi": scope["asgi"],
        "header_names": [name.decode("latin-1") for name, _ in scope["headers"]],
        "client_host": scope["client"][0] if scope["client"] else None,
    }
    await send({"type": "websocket.send", "text": json.dumps(report)})
    await _echo_until_disconnect(receive, send)


async def refuse(scope, receive, send):
    await _connect(receive)
    await send({"type": "websocket.close", "code": 1000})


async def deny(scope, receive, send):
    await _connect(receive)
    await send(
        {
            "type": "websocket.http.response.start",
            "status": 401,
            "headers": [(b"content-type", b"text/plain"), (b"x-denied", b"yes")],
        }
    )
    await send({"type": "websocket.http.response.body", "body": b"go ", "more_body": True})
    await send({"type": "websocket.http.response.body", "body": b"away"})


async def push(scope, receive, send):
    """Sends every 50 ms without ever receiving; stops when the client leaves (or after 10 s)."""
    await _connect(receive)
    await send({"type": "websocket.accept"})
    for tick in range(200):
        try:
            await send({"type": "websocket.send", "text": f"tick {tick}"})
        except OSError:
            return
        await asyncio.sleep(0.05)


async def crash(scope, receive, send):
    """Raises once the client says so (after the handshake)."""
    await _connect(receive)
    await send({"type": "websocket.accept"})
    message = await receive()
    raise RuntimeError(f"crash on purpose after {message!r}")


ROUTES = {
    "/echo": echo,
    "/accept": accept_offered,
    "/refuse": refuse,
    "/deny": deny,
    "/push": push,
    "/crash": crash,
}


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return  # no lifespan support: the server goes on without it
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"plain http"})
        return
    route = ROUTES.get(scope["path"])
    if route is None:
        await _connect(receive)
        await send({"type": "websocket.close"})
        return
    await route(scope, receive, send)
