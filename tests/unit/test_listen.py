"""The shared LISTEN connection, driven by a fake clock and a fake database."""

from __future__ import annotations

from twisted.internet import defer, task

from n2gateway.db import DatabaseUnavailable
from n2gateway.db.listen import Listener, backoff


class FakeConnection:
    def __init__(self, on_lost, on_notify) -> None:
        self.on_lost = on_lost
        self.on_notify = on_notify
        self.operations: list[str] = []
        self.queries: list[defer.Deferred] = []
        self.closed = False

    def runOperation(self, sql: str) -> defer.Deferred:
        self.operations.append(sql)
        return defer.succeed(None)

    def runQuery(self, sql: str) -> defer.Deferred:
        d = defer.Deferred()
        self.queries.append(d)
        return d

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.on_lost(ConnectionError("closed"))

    def die(self) -> None:
        """The server ended the backend: the socket closes."""
        self.closed = True
        self.on_lost(ConnectionError("server closed the connection unexpectedly"))


class FakeDatabase:
    def __init__(self) -> None:
        self.connections: list[FakeConnection] = []
        self.failures = 0  # the next N connection attempts fail

    async def connect(self, *, on_lost, on_notify) -> FakeConnection:
        if self.failures:
            self.failures -= 1
            raise DatabaseUnavailable("connection refused")
        connection = FakeConnection(on_lost, on_notify)
        self.connections.append(connection)
        return connection


def make(clock=None, **kwargs):
    clock = clock or task.Clock()
    db = FakeDatabase()
    listener = Listener(db, clock, backoff=lambda attempt: 2.0 ** attempt, **kwargs)
    return clock, db, listener


def test_listens_on_every_channel_and_dispatches_notifications():
    clock, db, listener = make()
    got, recovered = [], []
    listener.subscribe("chat_messages", got.append, lambda: recovered.append("m"))
    listener.subscribe("other", lambda p: got.append(("other", p)))
    listener.startService()

    assert listener.connected
    assert db.connections[0].operations == ['LISTEN "chat_messages"', 'LISTEN "other"']
    assert recovered == ["m"]  # LISTEN took effect: catch up from durable state
    db.connections[0].on_notify("chat_messages", '{"chat_id": 1}')
    db.connections[0].on_notify("nobody", "x")
    assert got == ['{"chat_id": 1}']
    listener.stopService()
    assert clock.getDelayedCalls() == []


def test_reconnects_with_backoff_then_relistens_and_calls_on_recovered():
    clock, db, listener = make()
    recovered = []
    listener.subscribe("chat_messages", lambda p: None, lambda: recovered.append(1))
    listener.subscribe("chat_messages_read", lambda p: None, lambda: recovered.append(2))
    listener.startService()
    assert recovered == [1, 2]

    db.failures = 2
    db.connections[0].die()
    assert not listener.connected
    # First attempt is immediate and fails; then 1 s, then 2 s.
    assert [c.getTime() for c in clock.getDelayedCalls()] == [1.0]
    clock.advance(1.0)
    assert [c.getTime() - clock.seconds() for c in clock.getDelayedCalls()] == [2.0]
    assert len(db.connections) == 1
    clock.advance(2.0)

    assert listener.connected and listener.reconnects == 1
    assert db.connections[1].operations == ['LISTEN "chat_messages"', 'LISTEN "chat_messages_read"']
    assert recovered == [1, 2, 1, 2]
    listener.stopService()
    assert clock.getDelayedCalls() == []


def test_a_keepalive_without_answer_means_a_dead_connection():
    clock, db, listener = make(keepalive=10.0, keepalive_timeout=5.0)
    recovered = []
    listener.subscribe("chat_messages", lambda p: None, lambda: recovered.append(1))
    listener.startService()

    clock.advance(10.0)
    first = db.connections[0]
    first.queries[0].callback([(1,)])  # answered: still alive
    clock.advance(10.0)
    assert len(first.queries) == 2  # silence from here on
    clock.advance(5.0)

    assert first.closed
    assert len(db.connections) == 2 and listener.connected and listener.reconnects == 1
    assert recovered == [1, 1]
    listener.stopService()
    assert clock.getDelayedCalls() == []


def test_subscribing_while_connected_listens_and_then_calls_on_recovered():
    clock, db, listener = make()
    listener.startService()
    recovered = []
    listener.subscribe("a", lambda p: None, lambda: recovered.append("a"))
    listener.subscribe("b", lambda p: None, lambda: recovered.append("b"))
    assert recovered == []
    clock.advance(0)
    assert db.connections[0].operations == ['LISTEN "a"', 'LISTEN "b"']
    assert recovered == ["a", "b"]
    listener.stopService()
    assert clock.getDelayedCalls() == []


def test_a_late_subscriber_to_a_listened_channel_is_told_it_is_live():
    # A source handed back to this gateway subscribes again: it must catch up.
    clock, db, listener = make()
    listener.startService()
    recovered = []
    unsubscribe = listener.subscribe("a", lambda p: None, lambda: recovered.append(1))
    clock.advance(0)
    unsubscribe()
    listener.subscribe("a", lambda p: None, lambda: recovered.append(2))
    clock.advance(0)
    assert db.connections[0].operations == ['LISTEN "a"']
    assert recovered == [1, 2]
    listener.stopService()
    assert clock.getDelayedCalls() == []


def test_a_failing_subscriber_does_not_stop_the_others():
    clock, db, listener = make()

    def broken(payload):
        raise ValueError(payload)

    got = []
    listener.subscribe("c", broken, lambda: 1 / 0)
    listener.subscribe("c", got.append)
    listener.startService()
    db.connections[0].on_notify("c", "x")
    assert got == ["x"] and listener.connected
    listener.stopService()


def test_stopping_while_waiting_to_reconnect_leaves_no_timer():
    clock, db, listener = make()
    db.failures = 5
    listener.startService()
    assert clock.getDelayedCalls()
    d = listener.stopService()
    assert d.called
    assert clock.getDelayedCalls() == []


def test_default_backoff_grows_to_ten_seconds_with_jitter():
    assert 0.4 <= backoff(0) <= 0.6
    assert 8.0 <= backoff(20) <= 12.0
