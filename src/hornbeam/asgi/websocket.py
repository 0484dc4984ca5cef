"""ASGI WebSocket over the ``websockets`` sans-IO protocol.

After an HTTP/1.1 upgrade request the connection hands its transport to a
:class:`WebSocketSession`. The app sees ``websocket.connect`` and answers with
``websocket.accept`` (subprotocol and headers honoured), ``websocket.close`` before accept
(403), or a denial response (``websocket.http.response.*``). Once accepted it may send at any
time. Frames, fragmentation, UTF-8 checks, ping/pong and the close handshake are the
library's; message size over ``websocket_max_frame_size`` closes with 1009, invalid frames
with 1002, an app exception with 1011, a draining worker with 1001. Idle sockets are pinged
every ``websocket_ping_interval`` and closed after ``websocket_timeout`` of silence.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from websockets.datastructures import Headers
from websockets.exceptions import InvalidHandshake
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request as WsRequest
from websockets.protocol import State
from websockets.server import ServerProtocol

from hornbeam.asgi.http import AsgiApp, Message
from hornbeam.http1.framing import ResponseFraming
from hornbeam.http1.writer import HeaderChecker, error_response, reason_phrase
from hornbeam.io.connection import HttpConnection, RequestCycle
from hornbeam.logs import AccessLog, error_log


@dataclass(frozen=True, slots=True)
class WebSocketLimits:
    max_message: int
    idle_timeout: float
    ping_interval: float
    compress: bool


class WebSocketSession:
    """One upgraded connection serving one ASGI WebSocket app call."""

    def __init__(
        self,
        conn: HttpConnection,
        cycle: RequestCycle,
        app: AsgiApp,
        scope: dict[str, Any],
        limits: WebSocketLimits,
        checker: HeaderChecker,
        access_log: AccessLog,
    ) -> None:
        self.conn = conn
        self.access_log = access_log
        self.cycle = cycle
        self.app = app
        self.limits = limits
        self.checker = checker
        self.protocol: ServerProtocol | None = None  # set at accept
        self.accepted = False
        self.closed = False  # our side is done: close sent, or connection lost
        self.denied = False
        self.close_code: int | None = None
        self._incoming: asyncio.Queue[Message] = asyncio.Queue()
        self._early: list[bytes] = []  # bytes a client sent before our 101
        self._fragments: list[bytes] = []
        self._fragment_opcode: Opcode | None = None
        self._last_heard = time.monotonic()
        self._timer: asyncio.TimerHandle | None = None
        self._denial: ResponseFraming | None = None
        self.scope = self._scope(scope)
        self._incoming.put_nowait({"type": "websocket.connect"})
        self.task = conn.ctx.loop.create_task(self._run())

    # ---- scope -------------------------------------------------------------------------------
    @staticmethod
    def _scope(shared: dict[str, Any]) -> dict[str, Any]:
        """The WebSocket scope from the keys HTTP and WebSocket share."""
        offered = [
            proto.strip()
            for name, value in shared["headers"]
            if name == b"sec-websocket-protocol"
            for proto in value.decode("latin-1").split(",")
            if proto.strip()
        ]
        shared["type"] = "websocket"
        shared["scheme"] = "wss" if shared["scheme"] == "https" else "ws"
        shared["subprotocols"] = offered
        shared["extensions"] = {"websocket.http.response": {}}
        return shared

    # ---- the app -----------------------------------------------------------------------------
    async def _run(self) -> None:
        try:
            await self.app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error_log.error(
                "Exception in ASGI WebSocket app at %s", self.scope["path"], exc_info=exc
            )
            if self.accepted:
                self._close(CloseCode.INTERNAL_ERROR, "")
            elif not self.denied:
                self._reject_http(500, "the application raised an error")
            return
        if not self.accepted and not self.denied:
            self._reject_http(403, "the application did not accept the WebSocket")
        elif self.accepted and not self.closed:
            self._close(CloseCode.NORMAL_CLOSURE, "")

    async def receive(self) -> Message:
        return await self._incoming.get()

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if not self.accepted and not self.denied:
            if kind == "websocket.accept":
                self._accept(message.get("subprotocol"), message.get("headers", ()))
            elif kind == "websocket.close":
                self._reject_http(403, "the application refused the WebSocket")
            elif kind == "websocket.http.response.start":
                self._deny_start(message)
            else:
                raise RuntimeError(f"ASGI: expected 'websocket.accept', got {kind!r}")
            return
        if self.denied:
            if kind != "websocket.http.response.body" or self._denial is None:
                raise RuntimeError(f"ASGI: unexpected {kind!r} in a WebSocket denial")
            self._deny_body(message)
            return
        if self.closed:
            raise ClientGone("the WebSocket is closed")
        protocol = self.protocol
        assert protocol is not None
        if kind == "websocket.send":
            text, data = message.get("text"), message.get("bytes")
            if text is not None:
                protocol.send_text(text.encode("utf-8"))
            elif data is not None:
                protocol.send_binary(bytes(data))
            else:
                raise RuntimeError("ASGI: 'websocket.send' needs 'text' or 'bytes'")
            self._flush()
            if not self.conn.writable:
                await self.conn.drained()
        elif kind == "websocket.close":
            self._close(int(message.get("code", 1000)), str(message.get("reason") or ""))
        else:
            raise RuntimeError(f"ASGI: unexpected {kind!r} on an accepted WebSocket")

    # ---- handshake ---------------------------------------------------------------------------
    def _accept(self, subprotocol: str | None, headers: Sequence[tuple[bytes, bytes]]) -> None:
        offered = self.scope["subprotocols"]
        if subprotocol is not None and subprotocol not in offered:
            error_log.warning("WebSocket subprotocol %r was not offered; ignored", subprotocol)
            subprotocol = None
        limits = self.limits
        # The head was parsed by our HTTP/1 parser: one protocol object does the handshake,
        # another, created OPEN, does the framing (a CONNECTING one would parse HTTP first).
        handshake = ServerProtocol(
            extensions=[ServerPerMessageDeflateFactory()] if limits.compress else None,
            select_subprotocol=lambda _proto, _offered: subprotocol,  # type: ignore[arg-type,return-value]
        )
        event = self.cycle.event
        request = WsRequest(
            event.target.decode("latin-1"),
            Headers([(n.decode("latin-1"), v.decode("latin-1")) for n, v in event.headers]),
        )
        response = handshake.accept(request)
        if response.status_code != 101:
            error = response._exception
            detail = str(error) if isinstance(error, InvalidHandshake) else "bad handshake"
            self._reject_http(response.status_code, detail)
            return
        for name, value in headers:
            self.checker.lower_name(name)
            self.checker.check_value(name, value)
            response.headers[name.decode("latin-1")] = value.decode("latin-1")
        handshake.send_response(response)
        protocol = ServerProtocol(state=State.OPEN, max_size=limits.max_message or None)
        protocol.extensions = handshake.extensions  # what the handshake negotiated
        self.conn.write(self.cycle, b"".join(handshake.data_to_send()))
        self.protocol = protocol
        self.accepted = True
        self.cycle.response_started = True
        self._flush()
        for data in self._early:
            self.data_received(data)
        self._early.clear()
        self._arm_timer()

    def _reject_http(self, status: int, detail: str) -> None:
        self.denied = True
        self.closed = True
        self.conn.write_and_finish(
            self.cycle, error_response(status, detail, self.conn.ctx.date), False
        )

    def _deny_start(self, message: Message) -> None:
        self.denied = True
        status = int(message.get("status", 403))
        framing = ResponseFraming(self.cycle.event, draining=True)
        head = framing.head(
            status,
            b"%d %s" % (status, reason_phrase(status)),
            [(bytes(n), bytes(v)) for n, v in message.get("headers", ())],
            None,
            self.checker,
            self.conn.ctx.date.line,
        )
        self._denial = framing
        self.conn.write(self.cycle, head)

    def _deny_body(self, message: Message) -> None:
        framing = self._denial
        assert framing is not None
        data = framing.body(bytes(message.get("body", b"")))
        if message.get("more_body", False):
            self.conn.write(self.cycle, data)
            return
        self.closed = True
        self.conn.write_and_finish(self.cycle, data + framing.end(), False)

    # ---- frames ------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        protocol = self.protocol
        if protocol is None:
            self._early.append(data)  # pipelined before our 101: parse once accepted
            return
        self._last_heard = time.monotonic()
        protocol.receive_data(data)
        for event in protocol.events_received():
            if isinstance(event, Frame):
                self._on_frame(event)
        self._flush()
        if protocol.state is State.CLOSED or protocol.close_expected():
            self._peer_closed(protocol.close_code or CloseCode.ABNORMAL_CLOSURE)

    def _on_frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode in (Opcode.TEXT, Opcode.BINARY):
            self._fragment_opcode = opcode
            self._fragments = [bytes(frame.data)]
        elif opcode is Opcode.CONT and self._fragment_opcode is not None:
            self._fragments.append(bytes(frame.data))
        else:
            return  # ping, pong and close are answered by the protocol
        if not frame.fin:
            return
        payload = b"".join(self._fragments)
        self._fragments = []
        message: Message
        if self._fragment_opcode is Opcode.TEXT:
            message = {"type": "websocket.receive", "text": payload.decode("utf-8")}
        else:
            message = {"type": "websocket.receive", "bytes": payload}
        self._fragment_opcode = None
        self._incoming.put_nowait(message)

    def _flush(self) -> None:
        protocol = self.protocol
        transport = self.conn.transport
        if protocol is None or transport is None:
            return
        self.conn.flush_output()  # the handshake's answer goes first
        for chunk in protocol.data_to_send():
            if chunk:
                if not transport.is_closing():
                    transport.write(chunk)
            else:  # the protocol asks to close our side of the TCP connection
                self.conn.close()

    def _close(self, code: int, reason: str, answer_within: float = 5.0) -> None:
        protocol = self.protocol
        if self.closed or protocol is None:
            return
        self.closed = True
        if protocol.state is State.OPEN:
            protocol.send_close(code, reason)
            self._flush()
        # the peer answers with its close frame, then the connection ends; don't wait forever
        self.conn.ctx.loop.call_later(answer_within, self.conn.close)

    def _peer_closed(self, code: int) -> None:
        if self.close_code is None:
            self.close_code = int(code)
            self.closed = True
            self._incoming.put_nowait({"type": "websocket.disconnect", "code": int(code)})
        self.conn.close()

    def connection_lost(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        protocol = self.protocol
        code = protocol.close_code if protocol is not None and protocol.close_code else 1006
        self._peer_closed(int(code))
        self.conn.finish(self.cycle, keep_alive=False)
        if self.accepted and self.access_log.enabled:
            # one line per WebSocket, when it ends: 101 and how long it was open
            client = self.conn.client
            self.access_log.response(
                self.cycle.event, self.cycle.started, client[0] if client else "", 101, 0, {}
            )

    def shutdown(self) -> None:
        """The worker drains: going away (1001)."""
        if self.accepted:
            self._close(CloseCode.GOING_AWAY, "server shutting down")
        elif not self.denied:
            self.task.cancel()
            self._reject_http(503, "server shutting down")

    # ---- keepalive ---------------------------------------------------------------------------
    def _arm_timer(self) -> None:
        interval = self.limits.ping_interval
        timeout = self.limits.idle_timeout
        every = min(i for i in (interval, timeout) if i) if (interval or timeout) else 0.0
        if every:
            self._timer = self.conn.ctx.loop.call_later(every, self._keepalive)

    def _keepalive(self) -> None:
        protocol = self.protocol
        if self.closed or protocol is None or protocol.state is not State.OPEN:
            return
        silent = time.monotonic() - self._last_heard
        if self.limits.idle_timeout and silent >= self.limits.idle_timeout:
            self._close(CloseCode.INTERNAL_ERROR, "keepalive timeout", answer_within=0.0)
            return
        if self.limits.ping_interval and silent >= self.limits.ping_interval:
            protocol.send_ping(b"hornbeam")
            self._flush()
        self._arm_timer()


class ClientGone(OSError):
    """``send()`` on a WebSocket that is already closed."""
