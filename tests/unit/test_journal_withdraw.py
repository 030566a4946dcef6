"""A publisher that gives up on an append (cancels it): one not yet sent is never
stored; one already sent goes on (it may be stored), and the journal keeps going."""

from __future__ import annotations

import json

from twisted.internet import defer, task

from n2gateway.journal import APPEND, RING, PostgresJournal, Withdrawn


class HeldDatabase:
    """Each append statement waits until the test answers it."""

    def __init__(self) -> None:
        self.sent: list[list[dict]] = []
        self.waiting: list[defer.Deferred] = []
        self.stored = 0

    def query(self, sql: str, params=None) -> defer.Deferred:
        if sql == RING:
            return defer.succeed([])
        assert sql == APPEND
        batch = json.loads(params["batch"])
        self.sent.append(batch)
        answer: defer.Deferred = defer.Deferred()
        self.waiting.append(answer)
        return answer

    def answer(self) -> None:
        batch = self.sent[len(self.sent) - len(self.waiting)]
        rows = [(self.stored + n + 1,) for n in range(len(batch))]
        self.stored += len(batch)
        self.waiting.pop(0).callback(rows)


def failure_of(d: defer.Deferred):
    failures: list = []
    d.addErrback(failures.append)
    return failures[0].value if failures else None


def test_a_cancelled_append_not_yet_sent_is_withdrawn_and_a_sent_one_goes_on():
    clock, db = task.Clock(), HeldDatabase()
    journal = PostgresJournal(db, clock)
    sent = journal.append(["r"], "sent", 1)
    clock.advance(0)  # the first batch is on its way
    queued = journal.append(["r"], "queued", 2)
    sent.cancel()
    queued.cancel()
    assert isinstance(failure_of(queued), Withdrawn)
    assert isinstance(failure_of(sent), defer.CancelledError)
    db.answer()  # the sent one is stored after all; its caller has gone
    assert journal.pending == 0 and [e["event"] for b in db.sent for e in b] == ["sent"]
    later = journal.append(["r"], "later", 3)
    clock.advance(0)
    db.answer()
    assert later.result == 2


def test_keyed_appends_travel_alone_and_carry_their_key():
    clock, db = task.Clock(), HeldDatabase()
    journal = PostgresJournal(db, clock)
    for name, key in (("a", None), ("b", None), ("c", "key-of-c"), ("d", None)):
        journal.append(["r"], name, 0, key=key)
    clock.advance(0)
    for _ in range(3):
        db.answer()
    assert [[e["event"] for e in batch] for batch in db.sent] == [["a", "b"], ["c"], ["d"]]
    assert db.sent[1][0]["key"] == "key-of-c" and "key" not in db.sent[0][0]
