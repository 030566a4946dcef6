"""Leadership by advisory lock, with real PostgreSQL and two nodes in one process."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.application import service
from twisted.internet import reactor

from n2gateway.db import Database
from n2gateway.db.listen import Listener
from n2gateway.db.migrations import CORE_SCHEMA
from n2gateway.leadership import Leadership
from tests.support.gateway import sleep


class Recorder(service.Service):
    def __init__(self, log: list, node: str) -> None:
        self.log, self.node = log, node

    def startService(self) -> None:
        super().startService()
        self.log.append(("start", self.node))

    def stopService(self) -> None:
        super().stopService()
        self.log.append(("stop", self.node))


@pytest.fixture
def schema(database_url, sql) -> str:
    """The test's database with the core schema (the leadership's table)."""
    for path in sorted(CORE_SCHEMA.glob("*.sql")):
        sql(path.read_text())
    return database_url


class Node:
    """A node's database pool, shared LISTEN connection and leadership."""

    def __init__(self, database_url: str, name: str, events: list, **timing) -> None:
        self.db = Database(reactor)
        self.db.configure(database_url)
        self.listener = Listener(self.db, reactor)
        self.listener.startService()
        self.leadership = Leadership(self.db, self.listener, reactor, name, **timing)
        self.leadership.claim("pancake", lambda: Recorder(events, name))

    async def close(self) -> None:
        await self.listener.stopService()
        self.db.close()


@pytest_twisted.async_yield_fixture
async def nodes(schema):
    """Two nodes claiming the same source; events record who ran it, in order."""
    events: list = []
    made = [Node(schema, name, events, retry_interval=0.2, query_timeout=0.5)
            for name in ("node-a", "node-b")]
    yield made[0].leadership, made[1].leadership, events
    for node in made:
        await node.close()


async def wait_until(predicate, timeout: float = 10.0) -> float:
    waited = 0.0
    while not predicate():
        assert waited < timeout, "condition not met in time"
        await sleep(0.05)
        waited += 0.05
    return waited


async def first_owner(a: Leadership, b: Leadership, events: list) -> None:
    a.startService()
    waited = await wait_until(lambda: events == [("start", "node-a")])
    # Nobody held the source before: no grace period to wait out.
    assert waited < a.grace
    b.startService()
    await sleep(0.6)
    assert b.owned == [] and events == [("start", "node-a")]


@pytest_twisted.ensureDeferred
async def test_one_owner_then_takeover_on_release(nodes):
    a, b, events = nodes
    await first_owner(a, b, events)
    assert await b.owners() == {"pancake": "node-a"}

    await a.stopService()
    waited = await wait_until(lambda: len(events) == 3)
    # The NOTIFY of a clean release makes it immediate: no retry interval, no grace.
    assert waited < b.grace
    assert events == [("start", "node-a"), ("stop", "node-a"), ("start", "node-b")]
    assert await a.owners() == {"pancake": "node-b"}
    await b.stopService()


@pytest_twisted.ensureDeferred
async def test_owner_losing_its_connection_stops_and_another_takes_over(nodes, sql):
    a, b, events = nodes
    await first_owner(a, b, events)
    sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE application_name = 'n2gateway:node-a'")
    await wait_until(lambda: ("stop", "node-a") in events)
    waited = await wait_until(lambda: len(events) == 3)
    # Whoever took the lock (node-b, or node-a again on a new connection) did not see
    # it released, so it waited out node-a's stop: never two sessions at once.
    assert events[:2] == [("start", "node-a"), ("stop", "node-a")]
    assert events[2][0] == "start"
    assert waited >= b.grace - 0.3
    await a.stopService()
    await b.stopService()


@pytest_twisted.ensureDeferred
async def test_owner_stops_its_source_as_soon_as_its_socket_closes(schema, sql):
    events: list = []
    # A check interval far longer than the wait below: only the socket can tell.
    node = Node(schema, "node-a", events, retry_interval=3.0, query_timeout=0.5)
    leadership = node.leadership
    leadership.startService()
    try:
        await wait_until(lambda: events == [("start", "node-a")])
        await sleep(0.1)  # past the check that started it
        sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'n2gateway:node-a'")
        waited = await wait_until(lambda: ("stop", "node-a") in events, timeout=5)
        assert waited < 1.0
        assert leadership.owned == []
    finally:
        await leadership.stopService()
        await node.close()
