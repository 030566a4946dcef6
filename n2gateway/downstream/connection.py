"""What every downstream WebSocket connection shares, whatever its protocol: the
bounded outbox under everything it writes, a ping allowance, a hub session that
ends when its token does (unless refreshed in band), quiet logging, and as little
memory as Autobahn lets an idle connection keep.

An idle connection is mostly Autobahn's protocol object: left alone it holds some
90 attributes in a dictionary sized for 170, the opening handshake's request,
headers and answer, and an empty send queue (a ``deque``, 760 bytes) that only
chopped or synchronous writes use, which the gateway never makes. The factory's
options live on a protocol class of its own instead of on every connection, the
handshake's leftovers go once the connection is open, and the queue is a list.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

import txaio
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.protocol import PreparedMessage

from n2gateway.downstream.allowance import Allowance
from n2gateway.downstream.auth import Identity
from n2gateway.downstream.close_codes import (CLOSE_SLOW_CONSUMER, CLOSE_TOO_MANY_PINGS,
                                              CLOSE_UNAUTHORIZED)
from n2gateway.downstream.outbox import DEFAULT_LIMIT, Outbox
from n2gateway.downstream.write_now import write_now
from n2gateway.session import Session

TOKEN_EXPIRED = "token expired"
#: A slow consumer reads its backlog before it reaches the 4008 close frame: it gets
#: longer than the usual close handshake to see why it was closed.
SLOW_CLOSE_TIMEOUT = 10
#: WebSocket pings a client may send: a burst, then this many per second. Browsers
#: send none; keep-alive pings of other clients come every few seconds at most.
PING_BURST = 20
PING_RATE = 2.0
TOO_MANY_PINGS = f"too many pings: at most {PING_RATE:g} per second"
#: What Autobahn keeps of the opening handshake and never reads once it is done.
HANDSHAKE_LEFTOVERS = (
    "http_headers", "http_request_data", "http_response_data", "http_status_line",
    "http_request_uri", "http_request_path", "http_request_params", "http_request_host",
    "websocket_origin", "websocket_protocols", "websocket_extensions", "_wskey")


class SendQueue(list):
    """Autobahn's queue of chopped and synchronous writes, as a list: empty (always,
    here) it costs 56 bytes where a ``deque`` costs 760."""

    __slots__ = ()

    def popleft(self) -> Any:
        return self.pop(0)


class DownstreamProtocol(WebSocketServerProtocol):
    # Autobahn logs the whole opening request at debug level, and its query string
    # carries the client's token (/ws?token=...): this logger never goes below info.
    log = txaio.make_logger(level="info")

    #: Bytes a connection may have waiting for its client before it is closed (4008).
    outbox_limit = DEFAULT_LIMIT
    session: Session | None = None
    outbox: Outbox | None = None
    _pings: Allowance | None = None  # made at the first ping: browsers send none
    _expiry = None  # the call that ends the session at the token's exp

    def _connectionMade(self) -> None:
        super()._connectionMade()
        self.send_queue = SendQueue()

    def _onOpen(self) -> None:
        super()._onOpen()
        for name in HANDSHAKE_LEFTOVERS:
            self.__dict__.pop(name, None)
        # A dictionary never shrinks: a copy is sized for what is left, with room to
        # spare for what a session adds later.
        self.__dict__ = dict(self.__dict__)

    def onOpen(self) -> None:
        """From here on everything written to this connection, authenticated or not,
        counts against its outbox's bound."""
        self.outbox = Outbox(self.send_frames, self.close_session, self.outbox_limit)
        # twisted.web's channel was the transport's producer until the WebSocket took
        # the connection over; the outbox is now.
        self.transport.unregisterProducer()
        self.outbox.attach(self.transport)

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        # Every write of Autobahn's own (pongs, close frames, handshake answers) and of
        # the protocols' control packets passes here.
        super().sendData(data, sync, chopsize)
        if self.outbox is not None:
            self.outbox.wrote(len(data))

    def sendCloseFrame(self, code: int | None = None, reasonUtf8: bytes | None = None,
                       isReply: bool = False) -> None:
        # Every close the gateway starts passes here, Autobahn's own (1009) included;
        # a reply to the client's close is not the gateway's doing.
        if not isReply and code is not None and self.state == self.STATE_OPEN:
            self.factory.closes[code] += 1
        super().sendCloseFrame(code, reasonUtf8, isReply)

    def onPing(self, payload: bytes) -> None:
        if self._pings is None:
            self._pings = Allowance(self.factory.reactor, PING_RATE, PING_BURST)
        if not self._pings.take():
            self.close_session(CLOSE_TOO_MANY_PINGS, TOO_MANY_PINGS)
            return
        super().onPing(payload)

    def start_session(self, identity: Identity) -> Session:
        """Attach to the hub as ``identity``, already in its own ``user:<sub>`` room."""
        self.session = self.factory.hub.connect(identity, self.factory.wire, self.outbox)
        self.session.join(identity.own_room)
        self._expire_at(identity.expires)
        return self.session

    def refresh(self, token: object) -> tuple[Identity, list[str]]:
        """Continue the session with ``token`` (same ``sub``): its ``exp`` replaces the
        old one and rooms it does not allow are left. Returns the new identity and the
        rooms left; raises ``AuthError`` (the session goes on unchanged)."""
        identity = self.factory.authenticator.refresh(self.session.identity, token)
        left = self.session.reauthorize(identity)
        self._expire_at(identity.expires)
        return identity, left

    def _expire_at(self, expires: float | None) -> None:
        self._cancel_expiry()
        if expires is not None:
            clock = self.factory.reactor
            self._expiry = clock.callLater(max(0.0, expires - clock.seconds()),
                                           self.close_session, CLOSE_UNAUTHORIZED, TOKEN_EXPIRED)

    def _cancel_expiry(self) -> None:
        if self._expiry is not None and self._expiry.active():
            self._expiry.cancel()
        self._expiry = None

    def send_frames(self, frames: Sequence[PreparedMessage]) -> None:
        """The outbox's way out: ``frames`` in one write, straight to the socket when
        nothing is queued before them.

        The broadcast hot path, once per receiver and batch of events. Autobahn's
        ``sendPreparedMessage`` builds the (colourised) arguments of a debug log line
        on every call, debug on or not, and leaves the bytes to the reactor's next
        pass. Every endpoint refuses compression, so the prepared bytes are what it
        would write.
        """
        if self._perMessageCompress is None and not self.send_queue:
            write_now(self.transport, b"".join(frame.payloadHybi for frame in frames))
        else:
            for frame in frames:
                self.sendPreparedMessage(frame)

    def close_session(self, code: int, reason: str) -> None:
        """Close with ``code``: out of the hub at once, so a closing client gets no more
        events and no longer counts, however long its close handshake takes."""
        if code == CLOSE_SLOW_CONSUMER:
            self.closeHandshakeTimeout = SLOW_CLOSE_TIMEOUT
        self.end_session()
        self.sendClose(code, reason)

    def end_session(self) -> None:
        self._cancel_expiry()
        if self.session is not None:
            self.session.close()
            self.session = None

    def onClose(self, wasClean: bool, code: int, reason: str) -> None:
        self.end_session()


class DownstreamFactory(WebSocketServerFactory):
    """Builds its connections from a subclass of ``protocol`` that holds this
    factory's protocol options: Autobahn copies an option onto each connection only
    when its class lacks it."""

    _configured: tuple[type, dict[str, Any], type] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Close frames the gateway sent its clients, by code (see ``close_codes``).
        self.closes: Counter[int] = Counter()

    @property
    def slow_closed(self) -> int:
        """Clients closed as too slow to follow (4008)."""
        return self.closes[CLOSE_SLOW_CONSUMER]

    def buildProtocol(self, addr) -> WebSocketServerProtocol:
        base = self.protocol
        options = {name: getattr(self, name) for name in base.CONFIG_ATTRS}
        if self._configured is None or self._configured[:2] != (base, options):
            # Built again when the options change, as Autobahn would copy them anew. An
            # option that is a function stays one: not a method of the protocol.
            attributes = {name: staticmethod(value) if hasattr(type(value), "__get__") else value
                          for name, value in options.items()}
            configured = type(base.__name__, (base,), {
                **attributes, "__module__": base.__module__, "__qualname__": base.__qualname__})
            self._configured = (base, options, configured)
        protocol = self._configured[2]()
        protocol.factory = self
        return protocol
