"""A client resumes across a gateway crash: SIGKILL, events published meanwhile by
another writer, restart, resume with the last offset seen: everything after it, once."""

from __future__ import annotations

import pytest_twisted
import treq

from tests.support.gateway import WITHOUT_SOURCES, GatewayProcess
from tests.support.waiting import eventually
from tests.support.ws import WsClient


def hub_ready(url: str) -> bool:
    import json
    import urllib.request

    with urllib.request.urlopen(url + "/api/hub/status", timeout=2) as answer:
        return json.loads(answer.read())["ready"]


async def publish(url: str, n: int) -> str:
    answer = await treq.post(url + "/api/publish",
                             json={"rooms": ["room"], "event": "e", "payload": {"n": n}})
    assert answer.code == 200, await answer.text()
    return (await answer.json())["offset"]


@pytest_twisted.ensureDeferred
async def test_resume_after_sigkill_and_restart_delivers_everything_after_the_offset_once(
        tmp_path, database_url, sql):
    first = GatewayProcess(tmp_path, *WITHOUT_SOURCES, "--poll-interval",
                           "0.2", database_url=database_url).start()
    try:
        await first.wait_healthy()
        client = await WsClient.connect(first.port, "userId=u")
        await client.subscribe("room")
        for n in range(5):
            await publish(first.url, n)
        await client.wait_events(5)
        await publish(first.url, 5)  # durable, maybe never delivered before the crash
        await first.kill()
        await client.closed
        last_seen = client.events()[-1]["offset"]
    finally:
        first.ensure_stopped()
    # Published while no gateway runs (e.g. by a backend writing the journal itself).
    for n in range(6, 9):
        sql("SELECT n2_journal_append(%s::json)",
            ('[{"rooms": ["room"], "event": "e", "payload": {"n": %d}}]' % n,))

    second = GatewayProcess(tmp_path, *WITHOUT_SOURCES, "--poll-interval", "0.2",
                            database_url=database_url,
                            port=first.port).start()
    try:
        await second.wait_healthy()
        await eventually(lambda: hub_ready(second.url), 10, "the hub to follow the journal")
        again = await WsClient.connect(second.port, "userId=u")
        answer = await again.subscribe("room", offset=last_seen)
        assert answer["type"] == "subscribed"
        await publish(second.url, 9)
        # Event 5 reached the first client or not before the crash: the rest, 4 or 5.
        await again.wait_events(10 - len(client.events()))
        await again.close()
        offsets = client.offsets() + again.offsets()
        assert [e["payload"]["n"] for e in client.events() + again.events()] == list(range(10))
        assert offsets == list(range(offsets[0], offsets[0] + 10))
        assert not [f for f in again.frames if f["type"] == "gap"]
        assert "DEVELOPMENT MODE" in second.log_text()  # no --jwt-secret: said loudly
    finally:
        second.ensure_stopped()
