"""The Socket.IO v4 endpoint at ``/socket.io/`` (Engine.IO 4, WebSocket transport only).

The chat app's unchanged official client connects here: handshake ``auth: {token}``
(development mode: ``{userId}``), ``emit("subscribe", room, ack)`` and
``emit("unsubscribe", room, ack)`` answered ``{ok: true}`` or ``{ok: false, error}``,
hub events emitted under their own names with the payload as the argument.

Connection state recovery works the way socket.io-client expects it: the CONNECT
ack carries a private session id (``pid``) and every event carries its journal
offset as a last string argument; a client that comes back with ``{pid, offset}``
in its auth gets the same ``pid`` (``socket.recovered``), its rooms and every event
it missed, replayed from the journal. Sessions live in PostgreSQL
(``SessionStore``), so this also holds after the gateway was killed or on another
gateway of the same database.
"""

from __future__ import annotations

import secrets
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory
from twisted.internet import defer
from twisted.logger import Logger

from n2gateway.db import DatabaseUnavailable
from n2gateway.downstream.auth import AuthError, Authenticator, Identity
from n2gateway.downstream.connection import DownstreamProtocol
from n2gateway.downstream.socketio_sessions import SessionStore
from n2gateway.http.errors import HttpError
from n2gateway.http.routes import write_json
from n2gateway.hub import Hub, Refused
from n2gateway.journal import Event
from n2gateway.socketio_packets import (EnginePacket, EngineType, OpenInfo, PacketError,
                                        SocketPacket, SocketType, decode_engine,
                                        decode_socket, encode_engine, encode_event_frame_raw,
                                        encode_message, encode_open)

MAX_PAYLOAD = 64 * 1024  # Autobahn's limit and the maxPayload announced to clients
PING_INTERVAL = 25.0
PING_TIMEOUT = 20.0
CONNECT_TIMEOUT = 45.0  # socket.io's connectTimeout: an Engine.IO link without a socket

CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 4002
CLOSE_UNSUPPORTED = 4003
CLOSE_TIMEOUT = 4008
CLOSE_TRY_AGAIN = 4013

NOT_A_STRING = "must be a non-empty string"


class SocketIoWire:
    """Events as ``42["<event>", <payload>, "<offset>"]``: one prepared frame per event."""

    names_room = False
    protocol_name = "socket.io"
    log = Logger()

    def __init__(self, factory: WebSocketServerFactory) -> None:
        self._factory = factory

    def prepare(self, event: Event, room: str):
        try:
            text = encode_event_frame_raw(event.name, [event.payload_json, f'"{event.offset}"'])
        except PacketError as e:
            # A name socket.io reserves ("connect", ...) cannot be emitted; a NOOP keeps
            # the fan-out going for everyone else.
            self.log.warn("event {offset} not sent to Socket.IO clients: {why}",
                          offset=event.offset, why=str(e))
            text = encode_engine(EnginePacket(EngineType.NOOP))
        return self._factory.prepareMessage(text.encode())


class ProtocolError(Exception):
    """The peer broke the protocol: the connection is closed with this reason."""


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _parse_offset(value: Any) -> int | None:
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 19:
        return int(value)
    return None


class SocketIoProtocol(DownstreamProtocol):
    failures = Logger()
    factory: "SocketIoFactory"

    _sid: str | None = None
    _pid: str | None = None  # set while the "/" namespace is connected
    _timer = None  # the next ping or the pong deadline
    _connect_deadline = None

    # -- Engine.IO ------------------------------------------------------------------

    def onOpen(self) -> None:
        self._sid = secrets.token_urlsafe(15)
        self._work = defer.succeed(None)
        self.send_text(encode_open(OpenInfo(
            sid=self._sid, ping_interval=self.factory.ping_interval,
            ping_timeout=self.factory.ping_timeout, max_payload=MAX_PAYLOAD)))
        self._timer = self.factory.reactor.callLater(self.factory.ping_interval, self._ping)
        self._connect_deadline = self.factory.reactor.callLater(
            CONNECT_TIMEOUT, self.fail, CLOSE_TIMEOUT, "no Socket.IO CONNECT in time")

    def send_text(self, text: str) -> None:
        self.sendMessage(text.encode())

    def _ping(self) -> None:
        self.send_text(encode_engine(EnginePacket(EngineType.PING)))
        self._timer = self.factory.reactor.callLater(
            self.factory.ping_timeout, self.fail, CLOSE_TIMEOUT, "ping timeout")

    def _pong(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self.factory.reactor.callLater(self.factory.ping_interval, self._ping)

    def fail(self, code: int, reason: str) -> None:
        self._stop_timers()
        self.sendClose(code, reason)

    def _stop_timers(self) -> None:
        for call in (self._timer, self._connect_deadline):
            if call is not None and call.active():
                call.cancel()

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self._sid is None or self.state != self.STATE_OPEN:
            return
        if isBinary:
            self._refuse_binary()
            return
        try:
            packet = decode_engine(payload.decode("utf-8"))
        except PacketError as e:
            self.fail(CLOSE_PROTOCOL_ERROR, f"bad Engine.IO packet: {e}")
            return
        match packet.type:
            case EngineType.PONG:
                self._pong()
            case EngineType.CLOSE:
                self.fail(CLOSE_NORMAL, "closed by the client")
            case EngineType.MESSAGE:
                # One packet at a time: a recovery's replay finishes before the next.
                self._work.addCallback(
                    lambda _: defer.Deferred.fromCoroutine(self._handle(packet.data)))
            case EngineType.NOOP:
                pass
            case _:
                self.fail(CLOSE_PROTOCOL_ERROR, f"unexpected Engine.IO {packet.type.name}"
                                                " on a WebSocket-only connection")

    def _refuse_binary(self) -> None:
        self.send_socket(SocketPacket(SocketType.CONNECT_ERROR, data={
            "message": "binary attachments are not supported; send JSON"}))
        self.fail(CLOSE_UNSUPPORTED, "binary attachments are not supported")

    # -- Socket.IO ------------------------------------------------------------------

    def send_socket(self, packet: SocketPacket) -> None:
        self.send_text(encode_message(packet))

    async def _handle(self, data: str) -> None:
        try:
            await self._dispatch(decode_socket(data))
        except PacketError as e:
            self.fail(CLOSE_PROTOCOL_ERROR, f"bad Socket.IO packet: {e}")
        except ProtocolError as e:
            self.fail(CLOSE_PROTOCOL_ERROR, str(e))
        except Exception:
            self.failures.failure("Socket.IO packet handling failed")
            self.fail(CLOSE_PROTOCOL_ERROR, "internal error")

    async def _dispatch(self, packet: SocketPacket) -> None:
        if self.state != self.STATE_OPEN:
            return
        if packet.attachments or packet.type in (SocketType.BINARY_EVENT, SocketType.BINARY_ACK):
            self._refuse_binary()
            return
        if packet.type == SocketType.CONNECT and packet.namespace != "/":
            self.send_socket(SocketPacket(SocketType.CONNECT_ERROR, packet.namespace,
                                          {"message": "Invalid namespace"}))
            return
        if packet.namespace != "/":
            raise ProtocolError(f"namespace {packet.namespace[:40]!r} is not connected")
        match packet.type:
            case SocketType.CONNECT if self._pid is None:
                await self._connect(packet.data or {})
            case SocketType.EVENT if self._pid is not None:
                await self._event(packet)
            case SocketType.ACK if self._pid is not None:
                pass  # acks of our emits are optional: we request none
            case SocketType.DISCONNECT if self._pid is not None:
                await self._disconnect()
            case _:
                raise ProtocolError(f"unexpected Socket.IO {packet.type.name}"
                                    f" while {'connected' if self._pid else 'not connected'}")

    async def _connect(self, auth: dict) -> None:
        try:
            identity = self.factory.authenticator.authenticate(
                _string(auth.get("token")), _user_id(auth.get("userId")))
        except AuthError as e:
            self.send_socket(SocketPacket(SocketType.CONNECT_ERROR, data={"message": str(e)}))
            return
        hub = self.factory.hub
        if not hub.ready:
            # A close, not a CONNECT_ERROR: the client reconnects by itself after a close.
            self.fail(CLOSE_TRY_AGAIN, "gateway starting; try again shortly")
            return
        if self._connect_deadline.active():
            self._connect_deadline.cancel()
        pid, offset = _string(auth.get("pid")), auth.get("offset")
        saved = await self._recoverable(pid, offset, identity)
        if self.state != self.STATE_OPEN:
            return
        if saved is None:
            await self._connect_fresh(identity)
        else:
            await self._recover(identity, pid, *saved)

    async def _recoverable(self, pid: str | None, offset: Any,
                           identity: Identity) -> tuple[int, list[str]] | None:
        """``(replay after, rooms)`` when ``pid`` can be recovered from ``offset``."""
        if pid is None or (offset is not None and _parse_offset(offset) is None):
            return None
        try:
            saved = await self.factory.sessions.find(pid)
            if saved is None or saved.sub != identity.sub:
                return None
            after = _parse_offset(offset) if offset is not None else saved.since
            if after < await self.factory.hub.journal.horizon():
                return None  # older than retention
        except DatabaseUnavailable as e:
            self.failures.warn("Socket.IO recovery impossible: {reason}", reason=str(e))
            return None
        rooms = [room for room in saved.rooms if identity.may_join(room)]
        return after, rooms

    async def _connect_fresh(self, identity: Identity) -> None:
        pid = secrets.token_urlsafe(24)
        since = self.factory.hub.head
        self._attach(identity, pid)
        try:
            await self.factory.sessions.create(pid, identity.sub, since)
        except DatabaseUnavailable as e:
            self.failures.warn("Socket.IO session not saved, it cannot be recovered: {reason}",
                               reason=str(e))

    async def _recover(self, identity: Identity, pid: str, after: int, rooms: list[str]) -> None:
        session = self._attach(identity, pid)
        # Socket.IO sends the CONNECT ack first, then the missed events.
        await session.resume(sorted({identity.own_room, *rooms}), after, self._lost_in_replay)
        await self._save_rooms()

    def _attach(self, identity: Identity, pid: str) -> Any:
        session = self.start_session(identity)
        self._pid = pid
        self.factory.live_pids[pid] = self.factory.live_pids.get(pid, 0) + 1
        self.send_socket(SocketPacket(SocketType.CONNECT, data={"sid": self._sid, "pid": pid}))
        return session

    def _lost_in_replay(self) -> None:
        # Retention trimmed the journal between the check and the replay: the client
        # reconnects with the same offset and then gets a fresh session.
        self.fail(CLOSE_TRY_AGAIN, "missed events expired meanwhile; reconnect")

    async def _event(self, packet: SocketPacket) -> None:
        name, args = packet.data[0], packet.data[1:]
        try:
            if name not in ("subscribe", "unsubscribe"):
                raise ProtocolError(f"unknown event {name[:40]!r}; use subscribe or unsubscribe")
            room = _string(args[0] if args else None)
            if room is None or len(room) > 200:
                raise ProtocolError(f"room {NOT_A_STRING} of at most 200 characters")
            if name == "subscribe":
                await self.session.subscribe(room)
            else:
                self.session.unsubscribe(room)
        except (ProtocolError, Refused) as e:
            self._ack(packet, {"ok": False, "error": str(e)})
            return
        self._ack(packet, {"ok": True})
        await self._save_rooms()

    def _ack(self, packet: SocketPacket, answer: dict) -> None:
        if packet.id is not None:
            self.send_socket(SocketPacket(SocketType.ACK, data=[answer], id=packet.id))

    async def _save_rooms(self) -> None:
        try:
            await self.factory.sessions.save_rooms(self._pid, self.session.rooms)
        except DatabaseUnavailable as e:
            self.failures.warn("Socket.IO rooms not saved: {reason}", reason=str(e))

    async def _disconnect(self) -> None:
        # The client left on purpose: as in socket.io, nothing is kept to recover.
        pid = self._detach()
        try:
            await self.factory.sessions.forget(pid)
        except DatabaseUnavailable as e:
            self.failures.warn("Socket.IO session not deleted: {reason}", reason=str(e))

    def _detach(self) -> str | None:
        pid, self._pid = self._pid, None
        if pid is not None:
            left = self.factory.live_pids.pop(pid) - 1
            if left:
                self.factory.live_pids[pid] = left
        if self.session is not None:
            self.session.close()
            self.session = None
        return pid

    def onClose(self, wasClean: bool, code: int, reason: str) -> None:
        self._stop_timers()
        pid = self._detach()
        if pid is not None:
            # The last sign of life: the TTL runs from here.
            d = defer.Deferred.fromCoroutine(self.factory.sessions.touch([pid]))
            d.addErrback(lambda f: f.trap(DatabaseUnavailable))


def _user_id(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return _string(value)


class SocketIoResource(WebSocketResource):
    """The WebSocket upgrade, after the Engine.IO query checks that deserve a clear answer."""

    def render(self, request):
        eio = request.args.get(b"EIO", [b""])[0]
        transport = request.args.get(b"transport", [b""])[0]
        if eio != b"4":
            return write_json(request, 400, HttpError(
                400, "only Engine.IO 4 (socket.io-client 3 or later) is supported: EIO=4").body())
        if transport != b"websocket":
            return write_json(request, 400, HttpError(
                400, "HTTP long-polling is not supported: connect with"
                     " transports: ['websocket']").body())
        return super().render(request)


class SocketIoFactory(WebSocketServerFactory):
    protocol = SocketIoProtocol

    def __init__(self, hub: Hub, authenticator: Authenticator, sessions: SessionStore,
                 reactor, ping_interval: float = PING_INTERVAL,
                 ping_timeout: float = PING_TIMEOUT) -> None:
        super().__init__(reactor=reactor)
        self.hub = hub
        self.authenticator = authenticator
        self.sessions = sessions
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.wire = SocketIoWire(self)
        self.slow_closed = 0
        #: pid -> connections using it here, for the keeper's batched refresh.
        self.live_pids: dict[str, int] = {}
        # Engine.IO does its own heartbeat (ping/pong packets), so no WebSocket pings.
        self.setProtocolOptions(
            maxFramePayloadSize=MAX_PAYLOAD, maxMessagePayloadSize=MAX_PAYLOAD,
            openHandshakeTimeout=10, closeHandshakeTimeout=2,
            perMessageCompressionAccept=lambda offers: None)

    def as_resource(self) -> WebSocketResource:
        return SocketIoResource(self)
