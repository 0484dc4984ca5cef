"""Publishing and subscribing from app code: through the arbiter's broker, or in-process.

``publish(topic, message) -> int`` works from any thread (WSGI app threads, the event loop,
a script) and returns how many subscriptions, across all workers, it reached; from a
coroutine, ``await publish_async(...)`` does the same without holding up the event loop.
``subscribe(topic)`` returns a :class:`Subscription`: an async iterator when created on a
running event loop (ASGI), a blocking iterator otherwise (WSGI threads). Outside hornbeam
(tests, scripts) the same calls work within the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import socket
import threading
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Iterator
from typing import Any

from hornbeam.logs import error_log
from hornbeam.pubsub.wire import FrameReader, encode

_CLOSED = object()
_ACK_TIMEOUT = 5.0
# Messages a subscription holds for a consumer that does not keep up; past it, new ones are
# dropped (and logged) instead of growing the worker's memory without bound.
MAX_PENDING = 10_000


class Subscription:
    """Messages of one topic for one consumer; close it (or use ``with``) when done."""

    def __init__(self, hub: Hub, topic: str) -> None:
        self.topic = topic
        self._hub = hub
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._async_queue: asyncio.Queue[Any] | None = (
            asyncio.Queue() if self._loop is not None else None
        )
        self._sync_queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.closed = False
        self.dropped = 0

    def deliver(self, message: Any) -> None:
        """Called from the hub's thread (or the publisher's, in-process)."""
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens
                self._loop.call_soon_threadsafe(self._enqueue_async, message)
        elif message is _CLOSED or self._sync_queue.qsize() < MAX_PENDING:
            self._sync_queue.put(message)
        else:
            self._dropped()

    def _enqueue_async(self, message: Any) -> None:
        assert self._async_queue is not None
        if message is _CLOSED or self._async_queue.qsize() < MAX_PENDING:
            self._async_queue.put_nowait(message)
        else:
            self._dropped()

    def _dropped(self) -> None:
        self.dropped += 1
        if self.dropped in (1, 10, 100, 1000) or self.dropped % 10_000 == 0:
            error_log.warning(
                "pub/sub: a subscriber of %r is %d messages behind; %d dropped so far",
                self.topic,
                MAX_PENDING,
                self.dropped,
            )

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._hub.unsubscribe(self)
            self.deliver(_CLOSED)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        return self.get()

    def get(self, timeout: float | None = None) -> Any:
        """The next message (blocking); ``queue.Empty`` after ``timeout`` seconds."""
        if self._loop is not None:
            raise RuntimeError("this subscription was made on an event loop: use 'async for'")
        message = self._sync_queue.get(timeout=timeout)
        if message is _CLOSED:
            raise StopIteration
        return message

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        if self._async_queue is None:
            raise RuntimeError("this subscription was made outside an event loop: use 'for'")
        message = await self._async_queue.get()
        if message is _CLOSED:
            raise StopAsyncIteration
        return message

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class Hub:
    """In-process pub/sub: the fallback outside hornbeam, and the base of the broker client."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscriptions: defaultdict[str, list[Subscription]] = defaultdict(list)

    def publish(self, topic: str, message: Any) -> int:
        encode("pub", topic, message)  # the same data rules as across processes
        return self._deliver_local(topic, message)

    def subscribe(self, topic: str) -> Subscription:
        subscription = Subscription(self, topic)
        with self._lock:
            self._subscriptions[topic].append(subscription)
        self._subscribed(topic)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            subscribers = self._subscriptions.get(subscription.topic, [])
            if subscription not in subscribers:
                return
            subscribers.remove(subscription)
            if not subscribers:
                self._subscriptions.pop(subscription.topic, None)
        self._unsubscribed(subscription.topic)

    def _deliver_local(self, topic: str, message: Any) -> int:
        with self._lock:
            subscribers = list(self._subscriptions.get(topic, ()))
        for subscription in subscribers:
            subscription.deliver(message)
        return len(subscribers)

    def _subscribed(self, topic: str) -> None:
        """Hook: one more local subscription to ``topic``."""

    def _unsubscribed(self, topic: str) -> None:
        """Hook: one local subscription to ``topic`` fewer."""


class BrokerHub(Hub):
    """A worker's link to the arbiter's broker.

    Publishing uses one blocking connection per thread (a request and its count reply).
    Subscriptions share one connection per process, read by a daemon thread that hands each
    message to the local subscriptions of its topic: the broker sends a message to a worker
    once, however many of its clients listen (it counts them, for publish's answer).
    """

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self._per_thread = threading.local()
        self._feed: socket.socket | None = None
        self._feed_lock = threading.Lock()
        self._pending_acks: deque[threading.Event] = deque()

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self.path)
        return sock

    def publish(self, topic: str, message: Any) -> int:
        frame = encode("pub", topic, message)
        state = self._per_thread
        sock: socket.socket | None = getattr(state, "sock", None)
        if sock is None:
            sock = state.sock = self._connect()
            state.reader = FrameReader()
        sock.sendall(frame)
        reader: FrameReader = state.reader
        while True:
            data = sock.recv(65536)
            if not data:
                state.sock = None
                sock.close()
                raise ConnectionError("the pub/sub broker closed the connection")
            for reply in reader.feed(data):
                if reply[0] == "count":
                    return int(reply[1])

    def _subscribed(self, topic: str) -> None:
        self._control(encode("sub", topic))

    def _unsubscribed(self, topic: str) -> None:
        self._control(encode("unsub", topic))

    def _control(self, frame: bytes) -> None:
        """Send a sub/unsub and wait for the broker's "ok": a subscribe() that returned
        is registered, so a message published right after it, from any worker, arrives."""
        acknowledged = threading.Event()
        with self._feed_lock:
            if self._feed is None:
                self._feed = self._connect()
                threading.Thread(
                    target=self._read_feed,
                    args=(self._feed,),
                    name="hornbeam-pubsub",
                    daemon=True,
                ).start()
            self._pending_acks.append(acknowledged)  # the broker answers in order
            self._feed.sendall(frame)
        if not acknowledged.wait(_ACK_TIMEOUT):
            raise ConnectionError("the pub/sub broker did not answer within 5 s")

    def _read_feed(self, sock: socket.socket) -> None:
        reader = FrameReader()
        while True:
            try:
                data = sock.recv(1 << 20)
            except OSError:
                data = b""
            if not data:
                self._feed_lost(sock)
                return
            for frame in reader.feed(data):
                if frame[0] == "msg" and len(frame) == 3:
                    self._deliver_local(frame[1], frame[2])
                elif frame[0] == "ok" and self._pending_acks:
                    self._pending_acks.popleft().set()

    def _feed_lost(self, sock: socket.socket) -> None:
        """The broker closed our feed: the worker is stopping, or we fell too far behind.

        The next subscribe() opens a new feed; subscriptions of the lost one get no more
        messages, which is logged rather than hidden.
        """
        with self._feed_lock:
            if self._feed is sock:
                self._feed = None
            sock.close()
            while self._pending_acks:
                self._pending_acks.popleft().set()
        error_log.warning("pub/sub: the link to the broker closed; its subscriptions end")


_default: Hub | None = None
_default_lock = threading.Lock()


def attach(path: str) -> None:
    """In a worker after fork: route pub/sub through the arbiter's broker at ``path``."""
    global _default
    _default = BrokerHub(path)


def default_hub() -> Hub:
    global _default
    hub = _default
    if hub is None:
        with _default_lock:
            if _default is None:
                _default = Hub()
            hub = _default
    return hub


def _forget_after_fork() -> None:
    # threads and sockets of the parent's hub do not exist in the child
    global _default
    _default = None


os.register_at_fork(after_in_child=_forget_after_fork)


def publish(topic: str, message: Any) -> int:
    """Send ``message`` to every subscription of ``topic``; how many it reached."""
    return default_hub().publish(topic, message)


def subscribe(topic: str) -> Subscription:
    """Receive the messages published to ``topic`` from now on."""
    return default_hub().subscribe(topic)


async def publish_async(topic: str, message: Any) -> int:
    """:func:`publish` for coroutines: the broker round trip runs off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, publish, topic, message)
