"""Slowloris against a real gateway process: connections dribbling their headers or
their body a byte at a time are answered 408 at their deadline and closed; meanwhile
the gateway answers everyone else, and a WebSocket open through the flood (idle for
longer than the deadlines) keeps receiving events."""

from __future__ import annotations

import pytest

from tests.conftest import create_database
from tests.support.hardened import (assert_healthy, client_token, publish, rss_mib, send,
                                    start_gateway)
from tests.support.rawws import RawWebSocket
from tests.support.slow_clients import SLOW_BODY, SLOW_HEADERS, SlowClients


@pytest.fixture
def gateway(tmp_path, pg_server):
    gateway = start_gateway(tmp_path, create_database(pg_server.get_uri()))
    yield gateway
    gateway.ensure_stopped()


def test_slow_headers_and_bodies_get_408_and_nobody_else_notices(gateway):
    watcher = RawWebSocket(gateway.port, "/ws?token=" + client_token("watcher", ["flood"]))
    try:
        watcher.receive_until("welcome")
        watcher.send_json({"type": "subscribe", "room": "flood"})
        watcher.receive_until("subscribed")
        before = rss_mib(gateway)
        flood = SlowClients(gateway.port, [(40, SLOW_HEADERS), (10, SLOW_BODY)])
        healthy_meanwhile: list[int] = []
        outcome = flood.run(interval=2.0, limit=60, on_tick=lambda: healthy_meanwhile.append(
            send(gateway, "GET", "/health")[0]))
        assert outcome.still_open == 0 and outcome.closed_silently == 0
        assert sum(outcome.answered.values()) == 50
        assert all(status.startswith("HTTP/1.1 408 ") for status in outcome.answered)
        assert all(b'"request_timeout"' in body for body in outcome.bodies)
        assert set(healthy_meanwhile) == {200}
        assert rss_mib(gateway) - before < 64
        # The WebSocket outlived both deadlines (10 s for headers, 30 s for a body).
        assert publish(gateway, b'{"rooms": ["flood"], "event": "after-the-flood"}')[0] == 200
        assert watcher.receive_until("after-the-flood")["room"] == "flood"
    finally:
        watcher.close()
    assert_healthy(gateway)
