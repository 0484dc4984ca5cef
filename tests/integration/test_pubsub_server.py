"""Pub/sub across workers through the arbiter's broker, and in-process outside hornbeam."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx

from hornbeam.pubsub.client import Hub

from harness import running, wait_for


def test_in_process_hub_delivers_and_counts() -> None:
    hub = Hub()
    assert hub.publish("t", "nobody") == 0
    with hub.subscribe("t") as one, hub.subscribe("t") as two:
        assert hub.publish("t", {"n": 1}) == 2
        assert one.get(timeout=1) == {"n": 1}
        assert two.get(timeout=1) == {"n": 1}
    assert hub.publish("t", "gone") == 0


def test_messages_reach_subscribers_on_every_worker(tmp_path: Path) -> None:
    with running(tmp_path, "pubsub_app:app", workers=2) as server:
        results: list[dict[str, object]] = []

        def listen() -> None:
            # a connection each, so the kernel spreads the listeners over both workers
            with httpx.Client(base_url=server.url, timeout=20) as client:
                results.append(client.get("/listen", params={"topic": "room"}).json())

        listeners = [threading.Thread(target=listen) for _ in range(8)]
        for thread in listeners:
            thread.start()
        wait_for(
            lambda: server.get("/listening", params={"topic": "room"}).json() == 8,
            10,
            "8 subscriptions",
        )
        reached = server.get("/publish", params={"topic": "room", "text": "hello"}).json()
        for thread in listeners:
            thread.join(20)
        assert reached == {"reached": 8}
        assert sorted(r["got"]["text"] for r in results) == ["hello"] * 8  # type: ignore[index]
        assert len({r["pid"] for r in results}) == 2, "listeners on both workers got it"
        assert server.get("/publish", params={"topic": "room", "text": "late"}).json() == {
            "reached": 0
        }
