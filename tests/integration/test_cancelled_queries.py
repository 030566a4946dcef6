"""Cancelling a statement under way, on a real PostgreSQL: a service that stops, or a
deadline that passes, cancels the query it awaits. Its caller hears of it at once, the
server stops the statement, and the pool serves the next caller."""

from __future__ import annotations

import os
import signal

import pytest
import pytest_twisted
from twisted.internet import defer, endpoints, protocol, reactor, task
from twisted.logger import capturedLogs, formatEvent

from n2gateway.db import Database, DatabaseUnavailable, pool
from tests.support.waiting import eventually

SLEEPING = "SELECT query FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30)%' AND pid <> pg_backend_pid()"


async def cancel_once_running(d: defer.Deferred, sql) -> None:
    await eventually(lambda: sql(SLEEPING + " AND state = 'active'"), what="the statement to run")
    d.cancel()  # raises nothing: whoever cancels is not the one to hear of it
    with pytest.raises(defer.CancelledError):
        await d


@pytest_twisted.ensureDeferred
async def test_a_cancelled_query_stops_on_the_server_and_its_connection_serves_the_next(notes_db, sql):
    await cancel_once_running(defer.Deferred.fromCoroutine(notes_db.query("SELECT pg_sleep(30)")), sql)

    assert await notes_db.query("SELECT 1") == [(1,)]
    await stopped_on_the_server(sql)


async def stopped_on_the_server(sql) -> None:
    await eventually(lambda: not sql(SLEEPING + " AND state = 'active'"),
                     what="the server to stop the statement")


@pytest_twisted.ensureDeferred
async def test_a_cancelled_transaction_rolls_back_and_its_connection_serves_the_next(notes_db, sql):
    async def work(tx):
        await tx.execute("INSERT INTO notes VALUES (1)")
        await tx.execute("SELECT pg_sleep(30)")
        await tx.execute("INSERT INTO notes VALUES (2)")

    await cancel_once_running(defer.Deferred.fromCoroutine(notes_db.transaction(work)), sql)

    assert await notes_db.query("SELECT COUNT(*) FROM notes") == [(0,)]
    assert sql("SELECT n FROM notes") == []
    await stopped_on_the_server(sql)


@pytest_twisted.ensureDeferred
async def test_a_query_past_its_deadline_stops_on_the_server_and_its_connection_serves_the_next(
        notes_db, sql):
    d = defer.Deferred.fromCoroutine(notes_db.query("SELECT pg_sleep(30)"))
    d.addTimeout(0.5, reactor)
    with pytest.raises(defer.TimeoutError):
        await d

    assert await notes_db.query("SELECT 1") == [(1,)]
    await stopped_on_the_server(sql)


@pytest_twisted.ensureDeferred
async def test_a_dedicated_statement_past_its_deadline_closes_its_connection(notes_db):
    lost = []
    connection = await notes_db.dedicated(timeout=0.5, on_lost=lost.append)
    started = reactor.seconds()
    with pytest.raises(DatabaseUnavailable, match="timed out"):
        await connection.query("SELECT pg_sleep(30)")
    assert reactor.seconds() - started < 5
    assert lost  # its owner hears the connection (and the state it held) is gone


@pytest_twisted.ensureDeferred
async def test_a_server_that_never_answers_a_connect_is_given_up_at_the_deadline(monkeypatch):
    silent = await endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
        protocol.Factory.forProtocol(protocol.Protocol))  # accepts, never says a word
    monkeypatch.setattr(pool, "CONNECT_TIMEOUT", 0.5)
    database = Database(reactor)
    database.configure(f"postgresql://n2gateway:{'p' * 16}@127.0.0.1:{silent.getHost().port}/n2")
    try:
        started = reactor.seconds()
        with pytest.raises(DatabaseUnavailable, match="timed out"):
            await database.connect()
        assert reactor.seconds() - started < 5
    finally:
        database.close()
        await silent.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_hung_server_does_not_stop_the_reactor_when_a_ping_gives_up(
        restartable_pg, monkeypatch):
    monkeypatch.setattr(pool, "CONNECT_TIMEOUT", 1.0)
    database = Database(reactor, size=1)
    database.configure(restartable_pg.url)
    (backend,), = await database.query("SELECT pg_backend_pid()")
    postmaster = int((restartable_pg.pgdata / "postmaster.pid").read_text().split()[0])
    turns: list[float] = []
    ticking = task.LoopingCall(lambda: turns.append(reactor.seconds()))
    hung = [backend, postmaster]  # a cancel request goes to the postmaster
    for pid in hung:
        os.kill(pid, signal.SIGSTOP)
    try:
        with capturedLogs() as logged:
            ticking.start(0.1)
            with pytest.raises(DatabaseUnavailable, match="timed out"):
                await database.ping(timeout=0.5)
            await eventually(lambda: any("could not stop a statement given up on (timed out)"
                                         in formatEvent(e) for e in logged), timeout=5)
        assert len(turns) >= 10  # the reactor turned all along, every 0.1 s
    finally:
        ticking.stop()
        for pid in hung:
            os.kill(pid, signal.SIGCONT)
        database.close()
