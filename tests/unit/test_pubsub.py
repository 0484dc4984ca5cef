"""Pub/sub without a server: the wire format and the in-process hub."""

from __future__ import annotations

import asyncio
import queue

import msgpack
import pytest

from hornbeam.pubsub.client import MAX_PENDING, Hub
from hornbeam.pubsub.wire import MAX_FRAME, FrameReader, WireError, encode


def test_frames_survive_any_split() -> None:
    data = encode("pub", "room", {"text": "hi", "raw": b"\x00\xff"}) + encode("sub", "x")
    for cut in range(len(data) + 1):
        reader = FrameReader()
        frames = reader.feed(data[:cut]) + reader.feed(data[cut:])
        assert frames == [["pub", "room", {"text": "hi", "raw": b"\x00\xff"}], ["sub", "x"]]


def test_bad_frames_are_refused() -> None:
    with pytest.raises(WireError):
        FrameReader().feed((MAX_FRAME + 1).to_bytes(4, "big"))
    body = msgpack.packb({"not": "a list"})
    with pytest.raises(WireError):
        FrameReader().feed(len(body).to_bytes(4, "big") + body)
    with pytest.raises(TypeError, match="plain data"):
        encode("pub", "t", object())


def test_hub_counts_and_stops_after_close() -> None:
    hub = Hub()
    subscription = hub.subscribe("t")
    assert hub.publish("t", 1) == 1
    subscription.close()
    assert subscription.get(timeout=1) == 1
    with pytest.raises(StopIteration):
        subscription.get(timeout=1)
    assert hub.publish("t", 2) == 0


def test_a_subscriber_that_does_not_read_loses_new_messages_not_memory() -> None:
    hub = Hub()
    with hub.subscribe("t") as subscription:
        for n in range(MAX_PENDING + 5):
            hub.publish("t", n)
        assert subscription.dropped == 5
        assert subscription.get(timeout=1) == 0
    with pytest.raises(queue.Empty):
        Hub().subscribe("t").get(timeout=0.01)


def test_async_subscription_iterates_on_its_loop() -> None:
    hub = Hub()

    async def consume() -> list[object]:
        got = []
        async with hub.subscribe("t") as subscription:
            for n in range(3):
                hub.publish("t", n)
            async for message in subscription:
                got.append(message)
                if len(got) == 3:
                    break
        return got

    assert asyncio.run(consume()) == [0, 1, 2]


def test_publish_async_reaches_subscribers_without_blocking_the_loop() -> None:
    from hornbeam.pubsub import client

    async def scenario() -> tuple[int, object]:
        with client.subscribe("async-topic") as subscription:
            reached = await client.publish_async("async-topic", {"n": 1})
            return reached, await subscription.__anext__()

    assert asyncio.run(scenario()) == (1, {"n": 1})
