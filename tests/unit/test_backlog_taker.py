"""Accepting the connections waiting in a listening socket's backlog together (io/server.py).

uvloop's servers accept one connection per event loop iteration; where the apps run on the
loop, a worker takes the rest of the backlog after each accept, and looks at an empty one
only every ``LOOK_EVERY`` accepts.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import uvloop

from hornbeam.http1.parser import Limits
from hornbeam.io import server as server_module
from hornbeam.io.connection import HttpConnection, RequestCycle
from hornbeam.io.server import LOOK_EVERY, BacklogTaker, ServerContext

QUEUED = 40  # connections waiting before the worker accepts any (more than a look takes)


class NoRequests:
    """A handler for connections that never send a request."""

    needs_complete_body = False

    def new_body(self, conn: HttpConnection) -> Any:
        raise AssertionError("no request is sent")

    def handle(self, conn: HttpConnection, cycle: RequestCycle) -> None:
        raise AssertionError("no request is sent")

    def timed_out(self, conn: HttpConnection, cycle: RequestCycle) -> None:
        pass


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    running = uvloop.new_event_loop()
    yield running
    running.close()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield sock
    sock.close()


def _context(loop: asyncio.AbstractEventLoop) -> ServerContext:
    ctx = ServerContext(loop, Limits(), 5.0, 0.0, 10.0, None, lambda *a: None, lambda: None)
    ctx.handler = NoRequests()
    return ctx


def _end_of_iteration(loop: asyncio.AbstractEventLoop) -> None:
    loop.run_until_complete(asyncio.sleep(0))


def _queue_clients(listener: socket.socket) -> list[socket.socket]:
    """Connections the kernel completes and queues in the backlog, none accepted yet."""
    clients = []
    for _ in range(QUEUED):
        client = socket.create_connection(listener.getsockname(), timeout=5)
        clients.append(client)
    return clients


def _connections_after_iterations(
    loop: asyncio.AbstractEventLoop, listener: socket.socket, take_backlogs: bool
) -> int:
    ctx = _context(loop)
    clients = _queue_clients(listener)
    try:
        loop.run_until_complete(ctx.listen([listener], 64, take_backlogs))
        for _ in range(3):
            _end_of_iteration(loop)
        return len(ctx.connections)
    finally:
        _shut(loop, ctx)
        for client in clients:
            client.close()


def _shut(loop: asyncio.AbstractEventLoop, ctx: ServerContext) -> None:
    """Stop accepting, then close every connection, those still being set up included."""
    ctx.stop_accepting()
    for _ in range(100):
        for conn in list(ctx.connections):
            conn.close(abort=True)
        if not ctx.connections and all(task.done() for task in asyncio.all_tasks(loop)):
            return
        _end_of_iteration(loop)
    raise AssertionError("connections still open after 100 loop iterations")


def test_one_accept_takes_the_whole_backlog(
    loop: asyncio.AbstractEventLoop, listener: socket.socket
) -> None:
    assert _connections_after_iterations(loop, listener, take_backlogs=True) == QUEUED


def test_without_taking_the_backlog_uvloop_accepts_one_connection_per_iteration(
    loop: asyncio.AbstractEventLoop, listener: socket.socket
) -> None:
    """The behaviour the taker exists for: if this fails, uvloop accepts a backlog itself."""
    assert _connections_after_iterations(loop, listener, take_backlogs=False) < QUEUED


class CountingListener:
    """A listening socket whose backlog is always empty; counts the accept() calls."""

    def __init__(self) -> None:
        self.accepts = 0
        self.blocking = True

    def setblocking(self, flag: bool) -> None:
        self.blocking = flag

    def accept(self) -> tuple[socket.socket, Any]:
        self.accepts += 1
        raise BlockingIOError


def _taker(loop: asyncio.AbstractEventLoop) -> tuple[ServerContext, BacklogTaker, CountingListener]:
    ctx = _context(loop)
    empty = CountingListener()
    return ctx, BacklogTaker(ctx, empty), empty  # type: ignore[arg-type]


def test_after_an_empty_look_the_next_waits_for_look_every_accepts(
    loop: asyncio.AbstractEventLoop,
) -> None:
    _, taker, empty = _taker(loop)
    assert not empty.blocking  # a look must never wait for a connection
    taker.accepted()
    taker.accepted()  # the same iteration: one look for both
    _end_of_iteration(loop)
    assert empty.accepts == 1
    for _ in range(LOOK_EVERY):
        taker.accepted()
        _end_of_iteration(loop)
    assert empty.accepts == 1
    taker.accepted()
    _end_of_iteration(loop)
    assert empty.accepts == 2


def test_a_stopped_server_takes_nothing_more(loop: asyncio.AbstractEventLoop) -> None:
    ctx, taker, empty = _taker(loop)
    ctx._backlog_takers.append(taker)
    taker.accepted()
    ctx.stop_accepting()  # before the look at the end of the iteration
    _end_of_iteration(loop)
    assert empty.accepts == 0


def test_a_look_takes_at_most_one_batch(
    loop: asyncio.AbstractEventLoop, listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_module, "BACKLOG_BATCH", 2)
    ctx = _context(loop)
    clients = _queue_clients(listener)
    try:
        taker = BacklogTaker(ctx, listener)
        taker.accepted()  # as if the server had accepted one; it did not
        for _ in range(3):
            _end_of_iteration(loop)
        assert len(ctx.connections) == 2
    finally:
        _shut(loop, ctx)
        for client in clients:
            client.close()
