"""Floods against a real gateway process, over both WebSocket endpoints: pings whose
answers are never read (also on /socket.io/ before any CONNECT, where no token is
needed) and subscriptions past the maximum. The gateway closes or refuses the
flooding connections, its memory stays bounded, and other clients are unaffected."""

from __future__ import annotations

import json

import pytest_twisted

from n2gateway.downstream.close_codes import CLOSE_SLOW_CONSUMER, CLOSE_TOO_MANY_PINGS
from tests.adversarial.ws_gateway import SOCKETIO, gateway, hub_status, still_serves  # noqa: F401
from tests.support.gateway import rss_kib
from tests.support.rawws import PING, RawWebSocket, frame
#: Before the fix, 300,000 unread pongs held about 45 MiB per connection; the bound
#: leaves room for allocator noise on a shared machine.
GROWTH_BOUND_KIB = 40 * 1024


@pytest_twisted.ensureDeferred
async def test_ping_floods_that_never_read_are_closed_and_memory_stays_bounded(
        gateway) -> None:
    before = rss_kib(gateway.process.pid)
    floods = [RawWebSocket(gateway.port, path, receive_buffer=4096)
              for path in ("/ws?userId=f1", "/ws?userId=f2", "/ws?userId=f3",
                           SOCKETIO, SOCKETIO, SOCKETIO)]
    ping = frame(PING, b"12345678")
    for flood in floods:
        flood.flood(ping, 300_000)
    peak = rss_kib(gateway.process.pid)
    for flood in floods:
        code, reason = flood.read_to_close()
        assert code in (CLOSE_TOO_MANY_PINGS, CLOSE_SLOW_CONSUMER), (code, reason)
        flood.close()
    assert peak - before < GROWTH_BOUND_KIB, (before, peak)
    still_serves(gateway)
    assert "Traceback" not in gateway.log_text()


@pytest_twisted.ensureDeferred
async def test_subscription_floods_are_refused_past_the_maximum_and_the_session_goes_on(
        gateway) -> None:
    before = rss_kib(gateway.process.pid)
    clients = [RawWebSocket(gateway.port, f"/ws?userId=s{n}") for n in range(3)]
    for client in clients:
        assert json.loads(client.texts(1)[0])["type"] == "welcome"
    answers = {id(client): [] for client in clients}
    for start in range(0, 5000, 500):
        for client in clients:
            client.send(b"".join(
                frame(1, json.dumps({"type": "subscribe", "room": f"r{n}"}).encode())
                for n in range(start, start + 500)))
        for client in clients:
            answers[id(client)] += [json.loads(t) for t in client.texts(500)]
    for client in clients:
        seen = answers[id(client)]
        assert len(seen) == 5000
        assert sum(f["type"] == "subscribed" for f in seen) == 999  # with user:sN
        refused = [f for f in seen if f["type"] == "error"]
        assert len(refused) == 4001
        assert refused[0]["message"] == "at most 1000 rooms per connection (--max-subscriptions)"
    status = hub_status(gateway)
    assert status["connections"] == 3 and status["rooms"] <= 3 * 1000 + 1
    assert rss_kib(gateway.process.pid) - before < GROWTH_BOUND_KIB
    for client in clients:  # still open and usable
        client.send_json({"type": "unsubscribe", "room": "r0"})
        assert json.loads(client.texts(1)[0]) == {"type": "unsubscribed", "room": "r0"}
        client.close()
    still_serves(gateway)
