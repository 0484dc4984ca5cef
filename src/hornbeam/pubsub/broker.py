"""The pub/sub broker, run by the arbiter: topics, subscribers, fan-out across workers.

It lives in the arbiter because the arbiter outlives every worker: subscriptions of a dead
worker vanish with its connection, the others keep flowing. It listens on a Unix socket in
a private (0700) directory and is driven by the arbiter's select loop: non-blocking reads,
buffered writes. A subscriber that stops reading is dropped once its backlog passes
``MAX_BACKLOG`` rather than let the arbiter's memory grow without bound.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections import defaultdict

from hornbeam.logs import error_log
from hornbeam.pubsub.wire import FrameReader, WireError, encode

MAX_BACKLOG = 32 * 1024 * 1024


class _Peer:
    __slots__ = ("outbox", "reader", "sock", "topics")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = FrameReader()
        self.outbox = bytearray()
        self.topics: dict[str, int] = {}  # topic -> subscriptions in that worker


class Broker:
    def __init__(self, path: str) -> None:
        self.path = path
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(path)
        os.chmod(path, 0o600)
        self._listener.listen(128)
        self._listener.setblocking(False)
        self._peers: dict[int, _Peer] = {}
        self._topics: defaultdict[str, set[_Peer]] = defaultdict(set)

    def read_fds(self) -> list[int]:
        return [self._listener.fileno(), *self._peers]

    def write_fds(self) -> list[int]:
        return [fd for fd, peer in self._peers.items() if peer.outbox]

    def readable(self, fd: int) -> None:
        if fd == self._listener.fileno():
            self._accept()
            return
        peer = self._peers.get(fd)
        if peer is None:
            return  # dropped while its event was pending
        try:
            data = peer.sock.recv(1 << 20)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(peer)
            return
        try:
            frames = peer.reader.feed(data)
        except (WireError, ValueError) as exc:
            error_log.error("pub/sub: dropping a peer that sent a bad frame: %s", exc)
            self._drop(peer)
            return
        for frame in frames:
            self._handle(peer, frame)

    def writable(self, fd: int) -> None:
        peer = self._peers.get(fd)
        if peer is not None:
            self._flush(peer)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except BlockingIOError:
                return
            sock.setblocking(False)
            self._peers[sock.fileno()] = _Peer(sock)

    def _handle(self, peer: _Peer, frame: list[object]) -> None:
        kind = frame[0]
        topic = frame[1] if len(frame) > 1 else None
        if not isinstance(topic, str):
            return
        if kind == "sub":
            peer.topics[topic] = peer.topics.get(topic, 0) + 1
            self._topics[topic].add(peer)
            self._send(peer, encode("ok", topic))  # from now on, publishes reach it
        elif kind == "unsub":
            if topic in peer.topics:
                peer.topics[topic] -= 1
                if not peer.topics[topic]:
                    del peer.topics[topic]
                    self._forget(peer, topic)
            self._send(peer, encode("ok", topic))
        elif kind == "pub" and len(frame) == 3:
            subscribers = list(self._topics.get(topic, ()))
            reached = sum(subscriber.topics.get(topic, 0) for subscriber in subscribers)
            if subscribers:
                message = encode("msg", topic, frame[2])
                for subscriber in subscribers:
                    self._send(subscriber, message)
            self._send(peer, encode("count", reached))

    def _send(self, peer: _Peer, data: bytes) -> None:
        if len(peer.outbox) + len(data) > MAX_BACKLOG:
            error_log.error("pub/sub: dropping a subscriber %d bytes behind", len(peer.outbox))
            self._drop(peer)
            return
        peer.outbox += data
        self._flush(peer)

    def _flush(self, peer: _Peer) -> None:
        try:
            sent = peer.sock.send(peer.outbox)
        except BlockingIOError:
            return
        except OSError:
            self._drop(peer)
            return
        del peer.outbox[:sent]

    def _forget(self, peer: _Peer, topic: str) -> None:
        subscribers = self._topics.get(topic)
        if subscribers is not None:
            subscribers.discard(peer)
            if not subscribers:
                del self._topics[topic]

    def _drop(self, peer: _Peer) -> None:
        fd = peer.sock.fileno()
        if self._peers.pop(fd, None) is None:
            return
        for topic in peer.topics:
            self._forget(peer, topic)
        peer.sock.close()

    def close(self) -> None:
        for peer in list(self._peers.values()):
            self._drop(peer)
        self._listener.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
