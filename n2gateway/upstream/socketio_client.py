"""
Socket.IO v4 client (Engine.IO 4, WebSocket transport only) on Autobahn:
connects one namespace, answers the server's pings, emits what the upstream
expects once connected and hands every event to a callback.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from twisted.internet.interfaces import IReactorTime

from n2gateway.codecs.engineio import (
    EnginePacket,
    EngineType,
    PacketError,
    decode_engine,
    decode_open,
    encode_engine,
)
from n2gateway.codecs.socketio import (
    SocketPacket,
    SocketType,
    decode_socket,
    encode_event_frame,
    encode_message,
)

from .status import safe_reason
from .websocket import UpstreamClientFactory, UpstreamProtocol, with_query

ENGINE_IO_VERSION = "4"

# (event name, payload)
EventCallback = Callable[[str, Any], None]


def socketio_url(url: str, query: dict[str, str]) -> str:
    """``url`` with ``query`` and the Engine.IO version and transport."""
    return with_query(url, {**query, "EIO": ENGINE_IO_VERSION, "transport": "websocket"})


@dataclass(frozen=True)
class NamespaceSpec:
    """A namespace to connect, its CONNECT payload and the events to emit once connected."""

    name: str
    auth: dict[str, Any] = field(repr=False)  # holds the token
    after_connect: tuple[tuple[str, Any], ...] = field(default=(), repr=False)


class SocketIOClientProtocol(UpstreamProtocol):
    """
    Until the namespace CONNECT is acknowledged the watchdog bounds the
    whole handshake; from then on only a server ping resets it, to
    pingInterval + pingTimeout as the server announced them (the client
    never pings: in Engine.IO 4 the server does).
    """

    factory: SocketIOClientFactory

    silence_timeout = 20.0
    any_data_keeps_alive = False

    def connectionMade(self) -> None:
        self._liveness: float | None = None  # pingInterval + pingTimeout, once open
        self._established = False
        self._binary_warned = False
        # What this connection authenticates with (the headers go out now, the
        # namespace CONNECT once open), even if a renewal replaces them meanwhile.
        self._namespace = self.factory.namespace
        super().connectionMade()

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if isBinary:
            self._skip_binary("a binary frame")
            return
        text = payload.decode("utf-8")  # Autobahn has validated text frames as UTF-8
        try:
            packet = decode_engine(text)
        except PacketError as e:
            self._skip_invalid(len(payload), e)
            return
        if packet.type == EngineType.PING:
            # Answered before anything else: a late pong is a dropped client.
            self._send(encode_engine(EnginePacket(EngineType.PONG, packet.data)))
            if self._established:
                self.watchdog.touch()
        elif packet.type == EngineType.MESSAGE:
            self._socket_packet(packet.data, len(payload))
        elif packet.type == EngineType.OPEN:
            self._opened(packet.data, len(payload))
        elif packet.type == EngineType.CLOSE:
            self.drop("closed by server")

    def _send(self, frame: str) -> None:
        # A ping may still arrive while our close is under way: nothing to answer then.
        if self.state == self.STATE_OPEN:
            self.sendMessage(frame.encode("utf-8"), isBinary=False)

    def _skip_invalid(self, size: int, error: PacketError) -> None:
        # The reason only: a quoted frame could carry our token back.
        self.log.warn(
            "{provider}: skipped an invalid packet of {size} bytes: {why}",
            provider=self.session.provider,
            size=size,
            why=error.reason,
        )

    def _skip_binary(self, what: str) -> None:
        if not self._binary_warned:
            self._binary_warned = True
            self.log.warn(
                "{provider}: skipped {what}; binary attachments are not supported "
                "and are skipped without further warnings on this connection",
                provider=self.session.provider,
                what=what,
            )

    # Engine.IO handshake, then the namespace.

    def _opened(self, data: str, size: int) -> None:
        if self._liveness is not None:
            return  # one handshake per connection; a repeat changes nothing
        try:
            info = decode_open(data)
        except PacketError as e:
            self._skip_invalid(size, e)
            return
        self._liveness = info.ping_interval + info.ping_timeout
        namespace = self._namespace
        self._send(encode_message(SocketPacket(SocketType.CONNECT, namespace.name, namespace.auth)))

    def _socket_packet(self, data: str, size: int) -> None:
        try:
            packet = decode_socket(data)
        except PacketError as e:
            self._skip_invalid(size, e)
            return
        if packet.type in (SocketType.BINARY_EVENT, SocketType.BINARY_ACK):
            self._skip_binary(f"a {packet.type.name} packet")
            return
        if packet.namespace != self.factory.namespace.name:
            self.log.info(
                "{provider}: skipped a {type} packet for namespace {namespace}",
                provider=self.session.provider,
                type=packet.type.name,
                namespace=packet.namespace,
            )
            return
        if packet.type == SocketType.EVENT:
            self._event(packet)
        elif packet.type == SocketType.CONNECT:
            self._connected()
        elif packet.type == SocketType.CONNECT_ERROR:
            message = packet.data.get("message") if isinstance(packet.data, dict) else packet.data
            self._refused(f"connect refused: {safe_reason(message, 'refused')}")
        elif packet.type == SocketType.DISCONNECT:
            self.drop("disconnected by server")

    def _refused(self, reason: str) -> None:
        # Credentials renewed since this connection began, or about to be:
        # reconnect (with them) rather than give up.
        if self._namespace is not self.factory.namespace or self.factory.token_refused():
            self.log.info("{provider}: {reason}; reconnecting with a renewed token",
                          provider=self.session.provider, reason=self.session.status.shown(reason))
            self.drop(reason)
        else:
            self.session.login_needed(reason)

    def _connected(self) -> None:
        if self._established or self._liveness is None:
            return
        self._established = True
        self.watchdog.retime(self._liveness)
        namespace = self._namespace
        for event, payload in namespace.after_connect:
            self._send(encode_event_frame(event, payload, namespace=namespace.name))
        self.session.session_established()

    def _event(self, packet: SocketPacket) -> None:
        name, *args = packet.data
        if packet.id is not None:
            # The server waits on this acknowledgement; it carries nothing.
            self._send(encode_message(SocketPacket(SocketType.ACK, packet.namespace, [], packet.id)))
        try:
            self.factory.on_event(name, args[0] if args else None)
        except Exception:
            self.log.failure(
                "{provider}: event handler failed on {event}",
                provider=self.session.provider,
                event=name,
            )

    # Ending.

    def _silence_detected(self) -> None:
        if self._established:
            reason, what = "ping timeout", "no ping from the server"
        else:
            reason, what = "handshake timeout", "no namespace connect"
        self.log.warn(
            "{provider}: {what} for {seconds} s, dropping the connection",
            provider=self.session.provider,
            what=what,
            seconds=self._liveness if self._established else self.silence_timeout,
        )
        self.drop(reason)

    def close(self) -> None:
        """Leave the namespace and the Engine.IO session, then close the WebSocket."""
        if self.state == self.STATE_OPEN and self._liveness is not None:
            self._send(encode_message(SocketPacket(SocketType.DISCONNECT, self._namespace.name)))
            self._send(encode_engine(EnginePacket(EngineType.CLOSE)))
        super().close()


class SocketIOClientFactory(UpstreamClientFactory):

    protocol = SocketIOClientProtocol

    def __init__(
        self,
        url: str,
        *,
        reactor: IReactorTime,
        namespace: NamespaceSpec,
        on_event: EventCallback,
        origin: str,
        headers: dict[str, str] | None = None,
        token_refused: Callable[[], bool] = lambda: False,
    ) -> None:
        """
        ``token_refused()`` is asked when the server refuses the namespace
        CONNECT: True if a renewed token is on its way (the connection is
        dropped and retried), False if the credentials need a new login.
        ``namespace`` and ``headers`` may be replaced for the next connection.
        """
        super().__init__(url, reactor=reactor, origin=origin, headers=headers)
        self.namespace = namespace
        self.on_event = on_event
        self.token_refused = token_refused
