"""Operating a real gateway: Prometheus metrics after a scripted scenario, JSON logs."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest_twisted
from autobahn.twisted.websocket import (WebSocketClientFactory, WebSocketClientProtocol,
                                        connectWS)
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import create_database
from tests.support.gateway import WITHOUT_SOURCES, GatewayProcess
from tests.support.waiting import eventually

ADMIN = "ops-admin-token-do-not-log"
CLIENTS, EVENTS = 3, 5


def http(gateway: GatewayProcess, method: str, path: str, body: Any = None,
         token: str | None = ADMIN) -> tuple[int, bytes]:
    request = urllib.request.Request(
        gateway.url + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json",
                 **({"Authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Client(WebSocketClientProtocol):
    def onOpen(self) -> None:
        self.sendMessage(json.dumps({"type": "subscribe", "room": "demo:room"}).encode())

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.frames.append(json.loads(payload))


def connect_client(gateway: GatewayProcess, user: str) -> WebSocketClientFactory:
    factory = WebSocketClientFactory(f"ws://127.0.0.1:{gateway.port}/ws?userId={user}")
    factory.protocol = Client
    factory.frames = []
    connectWS(factory)
    return factory


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest_twisted.async_yield_fixture(scope="module")
async def gateway(pg_server, tmp_path_factory):
    # Core metrics only: a source plugin's own events (chat's users:updated once it
    # holds its source) would land in the counted window.
    process = GatewayProcess(tmp_path_factory.mktemp("ops"), "--admin-token", ADMIN,
                             "--log-format", "json", *WITHOUT_SOURCES,
                             database_url=create_database(pg_server.get_uri())).start()
    try:
        await process.wait_ready()
        yield process
    finally:
        process.ensure_stopped()


@pytest_twisted.ensureDeferred
async def test_metrics_follow_a_scripted_scenario(gateway) -> None:
    before = samples(http(gateway, "GET", "/metrics")[1].decode())
    assert http(gateway, "GET", "/metrics", token=None)[0] == 401
    clients = [connect_client(gateway, f"u{i}") for i in range(CLIENTS)]
    connect_client(gateway, "bad%01user")  # a control character: closed with 4001
    refused = ("n2gateway_downstream_closes_total", (("code", "4001"), ("protocol", "ws")))
    await eventually(lambda: all(any(f["type"] == "subscribed" for f in c.frames) for c in clients))
    for n in range(EVENTS):
        assert http(gateway, "POST", "/api/publish",
                    {"rooms": ["demo:room"], "event": "tick", "payload": {"n": n}})[0] == 200
    await eventually(lambda: all(sum(f["type"] == "tick" for f in c.frames) == EVENTS
                                 for c in clients))
    await eventually(lambda: samples(http(gateway, "GET", "/metrics")[1].decode()).get(refused),
                     what="the refused client's close counted")

    status, body = http(gateway, "GET", "/metrics")
    assert status == 200
    text = body.decode()
    after = samples(text)
    got = {key: value - before.get(key, 0) for key, value in after.items()}
    assert after[("n2gateway_connections", (("protocol", "ws"),))] == CLIENTS
    assert after[("n2gateway_subscriptions", ())] == CLIENTS * 2  # own user room + demo:room
    assert got[("n2gateway_events_published_total", (("source", "demo"),))] == EVENTS
    assert got[("n2gateway_events_delivered_total", (("source", "demo"),))] == EVENTS * CLIENTS
    assert got[("n2gateway_journal_head", ())] == EVENTS
    assert got[("n2gateway_hub_head", ())] == EVENTS
    assert got[refused] == 1
    assert after[("n2gateway_hub_lag_events", ())] == 0
    assert after[("n2gateway_database_up", ())] == 1
    assert after[("n2gateway_listen_connected", ())] == 1
    assert after[("n2gateway_listen_reconnects_total", ())] == 0
    assert got[("n2gateway_http_requests_total", (
        ("method", "POST"), ("route", "/api/publish"), ("status", "200")))] == EVENTS
    assert got[("n2gateway_http_requests_total", (
        ("method", "GET"), ("route", "/metrics"), ("status", "401")))] == 1
    assert ADMIN not in text and "userId" not in text and "u0" not in text

    # An unknown path is counted under one label, never as itself.
    http(gateway, "GET", "/no/such/path/u1")
    assert samples(http(gateway, "GET", "/metrics")[1].decode())[("n2gateway_http_requests_total", (
        ("method", "GET"), ("route", "unmatched"), ("status", "404")))] == 1


@pytest_twisted.ensureDeferred
async def test_json_logs_are_one_object_per_line_without_secrets(gateway) -> None:
    http(gateway, "GET", "/api/hub/status", token="wrong-token-do-not-log")
    lines = [json.loads(line) for line in gateway.log_text().splitlines() if line.strip()]
    assert lines, "no log lines"
    for line in lines:
        assert {"time", "level", "namespace", "message"} <= set(line)
    banner = next(line for line in lines if line["message"].startswith("n2gateway "))
    assert banner["namespace"] == "n2gateway.gateway.Gateway"
    assert banner["level"] == "info" and "endpoint" in banner
    text = gateway.log_text()
    assert ADMIN not in text and "wrong-token-do-not-log" not in text
