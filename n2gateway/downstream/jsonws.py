"""The plain JSON WebSocket endpoint at ``/ws`` (the dashboard's protocol, SPEC §9):
its handshake, rooms and refresh; the frames themselves are in ``codecs/jsonws.py``.
"""

from __future__ import annotations

from typing import Any

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory
from twisted.internet import defer
from twisted.logger import Logger

from n2gateway.codecs.jsonws import ProtocolError, decode_frame, dumps, event_text, parse_offset
from n2gateway.downstream.auth import AuthError, Authenticator, Identity
from n2gateway.downstream.close_codes import CLOSE_TRY_AGAIN, CLOSE_UNAUTHORIZED
from n2gateway.downstream.connection import DownstreamFactory, DownstreamProtocol
from n2gateway.http.errors import HttpError
from n2gateway.http.routes import write_json
from n2gateway.hub import Hub
from n2gateway.journal import Event
from n2gateway.session import Refused, name_problem

MAX_FRAME = 64 * 1024


class JsonWire:
    """Events as JSON text frames, one prepared frame per (event, room)."""

    names_room = True
    protocol_name = "ws"

    def __init__(self, factory: WebSocketServerFactory) -> None:
        self._factory = factory

    def prepare(self, event: Event, room: str):
        text = event_text(event.name, room, event.payload_json, event.offset)
        return self._factory.prepareMessage(text.encode())


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
        super().onOpen()
        if self._auth_error is not None:
            self.send_control({"type": "error", "message": self._auth_error})
            self.sendClose(CLOSE_UNAUTHORIZED, f"unauthorized: {self._auth_error}"[:120])
            return
        hub = self.factory.hub
        if not hub.ready:
            self.sendClose(CLOSE_TRY_AGAIN, "gateway starting; try again shortly")
            return
        self.start_session(self._identity)
        self._work = defer.succeed(None)
        self.send_control({"type": "welcome", "userId": self._identity.sub,
                           "rooms": self.session.rooms, "offset": str(hub.head)})

    def send_control(self, frame: dict) -> None:
        # Behind the events already waiting: "subscribed" must follow its replay.
        self.outbox.send_prepared(self.factory.prepareMessage(dumps(frame).encode()))

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.session is None:
            return
        if isBinary:
            self.send_control({"type": "error", "message": "binary frames are not supported"})
            return
        # One frame at a time per session: a subscribe's replay finishes before the next.
        self._work.addCallback(lambda _: defer.Deferred.fromCoroutine(self._handle(payload)))

    async def _handle(self, payload: bytes) -> None:
        if self.session is None:
            return  # closed (its token expired, say) while this frame waited its turn
        try:
            await self._dispatch(payload)
        except (ProtocolError, Refused) as e:
            self.send_control({"type": "error", "message": str(e)})
        except Exception:
            self.failures.failure("downstream frame handling failed")
            self.send_control({"type": "error", "message": "internal error"})

    async def _dispatch(self, payload: bytes) -> None:
        frame = decode_frame(payload)
        kind, room = frame.get("type"), frame.get("room")
        if kind == "refresh":
            self._refresh(frame.get("token"))
            return
        if kind not in ("subscribe", "unsubscribe"):
            raise ProtocolError(f"unknown type {str(kind)[:40]!r};"
                                " use subscribe, unsubscribe or refresh")
        if (problem := name_problem(room)) is not None:
            raise ProtocolError(f"room {problem}")
        if kind == "unsubscribe":
            self.session.unsubscribe(room)
            self.send_control({"type": "unsubscribed", "room": room})
            return
        offset = parse_offset(frame.get("offset"))
        session = self.session
        await session.subscribe(
            room, offset, on_gap=lambda: self.send_control({"type": "gap", "room": room}))
        if not session.closed:
            self.send_control({"type": "subscribed", "room": room})

    def _refresh(self, token: Any) -> None:
        try:
            identity, left = self.refresh(token)
        except AuthError as e:
            raise ProtocolError(f"refresh refused: {e}") from None
        for room in left:
            self.send_control({"type": "unsubscribed", "room": room})
        self.send_control({"type": "refreshed", "exp": identity.expires})


class JsonSocketResource(WebSocketResource):
    """The WebSocket upgrade; a plain HTTP request gets a JSON answer saying so."""

    def render(self, request):
        if (request.getHeader("upgrade") or "").lower() != "websocket":
            request.setHeader("upgrade", "websocket")
            return write_json(request, 426, HttpError(
                426, "this is a WebSocket endpoint: connect with a WebSocket client"
                     " (Upgrade: websocket)").body())
        return super().render(request)


class JsonSocketFactory(DownstreamFactory):
    protocol = JsonSocketProtocol

    def __init__(self, hub: Hub, authenticator: Authenticator, reactor) -> None:
        super().__init__(reactor=reactor)
        self.hub = hub
        self.authenticator = authenticator
        self.wire = JsonWire(self)
        self.setProtocolOptions(
            maxFramePayloadSize=MAX_FRAME, maxMessagePayloadSize=MAX_FRAME,
            autoPingInterval=25, autoPingTimeout=20, openHandshakeTimeout=10,
            closeHandshakeTimeout=2, perMessageCompressionAccept=lambda offers: None,
            # A protocol violation (an oversized frame, invalid UTF-8) is closed with
            # its code and reason, not by dropping the TCP connection unexplained.
            failByDrop=False)

    def as_resource(self) -> WebSocketResource:
        # Not "resource": WebSocketServerFactory already has an attribute of that name.
        return JsonSocketResource(self)
