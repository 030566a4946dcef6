"""
The Autobahn client base that every upstream protocol builds on.
"""

from __future__ import annotations

from typing import Mapping, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import txaio
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from .status import UpstreamStatus
from .watchdog import InactivityWatchdog

# Upstream payloads are chat messages and order records; anything near this
# size is abuse, and Autobahn would otherwise buffer it without limit.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024

BROWSER_USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)


def with_query(url: str, params: Mapping[str, str]) -> str:
    """``url`` with ``params`` in its query, replacing any earlier values of theirs."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in params]
    query.extend(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


class SessionObserver(Protocol):
    """What an upstream connection reports to the session it belongs to (the
    :class:`~n2gateway.upstream.service.UpstreamService` that holds it open), and reads of it."""

    #: The provider's name, for log lines.
    provider: str
    status: UpstreamStatus

    def attach(self, protocol: UpstreamProtocol) -> None:
        """A connection was made."""

    def detach(self, protocol: UpstreamProtocol, reason: Failure) -> None:
        """That connection ended."""

    def session_established(self) -> None:
        """The upstream accepted the session (a join, a namespace connect)."""

    def login_needed(self, reason: str) -> None:
        """The upstream refused the credentials."""


class UpstreamClientFactory(WebSocketClientFactory):
    """
    Builds the protocols of one upstream session. ``observer`` is told what
    they do; the session that uses this factory registers itself there.
    """

    observer: SessionObserver
    # No "Starting/Stopping factory <... at 0x...>" per connection: the session
    # logs what an operator needs (see UpstreamService).
    noisy = False

    def __init__(
        self,
        url: str,
        *,
        reactor: IReactorTime,
        origin: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(
            url,
            reactor=reactor,
            origin=origin,
            useragent=BROWSER_USER_AGENT,
            headers=headers or {},
        )
        self.clock = reactor
        # Autobahn's own timers run on txaio's global reactor, out of reach of
        # an injected clock and of stop(); the inactivity watchdog, which starts
        # before the opening handshake, covers what they would.
        self.setProtocolOptions(
            openHandshakeTimeout=0,
            closeHandshakeTimeout=0,
            serverConnectionDropTimeout=0,
            autoPingInterval=0,
            maxFramePayloadSize=MAX_MESSAGE_BYTES,
            maxMessagePayloadSize=MAX_MESSAGE_BYTES,
        )


class UpstreamProtocol(WebSocketClientProtocol):
    """
    One upstream connection: feeds an inactivity watchdog with every byte
    received and tells the session when the connection ends.

    Subclasses set ``silence_timeout``, the seconds their upstream may stay
    completely quiet before the connection counts as dead. A protocol whose
    peer proves itself alive with one packet in particular (an Engine.IO
    ping) sets ``any_data_keeps_alive`` to False and feeds ``watchdog`` itself.
    """

    # Autobahn logs the whole opening request, Cookie header included, at
    # debug level through self.log: pinning this logger at "info" keeps it
    # out of every log whatever the global level.
    log = txaio.make_logger(level="info")

    factory: UpstreamClientFactory
    silence_timeout: float
    any_data_keeps_alive = True
    # Why we ended the connection ourselves, for the status (short, no secrets).
    close_reason: str | None = None

    @property
    def session(self) -> SessionObserver:
        return self.factory.observer

    @property
    def clock(self) -> IReactorTime:
        return self.factory.clock

    def connectionMade(self) -> None:
        self.watchdog = InactivityWatchdog(
            self.clock, self.silence_timeout, self._silence_detected
        )
        self.watchdog.touch()
        self.session.attach(self)
        super().connectionMade()

    def dataReceived(self, data: bytes) -> None:
        if self.any_data_keeps_alive:
            self.watchdog.touch()
        super().dataReceived(data)

    def connectionLost(self, reason: Failure) -> None:
        self.watchdog.stop()
        super().connectionLost(reason)
        self.session.detach(self, reason)

    def _silence_detected(self) -> None:
        # The session's retry line says "silence timeout": one line per drop.
        self.drop("silence timeout")

    def drop(self, reason: str) -> None:
        """End the connection now, recording a short reason for the status."""
        self.close_reason = reason
        self.transport.abortConnection()

    def close(self) -> None:
        """Start a clean WebSocket close if the session is open."""
        if self.state == self.STATE_OPEN:
            self.sendClose(code=1000)
