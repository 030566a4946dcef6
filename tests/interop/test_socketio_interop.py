"""
The official socket.io-client against a real gateway, with its default options
(HTTP long-polling, then the upgrade to WebSocket), with polling only and with
WebSocket only: auth, subscribe acks, events published through the control API,
and connection state recovery after a dropped transport and after the gateway was
killed.
"""

import json

import pytest
import pytest_twisted
import treq
from prometheus_client.parser import text_string_to_metric_families

from n2gateway.downstream.auth import issue_token
from tests.support.gateway import WITHOUT_SOURCES, GatewayProcess
from tests.support.socketio_peer import SocketIoPeer

SECRET = "interop-secret-of-at-least-32-bytes"


async def publish(gateway: GatewayProcess, rooms: list[str], event: str, payload) -> str:
    answer = await treq.post(gateway.url + "/api/publish",
                             json={"rooms": rooms, "event": event, "payload": payload})
    assert answer.code == 200, await answer.text()
    return (await answer.json())["offset"]


def append_directly(sql, rooms: list[str], event: str, payload) -> str:
    """Publish with no gateway running, as another gateway of the database would."""
    batch = json.dumps([{"rooms": rooms, "event": event, "payload": payload}])
    return str(sql("SELECT n2_journal_append(%s::json)", (batch,))[0][0])


#: The client's default options, polling only, WebSocket only; and the transport it
#: ends on.
TRANSPORTS = {"default": ({}, "websocket"),
              "polling": ({"transports": ["polling"]}, "polling"),
              "websocket": ({"transports": ["websocket"]}, "websocket")}


async def connected_peer(gateway: GatewayProcess, sub: str, rooms: list[str],
                         **options) -> SocketIoPeer:
    return await SocketIoPeer.connected(gateway.url, {"token": issue_token(SECRET, sub, rooms)},
                                        **options)


@pytest.mark.parametrize("transports", TRANSPORTS)
@pytest_twisted.ensureDeferred
async def test_auth_subscribe_events_and_recovery_after_a_dropped_transport(
        tmp_path, database_url, transports) -> None:
    options, final = TRANSPORTS[transports]
    gateway = GatewayProcess(tmp_path, *WITHOUT_SOURCES, "--jwt-secret", SECRET,
                             database_url=database_url).start()
    peer = intruder = None
    try:
        await gateway.wait_healthy()
        intruder = SocketIoPeer.spawn()
        intruder.command("connect", url=gateway.url, auth={"token": "not-a-jwt"},
                         options=options)
        refused = await intruder.next("connect_error")
        assert refused["message"].startswith("invalid token")

        peer = await connected_peer(gateway, "u1", ["staff"], **options)
        if final != peer.records[-1]["transport"]:
            assert (await peer.next("upgrade"))["transport"] == final
        assert await peer.emit("subscribe", "staff") == {"ok": True}
        assert await peer.emit("subscribe", "user:u2") == {
            "ok": False, "error": "not allowed to join user:u2"}

        if final == "websocket":
            status = await (await treq.get(gateway.url + "/api/hub/status")).json()
            assert status["protocols"] == {"ws": 0, "socket.io": 1}

        first = await publish(gateway, ["staff"], "message:new", {"text": "xin chào"})
        await publish(gateway, ["user:u2"], "message:new", {"text": "not for u1"})
        own = await publish(gateway, ["user:u1"], "message:read", {"id": 7})
        assert await peer.next("event") == {
            "type": "event", "event": "message:new", "args": [{"text": "xin chào"}, first]}
        assert (await peer.next("event"))["args"] == [{"id": 7}, own]

        peer.command("closeTransport")
        await peer.next("disconnect")
        missed = [await publish(gateway, ["staff"], "message:new", {"n": n}) for n in range(3)]
        assert (await peer.next("connect"))["recovered"] is True
        replayed = [await peer.next("event") for _ in missed]
        assert [r["args"] for r in replayed] == [[{"n": n}, o] for n, o in enumerate(missed)]

        # Still subscribed after the recovery, and nothing else arrived.
        live = await publish(gateway, ["staff"], "users:updated", [])
        assert (await peer.next("event"))["args"] == [[], live]
        assert len(peer.events()) == 6
    finally:
        for client in (peer, intruder):
            if client is not None:
                await client.close()
        await gateway.terminate()


@pytest_twisted.ensureDeferred
async def test_other_engine_io_versions_and_unknown_sessions_get_a_json_400(
        tmp_path, database_url) -> None:
    gateway = GatewayProcess(tmp_path, *WITHOUT_SOURCES, database_url=database_url).start()
    try:
        await gateway.wait_healthy()
        polling = await treq.get(gateway.url + "/socket.io/?EIO=4&transport=polling&sid=nope")
        assert polling.code == 400
        assert (await polling.json())["error"] == "unknown_session"
        old = await treq.get(gateway.url + "/socket.io/?EIO=5&transport=websocket")
        assert old.code == 400
        assert "EIO=4" in (await old.json())["message"]
    finally:
        await gateway.terminate()


@pytest.mark.parametrize("transports", ["polling", "websocket"])
@pytest_twisted.ensureDeferred
async def test_recovered_after_the_gateway_is_killed_without_loss_or_duplicates(
        tmp_path, database_url, sql, transports) -> None:
    options, _ = TRANSPORTS[transports]
    gateway = GatewayProcess(tmp_path, *WITHOUT_SOURCES, "--jwt-secret", SECRET,
                             database_url=database_url).start()
    peer = None
    try:
        await gateway.wait_healthy()
        peer = await connected_peer(gateway, "u1", ["staff"], **options)
        assert await peer.emit("subscribe", "staff") == {"ok": True}
        before = await publish(gateway, ["staff"], "message:new", {"n": 0})
        await peer.next("event")

        await gateway.kill()
        await peer.next("disconnect")
        missed = [append_directly(sql, ["staff", "user:u1"], "message:new", {"n": n})
                  for n in range(1, 4)]
        append_directly(sql, ["other"], "message:new", {"n": "not subscribed"})

        gateway = GatewayProcess(tmp_path, *WITHOUT_SOURCES, "--jwt-secret", SECRET, port=gateway.port,
                                 database_url=database_url).start()
        await gateway.wait_healthy()
        assert (await peer.next("connect", timeout=20))["recovered"] is True
        after = await publish(gateway, ["staff"], "message:new", {"n": 4})
        received = [(await peer.next("event"))["args"] for _ in range(4)]
        assert received == [[{"n": n}, o] for n, o in zip(range(1, 5), [*missed, after])]
        assert [args[-1] for _, args in peer.events()] == [before, *missed, after]
    finally:
        if peer is not None:
            await peer.close()
        gateway.ensure_stopped()


async def polls_answered(gateway: GatewayProcess) -> float:
    """The long-polling GETs the gateway answered 200, from its metrics (they have no
    access log lines)."""
    text = await (await treq.get(gateway.url + "/metrics")).text()
    return sum(s.value for family in text_string_to_metric_families(text)
               for s in family.samples if s.name == "n2gateway_http_requests_total"
               and s.labels == {"method": "GET", "route": "/socket.io/", "status": "200"})


def in_publish_order(received: list) -> list:
    """Events python-socketio's client received, in the order of their ``n``: each must
    arrive once, but python-engineio runs every message's handler on a thread of its own,
    so its application sees them in any order."""
    return sorted(received, key=lambda args: args[0]["n"])


@pytest_twisted.ensureDeferred
async def test_python_socketio_client_with_its_default_options(tmp_path, database_url) -> None:
    gateway = GatewayProcess(tmp_path, *WITHOUT_SOURCES, "--jwt-secret", SECRET,
                             database_url=database_url).start()
    peer = None
    try:
        await gateway.wait_healthy()
        peer = await SocketIoPeer.connected(
            gateway.url, {"token": issue_token(SECRET, "u1", ["staff"])}, client="python")
        # It long-polls first, then upgrades.
        assert await polls_answered(gateway) > 0
        assert peer.records[-1]["transport"] == "websocket"
        assert await peer.emit("subscribe", "staff") == {"ok": True}
        assert await peer.emit("subscribe", "user:u2") == {
            "ok": False, "error": "not allowed to join user:u2"}
        offsets = [await publish(gateway, ["staff"], "message:new", {"n": n}) for n in range(5)]
        received = [(await peer.next("event"))["args"] for _ in offsets]
        assert in_publish_order(received) == [[{"n": n}, o] for n, o in enumerate(offsets)]

        # python-socketio has no connection state recovery: after the gateway was
        # killed it reconnects by itself to a new session, and subscribes again.
        await gateway.kill()
        await peer.next("disconnect")
        gateway = GatewayProcess(tmp_path, *WITHOUT_SOURCES, "--jwt-secret", SECRET,
                                 port=gateway.port, database_url=database_url).start()
        await gateway.wait_healthy()
        assert (await peer.next("connect", timeout=20))["recovered"] is False
        assert await peer.emit("subscribe", "staff") == {"ok": True}
        after = await publish(gateway, ["staff"], "message:new", {"n": 5})
        assert (await peer.next("event"))["args"] == [{"n": 5}, after]
    finally:
        if peer is not None:
            await peer.close()
        gateway.ensure_stopped()


@pytest_twisted.ensureDeferred
async def test_socket_io_client_2_is_told_why_it_cannot_connect(tmp_path, database_url) -> None:
    gateway = GatewayProcess(tmp_path, *WITHOUT_SOURCES, database_url=database_url).start()
    peer = None
    try:
        await gateway.wait_healthy()
        peer = SocketIoPeer.spawn("v2")
        peer.command("connect", url=gateway.url, auth={"userId": "u1"})
        for _ in range(2):  # and again at each of its retries
            refused = await peer.next("error")
            assert refused["message"].startswith("this server speaks Engine.IO 4 only")
            assert "socket.io-client 3 or later" in refused["message"]
        assert [r for r in peer.records if r["type"] == "connect"] == []
    finally:
        if peer is not None:
            await peer.close()
        await gateway.terminate()


@pytest_twisted.ensureDeferred
async def test_cors_lets_the_configured_origins_long_poll(tmp_path, database_url) -> None:
    gateway = GatewayProcess(tmp_path, *WITHOUT_SOURCES, "--cors-origins",
                             "https://app.example, http://localhost:3000",
                             database_url=database_url).start()
    polling = "/socket.io/?EIO=4&transport=polling"
    try:
        await gateway.wait_healthy()
        allowed = await treq.get(gateway.url + polling, headers={"Origin": "https://app.example"})
        assert allowed.code == 200 and (await allowed.text()).startswith("0{")
        assert allowed.headers.getRawHeaders("access-control-allow-origin") == [
            "https://app.example"]
        assert not allowed.headers.hasHeader("access-control-allow-credentials")

        preflight = await treq.request("OPTIONS", gateway.url + polling, headers={
            "Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"})
        assert preflight.code == 204
        assert preflight.headers.getRawHeaders("access-control-allow-methods") == ["GET, POST"]
        assert preflight.headers.getRawHeaders("access-control-allow-headers") == [
            "content-type"]

        same = await treq.get(gateway.url + polling, headers={"Origin": gateway.url})
        assert same.code == 200 and not same.headers.hasHeader("access-control-allow-origin")

        refused = await treq.get(gateway.url + polling, headers={"Origin": "https://evil.example"})
        assert refused.code == 403
        assert (await refused.json())["error"] == "origin_not_allowed"
        assert "--cors-origins" in (await refused.json())["message"]
    finally:
        await gateway.terminate()
