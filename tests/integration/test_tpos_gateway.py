"""
The whole gateway (``twistd`` subprocesses on a real PostgreSQL) holding TPOS
against the official socket.io server playing TPOS: control routes, events in
the journal under their SPEC §9 names and rooms, reconnects, a refused token,
auto-connect after a restart, and no token in any log.
"""

from __future__ import annotations

import json
from typing import Any

import pytest_twisted
import treq

from tests.support.gateway import GatewayProcess
from tests.support.node_tpos import NodeTpos
from tests.support.waiting import eventually, sleep

TOKEN = "TPOS-gateway-token-7d3e"
NEW_TOKEN = "TPOS-gateway-token-9a41"
ROOM = "shop.tpos.vn"
API = "/api/realtime/tpos"


async def call(gateway: GatewayProcess, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    response = await treq.request(method, gateway.url + path, data=data)
    return response.code, json.loads(await response.text())


async def holding(gateway: GatewayProcess) -> None:
    """Until the gateway holds TPOS (the leadership may wait a grace period first)."""
    async def owned() -> bool:
        return "tpos" in (await gateway.wait_healthy())["node"]["owns"]

    await eventually(owned, 30, lambda: f"TPOS held:\n{gateway.log_text()}", 0.2)


async def status(gateway: GatewayProcess) -> dict[str, Any]:
    code, answer = await call(gateway, "GET", f"{API}/status")
    assert code == 200
    return answer


@pytest_twisted.ensureDeferred
async def test_start_relay_reconnect_restart_refuse_stop(tmp_path, database_url, sql) -> None:
    server = NodeTpos()
    await server.start()
    env = {"N2GATEWAY_TPOS_URL": server.url}
    first = GatewayProcess(tmp_path, database_url=database_url, env=env).start()
    second = GatewayProcess(tmp_path, database_url=database_url, env=env)
    try:
        await holding(first)
        before = await status(first)
        assert (before["connected"], before["hasToken"], before["room"]) == (False, False, None)

        for body, field in [({}, "token"), ({"token": ""}, "token"),
                            ({"token": TOKEN, "room": 5}, "room"),
                            ({"token": TOKEN, "room": "a/b"}, "room")]:
            code, answer = await call(first, "POST", f"{API}/start", body)
            assert code == 400 and field in json.dumps(answer), (body, answer)
            assert TOKEN not in json.dumps(answer)

        code, answer = await call(first, "POST", f"{API}/start", {"token": TOKEN, "room": ROOM})
        assert code == 200 and answer["success"] and answer["credentialsSaved"]
        assert (await server.wait_for("joined"))["joined"] == {"room": ROOM, "tokenMatches": True}
        live = await wait_status(first, connected=True)
        assert live == {"connected": True, "room": ROOM, "hasToken": True, "reconnectAttempts": 0,
                        "needsLogin": False, "since": live["since"], "lastError": None,
                        "held": True, "owner": (await first.wait_healthy())["node"]["node"],
                        "tokenExpiresAt": None, "tokenExpired": False, "tokenExpiresSoon": False,
                        "renewals": 0, "lastRenewal": None}

        order = {"Type": "SaleOnline_Order", "EventName": "created", "Data": {"Id": 1}}
        update = {**order, "EventName": "updated"}
        invoice = {"Type": "FastSaleOrder", "EventName": "created", "Data": {"Id": 2}}
        product = {"Type": "Product", "EventName": "updated", "Data": {"Id": 3}}
        for payload in (order, json.dumps(update), invoice, product):
            await server.command(f"emit {ROOM} on-events {json.dumps(payload)}")
        await server.command(f"emit {ROOM} typing {json.dumps({'user': 'u1'})}")

        await server.command("close")  # server-side disconnect: the gateway comes back
        await server.wait_for("joined", 2)
        await server.command(f"emit {ROOM} on-events {json.dumps(order)}")
        await eventually(lambda: len(journal(sql)) == 6, timeout=10)

        await first.terminate()  # an ordinary restart: the row stays active
        await server.wait_for("disconnected", 2)
        second.start()
        await holding(second)
        await server.wait_for("joined", 3, timeout=30)  # auto-connect, no API call
        await wait_status(second, connected=True)

        await server.command(f"reject {TOKEN}")
        await server.command("disconnect")
        refused = await wait_status(second, needsLogin=True)
        assert refused["connected"] is False and refused["hasToken"] is True
        assert refused["lastError"] == "connect refused: unauthorized"
        transports = len(server.seen("transport"))
        await sleep(3)  # the first retry would have come after about 2 s
        assert len(server.seen("transport")) == transports

        code, _ = await call(second, "POST", f"{API}/start", {"token": NEW_TOKEN})
        assert code == 200  # a fresh token reconnects at once, default room
        assert (await server.wait_for("joined", 4))["joined"]["room"] == "tomato.tpos.vn"
        assert sql("SELECT token, room, is_active FROM realtime_credentials"
                   " WHERE client_type = 'tpos'") == [(NEW_TOKEN, "tomato.tpos.vn", True)]

        code, answer = await call(second, "POST", f"{API}/stop")
        assert code == 200 and answer["success"]
        assert (await status(second))["hasToken"] is False
        assert sql("SELECT is_active FROM realtime_credentials WHERE client_type = 'tpos'") == [(False,)]
        await second.terminate()
    finally:
        first.ensure_stopped()
        second.ensure_stopped()
        await server.stop()

    tpos_rooms = ["tpos", f"tpos:{ROOM}"]
    assert journal(sql) == [
        (tpos_rooms, "tpos:new-order", order),
        (tpos_rooms, "tpos:order-update", update),
        (tpos_rooms, "tpos:invoice-update", invoice),
        (tpos_rooms, "tpos:event", product),
        (tpos_rooms, "tpos:event", {"event": "typing", "payload": {"user": "u1"}}),
        (tpos_rooms, "tpos:new-order", order),
    ]
    logs = first.log_text() + second.log_text()
    assert "tpos: connecting (auto-connect from stored credentials)" in second.log_text()
    assert "tpos: session established" in logs
    assert TOKEN not in logs and NEW_TOKEN not in logs


def journal(sql) -> list[tuple]:
    """What was published in room tpos (other plugins publish too)."""
    return sql("SELECT rooms, event, payload FROM n2_journal WHERE 'tpos' = ANY(rooms) ORDER BY seq")


async def wait_status(gateway: GatewayProcess, timeout: float = 10.0, **expected: Any) -> dict:
    answers = []

    async def has() -> dict | None:
        answers.append(await status(gateway))
        return answers[-1] if all(answers[-1][k] == v for k, v in expected.items()) else None

    return await eventually(has, timeout, lambda: f"status with {expected}: {answers[-1]}", 0.1)
