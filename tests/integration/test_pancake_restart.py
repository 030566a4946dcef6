"""
The whole gateway restarted (``twistd`` subprocesses) with an active stored row:
it reconnects to Pancake with no API call and events flow again; its logs never
hold the token or the cookie.
"""

from __future__ import annotations

import json

import pytest_twisted
import treq
from cryptography.fernet import Fernet
from twisted.internet import reactor
from twisted.internet.defer import Deferred

from tests.fakes.pancake import FakePancake
from tests.support.gateway import GatewayProcess, sleep

TOKEN = "TOKEN-restart-8180"
COOKIE = "sid=COOKIE-restart-9190"


def within(d: Deferred, seconds: float = 30.0) -> Deferred:
    return d.addTimeout(seconds, reactor)


async def wait_journal(sql, rows: int) -> None:
    while sql("SELECT count(*) FROM n2_journal")[0][0] < rows:
        await sleep(0.05)


async def wait_holding(gateway: GatewayProcess) -> None:
    """Until the gateway holds Pancake (the leadership waits a grace period first)."""
    while not (await gateway.wait_healthy())["plugins"]["pancake"]["held"]:
        await sleep(0.2)


@pytest_twisted.ensureDeferred
async def test_a_restarted_gateway_reconnects_on_its_own(tmp_path, database_url, sql) -> None:
    fake = FakePancake(reactor)
    fake.listen()
    env = {"N2GATEWAY_PANCAKE_URL": fake.url(), "N2GATEWAY_DISABLE_PLUGINS": "chat,tpos",
           "N2GATEWAY_CREDENTIALS_KEY": Fernet.generate_key().decode()}
    first = GatewayProcess(tmp_path, database_url=database_url, env=env).start()
    second = GatewayProcess(tmp_path, database_url=database_url, env=env)
    try:
        await wait_holding(first)
        response = await treq.post(first.url + "/api/realtime/start", json.dumps(
            {"token": TOKEN, "userId": "42", "pageIds": ["101"], "cookie": COOKIE}).encode())
        assert response.code == 200, await response.text()
        await within(fake.wait_joined(2))
        fake.push("multiple_pages:42", "pages:new_message", {"message": {"page_id": "101"}})
        await within(Deferred.fromCoroutine(wait_journal(sql, 1)))

        await first.kill()  # SIGKILL: no goodbye to anyone
        await within(fake.wait_for(lambda: not fake.open_sessions))
        second.start()
        await wait_holding(second)
        await within(fake.wait_joined(4))
        assert fake.sessions[-1].headers["cookie"] == COOKIE
        fake.push("multiple_pages:42", "pages:new_message", {"message": {"page_id": "101"}})
        await within(Deferred.fromCoroutine(wait_journal(sql, 2)))
        status = json.loads(await (await treq.get(second.url + "/api/realtime/status")).text())
        assert (status["connected"], status["userId"], status["pageIds"]) == (True, "42", ["101"])
        assert await second.terminate() == 0  # a clean stop
        assert fake.open_sessions == []  # closed on the way out
        assert fake.peak_concurrent[TOKEN] == 1
    finally:
        first.ensure_stopped()
        second.ensure_stopped()
        await fake.close()
    assert sql("SELECT rooms, event FROM n2_journal ORDER BY seq") == [
        (["pancake", "pancake:page:101"], "pages:new_message")] * 2
    logs = first.log_text() + second.log_text()
    assert "pancake: connecting (auto-connect from stored credentials)" in second.log_text()
    assert TOKEN not in logs and COOKIE not in logs
