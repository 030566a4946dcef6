"""The plain JSON WebSocket endpoint at ``/ws`` (the dashboard's protocol, SPEC §9).

server → client: ``{"type": <event>, "room": R, "payload": ..., "offset": "<n>"}``,
plus ``subscribed`` / ``unsubscribed`` / ``gap`` / ``error`` control frames.
client → server: ``{"type": "subscribe", "room": R, "offset"?: "<n>"}`` and
``{"type": "unsubscribe", "room": R}``.
"""

from __future__ import annotations

import json
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory
from twisted.internet import defer
from twisted.logger import Logger

from n2gateway.downstream.auth import AuthError, Authenticator, Identity
from n2gateway.downstream.connection import (CLOSE_NOT_READY, CLOSE_UNAUTHORIZED,
                                             DownstreamProtocol)
from n2gateway.hub import Hub, Refused
from n2gateway.journal import Event

MAX_FRAME = 64 * 1024


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class JsonWire:
    """Events as JSON text frames, one prepared frame per (event, room)."""

    names_room = True
    protocol_name = "ws"

    def __init__(self, factory: WebSocketServerFactory) -> None:
        self._factory = factory

    def prepare(self, event: Event, room: str):
        text = (f'{{"type":{_dumps(event.name)},"room":{_dumps(room)},'
                f'"payload":{event.payload_json},"offset":"{event.offset}"}}')
        return self._factory.prepareMessage(text.encode())


class ProtocolError(Exception):
    """A client frame we cannot act on; the message goes back in an error frame."""


def parse_offset(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise ProtocolError("offset must be a string of digits")


class JsonSocketProtocol(DownstreamProtocol):
    failures = Logger()
    factory: "JsonSocketFactory"

    _auth_error: str | None = None
    _identity: Identity | None = None

    def onConnect(self, request) -> None:
        params = request.params
        token = (params.get("token") or [None])[0]
        user_id = (params.get("userId") or [None])[0]
        try:
            self._identity = self.factory.authenticator.authenticate(token, user_id)
        except AuthError as e:
            # Accept, then close with a reason: a browser cannot read an HTTP refusal.
            self._auth_error = str(e)

    def onOpen(self) -> None:
        if self._auth_error is not None:
            self.send_control({"type": "error", "message": self._auth_error})
            self.sendClose(CLOSE_UNAUTHORIZED, f"unauthorized: {self._auth_error}"[:120])
            return
        hub = self.factory.hub
        if not hub.ready:
            self.sendClose(CLOSE_NOT_READY, "gateway starting; try again shortly")
            return
        self.start_session(self._identity)
        self._work = defer.succeed(None)
        self.send_control({"type": "welcome", "userId": self._identity.sub,
                           "rooms": self.session.rooms, "offset": str(hub.head)})

    def send_control(self, frame: dict) -> None:
        payload = _dumps(frame).encode()
        if self.outbox is None:
            self.sendMessage(payload)
        else:
            # Behind the events already waiting: "subscribed" must follow its replay.
            self.outbox.send_prepared(self.factory.prepareMessage(payload))

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.session is None:
            return
        if isBinary:
            self.send_control({"type": "error", "message": "binary frames are not supported"})
            return
        # One frame at a time per session: a subscribe's replay finishes before the next.
        self._work.addCallback(lambda _: defer.Deferred.fromCoroutine(self._handle(payload)))

    async def _handle(self, payload: bytes) -> None:
        try:
            await self._dispatch(payload)
        except (ProtocolError, Refused) as e:
            self.send_control({"type": "error", "message": str(e)})
        except Exception:
            self.failures.failure("downstream frame handling failed")
            self.send_control({"type": "error", "message": "internal error"})

    async def _dispatch(self, payload: bytes) -> None:
        try:
            frame = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            raise ProtocolError("malformed JSON") from None
        if not isinstance(frame, dict):
            raise ProtocolError("a frame must be a JSON object")
        kind, room = frame.get("type"), frame.get("room")
        if kind not in ("subscribe", "unsubscribe"):
            raise ProtocolError(f"unknown type {str(kind)[:40]!r}; use subscribe or unsubscribe")
        if not isinstance(room, str) or not room or len(room) > 200:
            raise ProtocolError("room must be a non-empty string")
        if kind == "unsubscribe":
            self.session.unsubscribe(room)
            self.send_control({"type": "unsubscribed", "room": room})
            return
        offset = parse_offset(frame.get("offset"))
        await self.session.subscribe(
            room, offset, on_gap=lambda: self.send_control({"type": "gap", "room": room}))
        if not self.session.closed:
            self.send_control({"type": "subscribed", "room": room})


class JsonSocketFactory(WebSocketServerFactory):
    protocol = JsonSocketProtocol

    def __init__(self, hub: Hub, authenticator: Authenticator, reactor) -> None:
        super().__init__(reactor=reactor)
        self.hub = hub
        self.authenticator = authenticator
        self.wire = JsonWire(self)
        self.slow_closed = 0
        self.setProtocolOptions(
            maxFramePayloadSize=MAX_FRAME, maxMessagePayloadSize=MAX_FRAME,
            autoPingInterval=25, autoPingTimeout=20, openHandshakeTimeout=10,
            closeHandshakeTimeout=2, perMessageCompressionAccept=lambda offers: None,
            # A protocol violation (an oversized frame, invalid UTF-8) is closed with
            # its code and reason, not by dropping the TCP connection unexplained.
            failByDrop=False)

    def as_resource(self) -> WebSocketResource:
        # Not "resource": WebSocketServerFactory already has an attribute of that name.
        return WebSocketResource(self)
