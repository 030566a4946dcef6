"""
The gateway's TPOS client against the official socket.io server (npm)
playing TPOS: proves the client speaks real Engine.IO 4 / Socket.IO v4.
"""

import json
from typing import Any, Callable

import pytest_twisted
from twisted.internet import reactor
from twisted.logger import capturedLogs, formatEvent

from n2gateway.upstream.service import UpstreamService
from n2gateway.upstream.status import UpstreamStatus
from n2gateway_plugins.tpos.session import TposCredentials, build_tpos_service
from tests.support.node_tpos import NodeTpos
from tests.support.waiting import eventually, sleep

TOKEN = "interop-tpos-token-5f1c"
ROOM = "shop.tpos.vn"


def tpos(server: NodeTpos, status: UpstreamStatus, events: list) -> UpstreamService:
    return build_tpos_service(
        TposCredentials(TOKEN, ROOM),
        reactor=reactor,
        status=status,
        on_event=lambda *event: events.append(event),
        url=server.url,
        backoff=lambda attempt: 0.1,
    )


async def run_against(server: NodeTpos, scenario: Callable[..., Any]) -> str:
    """Run ``scenario(service, status, events)`` against ``server``; return the log text."""
    status, events = UpstreamStatus(), []
    await server.start()
    service = tpos(server, status, events)
    with capturedLogs() as logged:
        try:
            service.startService()
            await scenario(service, status, events)
        finally:
            await service.stop()
            await server.stop()
    return "\n".join(formatEvent(e) for e in logged)


@pytest_twisted.ensureDeferred
async def test_connects_joins_relays_and_reconnects_after_a_server_disconnect() -> None:
    server = NodeTpos(ping_interval_ms=150, ping_timeout_ms=150)
    order = {"Type": "SaleOnline_Order", "EventName": "created", "Data": {"Id": 1, "Name": "Đơn 1"}}

    async def scenario(service: UpstreamService, status: UpstreamStatus, events: list) -> None:
        joined = (await server.wait_for("joined"))["joined"]
        assert joined == {"room": ROOM, "tokenMatches": True}
        assert server.seen("connected") == [{"room": ROOM, "queryRoom": ROOM}]
        transport = server.seen("transport")[0]
        assert transport["origin"] == "https://tomato.tpos.vn"
        assert sorted(transport["query"].split("&")) == ["EIO=4", f"room={ROOM}",
                                                         "transport=websocket"]
        await eventually(lambda: status.connected)

        # Six ping intervals: the server would have dropped a client that did not pong.
        await sleep(0.9)
        assert server.seen("disconnected") == [] and status.connected

        await server.command(f"emit {ROOM} on-events {json.dumps(order)}")
        await server.command(f"emit {ROOM} on-events {json.dumps(json.dumps(order))}")
        await eventually(lambda: len(events) == 2)
        assert events == [("on-events", order), ("on-events", json.dumps(order))]

        # The namespace alone, then the namespace and the underlying connection.
        for command in ("disconnect", "close"):
            joins, drops = len(server.seen("joined")), len(server.seen("disconnected"))
            await server.command(command)
            assert (await server.wait_for("disconnected", drops + 1))["disconnected"] == (
                "server namespace disconnect")
            await server.wait_for("joined", joins + 1)
            await eventually(lambda: status.connected)
        await server.command(f"emit {ROOM} on-events {json.dumps(order)}")
        await eventually(lambda: len(events) == 3)

    log = await run_against(server, scenario)
    assert TOKEN not in log
    assert "session established" in log


@pytest_twisted.ensureDeferred
async def test_a_rejected_token_needs_login_without_a_retry_storm() -> None:
    server = NodeTpos()

    async def scenario(service: UpstreamService, status: UpstreamStatus, events: list) -> None:
        await server.command(f"reject {TOKEN}")
        await eventually(lambda: status.needs_login)
        await sleep(1.0)  # ten backoff delays of 0.1 s
        assert server.seen("refused") == [{"room": ROOM, "headerMatches": True}]
        assert len(server.seen("transport")) == 1
        assert status.as_dict()["lastError"] == "connect refused: unauthorized"
        assert not status.connected

    log = await run_against(server, scenario)
    assert TOKEN not in log
    assert "credentials refused" in log
