"""A database restart under a running pool and a running gateway.

Each test has a PostgreSQL of its own (``restartable_pg``), stopped and started again
while the pool or the gateway keeps running.
"""

from __future__ import annotations

import json

import pytest
import pytest_twisted
import treq
from twisted.internet import defer, reactor, threads

from n2gateway.config import build_settings
from n2gateway.db import Database, DatabaseUnavailable
from n2gateway.gateway import Gateway
from n2gateway.plugins import load_plugins
from tests.support.waiting import eventually


async def within(seconds: float, coroutine):
    d = defer.Deferred.fromCoroutine(coroutine)
    d.addTimeout(seconds, reactor)
    return await d


async def busy(db: Database, n: int) -> list:
    """``n`` queries at once, so the pool holds ``n`` connections."""
    return await defer.gatherResults([
        defer.Deferred.fromCoroutine(db.query("SELECT pg_sleep(0.05), %s", (i,)))
        for i in range(n)])


@pytest_twisted.ensureDeferred
async def test_the_pool_heals_after_a_restart(restartable_pg):
    db = Database(reactor, size=4)
    db.configure(restartable_pg.url)
    try:
        assert len(await busy(db, 4)) == 4

        await threads.deferToThread(restartable_pg.stop)
        # One clear error per call while it is down, quickly, never a hang.
        for _ in range(3):
            with pytest.raises(DatabaseUnavailable):
                await within(10, db.query("SELECT 1"))

        await threads.deferToThread(restartable_pg.start)
        assert await within(10, db.query("SELECT 1")) == [(1,)]
        assert len(await within(10, busy(db, 4))) == 4
        assert await within(10, db.transaction(one)) == [(1,)]
    finally:
        db.close()


async def one(tx) -> list:
    return await tx.query("SELECT 1")


@pytest_twisted.ensureDeferred
async def test_transactions_heal_after_a_restart(restartable_pg):
    db = Database(reactor, size=2)
    db.configure(restartable_pg.url)
    try:
        await defer.gatherResults([defer.Deferred.fromCoroutine(db.transaction(one))
                                   for _ in range(2)])
        await threads.deferToThread(restartable_pg.stop)
        await threads.deferToThread(restartable_pg.start)
        answers = []
        for _ in range(4):
            try:
                answers.append(await within(10, db.transaction(one)))
            except DatabaseUnavailable as e:
                answers.append(str(e))
        # At most one call learns that the old connections died; then it works.
        assert answers[-3:] == [[(1,)]] * 3, answers
    finally:
        db.close()


@pytest_twisted.ensureDeferred
async def test_the_pool_heals_when_the_restart_happened_while_idle(restartable_pg):
    db = Database(reactor, size=4)
    db.configure(restartable_pg.url)
    try:
        await busy(db, 4)
        await threads.deferToThread(restartable_pg.stop)
        await threads.deferToThread(restartable_pg.start)
        # The idle connections are dead: the first call may say so once, no more.
        failures = 0
        for _ in range(3):
            try:
                assert await within(10, db.query("SELECT 1")) == [(1,)]
                break
            except DatabaseUnavailable:
                failures += 1
        assert failures <= 1
        assert len(await within(10, busy(db, 4))) == 4
    finally:
        db.close()


async def health(url: str) -> tuple[int, dict]:
    response = await treq.get(url + "/health")
    return response.code, json.loads(await response.content())


async def poll_health(url: str, code: int, timeout: float = 20.0) -> dict:
    answers = []

    async def answered() -> dict | None:
        answers.append(await health(url))
        return answers[-1][1] if answers[-1][0] == code else None

    return await eventually(answered, timeout, lambda: f"/health to answer {code}: {answers[-3:]}",
                            0.1)


@pytest_twisted.ensureDeferred
async def test_health_follows_the_database_down_and_up(restartable_pg, tmp_path):
    settings = build_settings({"database-url": restartable_pg.url, "data-dir": str(tmp_path),
                               "http": "tcp:0:interface=127.0.0.1"}, {}, reactor)
    gateway = Gateway(settings, load_plugins(), reactor)
    gateway.privilegedStartService()
    gateway.startService()
    try:
        url = f"http://127.0.0.1:{gateway._port.getHost().port}"
        # Start-up (migrations included) over, as "gateway ready" in the log.
        await eventually(lambda: gateway._bring_up.called, 20, "start-up")
        answer = await poll_health(url, 200)
        assert answer["status"] == "ok"
        assert answer["database"] == {"kind": "external", "state": "up"}

        await threads.deferToThread(restartable_pg.stop)
        answer = await poll_health(url, 503)
        assert answer["status"] == "degraded"
        assert answer["database"]["state"] == "down" and answer["database"]["error"]

        await threads.deferToThread(restartable_pg.start)
        answer = await poll_health(url, 200)
        assert answer["database"] == {"kind": "external", "state": "up"}
    finally:
        await gateway.stopService()
