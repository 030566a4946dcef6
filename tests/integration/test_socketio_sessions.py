"""Socket.IO recovery sessions on real PostgreSQL: found while alive, gone once expired
or forgotten, kept alive by the keeper while their client is connected."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet.task import Clock

from n2gateway.downstream.socketio_sessions import SavedSession, SessionKeeper, SessionStore

TTL = 60


@pytest.fixture
def store(migrated_db) -> SessionStore:
    return SessionStore(migrated_db, ttl=TTL)


def expire(sql, pid: str, seconds: int = -1) -> None:
    """Let session ``pid`` expire ``seconds`` from now (in the past by default)."""
    sql("UPDATE n2_socketio_sessions SET expires_at = NOW() + make_interval(secs => %s)"
        " WHERE pid = %s", (seconds, pid))


def pids(sql) -> list[str]:
    return [pid for (pid,) in sql("SELECT pid FROM n2_socketio_sessions ORDER BY pid")]


def extended(sql, pid: str) -> bool:
    """Whether ``pid`` lives about a full TTL from now."""
    [(full,)] = sql("SELECT expires_at > NOW() + make_interval(secs => %s)"
                    " FROM n2_socketio_sessions WHERE pid = %s", (TTL - 10, pid))
    return full


@pytest_twisted.ensureDeferred
async def test_a_session_is_found_with_its_user_sorted_rooms_and_start(store) -> None:
    await store.create("p1", "u1", since=7)
    assert await store.find("p1") == SavedSession("u1", (), 7)
    await store.save_rooms("p1", ["user:u1", "staff"])
    assert await store.find("p1") == SavedSession("u1", ("staff", "user:u1"), 7)


@pytest_twisted.ensureDeferred
async def test_finding_a_session_extends_its_life(store, sql) -> None:
    await store.create("p1", "u1", since=7)
    expire(sql, "p1", seconds=5)
    assert await store.find("p1") is not None
    assert extended(sql, "p1")


@pytest_twisted.ensureDeferred
async def test_an_expired_session_is_not_found_even_before_the_keeper_deletes_it(
        store, sql) -> None:
    await store.create("p1", "u1", since=7)
    expire(sql, "p1")
    assert await store.find("p1") is None
    assert pids(sql) == ["p1"]  # still stored: only the keeper deletes


@pytest_twisted.ensureDeferred
async def test_an_unknown_session_is_not_found(store) -> None:
    await store.create("p1", "u1", since=7)
    assert await store.find("unknown") is None


@pytest_twisted.ensureDeferred
async def test_a_forgotten_session_is_deleted_at_once(store, sql) -> None:
    await store.create("p1", "u1", since=7)
    await store.create("p2", "u2", since=7)
    await store.forget("p1")
    assert pids(sql) == ["p2"]
    assert await store.find("p1") is None


@pytest_twisted.ensureDeferred
async def test_the_keeper_extends_the_sessions_of_connected_clients_even_expired(
        store, sql) -> None:
    for pid in ("live", "idle"):
        await store.create(pid, "u1", since=7)
        expire(sql, pid, seconds=5)
    expire(sql, "live")  # its client is connected still: the keeper revives it
    await SessionKeeper(store, lambda: ["live"], Clock()).keep()
    assert extended(sql, "live")
    assert not extended(sql, "idle")


@pytest_twisted.ensureDeferred
async def test_the_keeper_deletes_expired_sessions_of_clients_gone(store, sql) -> None:
    for pid in ("gone", "waiting"):
        await store.create(pid, "u1", since=7)
    expire(sql, "gone")
    await SessionKeeper(store, lambda: [], Clock()).keep()
    assert pids(sql) == ["waiting"]


@pytest_twisted.ensureDeferred
async def test_a_stopping_keeper_gives_its_clients_sessions_a_full_ttl(store, sql) -> None:
    # Those clients reconnect to another gateway, which must still find them.
    await store.create("live", "u1", since=7)
    expire(sql, "live", seconds=5)
    clock = Clock()
    keeper = SessionKeeper(store, lambda: ["live"], clock)
    keeper.startService()
    await keeper.stopService()
    assert extended(sql, "live")
    assert clock.getDelayedCalls() == []
