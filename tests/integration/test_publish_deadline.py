"""``/api/publish`` answers within a deadline, and ``Idempotency-Key`` makes a retry
safe: a publish stuck behind a hung database answers 503 JSON; one not yet sent is
never stored later; one already sent may be, and its retry answers its offset."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import pytest_twisted
import treq
from twisted.internet import defer

from n2gateway.http import hub_routes
from tests.support.waiting import eventually

APPEND_LOCK = 1848599407


@contextmanager
def appends_hang(sql):
    """The journal's append lock held by the test: appends hang, as on a hung database."""
    sql("SELECT pg_advisory_lock(%s)", (APPEND_LOCK,))
    try:
        yield
    finally:
        sql("SELECT pg_advisory_unlock(%s)", (APPEND_LOCK,))


async def publish(url: str, n: int, key: str | None = None) -> tuple[int, dict]:
    answer = await treq.post(url + "/api/publish", json={"rooms": ["r"], "event": "e",
                                                         "payload": n},
                             headers={"Idempotency-Key": key} if key else {})
    return answer.code, await answer.json()


def started(coroutine) -> defer.Deferred:
    return defer.Deferred.fromCoroutine(coroutine)


@pytest.fixture
def short_deadline(monkeypatch):
    monkeypatch.setattr(hub_routes, "PUBLISH_DEADLINE", 0.5)


@pytest_twisted.ensureDeferred
async def test_a_retry_with_the_same_key_is_stored_once_and_answers_the_same_offset(
        gateway_factory, sql):
    gw = await gateway_factory()
    first = await publish(gw.url, 1, key="order-77-created")
    again = await publish(gw.url, 1, key="order-77-created")
    other = await publish(gw.url, 2, key="order-78-created")
    assert first[0] == again[0] == other[0] == 200
    assert first[1]["offset"] == again[1]["offset"] != other[1]["offset"]
    assert sql("SELECT payload::text FROM n2_journal ORDER BY seq") == [("1",), ("2",)]


@pytest.mark.parametrize("key", ["", "with space", "x" * 201, "ké"])
@pytest_twisted.ensureDeferred
async def test_a_malformed_key_is_a_400(gateway_factory, sql, key):
    gw = await gateway_factory()
    answer = await treq.post(gw.url + "/api/publish", json={"rooms": ["r"], "event": "e"},
                             headers={b"Idempotency-Key": key.encode()})
    assert answer.code == 400
    assert "Idempotency-Key" in (await answer.json())["message"]
    assert sql("SELECT count(*) FROM n2_journal") == [(0,)]


@pytest_twisted.ensureDeferred
async def test_a_publish_sent_to_a_hung_database_answers_503_and_its_retry_is_safe(
        gateway_factory, sql, short_deadline):
    gw = await gateway_factory()
    with appends_hang(sql):
        code, answer = await publish(gw.url, 1, key="k-sent-once")
        assert code == 503 and "may still be stored" in answer["message"]
    await eventually(lambda: gw.gateway.journal.pending == 0, 10, "the append to land")
    code, answer = await publish(gw.url, 1, key="k-sent-once")
    assert code == 200, answer
    assert sql("SELECT seq::text, payload::text FROM n2_journal") == [(answer["offset"], "1")]


@pytest_twisted.ensureDeferred
async def test_a_publish_not_yet_sent_when_its_deadline_passes_is_never_stored(
        gateway_factory, sql, short_deadline):
    gw = await gateway_factory()
    with appends_hang(sql):
        stuck = started(publish(gw.url, 1))
        await eventually(lambda: gw.gateway.journal.pending == 1, 10, "the first append")
        # Behind the first (which is on its way): this one is not sent before its deadline.
        code, answer = await publish(gw.url, 2, key="k-queued")
        assert code == 503 and "it will not be stored" in answer["message"]
        assert (await stuck)[0] == 503
    await eventually(lambda: gw.gateway.journal.pending == 0, 10, "the first append to land")
    assert sql("SELECT payload::text FROM n2_journal") == [("1",)]
    assert (await publish(gw.url, 3))[0] == 200
