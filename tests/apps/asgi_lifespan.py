"""ASGI apps for the lifespan tests, one attribute per behaviour.

Every call and lifespan event is appended, with the worker's PID, to the file named by the
``LIFESPAN_LOG`` environment variable (one line each, so workers can share the file).
HTTP requests are answered with the worker's PID.
"""

import asyncio
import os


def _note(*words):
    with open(os.environ["LIFESPAN_LOG"], "a") as log:
        log.write(" ".join(str(word) for word in (*words, os.getpid())) + "\n")


async def _answer_pid(send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(os.getpid()).encode()})


async def app(scope, receive, send):
    """Supports lifespan: notes startup and shutdown."""
    _note("call", scope["type"])
    if scope["type"] == "http":
        await _answer_pid(send)
        return
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            _note("startup")
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            _note("shutdown")
            await send({"type": "lifespan.shutdown.complete"})
            return


async def unsupported(scope, receive, send):
    """Raises on the lifespan scope, as frameworks without lifespan support do."""
    _note("call", scope["type"])
    if scope["type"] != "http":
        raise RuntimeError(f"scope type {scope['type']!r} is not handled here")
    await _answer_pid(send)


async def failing(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "db down"})
        return
    await _answer_pid(send)


async def hanging(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        _note("startup-begun")
        await asyncio.Event().wait()  # never set: startup never completes
    await _answer_pid(send)
