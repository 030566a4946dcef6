"""Socket.IO recovery sessions in PostgreSQL, so that any gateway on the same
database can recover a client, also after the one it left was killed.

A session lives ``ttl`` seconds after its last sign of life, like socket.io's
``maxDisconnectionDuration``. While its client is connected, the keeper extends it
in one batched statement per interval instead of one write per event; a stopped or
killed gateway thus leaves its sessions recoverable for at least ``ttl - interval``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Collection

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger

from n2gateway.db import Database, DatabaseUnavailable
from n2gateway.scheduling import Periodic

DEFAULT_TTL = 120.0


@dataclass(frozen=True)
class SavedSession:
    sub: str
    rooms: tuple[str, ...]
    #: The journal head when the session began.
    since: int


class SessionStore:
    def __init__(self, db: Database, ttl: float = DEFAULT_TTL) -> None:
        self._db = db
        self.ttl = ttl

    async def create(self, pid: str, sub: str, since: int) -> None:
        await self._db.execute(
            "INSERT INTO n2_socketio_sessions (pid, sub, since, expires_at)"
            " VALUES (%s, %s, %s, NOW() + make_interval(secs => %s))",
            (pid, sub, since, self.ttl))

    async def find(self, pid: str) -> SavedSession | None:
        """The session ``pid`` unless it is unknown or expired; extends its life."""
        rows = await self._db.query(
            "UPDATE n2_socketio_sessions SET expires_at = NOW() + make_interval(secs => %s)"
            " WHERE pid = %s AND expires_at > NOW() RETURNING sub, rooms, since",
            (self.ttl, pid))
        if not rows:
            return None
        sub, rooms, since = rows[0]
        return SavedSession(sub, tuple(rooms), since)

    async def save_rooms(self, pid: str, rooms: Collection[str]) -> None:
        await self._db.execute(
            "UPDATE n2_socketio_sessions SET rooms = %s::text[] WHERE pid = %s",
            (sorted(rooms), pid))

    async def touch(self, pids: Collection[str]) -> None:
        if pids:
            await self._db.execute(
                "UPDATE n2_socketio_sessions SET expires_at = NOW() + make_interval(secs => %s)"
                " WHERE pid = ANY(%s::text[])", (self.ttl, list(pids)))

    async def forget(self, pid: str) -> None:
        await self._db.execute("DELETE FROM n2_socketio_sessions WHERE pid = %s", (pid,))

    async def delete_expired(self) -> None:
        await self._db.execute("DELETE FROM n2_socketio_sessions WHERE expires_at <= NOW()")


class SessionKeeper(service.MultiService):
    """Every ``interval``: extend the sessions of connected clients, delete expired ones."""

    log = Logger()

    def __init__(self, store: SessionStore, live: Callable[[], Collection[str]],
                 reactor: Any, interval: float | None = None) -> None:
        super().__init__()
        self._store = store
        self._live = live
        Periodic(interval if interval is not None else store.ttl / 4, self.keep, reactor,
                 what="Socket.IO session keeping").setServiceParent(self)

    def stopService(self) -> defer.Deferred:
        super().stopService()
        # The clients of a stopping gateway reconnect elsewhere: give them a full TTL.
        return defer.Deferred.fromCoroutine(self.keep())

    async def keep(self) -> None:
        try:
            await self._store.touch(list(self._live()))
            await self._store.delete_expired()
        except DatabaseUnavailable as e:
            self.log.warn("Socket.IO sessions not refreshed: {reason}", reason=str(e))
