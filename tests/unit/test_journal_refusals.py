"""One bad event fails alone: refused before it joins a batch, or, when the database
still refuses a batch, by retrying that batch event by event."""

from __future__ import annotations

import json

import psycopg2
import pytest
from twisted.internet import defer, task
from twisted.logger import capturedLogs, formatEvent

from n2gateway.journal import APPEND, RING, PostgresJournal
from n2gateway.storable import Unstorable
from n2gateway.upstream.relay import EventRelay

QUOTED = "the-payload-text-postgres-quotes"


class RefusingDatabase:
    """Stores every batch but one holding an event named ``poison``, which it refuses
    the way PostgreSQL does: with a message quoting the payload."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.batches: list[int] = []

    async def query(self, sql: str, params=None) -> list[tuple]:
        if sql == RING:
            return []
        assert sql == APPEND
        batch = json.loads(params["batch"])
        self.batches.append(len(batch))
        if any(e["event"] == "poison" for e in batch):
            raise psycopg2.errors.UntranslatableCharacter(f"CONTEXT: JSON data: {QUOTED}")
        self.rows.extend(batch)
        return [(len(self.rows) - len(batch) + n + 1,) for n in range(len(batch))]


def outcome(d: defer.Deferred):
    results: list = []
    d.addBoth(results.append)
    return results[0] if results else None


def test_a_batch_the_database_refuses_is_retried_one_by_one_and_only_the_culprit_fails():
    clock, db = task.Clock(), RefusingDatabase()
    journal = PostgresJournal(db, clock)
    names = ["e0", "e1", "poison", "e3", "e4"]
    with capturedLogs() as logs:
        appends = [journal.append(["pancake:page:1"], name, {"n": n})
                   for n, name in enumerate(names)]
        clock.advance(0)
    results = [outcome(d) for d in appends]
    assert [r for r in results if isinstance(r, int)] == [1, 2, 3, 4]
    assert [e["event"] for e in db.rows] == ["e0", "e1", "e3", "e4"]
    refused = results[2].value
    assert isinstance(refused, Unstorable) and "database refused" in str(refused)
    assert db.batches == [5, 1, 1, 1, 1, 1]
    assert journal.refusals.refused == {("pancake", "database"): 1}
    text = "\n".join(formatEvent(e) for e in logs)
    assert "poison" in text and QUOTED not in text and QUOTED not in str(refused)
    # Batching resumes once the refused batch is behind.
    more = [journal.append(["r"], "e", n) for n in range(3)]
    clock.advance(0)
    assert [outcome(d) for d in more] == [5, 6, 7] and db.batches[-1] == 3


def test_an_unstorable_event_is_refused_at_once_and_counted_its_neighbours_land():
    clock, db = task.Clock(), RefusingDatabase()
    journal = PostgresJournal(db, clock)
    good = [journal.append(["pancake"], "e", n) for n in range(19)]
    with pytest.raises(Unstorable, match="NUL"):
        journal.append(["pancake", "pancake:page:1"], "bad", {"text": "bad\x00char"})
    clock.advance(0)
    assert [outcome(d) for d in good] == list(range(1, 20)) and db.batches == [19]
    assert journal.refusals.refused == {("pancake", "nul"): 1}


def test_a_relay_logs_a_refused_event_with_its_name_and_reason_without_payload():
    clock = task.Clock()
    journal = PostgresJournal(RefusingDatabase(), clock)
    with capturedLogs() as logs:
        EventRelay("pancake", journal.append).publish(
            ["pancake"], "messaging", {"text": "bad\x00char"})
    lines = [formatEvent(e) for e in logs]
    assert lines == ["pancake: messaging not published: payload contains a NUL character (\\u0000)"]
    assert all(e.get("log_failure") is None for e in logs)  # no traceback for bad input
