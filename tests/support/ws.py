"""A WebSocket client of the gateway's ``/ws`` endpoint, for tests.

It is Autobahn's own client protocol, so the gateway is exercised through a real TCP
connection and real framing; it keeps every frame it receives, can stop reading its
socket (a slow consumer), and reports how the connection was closed.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint

from tests.support.waiting import eventually


class ClientProtocol(WebSocketClientProtocol):
    def onConnect(self, response) -> None:
        self.factory.client.protocol = self

    def onOpen(self) -> None:
        self.factory.client.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.client.frames.append(json.loads(payload))

    def onClose(self, wasClean: bool, code: int, reason: str) -> None:
        client = self.factory.client
        client.close_code, client.close_reason = code, reason
        if not client.opened.called:
            client.opened.errback(ConnectionError(f"closed before open: {code} {reason}"))
        client.closed.callback((code, reason))


class WsClient:
    def __init__(self) -> None:
        self.frames: list[dict] = []
        self.opened: defer.Deferred = defer.Deferred()
        self.closed: defer.Deferred = defer.Deferred()
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.protocol: ClientProtocol | None = None

    @classmethod
    async def connect(cls, port: int, query: str, path: str = "/ws",
                      wait_welcome: bool = True) -> "WsClient":
        client = cls()
        factory = WebSocketClientFactory(f"ws://127.0.0.1:{port}{path}?{query}")
        factory.protocol = ClientProtocol
        factory.client = client
        factory.setProtocolOptions(maxFramePayloadSize=0, maxMessagePayloadSize=0)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        await endpoint.connect(factory)
        await client.opened
        if wait_welcome:
            await client.next("welcome")
        return client

    # -- sending ---------------------------------------------------------------------

    def send(self, frame: Any) -> None:
        self.protocol.sendMessage(json.dumps(frame).encode())

    def send_raw(self, payload: bytes, binary: bool = False) -> None:
        self.protocol.sendMessage(payload, isBinary=binary)

    async def subscribe(self, room: str, offset: Any = None) -> dict:
        frame = {"type": "subscribe", "room": room}
        if offset is not None:
            frame["offset"] = offset
        seen = len(self.frames)
        self.send(frame)
        return await self.next(("subscribed", "error"), start=seen,
                               match=lambda f: f.get("room", room) == room)

    # -- receiving -------------------------------------------------------------------

    async def next(self, types: str | tuple[str, ...], start: int = 0,
                   match: Callable[[dict], bool] = lambda f: True, timeout: float = 10.0) -> dict:
        types = (types,) if isinstance(types, str) else types

        def found():
            return next((f for f in self.frames[start:] if f.get("type") in types and match(f)),
                        None)

        return await eventually(found, timeout, lambda: f"a {types} frame; got {self.frames[-5:]}")

    def events(self, room: str | None = None) -> list[dict]:
        """Event frames (those with an offset), optionally of one room."""
        return [f for f in self.frames if "offset" in f and f.get("type") != "welcome"
                and (room is None or f["room"] == room)]

    def offsets(self, room: str | None = None) -> list[int]:
        return [int(f["offset"]) for f in self.events(room)]

    async def wait_events(self, count: int, timeout: float = 10.0) -> list[dict]:
        await eventually(lambda: len(self.events()) >= count, timeout,
                         lambda: f"{count} events; got {len(self.events())}")
        return self.events()

    # -- flow control and closing ----------------------------------------------------

    def stop_reading(self) -> None:
        self.protocol.transport.pauseProducing()

    def resume_reading(self) -> None:
        self.protocol.transport.resumeProducing()

    async def close(self) -> None:
        if not self.closed.called:
            self.protocol.sendClose(1000)
            await self.closed
