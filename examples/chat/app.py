"""A WebSocket chat on hornbeam: rooms shared by every worker through pub/sub.

Run it on four workers (from the repository root) and open http://127.0.0.1:8000/:

    hornbeam app:app --pythonpath examples/chat -w 4

`GET /` serves the page (`static/index.html`, a small JavaScript client). A browser joins a
room on the WebSocket `/ws/<room>?user=<name>`. Each socket subscribes to the topic
`chat:<room>` and forwards what is published there; each text the browser sends is
published to that topic, so it reaches every member of the room whichever worker holds
their socket. Server -> browser frames are JSON objects:

- `{"event": "welcome", "room", "user", "worker_pid", "messages"}`: to the joining socket only
- `{"event": "join" | "leave", "user"}`: to the room
- `{"event": "message", "user", "text", "seq"}`: to the room; `seq` numbers the room's messages
- `{"event": "error", "text"}`: to the socket that sent something unusable

The room's message count lives in the shared state (`GET /rooms/<room>` shows it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.status import WS_1008_POLICY_VIOLATION
from starlette.websockets import WebSocket, WebSocketDisconnect

from hornbeam_erlang import publish, state_get, state_incr, subscribe

PAGE = Path(__file__).resolve().parent / "static" / "index.html"
NAME = re.compile(r"[A-Za-z0-9_.-]{1,32}")  # what room and user names may be
MAX_TEXT = 2000  # characters in one chat message


def _topic(room: str) -> str:
    return f"chat:{room}"


def _message_count_key(room: str) -> str:
    return f"chat:{room}:messages"


async def index(request: Request) -> FileResponse:
    return FileResponse(PAGE, media_type="text/html")


async def room_info(request: Request) -> JSONResponse:
    room = request.path_params["room"]
    return JSONResponse({"room": room, "messages": state_get(_message_count_key(room)) or 0})


async def _forward(subscription: AsyncIterator[Any], websocket: WebSocket) -> None:
    """Send every message published to the room down this socket, until the client leaves."""
    with contextlib.suppress(WebSocketDisconnect):  # chat() sees the disconnect too
        async for message in subscription:
            await websocket.send_json(message)


async def chat(websocket: WebSocket) -> None:
    room = websocket.path_params["room"]
    user = websocket.query_params.get("user", "")
    if not NAME.fullmatch(room) or not NAME.fullmatch(user):
        await websocket.close(WS_1008_POLICY_VIOLATION)  # before accept: the client gets 403
        return
    topic = _topic(room)
    # Subscribed before the handshake ends; the join notice coming back on this socket tells
    # the client that the broker has the subscription too (from then on it misses nothing).
    with subscribe(topic) as subscription:
        await websocket.accept()
        await websocket.send_json(
            {
                "event": "welcome",
                "room": room,
                "user": user,
                "worker_pid": os.getpid(),
                "messages": state_get(_message_count_key(room)) or 0,
            }
        )
        forwarder = asyncio.create_task(_forward(subscription, websocket))
        publish(topic, {"event": "join", "user": user})
        try:
            while (received := await websocket.receive())["type"] == "websocket.receive":
                await _publish_message(websocket, room, user, received.get("text"))
        finally:
            forwarder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await forwarder
            publish(topic, {"event": "leave", "user": user})


async def _publish_message(websocket: WebSocket, room: str, user: str, text: str | None) -> None:
    text = (text or "").strip()  # None: a binary frame
    if not text or len(text) > MAX_TEXT:
        await websocket.send_json(
            {"event": "error", "text": f"a message is text of 1 to {MAX_TEXT} characters"}
        )
        return
    # state_incr is atomic across workers: every message of the room gets its own number
    seq = state_incr(_message_count_key(room))
    publish(_topic(room), {"event": "message", "user": user, "text": text, "seq": seq})


app = Starlette(
    routes=[
        Route("/", index),
        Route("/rooms/{room}", room_info),
        WebSocketRoute("/ws/{room}", chat),
    ]
)
