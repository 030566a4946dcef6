"""
The example provider plugin (examples/n2gateway-sse-feed), built and installed into a
fresh venv beside the gateway, works with no change to the gateway: started with
credentials through its own route, its events reach /ws and Socket.IO clients, its
status is in /health and /metrics, its token in no log, it reconnects after the
upstream drops (resuming after the last event) and fails over to a second gateway.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor

from n2gateway.downstream.auth import issue_token
from tests.fakes.sse_feed import FakeFeed
from tests.support.gateway import GatewayProcess
from tests.support.plugin_venv import twistd_of, venv_with
from tests.support.socketio_peer import SocketIoPeer
from tests.support.ws import WsClient

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "n2gateway-sse-feed"
TOKEN = "feed-upstream-token-of-the-e2e-0123"
WRONG = "not-the-feed-token-0123456"
ADMIN = "feed-admin-token-of-the-e2e-tests"
SECRET = "feed-jwt-secret-of-at-least-32-bytes"


@pytest.fixture(scope="module")
def feed_python(tmp_path_factory) -> Path:
    return venv_with(EXAMPLE, tmp_path_factory.mktemp("feed") / "venv")


def fetch(gateway: GatewayProcess, method: str, path: str, body: dict | None = None):
    request = urllib.request.Request(
        gateway.url + path, method=method, headers={"Authorization": f"Bearer {ADMIN}"},
        data=None if body is None else json.dumps(body).encode())
    with urllib.request.urlopen(request, timeout=10) as answer:
        return answer.status, answer.read().decode()


@pytest_twisted.ensureDeferred
async def test_an_installed_sse_provider_relays_reconnects_and_fails_over(
        feed_python, gateway_process, database_url, tmp_path) -> None:
    fake = FakeFeed(reactor, TOKEN).listen()
    args = ("--disable-plugin", "chat,pancake,tpos", "--admin-token", ADMIN,
            "--jwt-secret", SECRET, "--feed-url", fake.url())
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = gateway_process(*args, database_url=database_url, twistd=twistd_of(feed_python),
                            tmp_path=tmp_path / "a").start()
    await first.wait_plugin("feed", held=True)
    second = gateway_process(*args, database_url=database_url, twistd=twistd_of(feed_python),
                             tmp_path=tmp_path / "b").start()
    await second.wait_healthy()
    ws = peer = None
    try:
        # A token the upstream refuses: the source waits for a new login, not retrying.
        assert fetch(first, "POST", "/api/realtime/feed/start",
                     {"token": WRONG, "channel": "shop-1"})[0] == 200
        refused = await first.wait_plugin("feed", needsLogin=True)
        assert (refused["connected"], refused["lastError"], fake.refused) == (
            False, "HTTP 401", 1)

        assert fetch(first, "POST", "/api/realtime/feed/start",
                     {"token": TOKEN, "channel": "shop-1"})[0] == 200
        await fake.wait_accepted(1).addTimeout(20, reactor)
        status = await first.wait_plugin("feed", connected=True)
        assert (status["channel"], status["hasToken"]) == ("shop-1", True)
        metrics = fetch(first, "GET", "/metrics")[1]
        assert 'n2gateway_upstream_connected{provider="feed"} 1.0' in metrics

        ws = await WsClient.connect(first.port, "token=" + issue_token(SECRET, "w", ["feed*"]))
        assert (await ws.subscribe("feed:shop-1"))["type"] == "subscribed"
        peer = await SocketIoPeer.connected(second.url,
                                            {"token": issue_token(SECRET, "s", ["feed*"])})
        assert await peer.emit("subscribe", "feed:shop-1") == {"ok": True}

        fake.push("order", {"id": 1, "total": 5})
        frame = await ws.next("feed:order")
        assert (frame["room"], frame["payload"]) == ("feed:shop-1", {"id": 1, "total": 5})
        event = await peer.next("event", timeout=20)
        assert (event["event"], event["args"][0]) == ("feed:order", {"id": 1, "total": 5})

        # The upstream drops: the source reconnects, resuming after the last event.
        fake.drop()
        await fake.wait_accepted(2).addTimeout(30, reactor)
        assert fake.accepted[1] == ("shop-1", "1")
        fake.push("order", {"id": 2})
        assert (await ws.next("feed:order", match=lambda f: f["payload"] == {"id": 2}))

        # The holder drains: the second gateway takes the feed over from the stored row.
        assert await first.terminate() == 0
        await fake.wait_accepted(3).addTimeout(30, reactor)
        await second.wait_plugin("feed", held=True, connected=True)
        fake.push("order", {"id": 3})
        while (await peer.next("event", timeout=20))["args"][0] != {"id": 3}:
            pass

        health = json.dumps(await second.wait_healthy())
        shown = "\n".join([first.log_text(), second.log_text(), health,
                           fetch(second, "GET", "/metrics")[1]])
        assert TOKEN not in shown and TOKEN[:12] not in shown and WRONG not in shown
        assert fake.refused == 1  # the wrong token was tried once, never again
    finally:
        if ws is not None:
            ws.protocol.sendClose()
        if peer is not None:
            await peer.close()
        await fake.close()
