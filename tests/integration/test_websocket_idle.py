"""Many idle WebSockets on one worker (the CI-sized version of `bench/websocket.py idle`).

One worker holds 1,000 idle WebSockets opened by the benchmark's raw client (a few objects per
connection, handshake checked against its key). With all of them open the server must still
answer HTTP and echo on a new WebSocket promptly, the worker's RSS may grow only by a generous
bound per connection, no frame may reach an idle socket, and every one of them must then
close with a clean close handshake. Server pings are pushed past the test.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import httpx
from websockets.asyncio.client import connect

from harness import Server, running

ROOT = Path(__file__).resolve().parents[2]
IDLE_SOCKETS = 1000
KIB_PER_SOCKET_LIMIT = 64  # measured about 16; the bound catches a per-connection blow-up
PROMPT_SECONDS = 2.0  # a fresh HTTP request or WebSocket echo, with 1,000 sockets held
T = TypeVar("T")


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while being built
    sys.path.insert(0, str(path.parent))  # the benchmark imports its neighbours by name
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module


bench = _load("bench_websocket", ROOT / "bench" / "websocket.py")


def run(coroutine: Coroutine[Any, Any, T], timeout: float = 15.0) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await coroutine

    return asyncio.run(bounded())


async def _open(server: Server, count: int) -> list[Any]:
    sockets, refusal = await bench.open_many(server.port, count, "/echo")
    if refusal:
        await bench.close_many(sockets)
        raise AssertionError(f"{count - len(sockets)} of {count} refused; first: {refusal}")
    return list(sockets)


async def _fresh_echo(server: Server) -> float:
    """Seconds for a new WebSocket (the library client) to connect and echo one message."""
    started = time.perf_counter()
    async with connect(
        f"ws://{server.host}:{server.port}/echo", proxy=None, ping_interval=None
    ) as fresh:
        await fresh.send("still there?")
        assert await fresh.recv() == "still there?"
    return time.perf_counter() - started


async def _hold_idle_sockets(server: Server, worker: int) -> None:
    # first-use costs (imports, allocator arenas) are not charged to the idle sockets
    await bench.close_many(await _open(server, 20))
    rss_before = await bench.settled_rss_kib(worker)
    sockets = await _open(server, IDLE_SOCKETS)
    try:
        rss_held = await bench.settled_rss_kib(worker)
        async with httpx.AsyncClient(timeout=PROMPT_SECONDS) as client:
            response = await client.get(f"{server.url}/")
        assert (response.status_code, response.content) == (200, b"plain http")
        assert await _fresh_echo(server) < PROMPT_SECONDS
    finally:
        closed_cleanly = await bench.close_many(sockets)
    growth = (rss_held - rss_before) / IDLE_SOCKETS
    assert growth < KIB_PER_SOCKET_LIMIT, f"{growth:.1f} KiB of worker RSS per idle WebSocket"
    assert closed_cleanly == IDLE_SOCKETS
    assert sum(ws.other_frames for ws in sockets) == 0  # no ping reached an idle socket


def test_one_worker_holds_1000_idle_websockets(tmp_path: Path) -> None:
    quiet = ("--websocket-ping-interval", "600", "--websocket-timeout", "600")
    with running(tmp_path, "asgi_ws:app", *quiet, workers=1) as server:
        (worker,) = server.worker_pids()
        run(_hold_idle_sockets(server, worker))
        assert server.worker_pids() == [worker]  # the same worker throughout, never replaced
        assert run(_fresh_echo(server)) < PROMPT_SECONDS  # and it serves on after the close
        assert "Traceback" not in server.log()
