"""Coalesced statements: the first call runs at once, the calls made while it is in
flight run together next, each gets its own result, and a failed batch fails only
its own callers."""

from __future__ import annotations

from twisted.internet import defer

from n2gateway.scheduling import MAX_BATCH, Coalesced


class Statements:
    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.in_flight: list[defer.Deferred] = []

    def run(self, items: list[int]) -> defer.Deferred:
        self.batches.append(items)
        self.in_flight.append(defer.Deferred())
        return self.in_flight[-1]

    def answer(self, results) -> None:
        self.in_flight.pop(0).callback(results)


def call(coalesced: Coalesced, item: int) -> defer.Deferred:
    return defer.Deferred.fromCoroutine(coalesced(item))


def test_calls_during_a_statement_share_the_next_one_and_keep_their_results() -> None:
    db = Statements()
    coalesced = Coalesced(db.run)
    first = call(coalesced, 1)
    later = [call(coalesced, n) for n in (2, 3, 4)]
    assert db.batches == [[1]]  # no wait for company when idle
    db.answer(["one"])
    assert first.result == "one"
    assert db.batches == [[1], [2, 3, 4]]
    db.answer(["two", "three", "four"])
    assert [d.result for d in later] == ["two", "three", "four"]
    call(coalesced, 5)
    assert db.batches[-1] == [5]  # idle again: at once


def test_a_failed_batch_fails_its_callers_only() -> None:
    db = Statements()
    coalesced = Coalesced(db.run)
    first = call(coalesced, 1)
    failing = [call(coalesced, n) for n in (2, 3)]
    db.answer(["one"])
    errors = []
    for d in failing:
        d.addErrback(lambda f: errors.append(f.value))
    after = call(coalesced, 4)
    db.in_flight.pop(0).errback(RuntimeError("database gone"))
    assert [str(e) for e in errors] == ["database gone"] * 2
    assert db.batches[-1] == [4]
    db.answer(["four"])
    assert (first.result, after.result) == ("one", "four")


def test_a_batch_is_bounded() -> None:
    db = Statements()
    coalesced = Coalesced(db.run)
    call(coalesced, 0)
    waiting = [call(coalesced, n) for n in range(1, MAX_BATCH + 2)]
    db.answer([None])
    assert len(db.batches[-1]) == MAX_BATCH
    db.answer(list(range(MAX_BATCH)))
    assert db.batches[-1] == [MAX_BATCH + 1]
    db.answer(["last"])
    assert waiting[-1].result == "last"
