"""
The official socket.io-client against a real gateway: auth, subscribe acks, events
published through the control API, and connection state recovery after a dropped
transport and after the gateway was killed.
"""

import json

import pytest_twisted
import treq

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


async def connected_peer(gateway: GatewayProcess, sub: str, rooms: list[str]) -> SocketIoPeer:
    return await SocketIoPeer.connected(gateway.url, {"token": issue_token(SECRET, sub, rooms)})


@pytest_twisted.ensureDeferred
async def test_auth_subscribe_events_and_recovery_after_a_dropped_transport(
        tmp_path, database_url) -> None:
    gateway = GatewayProcess(tmp_path, *WITHOUT_SOURCES, "--jwt-secret", SECRET,
                             database_url=database_url).start()
    peer = intruder = None
    try:
        await gateway.wait_healthy()
        intruder = SocketIoPeer.spawn()
        intruder.command("connect", url=gateway.url, auth={"token": "not-a-jwt"})
        refused = await intruder.next("connect_error")
        assert refused["message"].startswith("invalid token")

        peer = await connected_peer(gateway, "u1", ["staff"])
        assert await peer.emit("subscribe", "staff") == {"ok": True}
        assert await peer.emit("subscribe", "user:u2") == {
            "ok": False, "error": "not allowed to join user:u2"}

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
async def test_long_polling_and_other_engine_io_versions_get_a_json_400(
        tmp_path, database_url) -> None:
    gateway = GatewayProcess(tmp_path, *WITHOUT_SOURCES, database_url=database_url).start()
    try:
        await gateway.wait_healthy()
        polling = await treq.get(gateway.url + "/socket.io/?EIO=4&transport=polling")
        assert polling.code == 400
        assert "transports: ['websocket']" in (await polling.json())["message"]
        old = await treq.get(gateway.url + "/socket.io/?EIO=3&transport=websocket")
        assert old.code == 400
        assert "EIO=4" in (await old.json())["message"]
    finally:
        await gateway.terminate()


@pytest_twisted.ensureDeferred
async def test_recovered_after_the_gateway_is_killed_without_loss_or_duplicates(
        tmp_path, database_url, sql) -> None:
    gateway = GatewayProcess(tmp_path, *WITHOUT_SOURCES, "--jwt-secret", SECRET,
                             database_url=database_url).start()
    peer = None
    try:
        await gateway.wait_healthy()
        peer = await connected_peer(gateway, "u1", ["staff"])
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
