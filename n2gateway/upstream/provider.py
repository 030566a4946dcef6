"""
A provider: one upstream client type (Pancake, TPOS, ... as examples), its
stored credentials and the one live :class:`Source` they open.

A plugin subclasses :class:`Provider` with four small methods (credentials from a
stored row and back, the source to build, the status fields to add) and hands
it to :class:`n2gateway.provider_plugin.ProviderPlugin`, which registers it as a
source (hook ``n2gateway_sources``): the provider runs on one gateway of those
sharing the database, connects on its own from the active stored row when it
starts there, and ``start``/``stop`` (the control routes) replace or end the
session. One session per provider at a time: the upstream never sees two
sessions with the same credentials.

``start`` and ``stop`` work on every gateway: they change the stored row, which
announces itself, and the gateway holding the provider follows the row
(:meth:`Provider.follow_stored`).

Every provider shows when its token expires (a JWT's ``exp`` unless it says
otherwise) and warns before it does. A provider that can get tokens by itself
opts into :class:`TokenRenewal` with :meth:`Provider.renews` and :meth:`Provider.renew`: it is
renewed before expiry and when the upstream refuses it, saved to the row, and
handed to the session for its next connect (a live socket is not dropped).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Generic, Mapping, TypeVar

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, DeferredLock
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from n2gateway.credentials import CredentialStore, StoredCredentials
from n2gateway.db import DatabaseUnavailable

from .backoff import BackoffPolicy, upstream_backoff
from .renewal import DEFAULT_MARGIN, DEFAULT_TIMEOUT, TokenRenewal
from .source import Source
from .status import UpstreamStatus, secrets_of
from .token_expiry import DEFAULT_WARNING, ExpiryWarning, TokenExpiry, expiry_status, jwt_expiry

C = TypeVar("C")
T = TypeVar("T")


class BadCredentials(ValueError):
    """Stored credentials a provider cannot use; the message names the problem,
    never a secret."""


@dataclass(frozen=True)
class ProviderStatus:
    """One provider's state: ``/metrics`` reads its fields, and ``as_json`` is the one
    JSON form of it (its status route, ``/health``). Never a secret: ``session``
    withholds them, ``own`` is the provider's ``describe``."""

    session: UpstreamStatus
    #: This gateway holds the provider (of the gateways on one database, one does).
    held: bool
    has_token: bool
    expiry: TokenExpiry
    #: Of the channels that join one by one (Pancake's pages), how many are not joined
    #: now; None for a provider whose session has no such channels.
    channels_not_joined: int | None
    #: The provider's own fields (``Provider.describe``).
    own: Mapping[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {**self.session.as_dict(), "held": self.held, "hasToken": self.has_token,
                **self.expiry.as_json(), **self.own}


class Provider(Service, Generic[C]):
    """
    Owns the current :class:`Source` of one client type.

    Every change of session (auto-connect, ``start``, ``stop``, service stop) runs
    under one lock, so a replacement always stops the old session before the new
    one connects.
    """

    log = Logger()
    #: The row's ``client_type``, the service's name and the leadership source.
    client_type: str
    #: How long before a token's expiry the status and the log warn about it.
    token_warning = DEFAULT_WARNING
    #: For a provider that renews: how long before expiry, and for how long at most.
    renewal_margin = DEFAULT_MARGIN
    renewal_timeout = DEFAULT_TIMEOUT

    def __init__(
        self,
        store: CredentialStore,
        reactor: Any,
        *,
        url: str,
        on_event: Callable[..., None],
        endpoint: IStreamClientEndpoint | None = None,
        backoff: BackoffPolicy | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """
        ``url`` is the upstream's, ``on_event`` the callback every session
        built by :meth:`build_session` reports its events to, and ``endpoint`` (for
        tests) where those sessions connect instead of ``url``'s host.
        """
        self.name = self.client_type
        self.url = url
        self.on_event = on_event
        self.endpoint = endpoint
        self.backoff = backoff or upstream_backoff()
        self._store = store
        self.reactor = reactor
        self._wall_clock = wall_clock
        self._lock = DeferredLock()
        self._credentials: C | None = None
        self._session: Source | None = None
        self._status = UpstreamStatus(wall_clock)
        # Bumped by every start and stop, so a stored row read before one of them
        # is not connected after it.
        self._generation = 0
        # Reads of the stored row under way, cancelled when the service stops.
        self._reads: set[Deferred[Any]] = set()
        self._renewal: TokenRenewal[C] | None = None
        # The warning period is read at each check: the plugin sets it after __init__.
        self._expiry = ExpiryWarning(self.client_type, reactor, wall_clock, self._expires_now,
                                     lambda: self.token_warning)

    # What a plugin provides.

    def credentials_from_row(self, row: StoredCredentials) -> C:
        """Usable credentials from a stored row, or :class:`BadCredentials`."""
        raise NotImplementedError

    def row_for(self, credentials: C) -> dict[str, Any]:
        """Keyword arguments of :meth:`CredentialStore.save` for ``credentials``."""
        raise NotImplementedError

    def build_session(self, credentials: C, status: UpstreamStatus) -> Source:
        """A new, unstarted session for ``credentials``, reporting to ``status``."""
        raise NotImplementedError

    def describe(self, credentials: C | None) -> dict[str, Any]:
        """Status fields of the provider's own (never a secret)."""
        raise NotImplementedError

    # What a plugin may provide.

    def channel_topics(self, credentials: C | None) -> list[str] | None:
        """The topics of the channels a session for ``credentials`` joins one by one
        (each may be refused alone, as Pancake's pages): ``/metrics`` counts those not
        joined. None (the default) for a session without such channels."""
        return None

    def token_of(self, credentials: C) -> str | None:
        """The upstream token in ``credentials`` (by default their ``token``)."""
        return getattr(credentials, "token", None)

    def token_expires_at(self, credentials: C) -> float | None:
        """When the token of ``credentials`` expires: by default a JWT's ``exp``."""
        return jwt_expiry(self.token_of(credentials))

    def renews(self, credentials: C) -> bool:
        """Whether the gateway can get new tokens for ``credentials`` itself."""
        return False

    async def renew(self, credentials: C) -> C:
        """``credentials`` with a new token, or ``GrantFailed`` / ``GrantRefused``."""
        raise NotImplementedError

    def use_renewed(self, session: Source, credentials: C) -> None:
        """Let the running ``session`` connect with ``credentials`` from its next connect."""

    def renewal_status(self) -> dict[str, Any]:
        """``renewals`` and ``lastRenewal``, for the status of a provider that renews."""
        renewal = self._renewal
        return renewal.status() if renewal else {"renewals": 0, "lastRenewal": None}

    def token_refused(self) -> bool:
        """
        The upstream refused the session's token: True if a renewal brings
        another (the session reconnects meanwhile), False if a person must log in.
        """
        return self._renewal is not None and self._renewal.upstream_refused()

    # Control.

    async def start(self, credentials: C) -> bool:
        """
        Save ``credentials`` as the active ones and connect with them at once,
        replacing a running session. If saving fails nothing changes. False if
        this gateway does not hold the provider: the one that does (now or
        next) connects with the saved row.
        """
        async with self._lock:
            await self._store.save(self.client_type, **self.row_for(credentials))
            if not self.running:
                return False
            self._generation += 1
            await self._disconnect()
            self._connect(credentials, "started")
            return True

    async def stop(self) -> None:
        """Deactivate the stored credentials and end the session (wherever it runs)."""
        async with self._lock:
            await self._store.deactivate(self.client_type)
            self._generation += 1
            await self._end()
            self.log.info("{provider}: stopped", provider=self.client_type)

    def follow_stored(self, *, force: bool = True) -> None:
        """
        The stored row changed through another gateway (or may have, while
        this one could not hear): if this gateway holds the provider, make the
        session match the row. ``force`` reconnects even when the credentials
        are the same, as a ``start`` does; otherwise an unchanged row is left be.
        """
        if not self.running:
            return
        if not force and self._reads:
            return  # a read under way brings the session in line with the row anyway
        self._generation += 1
        self._read_stored("stored credentials changed on another gateway" if force
                          else "stored credentials differ from the session's", force)

    def status(self) -> ProviderStatus:
        topics = self.channel_topics(self._credentials)
        channels = self._status.channels
        return ProviderStatus(
            session=self._status,
            held=bool(self.running),
            has_token=self._credentials is not None,
            expiry=expiry_status(self._expires_now(), self._wall_clock(), self.token_warning,
                                 self._renewal is not None),
            channels_not_joined=None if topics is None else sum(
                topic not in channels or not channels[topic].joined for topic in topics),
            own=self.describe(self._credentials))

    # Service.

    def startService(self) -> None:
        super().startService()
        self._read_stored("auto-connect from stored credentials", force=True)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        for read in list(self._reads):
            read.cancel()
        return Deferred.fromCoroutine(self._locked(self._end))

    # Internals.

    async def _locked(self, work: Callable[[], Any]) -> None:
        async with self._lock:
            await work()

    def _read_stored(self, why: str, force: bool) -> None:
        generation = self._generation
        read = Deferred.fromCoroutine(
            self._retrying(lambda: self._store.load(self.client_type)))
        self._reads.add(read)
        read.addBoth(lambda result: (self._reads.discard(read), result)[1])
        read.addCallback(lambda row: Deferred.fromCoroutine(
            self._follow(row, generation, why, force)))
        read.addErrback(self._read_failed)

    async def _follow(self, row: StoredCredentials | None, generation: int, why: str,
                      force: bool) -> None:
        try:
            credentials, unusable = self._usable(row), None
        except BadCredentials as e:
            credentials, unusable = None, e
        async with self._lock:
            # A start, a stop or a newer read since this one began wins.
            if generation != self._generation or not self.running:
                return
            if credentials == self._credentials and unusable is None and not force:
                return
            await self._end()
            if unusable is not None:
                self.log.error("{provider}: stored credentials skipped: {why}",
                               provider=self.client_type, why=str(unusable))
                self._status.error(f"stored credentials unusable: {unusable}")
            elif credentials is None:
                self.log.info("{provider}: no active stored credentials; waiting for a start",
                              provider=self.client_type)
            else:
                self._connect(credentials, why)

    def _usable(self, row: StoredCredentials | None) -> C | None:
        """The credentials of an active row (:class:`BadCredentials` if unusable), else None."""
        if row is None or not row.is_active:
            return None
        return self.credentials_from_row(row)

    async def _retrying(self, read: Callable[[], Any]) -> Any:
        """``await read()``, retried with backoff while the database is away."""
        attempt = 0
        while True:
            try:
                return await read()
            except DatabaseUnavailable as e:
                delay = self.backoff(attempt)
                attempt += 1
                self.log.warn(
                    "{provider}: cannot read stored credentials ({why}); retrying in {delay:.1f} s",
                    provider=self.client_type, why=str(e), delay=delay)
                await deferLater(self.reactor, delay)

    def _read_failed(self, failure: Failure) -> None:
        if not failure.check(CancelledError):
            self.log.failure("{provider}: following the stored credentials failed", failure,
                             provider=self.client_type)

    def _expires_now(self) -> float | None:
        credentials = self._credentials
        return None if credentials is None else self.token_expires_at(credentials)

    def _connect(self, credentials: C, why: str) -> None:
        self._credentials = credentials
        self._status = UpstreamStatus(self._wall_clock, secrets=secrets_of(credentials))
        if self.renews(credentials):
            self._renewal = self._new_renewal(credentials)
            expires = self.token_expires_at(credentials)
            if not self.token_of(credentials) or (
                    expires is not None and expires <= self._wall_clock()):
                self.log.info("{provider}: getting a token before connecting ({why})",
                              provider=self.client_type, why=why)
                self._renewal.renew_now("no valid token yet")
                return  # the session begins once the renewal brings one
            self._renewal.schedule()
        elif self.token_expires_at(credentials) is not None:
            self._expiry.start()  # nobody renews this token: warn before it runs out
        self._begin(credentials, why)

    def _begin(self, credentials: C, why: str) -> None:
        self._session = self.build_session(credentials, self._status)
        self.log.info("{provider}: connecting ({why})", provider=self.client_type, why=why)
        self._session.start()

    def _new_renewal(self, credentials: C) -> TokenRenewal[C]:
        renewal: TokenRenewal[C]

        def renewed(new: C) -> None:
            Deferred.fromCoroutine(self._renewed(renewal, new)).addErrback(
                lambda failure: self.log.failure("{provider}: using a renewed token failed",
                                                 failure, provider=self.client_type))

        def refused(reason: str) -> None:
            if renewal is self._renewal:
                self._refused(f"token renewal refused: {reason}")

        renewal = TokenRenewal(
            credentials, provider=self.client_type, clock=self.reactor,
            wall_clock=self._wall_clock, renew=self.renew, expires_at=self.token_expires_at,
            renewed=renewed, refused=refused, margin=self.renewal_margin,
            timeout=self.renewal_timeout, backoff=self.backoff)
        return renewal

    async def _renewed(self, renewal: TokenRenewal[C], credentials: C) -> None:
        async with self._lock:
            if renewal is not self._renewal:
                return  # a start or a stop came first
            self._credentials = credentials
            self._status.know_secrets(secrets_of(credentials))
            if self._session is None:
                self._begin(credentials, "token obtained")
            else:
                self.use_renewed(self._session, credentials)
            row = self.row_for(credentials)
            try:
                saved = await self._store.save_renewed(self.client_type, row["token"],
                                                       row.get("extra"))
            except DatabaseUnavailable as e:
                self.log.warn("{provider}: renewed token not saved ({why}); a restart will "
                              "renew again", provider=self.client_type, why=str(e))
                return
            if not saved:
                self.log.info("{provider}: renewed token not saved: the row was deactivated",
                              provider=self.client_type)

    def _refused(self, reason: str) -> None:
        if self._session is not None:
            self._session.login_needed(reason)
        else:
            self.log.warn("{provider}: {reason}; not connecting until started with new "
                          "credentials", provider=self.client_type, reason=reason)
            self._status.login_needed(reason)

    async def _disconnect(self) -> None:
        session, self._session = self._session, None
        renewal, self._renewal = self._renewal, None
        if renewal is not None:
            renewal.stop()
        self._expiry.stop()
        if session is not None:
            await session.stop()

    async def _end(self) -> None:
        await self._disconnect()
        self._credentials = None
        self._status = UpstreamStatus(self._wall_clock)


class PerGateway(Generic[T]):
    """
    One object of a plugin's per gateway. Hooks are module functions that
    receive only the context, and tests run several gateways in one process.
    """

    def __init__(self, build: Callable[[Any], T]) -> None:
        self._build = build
        self._made: dict[Any, T] = {}

    def __call__(self, context: Any) -> T:
        if context not in self._made:
            self._made[context] = self._build(context)
        return self._made[context]
