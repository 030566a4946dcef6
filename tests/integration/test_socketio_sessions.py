"""Socket.IO recovery sessions on real PostgreSQL: found while alive, gone once expired."""

from __future__ import annotations

import pytest_twisted
from twisted.internet import reactor

from n2gateway.db import Database
from n2gateway.db.migrations import MigrationFolder, apply_migrations
from n2gateway.downstream.socketio_sessions import SavedSession, SessionKeeper, SessionStore
from n2gateway.gateway import CORE_SCHEMA


@pytest_twisted.ensureDeferred
async def test_sessions_live_while_touched_and_are_deleted_once_expired(database_url, sql):
    db = Database(reactor)
    db.configure(database_url)
    try:
        await apply_migrations(db, [MigrationFolder("core", CORE_SCHEMA)])
        store = SessionStore(db, ttl=60)
        await store.create("alive", "u1", since=7)
        await store.create("gone", "u2", since=7)
        await store.save_rooms("alive", ["user:u1", "staff"])
        assert await store.find("alive") == SavedSession("u1", ("staff", "user:u1"), 7)

        sql("UPDATE n2_socketio_sessions SET expires_at = NOW() - interval '1 second'")
        await SessionKeeper(store, lambda: ["alive"], reactor).keep()
        assert sql("SELECT pid FROM n2_socketio_sessions") == [("alive",)]
        assert sql("SELECT expires_at > NOW() + interval '50 seconds'"
                   " FROM n2_socketio_sessions") == [(True,)]

        sql("UPDATE n2_socketio_sessions SET expires_at = NOW() - interval '1 second'")
        assert await store.find("alive") is None  # expired even before the keeper runs
        await store.forget("alive")
        assert await store.find("unknown") is None
    finally:
        db.close()
