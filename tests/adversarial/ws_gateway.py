"""A development-mode gateway process for the WebSocket adversarial tests, and how
they check it still serves everyone else."""

from __future__ import annotations

import json
import urllib.request

import pytest_twisted

from tests.support.gateway import WITHOUT_SOURCES, GatewayProcess
from tests.support.rawws import RawWebSocket

SOCKETIO = "/socket.io/?EIO=4&transport=websocket"


def hub_status(gateway: GatewayProcess) -> dict:
    with urllib.request.urlopen(gateway.url + "/api/hub/status", timeout=5) as answer:
        return json.loads(answer.read())


def still_serves(gateway: GatewayProcess) -> None:
    """/health is fine and a new client subscribes and gets a published event."""
    assert gateway.health()[0] == 200
    client = RawWebSocket(gateway.port, "/ws?userId=bystander", timeout=10)
    try:
        assert json.loads(client.texts(1)[0])["type"] == "welcome"
        client.send_json({"type": "subscribe", "room": "news"})
        assert json.loads(client.texts(1)[0]) == {"type": "subscribed", "room": "news"}
        request = urllib.request.Request(
            gateway.url + "/api/publish", method="POST", headers={"Content-Type": "application/json"},
            data=json.dumps({"rooms": ["news"], "event": "e", "payload": {"ok": 1}}).encode())
        urllib.request.urlopen(request, timeout=10).read()
        assert json.loads(client.texts(1)[0])["payload"] == {"ok": 1}
    finally:
        client.close()


@pytest_twisted.async_yield_fixture
async def gateway(tmp_path, database_url):
    """A development-mode gateway process, warmed up: what a first client costs is in
    the baseline."""
    process = GatewayProcess(tmp_path, *WITHOUT_SOURCES, database_url=database_url).start()
    try:
        await process.wait_ready()
        still_serves(process)
        yield process
    finally:
        process.ensure_stopped()
