"""ASGI lifespan: startup before a worker serves, shutdown after it drained.

Modes (the ``lifespan`` setting): ``auto`` runs it and takes an app that raises before
answering startup as one that does not support lifespan (logged, not fatal); ``on``
requires it (any failure stops the server); ``off`` skips it. ``startup.failed`` or a startup
longer than ``lifespan_timeout`` always stops the server with the app's message.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hornbeam.asgi.http import ASGI_VERSION, AsgiApp, Message
from hornbeam.errors import WorkerBootError
from hornbeam.logs import error_log


class LifespanFailure(WorkerBootError):
    """Lifespan startup failed: the server must not serve."""


class Lifespan:
    def __init__(self, app: AsgiApp, mode: str, timeout: float) -> None:
        self.app = app
        self.mode = mode
        self.timeout = timeout or None
        self.state: dict[str, Any] = {}
        self._events: asyncio.Queue[Message] = asyncio.Queue()
        self._answers: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._supported = mode != "off"
        self._error: BaseException | None = None

    async def startup(self) -> None:
        """Run the app's startup; raises LifespanFailure when the server must not start."""
        if not self._supported:
            return
        scope = {"type": "lifespan", "asgi": ASGI_VERSION, "state": self.state}
        self._task = asyncio.get_running_loop().create_task(self._main(scope))
        await self._events.put({"type": "lifespan.startup"})
        answer = await self._answer("startup")
        if answer is None:
            return
        if answer["type"] == "lifespan.startup.failed":
            raise LifespanFailure(f"lifespan startup failed: {answer.get('message', '')}")
        if answer["type"] != "lifespan.startup.complete":
            raise LifespanFailure(f"lifespan: unexpected {answer['type']!r} during startup")

    async def shutdown(self) -> None:
        """Run the app's shutdown (errors are logged: the worker is leaving anyway)."""
        if not self._supported or self._task is None or self._task.done():
            return
        await self._events.put({"type": "lifespan.shutdown"})
        try:
            answer = await self._answer("shutdown")
        except LifespanFailure as exc:
            error_log.error("%s", exc)
            return
        if answer is not None and answer["type"] == "lifespan.shutdown.failed":
            error_log.error("lifespan shutdown failed: %s", answer.get("message", ""))

    async def _answer(self, phase: str) -> Message | None:
        """The app's reply to ``phase``, or None when the app does not support lifespan."""
        assert self._task is not None
        getter = asyncio.ensure_future(self._answers.get())
        done, _ = await asyncio.wait(
            {getter, self._task}, timeout=self.timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if getter in done:
            return getter.result()
        getter.cancel()
        if not done:
            self._task.cancel()
            raise LifespanFailure(f"lifespan {phase} did not finish within {self.timeout}s")
        # The app returned or raised without answering.
        error = self._error
        if self.mode == "auto" and phase == "startup":
            self._supported = False
            error_log.info("ASGI lifespan not supported by the app (%r); going on without", error)
            return None
        raise LifespanFailure(f"lifespan {phase}: the app ended without answering ({error!r})")

    async def _main(self, scope: dict[str, Any]) -> None:
        try:
            await self.app(scope, self._receive, self._send)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._error = exc
            if self.mode == "on":
                error_log.error("lifespan raised", exc_info=exc)

    async def _receive(self) -> Message:
        return await self._events.get()

    async def _send(self, message: Message) -> None:
        await self._answers.put(message)
