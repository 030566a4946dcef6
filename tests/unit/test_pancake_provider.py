"""
The Pancake provider on a fake clock: auto-connect from the stored row,
replacing a session at once, stop, refused tokens and unusable rows. The real
Phoenix client talks to the fake Pancake server over an in-memory network; the
credential store is an in-memory stand-in with the same methods.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.python.usage import UsageError

from n2gateway.config import Settings
from n2gateway.credentials import StoredCredentials
from n2gateway.db import DatabaseUnavailable
from n2gateway.plugin_options import parse_plugin_options
from n2gateway.plugins import declared_options, load_plugins
from n2gateway.upstream.backoff import upstream_backoff
from n2gateway_plugins.pancake.session import PancakeCredentials
from n2gateway_plugins.pancake import _provider
from n2gateway_plugins.pancake.provider import PancakeProvider
from tests.fakes.credentials import MemoryStore
from tests.fakes.memory import MemoryEndpoint
from tests.fakes.pancake import FakePancake

TOKEN = "TOKEN-provider-111"
NEW_TOKEN = "TOKEN-provider-222"
COOKIE = "sid=COOKIE-provider-333"


class World:
    def __init__(self) -> None:
        self.clock = Clock()
        self.fake = FakePancake(self.clock)
        self.network = MemoryEndpoint(self.fake.factory, self.clock)
        self.store = MemoryStore()
        self.events: list[tuple[str, str, Any]] = []
        self.provider = PancakeProvider(
            self.store, self.clock, url="ws://pancake.test/socket/websocket",
            on_event=lambda *event: self.events.append(event), endpoint=self.network,
            backoff=upstream_backoff(jitter=lambda: 0.0), wall_clock=self.clock.seconds)
        # Opening and closing of upstream sessions, in order.
        self.timeline: list[tuple[str, str | None]] = []
        opened, closed = self.fake._opened, self.fake._closed
        self.fake._opened = lambda s: (self.timeline.append(("open", None)), opened(s))
        self.fake._closed = lambda s: (self.timeline.append(("close", s.token)), closed(s))

    def store_row(self, token: str | None = TOKEN, page_ids: Any = ("101", "102"),
                  active: bool = True, user_id: str | None = "42") -> None:
        self.store.rows["pancake"] = StoredCredentials(
            "pancake", token, user_id, None if page_ids is None else list(page_ids),
            COOKIE, None, active)

    def run(self, coroutine: Any) -> Deferred:
        d = Deferred.fromCoroutine(coroutine)
        self.network.flush()
        return d

    def advance(self, seconds: float) -> None:
        self.network.advance(seconds)

    def stop_service(self) -> None:
        d = self.provider.stopService()
        self.network.flush()
        assert d.called
        assert self.clock.getDelayedCalls() == []

    @property
    def status(self) -> dict[str, Any]:
        return self.provider.status().as_json()


def credentials(token: str = NEW_TOKEN, pages: tuple[str, ...] = ("201",)) -> PancakeCredentials:
    return PancakeCredentials(token, "42", pages, None)


@pytest.fixture
def world() -> World:
    return World()


def test_auto_connects_from_the_active_stored_row(world: World) -> None:
    world.store_row()
    world.provider.startService()
    world.network.flush()
    assert world.fake.joined_topics == {"users:42", "pages:101", "pages:102"}
    assert world.fake.sessions[0].headers["cookie"] == COOKIE
    joined = {"joined": True, "error": None, "since": world.status["since"]}
    assert world.status == {
        "connected": True, "since": world.status["since"], "reconnectAttempts": 0,
        "lastError": None, "needsLogin": False, "held": True, "hasToken": True,
        "tokenExpiresAt": None, "tokenExpired": False, "tokenExpiresSoon": False,
        "userId": "42", "pageCount": 2, "pageIds": ["101", "102"],
        "pages": {"101": joined, "102": joined}}
    world.fake.push("users:42", "pages:new_message", {"message": {"page_id": "101"}})
    world.network.flush()
    assert world.events == [("users:42", "pages:new_message", {"message": {"page_id": "101"}})]
    world.stop_service()
    assert world.fake.open_sessions == []


@pytest.mark.parametrize("active", [False, None])
def test_no_active_row_means_no_connection(world: World, active: bool | None) -> None:
    if active is not None:
        world.store_row(active=active)
    world.provider.startService()
    world.network.flush()
    assert world.fake.sessions == []
    assert world.status["hasToken"] is False and world.status["connected"] is False
    world.stop_service()


@pytest.mark.parametrize("row, why", [
    ({"token": ""}, "no token"),
    ({"user_id": None}, "no user_id"),
    ({"page_ids": []}, "page_ids is not a non-empty JSON list"),
    ({"page_ids": None}, "page_ids is not a non-empty JSON list"),
    ({"page_ids": [True]}, "page_ids holds something that is not an id"),
])
def test_an_unusable_row_is_logged_without_secrets_and_skipped(
        world: World, row: dict, why: str) -> None:
    world.store_row(**row)
    with capturedLogs() as events:
        world.provider.startService()
        world.network.flush()
    assert world.fake.sessions == []
    assert world.status["lastError"] == f"stored credentials unusable: {why}"
    assert world.status["hasToken"] is False
    text = "\n".join(formatEvent(e) for e in events)
    assert f"pancake: stored credentials skipped: {why}" in text
    assert TOKEN not in text and COOKIE not in text
    world.stop_service()


def test_a_legacy_row_with_numeric_page_ids_still_connects(world: World) -> None:
    world.store_row(page_ids=[101, 102])
    world.provider.startService()
    world.network.flush()
    assert world.fake.joined_topics == {"users:42", "pages:101", "pages:102"}
    world.stop_service()


def test_start_replaces_a_running_session_at_once(world: World) -> None:
    world.store_row()
    world.provider.startService()
    world.network.flush()
    assert world.status["connected"]
    done = world.run(world.provider.start(credentials()))
    assert done.called
    # The old session was closed before the new one was opened.
    assert world.timeline == [("open", None), ("close", TOKEN), ("open", None)]
    assert world.fake.open_sessions[0].token == NEW_TOKEN
    assert world.fake.joined_topics == {"users:42", "pages:201"}
    assert world.store.rows["pancake"].token == NEW_TOKEN
    assert world.status["pageIds"] == ["201"] and world.status["connected"]
    world.stop_service()


def test_start_again_with_the_same_token_never_holds_two_sessions(world: World) -> None:
    world.provider.startService()
    for _ in range(3):
        world.run(world.provider.start(credentials(TOKEN)))
    assert len(world.fake.sessions) == 3
    assert world.fake.peak_concurrent[TOKEN] == 1
    world.stop_service()


def test_a_start_that_cannot_save_changes_nothing(world: World) -> None:
    world.store_row()
    world.provider.startService()
    world.network.flush()
    world.store.down = 1
    failed = world.run(world.provider.start(credentials()))
    assert isinstance(failed.result.value, DatabaseUnavailable)
    failed.addErrback(lambda _: None)
    assert len(world.fake.sessions) == 1 and world.fake.open_sessions
    assert world.store.rows["pancake"].token == TOKEN
    assert world.status["pageIds"] == ["101", "102"]
    world.stop_service()


def test_start_on_a_gateway_not_holding_the_provider_only_saves(world: World) -> None:
    # Another gateway holds Pancake: the saved row is what it follows.
    here = world.run(world.provider.start(credentials()))
    assert here.result is False
    assert world.store.rows["pancake"].token == NEW_TOKEN
    assert world.fake.sessions == []
    assert world.status["hasToken"] is False
    # Once this gateway holds it, it connects with that row.
    world.provider.startService()
    world.network.flush()
    assert world.fake.open_sessions[0].token == NEW_TOKEN
    world.stop_service()


def test_follows_a_row_changed_through_another_gateway(world: World) -> None:
    world.store_row()
    world.provider.startService()
    world.network.flush()
    world.store_row(token=NEW_TOKEN, page_ids=("201",))
    world.provider.follow_stored()
    world.network.flush()
    assert [s.token for s in world.fake.open_sessions] == [NEW_TOKEN]
    assert world.fake.peak_concurrent[NEW_TOKEN] == 1
    assert world.timeline == [("open", None), ("close", TOKEN), ("open", None)]
    assert world.status["pageIds"] == ["201"]
    # A start elsewhere with the same credentials reconnects too, as a start does.
    world.provider.follow_stored()
    world.network.flush()
    assert len(world.fake.sessions) == 3 and len(world.fake.open_sessions) == 1
    # A check after LISTEN came back leaves an unchanged row be.
    world.provider.follow_stored(force=False)
    world.network.flush()
    assert len(world.fake.sessions) == 3
    # Stopped elsewhere: the session ends here.
    world.store_row(token=NEW_TOKEN, page_ids=("201",), active=False)
    world.provider.follow_stored(force=False)
    world.network.flush()
    assert world.fake.open_sessions == [] and world.status["hasToken"] is False
    world.advance(600)
    assert len(world.fake.sessions) == 3
    world.stop_service()


def test_a_check_while_the_start_up_read_is_under_way_leaves_it_be(world: World) -> None:
    # LISTEN taking effect just after the provider started must not race its auto-connect.
    world.store_row()
    world.store.down = 1
    world.provider.startService()
    world.provider.follow_stored(force=False)
    world.advance(2)
    assert world.store.calls == ["load", "load"] and len(world.fake.sessions) == 1
    world.stop_service()


def test_a_gateway_not_holding_the_provider_ignores_changes(world: World) -> None:
    world.store_row()
    world.provider.follow_stored()
    world.network.flush()
    assert world.store.calls == [] and world.fake.sessions == []


def test_a_follow_still_reading_when_the_service_stops_connects_nothing(world: World) -> None:
    world.store_row()
    world.provider.startService()
    world.network.flush()
    world.store.down = 3
    world.provider.follow_stored()
    world.stop_service()
    world.advance(600)
    assert len(world.fake.sessions) == 1 and world.fake.open_sessions == []


def test_stop_deactivates_and_disconnects(world: World) -> None:
    world.store_row()
    world.provider.startService()
    world.network.flush()
    done = world.run(world.provider.stop())
    assert done.called
    assert world.store.rows["pancake"].is_active is False
    assert world.fake.open_sessions == []
    assert world.status["connected"] is False and world.status["hasToken"] is False
    assert world.status["pageIds"] == []
    world.advance(600)
    assert len(world.fake.sessions) == 1  # no reconnect after a stop
    assert world.clock.getDelayedCalls() == []
    world.stop_service()


def test_refused_token_needs_login_without_a_retry_storm(world: World) -> None:
    world.fake.reject_token(TOKEN)
    world.store_row()
    world.provider.startService()
    world.network.flush()
    assert world.status["needsLogin"] is True
    assert world.status["lastError"] == "join refused: unauthorized"
    assert world.status["hasToken"] is True
    world.advance(3600)
    assert len(world.fake.sessions) == 1
    assert world.clock.getDelayedCalls() == []
    assert world.store.rows["pancake"].is_active is True  # the row is kept
    # A fresh token reconnects at once.
    world.run(world.provider.start(credentials()))
    assert world.status["needsLogin"] is False and world.status["connected"] is True
    assert len(world.fake.open_sessions) == 1
    world.stop_service()


def test_reconnect_delays_grow_to_a_minute_while_upstream_is_away(world: World) -> None:
    world.store_row()
    world.provider.startService()
    world.network.flush()
    world.network.refusing = True
    world.fake.drop_all()
    world.network.flush()
    attempts_at = []
    for _ in range(140):
        before = world.network.attempts
        world.advance(1)
        if world.network.attempts > before:
            attempts_at.append(int(world.clock.seconds()))
    assert [b - a for a, b in zip([0, *attempts_at], attempts_at)] == [2, 4, 8, 16, 32, 60]
    # The status counts the attempt now waiting too.
    assert world.status["reconnectAttempts"] == 7 and not world.status["connected"]
    world.network.refusing = False
    world.advance(60)
    assert world.status["connected"] and world.status["reconnectAttempts"] == 0
    world.stop_service()


def test_auto_connect_waits_for_the_database_with_backoff(world: World) -> None:
    world.store_row()
    world.store.down = 2
    world.provider.startService()
    world.network.flush()
    assert world.fake.sessions == []
    world.advance(2)
    assert world.fake.sessions == []
    world.advance(4)
    assert world.fake.joined_topics == {"users:42", "pages:101", "pages:102"}
    assert world.store.calls == ["load"] * 3
    world.stop_service()


def test_stopping_while_the_database_is_away_leaves_no_timer(world: World) -> None:
    world.store_row()
    world.store.down = 5
    world.provider.startService()
    world.advance(2)
    world.stop_service()
    world.advance(600)
    assert world.fake.sessions == []


def test_a_provider_handed_back_and_forth_reconnects_each_time(world: World) -> None:
    # The leadership stops the provider when this gateway loses the source and
    # starts it again when it wins it back.
    world.store_row()
    for round in range(2):
        world.provider.startService()
        world.network.flush()
        assert world.status["connected"] and len(world.fake.open_sessions) == 1
        world.stop_service()
        assert world.fake.open_sessions == []
        assert world.status["connected"] is False and world.status["hasToken"] is False
        assert world.status["held"] is False
    assert len(world.fake.sessions) == 2


def test_status_names_each_page_and_why_it_is_not_joined(world: World) -> None:
    world.fake.silent = True
    world.store_row()
    world.provider.startService()
    world.network.flush()
    never = {"joined": False, "error": None, "since": None}
    assert world.status["pages"] == {"101": never, "102": never}
    world.stop_service()
    world.fake.silent = False
    world.fake.expire_page("102")
    world.clock.advance(60)
    world.provider.startService()
    world.network.flush()
    assert world.status["connected"] and not world.status["needsLogin"]
    assert world.status["pages"] == {
        "101": {"joined": True, "error": None, "since": "1970-01-01T00:01:00+00:00"},
        "102": {"joined": False, "error": "join refused: error 122",
                "since": "1970-01-01T00:01:00+00:00"}}
    world.stop_service()


def test_upstream_reasons_quoting_a_credential_are_never_shown_or_logged(world: World) -> None:
    world.fake.silent = True
    with capturedLogs() as events:
        world.store_row()
        world.provider.startService()
        world.network.flush()
        server = world.fake.open_sessions[-1]
        users, page_101, page_102 = [f for f in server.frames if f[3] == "phx_join"]
        for join, reason in [(page_101, TOKEN), (page_102, COOKIE[4:16]), (users, TOKEN[:10])]:
            server.send_frame(join[0], join[1], join[2], "phx_reply",
                              {"status": "error", "response": {"reason": reason}})
        world.network.flush()
    status = world.status
    assert status["needsLogin"] is True
    assert status["lastError"] == "join refused: [withheld: it quoted a credential]"
    assert status["pages"]["101"]["error"] == status["pages"]["102"]["error"] == (
        "join refused: [withheld: it quoted a credential]")
    shown = repr(status) + "\n".join(formatEvent(e) for e in events)
    for secret in (TOKEN, TOKEN[:10], COOKIE[4:16]):
        assert secret not in shown
    world.stop_service()


def _plugin_provider(env: dict[str, str]) -> PancakeProvider:
    pm = load_plugins(disabled=("chat", "tpos"))
    settings = Settings(plugin_options=parse_plugin_options(declared_options(pm), {}, env))
    context = SimpleNamespace(settings=settings, reactor=Clock(), publish=lambda *a: None)
    return _provider(context, MemoryStore())


def test_the_page_retry_comes_from_its_setting() -> None:
    assert 300 <= _plugin_provider({}).page_backoff(0) <= 330
    assert 120 <= _plugin_provider({"N2GATEWAY_PANCAKE_PAGE_RETRY": "2m"}).page_backoff(0) <= 132
    assert _plugin_provider({"N2GATEWAY_PANCAKE_PAGE_RETRY": "2m"}).page_backoff(10) <= 3600 + 12
    with pytest.raises(UsageError, match="N2GATEWAY_PANCAKE_PAGE_RETRY: expected a duration"):
        _plugin_provider({"N2GATEWAY_PANCAKE_PAGE_RETRY": "soon"})
