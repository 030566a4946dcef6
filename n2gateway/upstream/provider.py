"""
A provider: one upstream client type (Pancake, TPOS, ...), its stored credentials
and the one live session they open.

A plugin subclasses L{Provider} with four small methods (credentials from a
stored row and back, the session to build, the status fields to add) and claims
it with C{context.leadership.claim(client_type, lambda: provider)}: the provider
runs on one gateway of those sharing the database, connects on its own from the
active stored row when it starts there, and C{start}/C{stop} (the control
routes) replace or end the session. One session per provider at a time: the
upstream never sees two sessions with the same credentials.

C{start} and C{stop} work on every gateway: they change the stored row, which
announces itself, and the gateway holding the provider follows the row
(L{Provider.follow_stored}).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Generic, TypeVar

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, DeferredLock
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from n2gateway.credentials import CredentialStore, StoredCredentials
from n2gateway.db import DatabaseUnavailable

from .backoff import BackoffPolicy, upstream_backoff
from .service import UpstreamService
from .status import UpstreamStatus

C = TypeVar("C")
T = TypeVar("T")


class BadCredentials(ValueError):
    """Stored credentials a provider cannot use; the message names the problem,
    never a secret."""


class Provider(Service, Generic[C]):
    """
    Owns the current L{UpstreamService} of one client type.

    Every change of session (auto-connect, C{start}, C{stop}, service stop) runs
    under one lock, so a replacement always stops the old session before the new
    one connects.
    """

    log = Logger()
    #: The row's ``client_type``, the service's name and the leadership source.
    client_type: str

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
        C{url} is the upstream's, C{on_event} the callback every session
        built by L{build_session} reports its events to, and C{endpoint} (for
        tests) where those sessions connect instead of C{url}'s host.
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
        self._session: UpstreamService | None = None
        self._status = UpstreamStatus(wall_clock)
        # Bumped by every start and stop, so a stored row read before one of them
        # is not connected after it.
        self._generation = 0
        # Reads of the stored row under way, cancelled when the service stops.
        self._reads: set[Deferred[Any]] = set()

    # What a plugin provides.

    def credentials_from_row(self, row: StoredCredentials) -> C:
        """Usable credentials from a stored row, or L{BadCredentials}."""
        raise NotImplementedError

    def row_for(self, credentials: C) -> dict[str, Any]:
        """Keyword arguments of L{CredentialStore.save} for C{credentials}."""
        raise NotImplementedError

    def build_session(self, credentials: C, status: UpstreamStatus) -> UpstreamService:
        """A new, unstarted session for C{credentials}, reporting to C{status}."""
        raise NotImplementedError

    def describe(self, credentials: C | None) -> dict[str, Any]:
        """Status fields of the provider's own (never a secret)."""
        raise NotImplementedError

    # Control.

    async def start(self, credentials: C) -> bool:
        """
        Save C{credentials} as the active ones and connect with them at once,
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
        session match the row. C{force} reconnects even when the credentials
        are the same, as a C{start} does; otherwise an unchanged row is left be.
        """
        if not self.running:
            return
        if not force and self._reads:
            return  # a read under way brings the session in line with the row anyway
        self._generation += 1
        self._read_stored("stored credentials changed on another gateway" if force
                          else "stored credentials differ from the session's", force)

    def status(self) -> dict[str, Any]:
        return {
            **self._status.as_dict(),
            # Of the gateways on one database only one holds a provider at a time.
            "held": bool(self.running),
            "hasToken": self._credentials is not None,
            **self.describe(self._credentials),
        }

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
        """The credentials of an active row (L{BadCredentials} if unusable), else None."""
        if row is None or not row.is_active:
            return None
        return self.credentials_from_row(row)

    async def _retrying(self, read: Callable[[], Any]) -> Any:
        """C{await read()}, retried with backoff while the database is away."""
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

    def _connect(self, credentials: C, why: str) -> None:
        self._credentials = credentials
        self._status = UpstreamStatus(self._wall_clock)
        self._session = self.build_session(credentials, self._status)
        self.log.info("{provider}: connecting ({why})", provider=self.client_type, why=why)
        self._session.startService()

    async def _disconnect(self) -> None:
        session, self._session = self._session, None
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
