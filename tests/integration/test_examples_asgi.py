"""Acceptance: the ASGI examples, run as their README lines run them, on 4 workers.

- examples/fastapi_demo: an items API on the shared state (ids unique across workers from
  concurrent clients, get/list/delete, view counters), lifespan once per worker, a WebSocket
  echo.
- examples/chat: the page, and a WebSocket chat whose messages cross workers through pub/sub:
  one client's message reaches every client of the room, and no other room.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from harness import ROOT, Server, running, wait_for

FASTAPI_DEMO = ROOT / "examples" / "fastapi_demo"
CHAT = ROOT / "examples" / "chat"
WORKERS = 4
T = TypeVar("T")


def _serve(tmp_path_factory: pytest.TempPathFactory, example: Path) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp(example.name)
    with running(workdir, "app:app", "--pythonpath", str(example), workers=WORKERS) as server:
        yield server


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _serve(tmp_path_factory, FASTAPI_DEMO)


@pytest.fixture(scope="module")
def chat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _serve(tmp_path_factory, CHAT)


def run(coroutine: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
    """Run one test's client side, bounded in time."""

    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await coroutine

    return asyncio.run(bounded())


def ws_connect(server: Server, path: str) -> connect:
    return connect(
        f"ws://{server.host}:{server.port}{path}",
        proxy=None,
        open_timeout=5,
        close_timeout=2,
        ping_interval=None,
    )


# ---- FastAPI demo ----------------------------------------------------------------------------


def test_items_created_by_concurrent_clients_get_distinct_ids(demo: Server) -> None:
    def create(number: int) -> dict[str, Any]:
        # a new connection per request, so the kernel spreads them over the workers
        response = httpx.post(
            demo.url + "/items",
            json={"name": f"item {number}", "description": f"number {number}"},
            timeout=10,
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    with ThreadPoolExecutor(max_workers=8) as clients:
        created = list(clients.map(create, range(100)))

    ids = [item["id"] for item in created]
    assert len(set(ids)) == 100
    assert all(isinstance(item_id, int) and item_id > 0 for item_id in ids)
    for number, item in enumerate(created):
        assert item == {
            "id": item["id"],
            "name": f"item {number}",
            "description": f"number {number}",
        }

    listed = demo.get("/items").json()
    by_id = {item["id"]: item for item in listed["items"]}
    assert listed["count"] == len(listed["items"])
    assert [item["id"] for item in listed["items"]] == sorted(by_id)
    for item in created:
        assert by_id[item["id"]] == item


def test_get_counts_views_and_delete_removes_once(demo: Server) -> None:
    item = httpx.post(demo.url + "/items", json={"name": "watched"}, timeout=10).json()
    path = f"/items/{item['id']}"
    views = [demo.get(path).json()["views"] for _ in range(3)]  # a connection each
    assert views == [1, 2, 3]
    assert demo.get(path).json() == {**item, "description": "", "views": 4}

    def delete(_: int) -> int:
        return httpx.delete(demo.url + path, timeout=10).status_code

    with ThreadPoolExecutor(max_workers=6) as clients:
        statuses = sorted(clients.map(delete, range(6)))
    assert statuses == [204] + [404] * 5, "exactly one of the concurrent deletes wins"
    assert demo.get(path).status_code == 404
    assert item["id"] not in [listed["id"] for listed in demo.get("/items").json()["items"]]

    again = httpx.post(demo.url + "/items", json={"name": "watched"}, timeout=10).json()
    assert again["id"] > item["id"], "ids are never reused"
    assert demo.get(f"/items/{again['id']}").json()["views"] == 1


def test_bad_items_are_refused(demo: Server) -> None:
    assert httpx.post(demo.url + "/items", json={"name": ""}, timeout=10).status_code == 422
    assert httpx.post(demo.url + "/items", json={}, timeout=10).status_code == 422
    assert demo.get("/items/not-a-number").status_code == 422
    assert demo.get("/items/999999").status_code == 404


def test_lifespan_ran_once_in_every_worker(demo: Server) -> None:
    workers = set(demo.worker_pids())
    assert len(workers) == WORKERS
    wait_for(
        lambda: demo.get("/stats").json()["lifespan_startups"] == WORKERS,
        10,
        f"{WORKERS} lifespan startups",
    )
    answered: set[int] = set()

    def every_worker_answered() -> bool:
        answered.add(demo.get("/stats").json()["worker_pid"])  # pid from the lifespan state
        return answered == workers

    wait_for(every_worker_answered, 15, "a /stats answer from every worker", every=0)
    assert demo.get("/stats").json()["lifespan_startups"] == WORKERS


def test_echo_websocket_sends_every_message_back(demo: Server) -> None:
    async def talk() -> list[str | bytes]:
        async with ws_connect(demo, "/ws/echo") as ws:
            replies = []
            for text in ("hello", "héllo ✓", "x" * 70_000):
                await ws.send(text)
                replies.append(await ws.recv())
            return replies

    assert run(talk()) == ["hello", "héllo ✓", "x" * 70_000]


# ---- chat ------------------------------------------------------------------------------------


class ChatClient:
    """One member of a room: its socket and the worker that holds it."""

    def __init__(self, ws: ClientConnection, user: str, worker_pid: int) -> None:
        self.ws = ws
        self.user = user
        self.worker_pid = worker_pid

    async def next_event(self, event: str) -> dict[str, Any]:
        """The next frame of kind ``event``; frames of other kinds (joins, leaves) are skipped."""
        while True:
            frame = json.loads(await self.ws.recv())
            if frame["event"] == event:
                return dict(frame)

    async def messages(self, count: int) -> list[dict[str, Any]]:
        return [await self.next_event("message") for _ in range(count)]


async def _join(server: Server, room: str, user: str) -> ChatClient:
    """Connect, and wait until this client's own join notice comes back: from then on the
    broker has its subscription, so it misses nothing published to the room."""
    ws = await ws_connect(server, f"/ws/{room}?user={user}")
    welcome = json.loads(await ws.recv())
    assert welcome["event"] == "welcome" and welcome["room"] == room, welcome
    client = ChatClient(ws, user, welcome["worker_pid"])
    while (await client.next_event("join"))["user"] != user:
        pass
    return client


def test_chat_page_is_served(chat: Server) -> None:
    response = chat.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "new WebSocket(" in response.text


def test_chat_messages_reach_every_client_on_every_worker(chat: Server) -> None:
    room = "everyone"

    async def scenario() -> list[ChatClient]:
        clients = await asyncio.gather(*(_join(chat, room, f"user{n}") for n in range(12)))
        try:
            await clients[0].ws.send("hello, room")
            first = await asyncio.gather(*(client.messages(1) for client in clients))
            assert (
                first
                == [[{"event": "message", "user": "user0", "text": "hello, room", "seq": 1}]] * 12
            )

            # then everyone talks at once: each client gets all 12 messages
            await asyncio.gather(*(client.ws.send(f"from {client.user}") for client in clients))
            received = await asyncio.gather(*(client.messages(12) for client in clients))
            for messages in received:
                assert sorted(m["seq"] for m in messages) == list(range(2, 14))
                assert {m["text"] for m in messages} == {f"from user{n}" for n in range(12)}
                assert all(m["text"] == f"from {m['user']}" for m in messages)
            return clients
        finally:
            await asyncio.gather(*(client.ws.close() for client in clients))

    clients = run(scenario())
    assert len({client.worker_pid for client in clients}) >= 2, "clients spread over workers"
    assert {client.worker_pid for client in clients} <= set(chat.worker_pids())
    assert chat.get(f"/rooms/{room}").json() == {"room": room, "messages": 13}
    assert "Traceback" not in chat.log()


def test_chat_rooms_are_isolated(chat: Server) -> None:
    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        alice = await _join(chat, "red", "alice")
        bob = await _join(chat, "blue", "bob")
        try:
            await alice.ws.send("only red hears this")
            heard_in_red = await alice.next_event("message")
            # delivered in red before bob spoke: had bob's room got it, it would come first
            await bob.ws.send("only blue hears this")
            return heard_in_red, await bob.next_event("message")
        finally:
            await alice.ws.close()
            await bob.ws.close()

    red, blue = run(scenario())
    assert red == {"event": "message", "user": "alice", "text": "only red hears this", "seq": 1}
    assert blue == {"event": "message", "user": "bob", "text": "only blue hears this", "seq": 1}
    assert chat.get("/rooms/red").json()["messages"] == 1
    assert chat.get("/rooms/blue").json()["messages"] == 1


def test_chat_client_that_vanishes_is_seen_leaving(chat: Server) -> None:
    streamed = 200

    async def scenario() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        stays = await _join(chat, "lossy", "stays")
        vanishes = await _join(chat, "lossy", "vanishes")
        try:
            # a reset (no close handshake) while messages for it are streaming in
            sock = vanishes.ws.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            for n in range(streamed):
                if n == streamed // 4:
                    vanishes.ws.transport.abort()
                await stays.ws.send(f"message {n}")
            before_leave = []
            while (frame := json.loads(await stays.ws.recv()))["event"] != "leave":
                before_leave.append(frame)
            await stays.ws.send("still here")
            received = [f for f in before_leave if f["event"] == "message"]
            return frame, received + await stays.messages(streamed + 1 - len(received))
        finally:
            await stays.ws.close()

    left, messages = run(scenario())
    assert left == {"event": "leave", "user": "vanishes"}
    assert [m["text"] for m in messages] == [f"message {n}" for n in range(streamed)] + [
        "still here"
    ]
    assert "Traceback" not in chat.log()


def test_chat_refuses_bad_names_and_empty_messages(chat: Server) -> None:
    async def scenario() -> dict[str, Any]:
        for path in ("/ws/bad room?user=ada", "/ws/lobby?user=", "/ws/lobby"):
            with pytest.raises(InvalidStatus) as refused:
                await ws_connect(chat, path.replace(" ", "%20"))
            assert refused.value.response.status_code == 403
        ada = await _join(chat, "quiet", "ada")
        try:
            await ada.ws.send("   ")
            return await ada.next_event("error")
        finally:
            await ada.ws.close()

    assert "1 to 2000 characters" in run(scenario())["text"]
    assert chat.get("/rooms/quiet").json()["messages"] == 0
