"""One bad event among many, on real PostgreSQL: it alone fails, its neighbours land.

The audit's reproductions: 30 concurrent ``/api/publish`` with one ``"payload": NaN``,
and a Pancake burst of 20 events with one ``"bad\\u0000char"``.
"""

from __future__ import annotations

import json

import pytest_twisted
import treq
from twisted.internet import defer
from twisted.logger import capturedLogs, formatEvent

from n2gateway.journal import JsonText
from n2gateway.storable import Unstorable
from n2gateway_plugins.pancake.relay import PancakeRelay
from tests.support.waiting import eventually


async def post_raw(url: str, body: bytes) -> tuple[int, dict]:
    answer = await treq.post(url + "/api/publish", data=body,
                             headers={"Content-Type": "application/json"})
    return answer.code, await answer.json()


@pytest_twisted.ensureDeferred
async def test_thirty_concurrent_publishes_with_one_nan_only_the_nan_is_refused(
        gateway_factory, sql):
    gw = await gateway_factory()
    bodies = [b'{"rooms": ["r"], "event": "e", "payload": %d}' % n for n in range(29)]
    bodies.insert(13, b'{"rooms": ["r"], "event": "e", "payload": NaN}')
    answers = await defer.gatherResults([defer.Deferred.fromCoroutine(post_raw(gw.url, body)) for body in bodies])
    codes = [code for code, _ in answers]
    assert codes.count(200) == 29 and codes[13] == 400
    assert "NaN" in answers[13][1]["message"]
    assert len({a["offset"] for code, a in answers if code == 200}) == 29
    assert sql("SELECT count(*) FROM n2_journal") == [(29,)]


@pytest_twisted.ensureDeferred
async def test_a_pancake_burst_with_one_nul_stores_the_other_nineteen(gateway_factory, sql):
    gw = await gateway_factory()
    relay = PancakeRelay(gw.gateway.journal.append)
    with capturedLogs() as logs:
        for n in range(20):
            text = "bad\x00char" if n == 7 else f"message {n}"
            relay("pages:42", "pages:update_conversation", {"page_id": "42", "text": text})
        await eventually(lambda: sql("SELECT count(*) FROM n2_journal") == [(19,)])
    assert [formatEvent(e) for e in logs if e.get("log_level").name == "warn"] == [
        "pancake: pages:update_conversation not published: "
        "payload contains a NUL character (\\u0000)"]
    assert gw.gateway.journal.refusals.refused == {("pancake", "nul"): 1}


@pytest_twisted.ensureDeferred
async def test_a_batch_postgresql_still_refuses_fails_only_the_offending_event(gateway_factory, sql):
    """Text already JSON (a source reading its own database) with an escaped lone
    surrogate passes the encoder's checks; PostgreSQL refuses it."""
    gw = await gateway_factory()
    journal = gw.gateway.journal
    with capturedLogs() as logs:
        appends = [journal.append(["chat"], "e", JsonText('"\\ud800 secret-looking-text"')
                                  if n == 2 else {"n": n}) for n in range(6)]
        results = await defer.DeferredList(appends, consumeErrors=True)
    stored = [value for ok, value in results if ok]
    assert len(stored) == 5 and sorted(stored) == stored
    assert results[2][1].check(Unstorable)
    assert sql("SELECT payload::text FROM n2_journal ORDER BY seq") == [
        (json.dumps({"n": n}, separators=(",", ":")),) for n in (0, 1, 3, 4, 5)]
    assert "secret-looking-text" not in "\n".join(formatEvent(e) for e in logs)
