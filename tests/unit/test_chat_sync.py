"""The chat sync's doorbell handling, with a fake clock and a fake store."""

from __future__ import annotations

from twisted.internet import defer, task

from n2gateway.db import DatabaseUnavailable
from n2gateway_plugins.chat.store import SyncResult
from n2gateway_plugins.chat.sync import ChatSync


class FakeListener:
    connected = True

    def __init__(self) -> None:
        self.handlers = {}

    def subscribe(self, channel, on_notify, on_recovered=None):
        self.handlers[channel] = (on_notify, on_recovered)
        return lambda: self.handlers.pop(channel)

    def notify(self, channel, payload):
        self.handlers[channel][0](payload)

    def recover(self):
        for _, on_recovered in self.handlers.values():
            on_recovered()


class FakeStore:
    grace = 10.0

    def __init__(self) -> None:
        self.calls = []
        self.fail = 0
        self.waiting = 0

    async def prepare(self):
        return []

    async def sync(self, *, reads, hinted, announce):
        if self.fail:
            self.fail -= 1
            raise DatabaseUnavailable("connection refused")
        self.calls.append((dict(reads), set(hinted), announce))
        return SyncResult(relayed=len(hinted), waiting=self.waiting)


def make():
    clock, listener, store = task.Clock(), FakeListener(), FakeStore()
    sync = ChatSync(clock, listener, store)
    sync.startService()
    return clock, listener, store, sync


def test_many_notifications_in_one_turn_make_one_sync():
    clock, listener, store, sync = make()
    for i in range(1, 1001):
        listener.notify("chat_messages", f'{{"chat_id": {i}, "user_id": 1}}')
    listener.notify("chat_messages_read",
                    '{"chat_id": 5, "user_id": 1, "read_by_student": true, "read_by_teacher": false}')
    listener.notify("chat_messages_read", '{"chat_id": 6}')  # flags to be read from the table
    clock.advance(0)

    assert len(store.calls) == 1
    reads, hinted, announce = store.calls[0]
    assert hinted == set(range(1, 1001)) and not announce
    assert reads == {5: {"user_id": 1, "read_by_student": True, "read_by_teacher": False},
                     6: None}
    assert sync.relayed == 1000
    sync.stopService()
    assert clock.getDelayedCalls() == []


def test_recovery_on_both_channels_is_one_catch_up_with_one_announcement():
    clock, listener, store, sync = make()
    listener.recover()
    clock.advance(0)
    assert store.calls == [({}, set(), True)]
    sync.stopService()


def test_doorbells_while_the_database_is_down_are_kept_for_the_retry():
    clock, listener, store, sync = make()
    store.fail = 2
    listener.notify("chat_messages", '{"chat_id": 1}')
    clock.advance(0)
    listener.notify("chat_messages", '{"chat_id": 2}')
    clock.advance(0.5)
    assert store.calls == []
    clock.advance(1.0)
    assert store.calls == [({}, {1, 2}, False)]
    sync.stopService()
    assert clock.getDelayedCalls() == []


def test_garbage_is_skipped_but_still_rings_the_bell():
    clock, listener, store, sync = make()
    listener.notify("chat_messages", "garbage")
    listener.notify("chat_messages_read", "[1, 2]")
    clock.advance(0)
    assert store.calls == [({}, set(), False)]
    sync.stopService()


def test_an_unsettled_gap_is_looked_at_again_but_a_doorbell_does_not_wait_for_it():
    clock, listener, store, sync = make()
    store.waiting = 1
    listener.notify("chat_messages", '{"chat_id": 2}')
    clock.advance(0)
    assert len(store.calls) == 1
    clock.advance(4)
    listener.notify("chat_messages", '{"chat_id": 3}')
    clock.advance(0)
    assert len(store.calls) == 2
    store.waiting = 0
    clock.advance(10)
    assert len(store.calls) == 3
    assert clock.getDelayedCalls() == []
    d = sync.stopService()
    assert isinstance(d, defer.Deferred) and d.called
