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
from tests.support.gateway import GatewayProcess
from tests.support.waiting import eventually

TOKEN = "TOKEN-restart-8180"
COOKIE = "sid=COOKIE-restart-9190"


def within(d: Deferred, seconds: float = 30.0) -> Deferred:
    return d.addTimeout(seconds, reactor)


@pytest_twisted.ensureDeferred
async def test_a_restarted_gateway_reconnects_on_its_own(tmp_path, database_url, sql) -> None:
    fake = FakePancake(reactor)
    fake.listen()
    env = {"N2GATEWAY_PANCAKE_URL": fake.url(), "N2GATEWAY_DISABLE_PLUGINS": "chat,tpos",
           "N2GATEWAY_CREDENTIALS_KEY": Fernet.generate_key().decode()}
    first = GatewayProcess(tmp_path, database_url=database_url, env=env).start()
    second = GatewayProcess(tmp_path, database_url=database_url, env=env)
    try:
        await first.wait_plugin("pancake")
        response = await treq.post(first.url + "/api/realtime/start", json.dumps(
            {"token": TOKEN, "userId": "42", "pageIds": ["101"], "cookie": COOKIE}).encode())
        assert response.code == 200, await response.text()
        await within(fake.wait_joined(2))
        fake.push("pages:101", "pages:new_message", {"message": {"page_id": "101"}})
        await eventually(lambda: sql("SELECT count(*) FROM n2_journal")[0][0] >= 1, 30)

        await first.kill()  # SIGKILL: no goodbye to anyone
        await within(fake.wait_for(lambda: not fake.open_sessions))
        second.start()
        await second.wait_plugin("pancake")
        await within(fake.wait_joined(4))
        assert fake.sessions[-1].headers["cookie"] == COOKIE
        fake.push("pages:101", "pages:new_message", {"message": {"page_id": "101"}})
        await eventually(lambda: sql("SELECT count(*) FROM n2_journal")[0][0] >= 2, 30)
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
