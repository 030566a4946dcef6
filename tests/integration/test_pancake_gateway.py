"""
The Pancake plugin in a real gateway (in process, on a real port and a real
PostgreSQL) against the fake Pancake server: the control routes, the relay into
the journal and out to a ``/ws`` client, reconnects and refused tokens. Every
test also checks that nothing it made the gateway log holds the token or cookie.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest_twisted
import treq
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from cryptography.fernet import Fernet
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.logger import formatEvent, globalLogPublisher

from n2gateway.config import Settings
from n2gateway.gateway import Gateway
from n2gateway.plugins import load_plugins
from tests.fakes.pancake import FakePancake
from tests.support.waiting import eventually, sleep

TOKEN = "TOKEN-gateway-5150"
NEW_TOKEN = "TOKEN-gateway-6160"
COOKIE = "sid=COOKIE-gateway-7170"
START = {"token": TOKEN, "userId": "42", "pageIds": ["101", "102"], "cookie": COOKIE}


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

    async def metrics(self) -> str:
        response = await treq.get(self.url + "/metrics")
        return (await response.content()).decode()

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
                        data_dir=tmp_path, credentials_key=Fernet.generate_key().decode(),
                        # A refused page is asked again after 1 s, not 5 min.
                        plugin_options={"pancake-url": fake.url(), "pancake-page-retry": 1.0})
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
    await running.fake.wait_joined(3)
    await eventually(lambda: _health_status(running)["connected"])
    status = await running.status()
    assert status == {**status, "connected": True, "hasToken": True, "userId": "42",
                      "pageCount": 2, "pageIds": ["101", "102"], "reconnectAttempts": 0,
                      "needsLogin": False, "lastError": None}
    assert TOKEN not in json.dumps(status) and COOKIE not in json.dumps(status)
    [(token, user_id, page_ids, cookie, active)] = running.stored()
    assert token.startswith("fernet:") and cookie.startswith("fernet:")
    assert (user_id, json.loads(page_ids), active) == ("42", ["101", "102"], True)

    message = {"message": {"page_id": "101", "conversation_id": "101_9", "message": "hi"}}
    running.fake.push("pages:101", "pages:new_message", message)
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
    await running.fake.wait_joined(3)
    assert (await running.call("POST", "/api/realtime/start",
                               {**START, "token": NEW_TOKEN, "pageIds": ["103"]}))[0] == 200
    await running.fake.wait_joined(5)
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
    # Valid JSON, and past the schema's patterns, but text PostgreSQL cannot store.
    ({**START, "token": TOKEN + "\ud800"}, "field 'token' is not valid Unicode (a lone surrogate)"),
    ({**START, "cookie": "sid=\udc00"}, "field 'cookie' is not valid Unicode (a lone surrogate)"),
    ([START], "the body must be an object"),
]


@pytest_twisted.ensureDeferred
async def test_bad_starts_change_nothing(running: Running) -> None:
    await running.call("POST", "/api/realtime/start", START)
    await running.fake.wait_joined(3)
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
    await eventually(lambda: _health_status(running)["needsLogin"])
    await sleep(3.5)  # past the first reconnect delay (2 s + jitter)
    assert len(running.fake.sessions) == 1 and running.fake.open_sessions == []
    status = await running.status()
    assert (status["needsLogin"], status["connected"], status["lastError"]) == (
        True, False, "join refused: unauthorized")
    code, health = await running.call("GET", "/health")
    assert code == 200 and health["plugins"]["pancake"]["needsLogin"] is True
    assert running.stored()[0][4] is True  # kept for the operator to see


@pytest_twisted.ensureDeferred
async def test_a_refusal_echoing_the_token_never_reaches_health(running: Running) -> None:
    running.fake.reject_token(TOKEN, reason=TOKEN)  # short and code-like: safe_reason passes it
    assert (await running.call("POST", "/api/realtime/start", START))[0] == 200
    await eventually(lambda: _health_status(running)["needsLogin"])
    code, health = await running.call("GET", "/health")
    assert health["plugins"]["pancake"]["lastError"] == (
        "join refused: [withheld: it quoted a credential]")
    assert TOKEN not in json.dumps(health) and TOKEN not in json.dumps(await running.status())


@pytest_twisted.ensureDeferred
async def test_upstream_drop_reconnects_after_a_backoff_and_events_flow_again(
        running: Running) -> None:
    await running.call("POST", "/api/realtime/start", START)
    await running.fake.wait_joined(3)
    dropped_at = time.monotonic()
    running.fake.drop_all()
    await running.fake.wait_joined(6)
    assert time.monotonic() - dropped_at >= 2.0  # the first backoff: 2 s + up to 1 s of jitter
    await eventually(lambda: _health_status(running)["connected"])
    assert (await running.status())["reconnectAttempts"] == 0
    running.fake.push("pages:102", "pages:update_conversation",
                      {"conversation": {"id": "102_7", "page_id": "102"}})
    await eventually(lambda: running.sql("SELECT rooms FROM n2_journal") == [
        (["pancake", "pancake:page:102"],)])


@pytest_twisted.ensureDeferred
async def test_an_expired_page_fails_alone_and_joins_once_paid(running: Running) -> None:
    pages = ["101", "102", "103", "104", "105"]
    running.fake.expire_page("105")
    dashboard = await running.dashboard("pancake")
    assert (await running.call("POST", "/api/realtime/start", {**START, "pageIds": pages}))[0] == 200
    await running.fake.wait_joined(5)  # users: and four pages
    await eventually(lambda: _health_status(running)["connected"])
    status = await running.status()
    assert (status["connected"], status["needsLogin"], status["lastError"]) == (True, False, None)
    assert {p: (s["joined"], s["error"]) for p, s in status["pages"].items()} == {
        **{p: (True, None) for p in pages[:4]}, "105": (False, "join refused: error 122")}
    assert _pages_not_joined(await running.metrics()) == 1

    for page in pages[:4]:
        running.fake.push(f"pages:{page}", "pages:new_message", {"message": {"page_id": page}})
    await eventually(lambda: len(_relayed(dashboard)) == 4)
    assert _relayed(dashboard) == pages[:4]

    running.fake.renew_page("105")
    await running.fake.wait_joined(6)  # the next slow retry (1 s here) joins it
    await eventually(lambda: _health_status(running)["pages"]["105"]["joined"])
    assert (await running.status())["pages"]["105"]["error"] is None
    assert _pages_not_joined(await running.metrics()) == 0
    assert len(running.fake.sessions) == 1  # the other pages were never interrupted
    running.fake.push("pages:105", "pages:new_message", {"message": {"page_id": "105"}})
    await eventually(lambda: _relayed(dashboard) == pages)
    dashboard.client.sendClose()


def _relayed(dashboard: WebSocketClientFactory) -> list[str]:
    """The pages of the messages a dashboard received, in order."""
    return [f["payload"]["message"]["page_id"] for f in dashboard.frames
            if f["type"] == "pages:new_message"]


def _health_status(running: Running) -> dict:
    """The provider's status as /health shows it."""
    return running.gateway.operations.plugin_status()["pancake"]


def _pages_not_joined(metrics: str) -> float:
    [line] = [line for line in metrics.splitlines()
              if line.startswith('n2gateway_upstream_pages_not_joined{provider="pancake"}')]
    return float(line.split()[-1])
