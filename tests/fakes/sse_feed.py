"""
A fake JSON-over-SSE upstream for the example provider plugin
(examples/n2gateway-sse-feed): ``GET /events?channel=C`` with
``Authorization: Bearer <token>`` streams ``id:``/``event:``/``data:`` blocks,
replaying those after ``Last-Event-ID``; any other token is a 401.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred
from twisted.web import resource, server


class FakeFeed(resource.Resource):
    isLeaf = True

    def __init__(self, reactor: Any, token: str) -> None:
        super().__init__()
        self._reactor = reactor
        self._token = token
        self._port: Any = None
        self.events: list[tuple[int, str, Any]] = []
        #: ``(channel, Last-Event-ID)`` of every accepted stream, in order.
        self.accepted: list[tuple[str, str | None]] = []
        self.refused = 0
        self._streams: list[server.Request] = []
        self._waiting: list[tuple[int, Deferred[None]]] = []

    def listen(self) -> "FakeFeed":
        self._port = self._reactor.listenTCP(0, server.Site(self), interface="127.0.0.1")
        return self

    def url(self) -> str:
        return f"http://127.0.0.1:{self._port.getHost().port}/events"

    def render_GET(self, request: server.Request) -> Any:
        if request.getHeader("authorization") != f"Bearer {self._token}":
            self.refused += 1
            request.setResponseCode(401)
            return b'{"error": "unknown token"}'
        channel = (request.args.get(b"channel") or [b""])[0].decode()
        last = request.getHeader("last-event-id")
        request.setHeader("content-type", "text/event-stream")
        request.write(b": welcome\n\n")
        for event in self.events:
            if last is None or event[0] > int(last):
                request.write(self._block(*event))
        self._streams.append(request)
        request.notifyFinish().addBoth(lambda _: self._streams.remove(request))
        self.accepted.append((channel, last))
        for wanted, waiter in list(self._waiting):
            if len(self.accepted) >= wanted:
                self._waiting.remove((wanted, waiter))
                waiter.callback(None)
        return server.NOT_DONE_YET

    def wait_accepted(self, count: int) -> Deferred[None]:
        """Fires once ``count`` streams have been accepted in all."""
        waiter: Deferred[None] = Deferred()
        if len(self.accepted) >= count:
            waiter.callback(None)
        else:
            self._waiting.append((count, waiter))
        return waiter

    def push(self, event: str, payload: Any) -> None:
        self.events.append((len(self.events) + 1, event, payload))
        for request in list(self._streams):
            request.write(self._block(*self.events[-1]))

    def drop(self) -> None:
        """The upstream goes away mid-stream: every open stream is cut."""
        for request in list(self._streams):
            request.channel.transport.abortConnection()

    @staticmethod
    def _block(event_id: int, event: str, payload: Any) -> bytes:
        return f"id: {event_id}\nevent: {event}\ndata: {json.dumps(payload)}\n\n".encode()

    async def close(self) -> None:
        self.drop()
        if self._port is not None:
            await self._port.stopListening()
