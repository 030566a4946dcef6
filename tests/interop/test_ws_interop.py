"""The `ws` npm client (a plain third-party WebSocket) against the gateway's /ws:
replay from an offset, live events, and an error frame for a malformed one."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer, protocol, reactor

from tests.support.waiting import eventually

HERE = Path(__file__).parent


class Collect(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.out = b""
        self.err = b""
        self.ended: defer.Deferred = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.out += data

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason) -> None:
        self.ended.callback(reason.value.exitCode)


@pytest_twisted.ensureDeferred
async def test_the_ws_npm_client_resumes_goes_live_and_is_told_about_bad_frames(gateway_factory):
    node = shutil.which("node")
    if node is None or not (HERE / "node_modules" / "ws").is_dir():
        pytest.fail("node and tests/interop/node_modules are needed (npm ci --prefix tests/interop)")
    gw = await gateway_factory()
    publish = gw.gateway.context.publish
    first = await publish(["room"], "old", {"n": 0})
    for n in (1, 2):
        await publish(["room"], "old", {"n": n})
    run = Collect()
    reactor.spawnProcess(run, node, [node, str(HERE / "ws_client.mjs"),
                                     f"ws://127.0.0.1:{gw.port}/ws?userId=interop", "room",
                                     str(first), "4"], env=dict(os.environ), path=str(HERE))
    await eventually(lambda: b"SUBSCRIBED" in run.out, 15, "the ws client to subscribe")
    for n in (3, 4):
        await publish(["room"], "live", {"n": n, "text": "đã nhận"})
    code = await run.ended
    assert code == 0, run.err.decode()
    seen = json.loads(run.out.decode().strip().splitlines()[-1])
    assert seen["welcome"]["userId"] == "interop"
    assert [(e["type"], e["payload"]["n"]) for e in seen["events"]] == [
        ("old", 1), ("old", 2), ("live", 3), ("live", 4)]
    assert [int(e["offset"]) for e in seen["events"]] == list(range(first + 1, first + 5))
    assert all(e["room"] == "room" for e in seen["events"])
    assert seen["error"] == "malformed JSON"
    assert seen["close"]["code"] == 1000
