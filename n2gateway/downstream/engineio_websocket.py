"""The Engine.IO 4 WebSocket transport: a session opened on a WebSocket, or one
upgraded from HTTP long-polling (``?sid=``, ``2probe``/``3probe``, then ``5``).

An upgrade may reach any gateway: the session's state comes from the polling store
in the same transaction that ends polling, with the control packets not yet sent;
the events after its delivered offset are then replayed from the journal, so the
switch loses and reorders nothing.
"""

from __future__ import annotations

import secrets
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory
from twisted.internet import defer
from twisted.logger import Logger

from n2gateway.codecs.engineio import (NOOP_FRAME, PING_FRAME, EnginePacket, EngineType,
                                       OpenInfo, PacketError, decode_engine, encode_open)
from n2gateway.codecs.socketio import SocketPacket, decode_socket, encode_message
from n2gateway.db import DatabaseUnavailable
from n2gateway.downstream.auth import Identity
from n2gateway.downstream.close_codes import (CLOSE_NORMAL, CLOSE_PROTOCOL_ERROR, CLOSE_TIMEOUT,
                                              CLOSE_TRY_AGAIN)
from n2gateway.downstream.connection import DownstreamFactory, DownstreamProtocol
from n2gateway.downstream.engineio_store import PollingStore
from n2gateway.downstream.socketio_namespace import (Namespace, ProtocolError,
                                                     SocketIoServer, event_frame,
                                                     packet_failure)
from n2gateway.journal import Event

MAX_PAYLOAD = 64 * 1024  # Autobahn's limit and the maxPayload announced to clients
PING_INTERVAL = 25.0
PING_TIMEOUT = 20.0
CONNECT_TIMEOUT = 45.0  # socket.io's connectTimeout: an Engine.IO link without a socket
#: How long a late poll of an upgraded session is told why it cannot be served.
UPGRADED_LINGER = 60.0


class SocketIoWire:
    """Events as ``42["<event>", <payload>, "<offset>"]``: one prepared frame per event."""

    names_room = False
    protocol_name = "socket.io"
    log = Logger()

    def __init__(self, factory: WebSocketServerFactory) -> None:
        self._factory = factory

    def prepare(self, event: Event, room: str):
        return self._factory.prepareMessage(text_of(event, self.log).encode())


def text_of(event: Event, log: Logger) -> str:
    try:
        return event_frame(event)
    except PacketError as e:
        # A name socket.io reserves ("connect", ...) cannot be emitted; a NOOP keeps
        # the fan-out going for everyone else.
        log.warn("event {offset} not sent to Socket.IO clients: {why}",
                 offset=event.offset, why=str(e))
        return NOOP_FRAME


class SocketIoProtocol(DownstreamProtocol):
    failures = Logger()
    factory: "SocketIoFactory"

    sid: str = ""
    pid: str | None = None
    _upgrading: str | None = None  # the polling session's sid until its "5"
    _probed = False  # that session is marked upgrading: undone if no "5" comes
    _timer = None  # the next ping or the pong deadline
    _connect_deadline = None

    @property
    def open(self) -> bool:
        return self.state == self.STATE_OPEN

    # -- Engine.IO ------------------------------------------------------------------

    def onConnect(self, request) -> None:
        self._upgrading = (request.params.get("sid") or [None])[0]

    def onOpen(self) -> None:
        super().onOpen()
        self._work = defer.succeed(None)
        self.namespace = Namespace(self.factory.socketio, self)
        reactor = self.factory.reactor
        if self._upgrading is not None:
            # The client probes, then upgrades; the probe may not take forever.
            self._timer = reactor.callLater(self.factory.ping_timeout, self.fail,
                                            CLOSE_TIMEOUT, "no upgrade in time")
            return
        self.sid = secrets.token_urlsafe(15)
        self.send_text(encode_open(OpenInfo(
            sid=self.sid, ping_interval=self.factory.ping_interval,
            ping_timeout=self.factory.ping_timeout, max_payload=MAX_PAYLOAD)))
        self._start_pinging()

    def _start_pinging(self) -> None:
        reactor = self.factory.reactor
        self._timer = reactor.callLater(self.factory.ping_interval, self._ping)
        if self.pid is None:
            self._connect_deadline = reactor.callLater(
                CONNECT_TIMEOUT, self.fail, CLOSE_TIMEOUT, "no Socket.IO CONNECT in time")

    def send_text(self, text: str) -> None:
        self.sendMessage(text.encode())

    def _ping(self) -> None:
        self.send_text(PING_FRAME)
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
        if not self.open:
            return
        if isBinary:
            self.namespace.refuse_binary()
            return
        try:
            packet = decode_engine(payload.decode("utf-8"))
        except (PacketError, UnicodeDecodeError) as e:
            self.fail(CLOSE_PROTOCOL_ERROR, f"bad Engine.IO packet: {e}")
            return
        if self._upgrading is not None:
            # In order behind the upgrade's own steps, which wait on the database.
            self._then(self._after_upgrade, packet)
            return
        self._receive(packet)

    async def _after_upgrade(self, packet: EnginePacket) -> None:
        if self._upgrading is not None:
            await self._upgrade_step(packet)
        elif packet.type == EngineType.MESSAGE:
            await self._handle(packet.data)
        else:
            self._receive(packet)

    def _receive(self, packet: EnginePacket) -> None:
        match packet.type:
            case EngineType.PONG:
                self._pong()
            case EngineType.CLOSE:
                self.fail(CLOSE_NORMAL, "closed by the client")
            case EngineType.MESSAGE:
                # One packet at a time: a recovery's replay finishes before the next.
                self._then(self._handle, packet.data)
            case EngineType.NOOP:
                pass
            case _:
                self.fail(CLOSE_PROTOCOL_ERROR, f"unexpected Engine.IO {packet.type.name}"
                                                " on a WebSocket connection")

    def _then(self, step, argument) -> None:
        self._work.addCallback(lambda _: defer.Deferred.fromCoroutine(step(argument)))

    async def _handle(self, data: str) -> None:
        try:
            await self.namespace.handle(decode_socket(data))
        except (PacketError, ProtocolError) as e:
            self.fail(CLOSE_PROTOCOL_ERROR, packet_failure(e))
        except Exception:
            self.failures.failure("Socket.IO packet handling failed")
            self.fail(CLOSE_PROTOCOL_ERROR, "internal error")

    # -- the upgrade from polling ---------------------------------------------------

    async def _upgrade_step(self, packet: EnginePacket) -> None:
        sid, store = self._upgrading, self.factory.polling
        if not self.open or sid is None:
            return
        try:
            if packet.type == EngineType.PING and packet.data == "probe":
                found = await store.load(sid)
                if not self.open:
                    return  # the client went meanwhile: its session goes on polling
                if found is None:
                    self.fail(CLOSE_PROTOCOL_ERROR, "unknown_session")
                    return
                self.send_text("3probe")
                await store.mark_upgrading(sid)
                if self.open:
                    self._probed = True
                else:
                    await store.cancel_upgrade(sid)
            elif packet.type == EngineType.UPGRADE:
                await self._take_over(sid, store)
            elif packet.type != EngineType.NOOP:
                self.fail(CLOSE_PROTOCOL_ERROR, f"unexpected Engine.IO {packet.type.name}"
                                                " before the upgrade")
        except DatabaseUnavailable as e:
            self.fail(CLOSE_TRY_AGAIN, f"upgrade impossible now: {e}")

    async def _take_over(self, sid: str, store: PollingStore) -> None:
        taken = await store.take_over(sid, UPGRADED_LINGER)
        if not self.open:
            return
        if taken is None:
            self.fail(CLOSE_PROTOCOL_ERROR, "unknown_session")
            return
        state, frames = taken
        self.sid, self._upgrading = sid, None
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        for frame in frames:
            self.send_text(frame)
        if state.identity is not None and state.pid is not None:
            self.start(state.identity, state.pid)
            await self.resume(list(state.rooms), state.delivered)
        self._start_pinging()

    # -- the namespace's link -------------------------------------------------------

    @property
    def rooms(self) -> list[str]:
        return self.session.rooms if self.session is not None else []

    def send(self, packet: SocketPacket) -> None:
        self.send_text(encode_message(packet))

    def start(self, identity: Identity, pid: str) -> None:
        if self._connect_deadline is not None and self._connect_deadline.active():
            self._connect_deadline.cancel()
        self._connect_deadline = None
        self.start_session(identity)
        self.pid = pid
        self.factory.live_pids[pid] = self.factory.live_pids.get(pid, 0) + 1

    async def resume(self, rooms: list[str], after: int) -> None:
        for room in set(self.session.rooms) - set(rooms):
            self.session.unsubscribe(room)  # the own room, if the client left it
        await self.session.resume(rooms, after, self._lost_in_replay)

    async def join(self, room: str) -> None:
        await self.session.subscribe(room)

    def leave(self, room: str) -> None:
        self.session.unsubscribe(room)

    def _lost_in_replay(self) -> None:
        # Retention trimmed the journal between the check and the replay: the client
        # reconnects with the same offset and then gets a fresh session.
        self.fail(CLOSE_TRY_AGAIN, "missed events expired meanwhile; reconnect")

    def stop(self) -> str | None:
        pid, self.pid = self.pid, None
        if pid is not None:
            left = self.factory.live_pids.pop(pid) - 1
            if left:
                self.factory.live_pids[pid] = left
        self.end_session()
        return pid

    def onClose(self, wasClean: bool, code: int, reason: str) -> None:
        self._stop_timers()
        if self._probed and self._upgrading is not None:
            # Closed between the probe and the "5": the client goes on polling, as
            # engine.io-client does when its upgrade fails.
            d = defer.Deferred.fromCoroutine(self.factory.polling.cancel_upgrade(self._upgrading))
            d.addErrback(lambda f: f.trap(DatabaseUnavailable))
        pid = self.stop()
        if pid is not None:
            # The last sign of life: the TTL runs from here.
            d = defer.Deferred.fromCoroutine(self.factory.socketio.sessions.touch([pid]))
            d.addErrback(lambda f: f.trap(DatabaseUnavailable))


class SocketIoFactory(DownstreamFactory):
    protocol = SocketIoProtocol

    def __init__(self, server: SocketIoServer, polling: PollingStore, reactor: Any,
                 ping_interval: float = PING_INTERVAL,
                 ping_timeout: float = PING_TIMEOUT) -> None:
        super().__init__(reactor=reactor)
        # Not ``server``: Autobahn sends its factory's ``server`` as the Server header.
        self.socketio = server
        self.polling = polling
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.wire = SocketIoWire(self)
        #: pid -> connections using it here, for the keeper's batched refresh.
        self.live_pids: dict[str, int] = {}
        # Engine.IO does its own heartbeat (ping/pong packets), so no WebSocket pings.
        self.setProtocolOptions(
            maxFramePayloadSize=MAX_PAYLOAD, maxMessagePayloadSize=MAX_PAYLOAD,
            openHandshakeTimeout=10, closeHandshakeTimeout=2,
            perMessageCompressionAccept=lambda offers: None)

    @property
    def hub(self):
        return self.socketio.hub

    @property
    def authenticator(self):
        return self.socketio.authenticator
