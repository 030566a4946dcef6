"""One owner per source across every gateway on the database, by PostgreSQL advisory lock.

Each source that must run exactly once (an upstream session, the chat catch-up) is
*claimed* with a service factory. Every node tries the source's session-level advisory
lock on its own dedicated connection; the node that gets it starts the service. When
that node dies, PostgreSQL drops its connection and the lock with it, and another
node's next try (every ``retry_interval``, or at once on the ``n2_leadership`` NOTIFY
a draining node sends, heard on the gateway's shared LISTEN connection) takes over. A
node that loses its connection stops its sources: it can no longer prove it owns them.
It notices at once when the socket closes, and within ``retry_interval +
query_timeout`` at worst (a silently dead network path). So a node that takes a lock
whose last owner did not release it cleanly (the ``n2_leadership`` table says) waits
that long (``grace``) before starting the source: the old owner has stopped by then,
and the upstream never sees two sessions with the same token. After a clean release,
or for a source nobody held before, it starts at once.

The connection's ``application_name`` names the node, so any node can tell who owns
what from ``pg_locks`` alone, without a table that could go stale.
"""

from __future__ import annotations

import uuid
import zlib
from dataclasses import dataclass
from typing import Any, Callable

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger

from n2gateway.db import Database, DatabaseError, DatabaseUnavailable, DedicatedConnection
from n2gateway.db.listen import Listener
from n2gateway.scheduling import Coalescer, Periodic

LOCK_CLASS = 0x6E32  # first key of every lock: marks n2gateway's locks in pg_locks
CHANNEL = "n2_leadership"
APP_PREFIX = "n2gateway:"
# Server-side keepalives on the leadership connection: PostgreSQL notices a node
# that vanished from the network (and frees its locks) in about 10 s.
KEEPALIVES = "SET tcp_keepalives_idle = 4; SET tcp_keepalives_interval = 2; SET tcp_keepalives_count = 3"


def new_node_id() -> str:
    return uuid.uuid4().hex[:12]


def node_alive(node: str) -> str:
    """SQL true while the node named by the SQL expression ``node`` is connected to
    this database: its leadership connection is its sign of life, gone when it dies."""
    return ("EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = '" + APP_PREFIX + "' || " + node + ")")


def lock_key(source: str) -> int:
    """The second lock key of ``source``: a stable signed 32-bit hash of its name."""
    value = zlib.crc32(source.encode())
    return value - 2 ** 32 if value >= 2 ** 31 else value


@dataclass
class Claim:
    source: str
    make_service: Callable[[], service.IService]
    running: service.IService | None = None
    held: bool = False
    starting: Any = None  # the DelayedCall of a start waiting out the grace period


class Leadership(service.MultiService):
    """Claims sources; each source this node owns runs as a child service, so it stops
    with the leadership (or when the lock is lost) before the layers under it."""

    log = Logger()

    def __init__(self, db: Database, listener: Listener, reactor: Any, node_id: str, *,
                 retry_interval: float = 2.0, query_timeout: float = 3.0) -> None:
        super().__init__()
        self.db = db
        self._listener = listener
        self._unsubscribe: Callable[[], None] | None = None
        self.reactor = reactor
        self.node_id = node_id
        self.query_timeout = query_timeout
        self.claims: dict[str, Claim] = {}
        self._connection: DedicatedConnection | None = None
        self._loop = Periodic(retry_interval, self.poke, reactor, what="leadership check",
                              now=True)
        self._loop.setServiceParent(self)
        self._tries = Coalescer(self._tick, what="leadership try")
        self.grace = retry_interval + query_timeout

    @property
    def owned(self) -> list[str]:
        return sorted(c.source for c in self.claims.values() if c.held)

    def claim(self, source: str, make_service: Callable[[], service.IService]) -> None:
        """Run ``make_service()`` whenever this node owns ``source``."""
        self.claims[source] = Claim(source, make_service)
        self.poke()

    def startService(self) -> None:
        # Not LISTEN on the lock's own connection: PostgreSQL wakes every listening
        # backend for every NOTIFY in the database (each chat insert among them).
        self._unsubscribe = self._listener.subscribe(CHANNEL, self._released)
        super().startService()

    def poke(self) -> None:
        """Try the unowned sources now (coalesced with a try already under way)."""
        if self.running:
            self._tries.request()

    async def _tick(self) -> None:
        try:
            if self._connection is None:
                await self._connect()
            else:
                await self._connection.query("SELECT 1")
            for claim in self.claims.values():
                if not claim.held and self.running:
                    (acquired,), = await self._connection.query(
                        "SELECT pg_try_advisory_lock(%s, %s)", (LOCK_CLASS, lock_key(claim.source)))
                    if acquired:
                        claim.held = True
                        delay = 0 if await self._take_over(claim.source) else self.grace
                        if delay:
                            self.log.info(
                                "node {node} holds {source}, whose last owner did not let go: "
                                "starting it in {delay:.1f} s, when that owner has stopped",
                                node=self.node_id, source=claim.source, delay=delay)
                        claim.starting = self.reactor.callLater(delay, self._start, claim)
        except (DatabaseUnavailable, DatabaseError) as e:
            if self._connection is not None or self.owned:
                self.log.warn("leadership connection failed ({reason}); giving up {sources}",
                              reason=str(e), sources=", ".join(self.owned) or "nothing")
            await self._lose_all()

    async def _connect(self) -> None:
        connection = await self.db.dedicated(
            timeout=self.query_timeout, application_name=APP_PREFIX + self.node_id,
            on_lost=lambda reason: self._lost(connection, reason))
        self._connection = connection
        await connection.execute(KEEPALIVES)

    async def _take_over(self, source: str) -> bool:
        """Record this node as ``source``'s owner; True if the last one let go cleanly."""
        (clean,), = await self._connection.query(
            "SELECT coalesce((SELECT released FROM n2_leadership WHERE source = %s), true)",
            (source,))
        await self._connection.execute(
            "INSERT INTO n2_leadership (source, node, released) VALUES (%s, %s, false)"
            " ON CONFLICT (source) DO UPDATE SET node = EXCLUDED.node, released = false,"
            " since = NOW()", (source, self.node_id))
        return clean

    def _lost(self, connection: DedicatedConnection, reason: BaseException) -> None:
        # The socket is gone, and the lock with it: stop the sources now rather than
        # at the next check, so the takeover's grace period is never cut short.
        if connection is self._connection:
            self.log.warn("leadership connection lost ({reason}); giving up {sources}",
                          reason=type(reason).__name__, sources=", ".join(self.owned) or "nothing")
            defer.Deferred.fromCoroutine(self._lose_all())

    def _released(self, payload: str) -> None:
        # Another node let go of its sources: take them now, not at the next check.
        self.poke()

    def _start(self, claim: Claim) -> None:
        claim.starting = None
        self.log.info("node {node} now owns {source}", node=self.node_id, source=claim.source)
        claim.running = claim.make_service()
        claim.running.setServiceParent(self)  # started by the tree, this node running

    async def _stop(self, claim: Claim) -> None:
        if claim.starting is not None and claim.starting.active():
            claim.starting.cancel()
        claim.starting, claim.held = None, False
        running, claim.running = claim.running, None
        if running is not None:
            await defer.maybeDeferred(running.disownServiceParent)

    async def _lose_all(self) -> None:
        for claim in self.claims.values():
            await self._stop(claim)
        if self._connection is not None:
            connection, self._connection = self._connection, None
            connection.close()

    async def release(self) -> None:
        """Stop every owned source, free its lock and tell the other nodes at once."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._loop.stopService()
        # No try begins from here on (a poke is ignored), and one under way could
        # otherwise open a connection after we closed ours.
        await self._tries.stop()
        for claim in self.claims.values():
            if claim.held:
                await self._stop(claim)
                try:
                    # Stopped, so the next owner needs no grace period.
                    await self._connection.execute(
                        "UPDATE n2_leadership SET released = true WHERE source = %s AND node = %s",
                        (claim.source, self.node_id))
                    await self._connection.query("SELECT pg_advisory_unlock(%s, %s)",
                                                 (LOCK_CLASS, lock_key(claim.source)))
                except (DatabaseUnavailable, DatabaseError) as e:
                    self.log.warn("could not release {source}: {reason}",
                                  source=claim.source, reason=str(e))
        if self._connection is not None:
            try:
                await self._connection.execute(f"NOTIFY {CHANNEL}")
            except (DatabaseUnavailable, DatabaseError):
                pass  # the others' next try (every retry interval) takes over instead
        await self._lose_all()

    def stopService(self) -> defer.Deferred:
        return defer.Deferred.fromCoroutine(self._stop_all())

    async def _stop_all(self) -> None:
        # Sources first, one at a time, each lock freed after its source stopped.
        await self.release()
        await super().stopService()

    async def owners(self) -> dict[str, str | None]:
        """Which node owns each claimed source right now (``None``: nobody)."""
        rows = await self.db.query(
            "SELECT l.objid::bigint, a.application_name FROM pg_locks l"
            " JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s",
            (LOCK_CLASS,))
        by_key = {key: name.removeprefix(APP_PREFIX) for key, name in rows}
        # pg_locks shows the key as an unsigned oid.
        return {source: by_key.get(lock_key(source) & 0xFFFFFFFF) for source in sorted(self.claims)}

    async def owner(self, source: str) -> str | None:
        """The node owning ``source`` (None: nobody, or the database cannot say now)."""
        if source in self.owned:
            return self.node_id
        try:
            return (await self.owners()).get(source)
        except DatabaseUnavailable:
            return None

    def status(self) -> dict[str, Any]:
        return {"node": self.node_id, "owns": self.owned, "connected": self._connection is not None}
