"""--retention-rows on a running gateway: what a resuming client is replayed."""

from __future__ import annotations

import pytest_twisted

from tests.support.waiting import eventually
from tests.support.ws import WsClient


@pytest_twisted.ensureDeferred
async def test_a_client_resuming_from_the_start_gets_a_gap_and_only_the_newest_rows(
        gateway_factory, sql):
    """With --retention-rows 5, twelve events were all still replayed half a minute
    later: the journal was trimmed once a minute. It is trimmed after every commit."""
    gw = await gateway_factory(retention_rows=5)
    for n in range(12):
        await gw.gateway.context.publish(["room"], "e", {"n": n})
    await eventually(lambda: sql("SELECT COUNT(*) FROM n2_journal") == [(5,)], 5,
                     "the journal trimmed to five rows")
    client = await WsClient.connect(gw.port, "userId=u")
    try:
        await client.subscribe("room", offset="0")
        assert [f["type"] for f in client.frames[1:]] == ["gap"] + ["e"] * 5 + ["subscribed"]
        assert [f["payload"]["n"] for f in client.frames[2:7]] == list(range(7, 12))
    finally:
        client.protocol.dropConnection(abort=True)
