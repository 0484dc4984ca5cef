"""How a connection's response bytes reach its transport: written during one loop iteration,
sent together at its end, except what must go at once (a large response, a close); a
response that ends its connection leaves with the others, and the close follows it."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import Any

import pytest

from hornbeam.http1.parser import Limits
from hornbeam.io.connection import SEND_AT_ONCE, HttpConnection, RequestCycle
from hornbeam.io.server import ServerContext

HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"
REQUEST = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


class RecordingTransport:
    """Records each call that sends bytes: a write, or a writelines (one writev)."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.sent.append(bytes(data))

    def writelines(self, chunks: list[bytes]) -> None:
        self.sent.append(b"".join(chunks))

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class HeadThenBody:
    """Answers every request with its head and its body written apart, like an ASGI app's
    two send() calls."""

    needs_complete_body = False

    def __init__(self, body: bytes = b"ok", keep_alive: bool = True) -> None:
        self.body = body
        self.keep_alive = keep_alive

    def new_body(self, conn: HttpConnection) -> Any:
        raise AssertionError("these requests have no body")

    def handle(self, conn: HttpConnection, cycle: RequestCycle) -> None:
        conn.write(cycle, HEAD)
        conn.write(cycle, self.body)
        conn.finish(cycle, keep_alive=self.keep_alive)

    def timed_out(self, conn: HttpConnection, cycle: RequestCycle) -> None:
        pass


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    running = asyncio.new_event_loop()
    yield running
    running.close()


def _connection(
    loop: asyncio.AbstractEventLoop, handler: HeadThenBody | None = None
) -> tuple[HttpConnection, RecordingTransport]:
    ctx = ServerContext(loop, Limits(), 5.0, 0.0, 10.0, None, lambda *a: None, lambda: None)
    ctx.handler = handler or HeadThenBody()
    conn = HttpConnection(ctx)
    transport = RecordingTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    return conn, transport


def _end_of_iteration(loop: asyncio.AbstractEventLoop) -> None:
    loop.run_until_complete(asyncio.sleep(0))


def test_pipelined_responses_leave_in_one_write_at_the_end_of_the_iteration(
    loop: asyncio.AbstractEventLoop,
) -> None:
    conn, transport = _connection(loop)
    conn.data_received(REQUEST * 3)
    assert transport.sent == []
    _end_of_iteration(loop)
    assert transport.sent == [(HEAD + b"ok") * 3]


def test_each_connection_sends_its_own_bytes_once_per_iteration(
    loop: asyncio.AbstractEventLoop,
) -> None:
    (first, first_transport), (second, second_transport) = _connection(loop), _connection(loop)
    first.data_received(REQUEST)
    second.data_received(REQUEST * 2)
    _end_of_iteration(loop)
    assert first_transport.sent == [HEAD + b"ok"]
    assert second_transport.sent == [(HEAD + b"ok") * 2]
    first.data_received(REQUEST)
    _end_of_iteration(loop)
    assert first_transport.sent == [HEAD + b"ok", HEAD + b"ok"]


def test_a_close_sends_what_was_written_first_and_an_abort_drops_it(
    loop: asyncio.AbstractEventLoop,
) -> None:
    conn, transport = _connection(loop)
    conn.data_received(REQUEST)
    conn.close()
    assert transport.sent == [HEAD + b"ok"] and transport.closed
    aborted, cut = _connection(loop)
    aborted.data_received(REQUEST)
    aborted.close(abort=True)
    _end_of_iteration(loop)
    assert cut.sent == [] and cut.aborted


def test_a_last_response_leaves_with_the_iteration_and_the_close_follows_it(
    loop: asyncio.AbstractEventLoop,
) -> None:
    conn, transport = _connection(loop, HeadThenBody(keep_alive=False))
    conn.data_received(REQUEST)
    assert transport.sent == [] and not transport.closed  # both wait for the iteration's end
    conn.data_received(REQUEST)  # sent after the last request: never read as one
    _end_of_iteration(loop)
    assert transport.sent == [HEAD + b"ok"] and transport.closed


def test_a_large_response_goes_at_once_under_the_transports_flow_control(
    loop: asyncio.AbstractEventLoop,
) -> None:
    body = b"x" * SEND_AT_ONCE
    conn, transport = _connection(loop, HeadThenBody(body))
    conn.data_received(REQUEST)
    assert transport.sent == [HEAD + body]  # one writev, before the iteration ends
    _end_of_iteration(loop)
    assert len(transport.sent) == 1


def test_a_closed_connection_leaves_nothing_for_the_garbage_collector(
    loop: asyncio.AbstractEventLoop,
) -> None:
    conn, _ = _connection(loop)
    conn.data_received(REQUEST)
    _end_of_iteration(loop)
    gc.collect()
    conn.connection_lost(None)
    del conn
    assert gc.collect() == 0
