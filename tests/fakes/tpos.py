"""
A fake TPOS realtime server for unit tests on a fake clock: Engine.IO 4 over
WebSocket with the Socket.IO namespace ``/chatomni``, spoken through the
project's codec (the official Node server plays TPOS in ``tests/interop``).

It sends the OPEN packet, pings every ``ping_interval`` unless ``pinging`` is
off, acknowledges a namespace CONNECT (or refuses one whose token is in
``rejected_tokens`` with a CONNECT_ERROR), records every frame and the
opening request, and emits scripted events to connected clients.
"""

from __future__ import annotations

import itertools
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet.task import LoopingCall

from n2gateway.codecs.engineio import EngineType, OpenInfo, decode_engine, encode_open
from n2gateway.codecs.socketio import (
    SocketPacket,
    SocketType,
    decode_socket,
    encode_event_frame,
    encode_message,
)

NAMESPACE = "/chatomni"


class FakeTposSession(WebSocketServerProtocol):
    factory: _FakeTposFactory

    def onConnect(self, request: Any) -> None:
        self.headers: dict[str, str] = dict(request.headers)
        self.params: dict[str, list[str]] = request.params
        self.frames: list[str] = []
        self.connected = False
        self.fake.sessions.append(self)

    @property
    def fake(self) -> FakeTpos:
        return self.factory.fake

    def onOpen(self) -> None:
        fake = self.fake
        self.send(encode_open(OpenInfo(
            sid=f"sid{next(fake.sids)}", ping_interval=fake.ping_interval,
            ping_timeout=fake.ping_timeout, max_payload=1_000_000)))
        self._pinger = LoopingCall(self._ping)
        self._pinger.clock = fake.clock
        self._pinger.start(fake.ping_interval, now=False)

    def _ping(self) -> None:
        if self.fake.pinging:
            self.send("2")

    def send(self, frame: str) -> None:
        self.sendMessage(frame.encode("utf-8"))

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        frame = payload.decode("utf-8")
        self.frames.append(frame)
        packet = decode_engine(frame)
        if packet.type != EngineType.MESSAGE or self.fake.silent:
            return
        message = decode_socket(packet.data)
        if message.type == SocketType.CONNECT:
            token = (message.data or {}).get("token")
            if token in self.fake.rejected_tokens:
                self.send(encode_message(SocketPacket(
                    SocketType.CONNECT_ERROR, message.namespace,
                    {"message": token if self.fake.echo_refused_token else "unauthorized"})))
            else:
                self.connected = True
                self.send(encode_message(SocketPacket(
                    SocketType.CONNECT, message.namespace, {"sid": "nsp-sid"})))

    def emit(self, event: str, payload: Any) -> None:
        self.send(encode_event_frame(event, payload, namespace=NAMESPACE))

    def connectionLost(self, reason: Any) -> None:
        pinger = getattr(self, "_pinger", None)
        if pinger is not None and pinger.running:
            pinger.stop()
        super().connectionLost(reason)
        if self in self.fake.sessions:
            self.fake.sessions.remove(self)
        self.fake.closed += 1


class _FakeTposFactory(WebSocketServerFactory):
    protocol = FakeTposSession

    def __init__(self, fake: FakeTpos) -> None:
        super().__init__(reactor=fake.clock)
        self.fake = fake
        # No Autobahn timers: they would run on txaio's global reactor.
        self.setProtocolOptions(openHandshakeTimeout=0, closeHandshakeTimeout=0)


class FakeTpos:
    def __init__(self, clock: Any, ping_interval: float = 25.0, ping_timeout: float = 20.0) -> None:
        self.clock = clock
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.pinging = True
        self.silent = False  # record frames, answer no CONNECT
        self.rejected_tokens: set[str] = set()
        #: Refuse with the token itself as the reason, as some upstreams echo it.
        self.echo_refused_token = False
        self.sessions: list[FakeTposSession] = []  # open ones, oldest first
        self.closed = 0
        self.sids = itertools.count(1)
        self.factory = _FakeTposFactory(self)

    @property
    def connected(self) -> list[FakeTposSession]:
        return [s for s in self.sessions if s.connected]

    def emit(self, event: str, payload: Any) -> None:
        for session in self.connected:
            session.emit(event, payload)

    def send_raw(self, frame: str | bytes) -> None:
        for session in self.connected:
            if isinstance(frame, bytes):
                session.sendMessage(frame, isBinary=True)
            else:
                session.send(frame)
