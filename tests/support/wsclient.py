"""A `/ws` client for multi-gateway tests: subscribes to one room and, whenever its
connection ends, reconnects to the next gateway in its list and resumes from the
last offset it saw, as a well-behaved dashboard does."""

from __future__ import annotations

import json
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol, connectWS
from twisted.internet import reactor


class _Protocol(WebSocketClientProtocol):
    factory: "_Factory"

    def onOpen(self) -> None:
        self.factory.client._opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.client._frame(json.loads(payload))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.client._closed(self.factory.attempt, code)


class _Factory(WebSocketClientFactory):
    protocol = _Protocol

    def clientConnectionFailed(self, connector: Any, reason: Any) -> None:
        self.client._closed(self.attempt, None)


class ResumingClient:
    """Records the offset of every event of ``room`` it receives, in order."""

    def __init__(self, ports: list[int], room: str, user: str = "watcher",
                 retry_delay: float = 0.2) -> None:
        self.ports = ports
        self.room = room
        self.user = user
        self.retry_delay = retry_delay
        self.offsets: list[int] = []
        self.close_codes: list[int | None] = []
        self.connected_to: list[int] = []
        self.subscribed = False
        self.stopped = False
        self._turn = 0
        self._attempt = 0
        self._protocol: _Protocol | None = None

    @property
    def last(self) -> int:
        return self.offsets[-1] if self.offsets else 0

    def start(self) -> "ResumingClient":
        self._connect()
        return self

    def stop(self) -> None:
        self.stopped = True
        if self._protocol is not None:
            self._protocol.sendClose()

    def _connect(self) -> None:
        if self.stopped:
            return
        port = self.ports[self._turn % len(self.ports)]
        factory = _Factory(f"ws://127.0.0.1:{port}/ws?userId={self.user}")
        factory.client = self
        self._attempt += 1
        factory.attempt = self._attempt
        factory.setProtocolOptions(openHandshakeTimeout=5, closeHandshakeTimeout=1)
        self.connected_to.append(port)
        connectWS(factory, timeout=2)

    def _opened(self, protocol: _Protocol) -> None:
        self._protocol = protocol
        protocol.sendMessage(json.dumps(
            {"type": "subscribe", "room": self.room, "offset": str(self.last)}).encode())

    def _frame(self, frame: dict) -> None:
        if frame.get("type") == "subscribed":
            self.subscribed = True
        elif "offset" in frame and frame.get("room") == self.room:
            offset = int(frame["offset"])
            self.offsets.append(offset)

    def _closed(self, attempt: int, code: int | None) -> None:
        if code is not None:
            self.close_codes.append(code)
        if attempt != self._attempt:
            return
        self._protocol, self.subscribed = None, False
        if not self.stopped:
            # The node we were on may be gone: try the next one.
            self._turn += 1
            reactor.callLater(self.retry_delay, self._connect)
