"""Our small interface to PostgreSQL: a pool of txpostgres connections that heals itself.

txpostgres' own pool never replaces a broken connection, so after a database restart
every pooled connection would fail forever. Here a connection that dies is dropped and
a fresh one is opened on the next checkout; callers see one clear
``DatabaseUnavailable`` per failed call, never a wedged pool. Driver errors become
the layer's own (``db.errors``).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Awaitable, Callable, Sequence, TypeVar

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from txpostgres import txpostgres

from n2gateway.db.cancellable import cancellable
from n2gateway.db.dedicated import DedicatedConnection
from n2gateway.db.errors import (
    DatabaseError, DatabaseUnavailable, describe_error, is_connection_error, raise_ours)

T = TypeVar("T")

CONNECT_TIMEOUT = 5.0


def retry_delay(attempt: int) -> float:
    """Seconds before database retry ``attempt`` + 1 (0-based): 0.5 s doubling to 10 s.
    The one retry policy of everything that waits for the database."""
    return min(0.5 * 2 ** attempt, 10.0)


class Transaction:
    """The cursor side of a transaction: statements run in order on one connection.

    BEGIN travels with the first statement rather than on its own: one round trip
    fewer for every transaction (``commit`` saves the COMMIT's own, too)."""

    def __init__(self, cursor: txpostgres.Cursor) -> None:
        self._cursor = cursor
        self.begun = False

    async def execute(self, sql: str, params: Sequence[Any] | dict | None = None) -> None:
        if not self.begun:
            self.begun = True
            sql = "BEGIN; " + sql
        await self._cursor.execute(sql, params)

    async def query(self, sql: str, params: Sequence[Any] | dict | None = None) -> list[tuple]:
        await self.execute(sql, params)
        return self._cursor.fetchall()

    async def commit(self, sql: str, params: Sequence[Any] | dict | None, *,
                     then: str | None = None) -> list[tuple]:
        """The transaction's last statements: ``sql``, COMMIT, then the query ``then``
        (if any) outside the transaction, a look at what was just committed, in one
        round trip; returns the rows of ``then``. An error in ``then`` is raised
        although the transaction has committed."""
        await self.execute(f"{sql};\nCOMMIT" + (f";\n{then}" if then else ""), params)
        self.begun = False
        return self._cursor.fetchall() if then else []

    async def end(self, statement: str) -> None:
        """COMMIT or ROLLBACK, if anything began."""
        if self.begun:
            self.begun = False
            await self._cursor.execute(statement)


class WatchedConnection(txpostgres.Connection):
    """A connection that tells its owner when its socket is lost and hands NOTIFYs over
    synchronously (txpostgres only tells a reconnecting detector, and dispatches
    NOTIFYs through the global cooperator, spread over several reactor turns)."""

    def __init__(self, reactor: IReactorTime,
                 on_lost: Callable[[BaseException], None] | None = None,
                 on_notify: Callable[[str, str], None] | None = None) -> None:
        super().__init__(reactor=reactor)
        self._on_lost = on_lost
        self._on_notify = on_notify
        #: Its caller gave up on a statement under way (see ``Database._abandon``).
        self.abandoned = False

    def connectionLost(self, reason: Any) -> None:
        super().connectionLost(reason)
        if self._on_lost is not None:
            self._on_lost(reason.value)

    def checkForNotifies(self) -> None:
        if self._on_notify is None:
            # txpostgres' own observers (addNotifyObserver) still work.
            super().checkForNotifies()
            return
        notifies = self._connection.notifies
        batch = notifies[:]
        del notifies[:]
        for notify in batch:
            self._on_notify(notify.channel, notify.payload)


class Database:
    """A self-healing pool of ``size`` connections to one PostgreSQL database."""

    log = Logger()

    def __init__(self, reactor: IReactorTime, size: int = 4) -> None:
        self._reactor = reactor
        self._size = size
        self._dsn: str | None = None
        self._idle: deque[WatchedConnection] = deque()
        self._open = 0
        self._waiters: deque[defer.Deferred] = deque()
        self._closed = False

    @property
    def configured(self) -> bool:
        return self._dsn is not None

    def configure(self, dsn: str) -> None:
        self._dsn = dsn
        self._closed = False

    async def connect(self, *, on_lost: Callable[[BaseException], None] | None = None,
                      on_notify: Callable[[str, str], None] | None = None,
                      **params: str) -> WatchedConnection:
        """Open one new driver connection, for the pool, ``dedicated`` and the LISTEN
        connection (``on_lost(error)`` when its socket goes, ``on_notify(channel,
        payload)``; ``params`` are libpq parameters such as ``application_name``)."""
        if self._dsn is None:
            raise DatabaseUnavailable("the database is not configured yet")
        connection = WatchedConnection(self._reactor, on_lost, on_notify)
        d = cancellable(connection.connect(self._dsn, **params), connection.close)
        d.addTimeout(CONNECT_TIMEOUT, self._reactor)
        try:
            await d
        except Exception as e:
            raise DatabaseUnavailable(describe_error(e)) from None
        return connection

    async def dedicated(self, *, timeout: float,
                        on_lost: Callable[[BaseException], None] | None = None,
                        **params: str) -> DedicatedConnection:
        """A new connection outside the pool, each statement bounded by ``timeout``
        seconds; ``on_lost(error)`` when its socket goes (``params``: as ``connect``)."""
        return DedicatedConnection(await self.connect(on_lost=on_lost, **params),
                                   self._reactor, timeout)

    async def _checkout(self) -> WatchedConnection:
        if self._closed:
            raise DatabaseUnavailable("the database pool is closed")
        if self._idle:
            return self._idle.popleft()
        if self._open < self._size:
            self._open += 1
            try:
                return await self.connect()
            except BaseException:
                self._open -= 1
                raise
        waiter: defer.Deferred = defer.Deferred()
        self._waiters.append(waiter)
        return await waiter

    def _checkin(self, connection: WatchedConnection | None) -> None:
        """Give a connection back, or ``None`` for one that died."""
        if connection is None or connection.abandoned or self._closed:
            self._open -= 1
            if connection is not None:
                connection.close()
            # A waiter may now open a connection of its own.
            if self._waiters and not self._closed:
                waiter = self._waiters.popleft()
                self._open += 1
                defer.Deferred.fromCoroutine(self.connect()).addCallbacks(
                    waiter.callback, lambda f: self._failed_waiter(waiter, f))
            return
        if self._waiters:
            self._waiters.popleft().callback(connection)
        else:
            self._idle.append(connection)

    def _failed_waiter(self, waiter: defer.Deferred, failure: Any) -> None:
        self._open -= 1
        waiter.errback(failure)

    def _drop_idle(self) -> None:
        # One dead connection usually means the server went away: the idle ones are
        # dead too, and failing each in turn would cost a query per connection.
        while self._idle:
            self._idle.popleft().close()
            self._open -= 1

    async def _run(self, work: Callable[[WatchedConnection], defer.Deferred]) -> Any:
        connection = await self._checkout()
        return await cancellable(defer.Deferred.fromCoroutine(self._on(connection, work)),
                                 lambda: self._abandon(connection))

    async def _on(self, connection: WatchedConnection,
                  work: Callable[[WatchedConnection], defer.Deferred]) -> Any:
        try:
            result = await work(connection)
        except Exception as e:
            if connection.abandoned:
                self._checkin(connection)
                raise
            if is_connection_error(e) or connection.closed:
                self._checkin(None)
                self._drop_idle()
                raise DatabaseUnavailable(describe_error(e)) from None
            self._checkin(connection)
            raise_ours(e)
        self._checkin(connection)
        return result

    def _abandon(self, connection: WatchedConnection) -> None:
        """Close ``connection``, whose caller gave up on its statement (cancelled, or
        past a deadline), and have the server stop that statement.

        libpq's cancel request (txpostgres' ``cancel``) holds the whole process while a
        hung server does not answer; ``pg_cancel_backend`` on a connection of its own
        is a statement like any other, bounded like any other. Closing rather than
        waiting for the statement's end frees its caller's pool slot at once, and no
        late cancel can stop a next caller's statement."""
        connection.abandoned = True
        if connection.closed:
            return  # and its statement has ended with it
        backend = connection.get_backend_pid()
        connection.close()
        defer.Deferred.fromCoroutine(self._stop_backend(backend))

    async def _stop_backend(self, backend: int) -> None:
        try:
            connection = await self.dedicated(timeout=CONNECT_TIMEOUT)
            try:
                await connection.query("SELECT pg_cancel_backend(%s)", (backend,))
            finally:
                connection.close()
        except (DatabaseUnavailable, DatabaseError) as e:
            self.log.warn("could not stop a statement given up on ({reason}); the server"
                          " ends it when it sees its client gone", reason=str(e))

    async def query(self, sql: str, params: Sequence[Any] | dict | None = None) -> list[tuple]:
        return await self._run(lambda c: c.runQuery(sql, params))

    async def execute(self, sql: str, params: Sequence[Any] | dict | None = None) -> None:
        await self._run(lambda c: c.runOperation(sql, params))

    async def transaction(self, work: Callable[[Transaction], Awaitable[T]]) -> T:
        """Run ``work`` inside BEGIN/COMMIT; an exception rolls back and propagates."""

        async def interaction(connection: WatchedConnection) -> T:
            tx = Transaction(connection.cursor())
            try:
                result = await work(tx)
                await tx.end("COMMIT")
            except BaseException:
                try:
                    await tx.end("ROLLBACK")  # a failed COMMIT has rolled back already
                except Exception:
                    # Whatever state the connection is in, it must not be reused.
                    connection.close()
                raise
            return result

        return await self._run(lambda c: defer.Deferred.fromCoroutine(interaction(c)))

    async def ping(self, timeout: float = 2.0) -> None:
        """Raise ``DatabaseUnavailable`` unless ``SELECT 1`` answers within ``timeout``."""
        d = defer.Deferred.fromCoroutine(self.query("SELECT 1"))
        d.addTimeout(timeout, self._reactor)
        try:
            await d
        except DatabaseUnavailable:
            raise
        except Exception as e:
            raise DatabaseUnavailable(describe_error(e)) from None

    def stats(self) -> dict[str, int]:
        """Pool occupancy for metrics: connections open, idle, and callers waiting."""
        return {"size": self._size, "open": self._open, "idle": len(self._idle),
                "waiting": len(self._waiters)}

    def close(self) -> None:
        self._closed = True
        self._drop_idle()
        while self._waiters:
            self._waiters.popleft().errback(DatabaseUnavailable("the database pool is closed"))
