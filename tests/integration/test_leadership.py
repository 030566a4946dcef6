"""Leadership by advisory lock, with real PostgreSQL and two nodes in one process."""

from __future__ import annotations

import pytest_twisted
from twisted.application import service
from twisted.internet import reactor

from n2gateway.db import Database
from n2gateway.db.listen import Listener
from n2gateway.leadership import Leadership
from tests.support.waiting import eventually, sleep, time_until


class Recorder(service.Service):
    def __init__(self, log: list, node: str) -> None:
        self.log, self.node = log, node

    def startService(self) -> None:
        super().startService()
        self.log.append(("start", self.node))

    def stopService(self) -> None:
        super().stopService()
        self.log.append(("stop", self.node))


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
async def nodes(database_url, migrated_db):
    """Two nodes claiming the same source; events record who ran it, in order."""
    events: list = []
    # A grace period (retry_interval + query_timeout) long enough that only what a test
    # waits for can start a source before it, however slow the machine.
    made = [Node(database_url, name, events, retry_interval=0.2, query_timeout=5.0)
            for name in ("node-a", "node-b")]
    yield made[0].leadership, made[1].leadership, events
    for node in made:
        await node.close()


async def first_owner(a: Leadership, b: Leadership, events: list) -> None:
    a.startService()
    waited = await time_until(lambda: events == [("start", "node-a")])
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
    waited = await time_until(lambda: len(events) == 3)
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
    await eventually(lambda: ("stop", "node-a") in events)
    waited = await time_until(lambda: len(events) == 3)
    # Whoever took the lock (node-b, or node-a again on a new connection) did not see
    # it released, so it waited out node-a's stop: never two sessions at once.
    assert events[:2] == [("start", "node-a"), ("stop", "node-a")]
    assert events[2][0] == "start"
    assert waited >= b.grace - 0.3
    await a.stopService()
    await b.stopService()


@pytest_twisted.ensureDeferred
async def test_owner_stops_its_source_as_soon_as_its_socket_closes(database_url, migrated_db,
                                                                  sql):
    events: list = []
    # A check interval far longer than the wait below: only the socket can tell.
    node = Node(database_url, "node-a", events, retry_interval=60.0, query_timeout=0.5)
    leadership = node.leadership
    leadership.startService()
    try:
        await eventually(lambda: events == [("start", "node-a")])
        await sleep(0.1)  # past the check that started it
        sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'n2gateway:node-a'")
        await eventually(lambda: ("stop", "node-a") in events, timeout=10)
        assert leadership.owned == []
    finally:
        await leadership.stopService()
        await node.close()
