"""
One long-lived upstream WebSocket session, reconnected with backoff.
"""

from __future__ import annotations

from typing import Any

from autobahn.websocket.util import parse_url
from twisted.application.internet import ClientService
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.logger import ILogObserver, LogEvent, LogLevel, Logger, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import implementer

from .backoff import BackoffPolicy, upstream_backoff
from .status import UpstreamStatus
from .websocket import UpstreamClientFactory, UpstreamProtocol


def endpoint_for_url(reactor: Any, url: str) -> IStreamClientEndpoint:
    """A TCP endpoint for a ``ws://`` URL, wrapped in TLS for ``wss://``."""
    is_secure, host, port, _, _, _ = parse_url(url)
    endpoint: IStreamClientEndpoint = HostnameEndpoint(reactor, host, port)
    if is_secure:
        from twisted.internet.ssl import optionsForClientTLS

        endpoint = wrapClientTLS(optionsForClientTLS(host), endpoint)
    return endpoint


@implementer(ILogObserver)
def _warnings_only(event: LogEvent) -> None:
    if event.get("log_level", LogLevel.info) >= LogLevel.warn:
        globalLogPublisher(event)


class _QuietClientService(ClientService):
    """
    ClientService without its info line per retry ("Scheduling retry ... to
    connect <HostnameEndpoint ...>"): the session logs one line of its own,
    with the provider and the reason.
    """

    _log = Logger(observer=_warnings_only)


@implementer(IStreamClientEndpoint)
class _ReportingEndpoint:
    """Passes connection failures to the status before ClientService retries."""

    def __init__(self, endpoint: IStreamClientEndpoint, status: UpstreamStatus):
        self._endpoint = endpoint
        self._status = status

    def connect(self, factory: Any) -> Deferred[Any]:
        def report(failure: Failure) -> Failure:
            if not failure.check(CancelledError):
                self._status.error(failure.type.__name__)
            return failure

        return self._endpoint.connect(factory).addErrback(report)

    def __repr__(self) -> str:
        return repr(self._endpoint)


class UpstreamService(Service):
    """
    Holds one upstream session open through ``ClientService``, reconnecting
    forever with :func:`upstream_backoff` until stopped or until the protocol says
    the credentials need a new login.

    ``ClientService`` counts failures since the last TCP connection; the
    retry delay here counts since the last *session* (a join, a namespace
    connect: the protocol calls :meth:`session_established`), so an upstream that
    accepts sockets and then drops them still backs off. For the same reason
    no ``prepareConnection`` gate is used: in the installed Twisted a
    connection lost while one is pending hits a missing transition
    (``NoTransition`` on ``_clientDisconnected``); the handshake is instead
    bounded by the protocol's inactivity watchdog, which starts with the TCP
    connection.

    To replace credentials, stop this service and start a new one.
    """

    log = Logger()

    def __init__(
        self,
        *,
        provider: str,
        factory: UpstreamClientFactory,
        reactor: Any,
        status: UpstreamStatus,
        endpoint: IStreamClientEndpoint | None = None,
        backoff: BackoffPolicy | None = None,
    ) -> None:
        self.provider = provider
        self.status = status
        self._backoff = backoff or upstream_backoff()
        self._protocol: UpstreamProtocol | None = None
        factory.observer = self
        self._client = _QuietClientService(
            _ReportingEndpoint(endpoint or endpoint_for_url(reactor, factory.url), status),
            factory,
            retryPolicy=self._next_delay,
            clock=reactor,
        )

    def startService(self) -> None:
        super().startService()
        self._client.startService()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return Deferred.fromCoroutine(self._close())

    def start(self) -> None:
        """Connect, and reconnect with backoff until stopped (:meth:`Source.start`)."""
        self.startService()

    async def stop(self) -> None:
        """Close the session cleanly and cancel any pending reconnect."""
        await self.stopService()

    async def _close(self) -> None:
        if self._protocol is not None:
            self._protocol.close()
        await self._client.stopService()

    def _next_delay(self, failures_since_connect: int) -> float:
        attempt = self.status.count_attempt()
        delay = self._backoff(attempt - 1)
        self.log.warn(
            "{provider}: upstream down ({why}); reconnecting in {delay:.1f} s, attempt {attempt}",
            provider=self.provider,
            why=self.status.last_error,
            delay=delay,
            attempt=attempt,
        )
        return delay

    # SessionObserver: called by the protocol.

    def attach(self, protocol: UpstreamProtocol) -> None:
        self._protocol = protocol

    def detach(self, protocol: UpstreamProtocol, reason: Failure) -> None:
        if self._protocol is protocol:
            self._protocol = None
        if not self.running or self.status.needs_login:
            self.status.disconnected()
        else:
            self.status.disconnected(protocol.close_reason or reason.type.__name__)

    def session_established(self) -> None:
        self.log.info("{provider}: session established", provider=self.provider)
        self.status.session_established()

    def login_needed(self, reason: str) -> None:
        """The upstream refused the credentials: stop using them."""
        self.status.login_needed(reason)
        self.log.warn(
            "{provider}: credentials refused ({reason}); not reconnecting until "
            "started with new ones",
            provider=self.provider,
            reason=self.status.last_error,
        )
        Deferred.fromCoroutine(self._close())
