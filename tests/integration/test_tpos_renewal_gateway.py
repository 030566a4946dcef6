"""
The whole gateway renewing its TPOS tokens: a ``twistd`` subprocess on a real
PostgreSQL, a fake TPOS OAuth2 token endpoint (twisted.web, here) handing out
3-second JWTs, and the official socket.io server playing TPOS, which refuses a
JWT past its ``exp``. Events keep arriving across renewals, none is lost, the
live socket is never dropped for a renewal, and no secret reaches a log.
"""

from __future__ import annotations

import json

import pytest_twisted
from cryptography.fernet import Fernet
from twisted.internet import reactor
from twisted.web.server import Site

from tests.fakes.tpos_token import FakeTokenEndpoint
from tests.integration.test_tpos_gateway import API, call, holding, journal, wait_status
from tests.support.gateway import GatewayProcess
from tests.support.node_tpos import NodeTpos
from tests.support.waiting import eventually, sleep

USERNAME = "tpos-renewal-shop-owner"
PASSWORD = "tpos-renewal-password-8c1f"
ROOM = "shop.tpos.vn"
LIFETIME = 3  # seconds: a renewal every 1.5 s (at most half the token's life)


@pytest_twisted.ensureDeferred
async def test_events_keep_arriving_across_renewals_and_no_secret_is_logged(
        tmp_path, database_url, sql) -> None:
    tokens = FakeTokenEndpoint(USERNAME, PASSWORD, LIFETIME)
    endpoint = reactor.listenTCP(0, Site(tokens), interface="127.0.0.1")
    server = NodeTpos()
    await server.start()
    key = Fernet.generate_key().decode()
    gateway = GatewayProcess(tmp_path, "--credentials-key", key, database_url=database_url, env={
        "N2GATEWAY_TPOS_URL": server.url,
        "N2GATEWAY_TPOS_TOKEN_URL": f"http://127.0.0.1:{endpoint.getHost().port}/token"})
    gateway.start()
    try:
        await holding(gateway)
        code, answer = await call(gateway, "POST", f"{API}/start",
                                  {"username": USERNAME, "password": PASSWORD, "room": ROOM})
        assert code == 200 and answer["success"], answer
        assert (await server.wait_for("joined"))["joined"] == {"room": ROOM, "tokenMatches": True}
        await wait_status(gateway, connected=True)

        # Emit while at least three renewals happen (and the first token expires).
        sent = 0
        while len(tokens.access) < 4:
            await server.command(
                f"emit {ROOM} on-events {json.dumps({'Type': 'Product', 'Data': {'n': sent}})}")
            sent += 1
            await sleep(0.1)
            assert sent < 300, f"no third renewal; grants: {tokens.grants}"
        await eventually(lambda: len(journal(sql)) == sent, timeout=15)
        assert [payload["Data"]["n"] for _, _, payload in journal(sql)] == list(range(sent))
        assert tokens.grants[:4] == ["password", "refresh_token", "refresh_token", "refresh_token"]
        # One socket all along: no renewal dropped it, and TPOS refused nothing.
        assert len(server.seen("transport")) == 1 and server.seen("refused") == []

        status = await wait_status(gateway, needsLogin=False, connected=True)
        assert status["renewals"] >= 4 and status["lastRenewal"]["outcome"] == "renewed"
        assert status["tokenExpiresAt"] and not status["tokenExpired"]

        # The next connect uses a fresh token (the first one has expired meanwhile).
        await server.command("close")
        await server.wait_for("joined", 2)
        assert server.seen("refused") == []
        [(token, extra)] = sql("SELECT token, extra FROM realtime_credentials"
                               " WHERE client_type = 'tpos'")
        assert token.startswith("fernet:") and extra.startswith("fernet:")
        texts = [json.dumps(status), json.dumps(await gateway.wait_healthy())]
        code, _ = await call(gateway, "POST", f"{API}/stop")
        assert code == 200
        await gateway.terminate()
    finally:
        gateway.ensure_stopped()
        await server.stop()
        await endpoint.stopListening()

    logs = gateway.log_text()
    assert "tpos: token renewed (before expiry)" in logs
    for secret in (USERNAME, PASSWORD, *tokens.access, *tokens.refresh):
        for text in (logs, *texts):
            assert secret not in text
