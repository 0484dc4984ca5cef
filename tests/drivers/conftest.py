"""Fixtures of the driver tests: an event loop per test (asyncio and uvloop) and wired workers.

The response reader of the integration harness parses what the connection sends back; its
directory is put on the import path here because pytest only adds each test's own directory.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hornbeam.asgi.http import AsgiApp
from hornbeam.wsgi.handler import WsgiApp

from wiring import LOOP_KINDS, LoopThread, WiredWorker

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))


@pytest.fixture(params=LOOP_KINDS)
def loop_thread(request: pytest.FixtureRequest) -> Iterator[LoopThread]:
    thread = LoopThread(request.param)
    yield thread
    thread.stop()


@pytest.fixture
def wire(loop_thread: LoopThread) -> Iterator[Callable[..., WiredWorker]]:
    """``wire(app, **options)``: a WiredWorker on this test's loop, closed afterwards."""
    made: list[WiredWorker] = []

    def make(app: WsgiApp | AsgiApp, **options: Any) -> WiredWorker:
        worker = WiredWorker(loop_thread, app, **options)
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.close()
