"""
The Pancake plugin in a real gateway (in process, on a real port and a real
PostgreSQL) against the fake Pancake server: the control routes, the relay into
the journal and out to a ``/ws`` client, reconnects and refused tokens. Every
test also checks that nothing it made the gateway log holds the token or cookie.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable

import pytest
import pytest_twisted
import treq
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from cryptography.fernet import Fernet
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.task import deferLater
from twisted.logger import formatEvent, globalLogPublisher

from n2gateway.config import Settings
from n2gateway.gateway import Gateway
from n2gateway.plugins import load_plugins
from tests.fakes.pancake import FakePancake

TOKEN = "TOKEN-gateway-5150"
NEW_TOKEN = "TOKEN-gateway-6160"
COOKIE = "sid=COOKIE-gateway-7170"
START = {"token": TOKEN, "userId": "42", "pageIds": ["101", "102"], "cookie": COOKIE}


async def eventually(condition: Callable[[], Any], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await deferLater(reactor, 0.02)


class DashboardClient(WebSocketClientProtocol):
    """A ``/ws`` client that subscribes to its rooms and keeps every frame."""

    def onOpen(self) -> None:
        for room in self.factory.rooms:
            self.sendMessage(json.dumps({"type": "subscribe", "room": room}).encode())

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.frames.append(json.loads(payload))


class Running:
    def __init__(self, gateway: Gateway, fake: FakePancake, sql: Any, logs: list[str]) -> None:
        self.gateway, self.fake, self.sql, self.logs = gateway, fake, sql, logs
        self.url = f"http://127.0.0.1:{gateway._port.getHost().port}"

    async def call(self, method: str, path: str, body: Any = None, raw: bytes | None = None
                   ) -> tuple[int, Any]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        response = await treq.request(method, self.url + path, data=data,
                                      headers={"content-type": "application/json"})
        return response.code, json.loads(await response.content())

    async def status(self) -> dict[str, Any]:
        return (await self.call("GET", "/api/realtime/status"))[1]

    async def dashboard(self, *rooms: str) -> WebSocketClientFactory:
        factory = WebSocketClientFactory(self.url.replace("http", "ws") + "/ws?userId=ops")
        factory.protocol = DashboardClient
        factory.rooms, factory.frames = rooms, []
        factory.client = await TCP4ClientEndpoint(
            reactor, "127.0.0.1", self.gateway._port.getHost().port).connect(factory)
        await eventually(lambda: sum(f["type"] == "subscribed" for f in factory.frames)
                         == len(rooms))
        return factory

    def stored(self) -> list[tuple]:
        return self.sql("SELECT token, user_id, page_ids, cookie, is_active"
                        " FROM realtime_credentials")


@pytest_twisted.async_yield_fixture
async def running(database_url, sql, tmp_path):
    fake = FakePancake(reactor)
    fake.listen()
    logs: list[str] = []
    observer = lambda event: logs.append(formatEvent(event) or "")  # noqa: E731
    globalLogPublisher.addObserver(observer)
    settings = Settings(http="tcp:0:interface=127.0.0.1", database_url=database_url,
                        data_dir=tmp_path, pancake_url=fake.url(),
                        credentials_key=Fernet.generate_key().decode())
    gateway = Gateway(settings, load_plugins(disabled=("chat", "tpos")), reactor)
    gateway.privilegedStartService()
    gateway.startService()
    await gateway._bring_up
    harness = Running(gateway, fake, sql, logs)
    await eventually(lambda: gateway.leadership.owned == ["pancake"])
    try:
        yield harness
    finally:
        await gateway.stopService()
        await fake.close()
        globalLogPublisher.removeObserver(observer)
    text = "\n".join(logs)
    assert TOKEN not in text and NEW_TOKEN not in text and COOKIE not in text


@pytest_twisted.ensureDeferred
async def test_start_relays_events_to_journal_and_dashboards_then_stop(running: Running) -> None:
    everything = await running.dashboard("pancake")
    page = await running.dashboard("pancake:page:101")
    assert await running.call("POST", "/api/realtime/start", START) == (200, {
        "success": True, "credentialsSaved": True,
        "message": "credentials saved; connecting to pancake"})
    await running.fake.wait_joined(2)
    await eventually(lambda: running.gateway.plugin_status()["pancake"]["connected"])
    status = await running.status()
    assert status == {**status, "connected": True, "hasToken": True, "userId": "42",
                      "pageCount": 2, "pageIds": ["101", "102"], "reconnectAttempts": 0,
                      "needsLogin": False, "lastError": None}
    assert "token" not in json.dumps(status).lower().replace("hastoken", "")
    [(token, user_id, page_ids, cookie, active)] = running.stored()
    assert token.startswith("fernet:") and cookie.startswith("fernet:")
    assert (user_id, json.loads(page_ids), active) == ("42", ["101", "102"], True)

    message = {"message": {"page_id": "101", "conversation_id": "101_9", "message": "hi"}}
    running.fake.push("multiple_pages:42", "pages:new_message", message)
    running.fake.push("users:42", "online_status", {"online": True})
    await eventually(lambda: len(everything.frames) >= 4)
    await eventually(lambda: len(page.frames) >= 3)
    assert [(f["type"], f["room"], f["payload"]) for f in everything.frames[2:]] == [
        ("pages:new_message", "pancake", message), ("online_status", "pancake", {"online": True})]
    assert [(f["type"], f["room"], f["payload"]) for f in page.frames[2:]] == [
        ("pages:new_message", "pancake:page:101", message)]
    assert running.sql("SELECT rooms, event FROM n2_journal ORDER BY seq") == [
        (["pancake", "pancake:page:101"], "pages:new_message"), (["pancake"], "online_status")]

    assert await running.call("POST", "/api/realtime/stop") == (200, {
        "success": True, "message": "pancake stopped; it will not reconnect at start-up"})
    assert running.fake.open_sessions == []
    assert running.stored()[0][4] is False
    status = await running.status()
    assert (status["connected"], status["hasToken"], status["pageIds"]) == (False, False, [])
    for factory in (everything, page):
        factory.client.sendClose()


@pytest_twisted.ensureDeferred
async def test_a_new_start_replaces_the_session_at_once(running: Running) -> None:
    await running.call("POST", "/api/realtime/start", START)
    await running.fake.wait_joined(2)
    assert (await running.call("POST", "/api/realtime/start",
                               {**START, "token": NEW_TOKEN, "pageIds": ["103"]}))[0] == 200
    await running.fake.wait_joined(4)
    assert [s.token for s in running.fake.open_sessions] == [NEW_TOKEN]
    assert running.fake.peak_concurrent == {TOKEN: 1, NEW_TOKEN: 1}
    assert (await running.status())["pageIds"] == ["103"]


BAD_STARTS = [
    ({"userId": "42", "pageIds": ["1"]}, "missing field 'token'"),
    ({"token": TOKEN, "pageIds": ["1"]}, "missing field 'userId'"),
    ({"token": TOKEN, "userId": "42"}, "missing field 'pageIds'"),
    ({**START, "pageIds": []}, "field 'pageIds' must not be empty"),
    ({**START, "pageIds": "101"}, "field 'pageIds' must be a list"),
    ({**START, "pageIds": [101]}, "field 'pageIds.0' must be a string"),
    ({**START, "userId": 42}, "field 'userId' must be a string"),
    ({**START, "token": 5}, "field 'token' must be a string"),
    ({**START, "token": ""}, "field 'token' must not be empty"),
    ({**START, "cookie": "a\r\nX-Injected: 1"}, "field 'cookie' has an invalid format"),
    ({**START, "pageIds": ["1 2"]}, "field 'pageIds.0' has an invalid format"),
    ({**START, "extra": 1}, "unknown field 'extra'"),
    ([START], "the body must be an object"),
]


@pytest_twisted.ensureDeferred
async def test_bad_starts_change_nothing(running: Running) -> None:
    await running.call("POST", "/api/realtime/start", START)
    await running.fake.wait_joined(2)
    before = running.stored()
    for body, message in BAD_STARTS:
        code, answer = await running.call("POST", "/api/realtime/start", body)
        assert (code, answer["message"]) == (400, message), body
        assert TOKEN not in json.dumps(answer)
    for raw, code, message in [
            (b'{"token": ', 400, "malformed JSON"),
            (b"", 400, "a JSON body is required"),
            (b'{"token": "' + b"x" * (1024 * 1024) + b'"}', 413, "request body over")]:
        answer = await running.call("POST", "/api/realtime/start", raw=raw)
        assert answer[0] == code and answer[1]["message"].startswith(message)
    assert running.stored() == before
    assert len(running.fake.sessions) == 1 and running.fake.open_sessions
    assert (await running.status())["connected"] is True


@pytest_twisted.ensureDeferred
async def test_refused_token_shows_needs_login_without_retrying(running: Running) -> None:
    running.fake.reject_token(TOKEN)
    assert (await running.call("POST", "/api/realtime/start", START))[0] == 200
    await eventually(lambda: running.gateway.plugin_status()["pancake"]["needsLogin"])
    await deferLater(reactor, 3.5)  # past the first reconnect delay (2 s + jitter)
    assert len(running.fake.sessions) == 1 and running.fake.open_sessions == []
    status = await running.status()
    assert (status["needsLogin"], status["connected"], status["lastError"]) == (
        True, False, "join refused: unauthorized")
    code, health = await running.call("GET", "/health")
    assert code == 200 and health["plugins"]["pancake"]["needsLogin"] is True
    assert running.stored()[0][4] is True  # kept for the operator to see


@pytest_twisted.ensureDeferred
async def test_upstream_drop_reconnects_after_a_backoff_and_events_flow_again(
        running: Running) -> None:
    await running.call("POST", "/api/realtime/start", START)
    await running.fake.wait_joined(2)
    dropped_at = time.monotonic()
    running.fake.drop_all()
    await running.fake.wait_joined(4)
    assert 2.0 <= time.monotonic() - dropped_at < 4.0  # 2 s + up to 1 s of jitter
    await eventually(lambda: running.gateway.plugin_status()["pancake"]["connected"])
    assert (await running.status())["reconnectAttempts"] == 0
    running.fake.push("multiple_pages:42", "pages:update_conversation",
                      {"conversation": {"id": "102_7", "page_id": "102"}})
    await eventually(lambda: running.sql("SELECT rooms FROM n2_journal") == [
        (["pancake", "pancake:page:102"],)])
