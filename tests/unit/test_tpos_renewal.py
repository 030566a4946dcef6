"""
TPOS token renewal on a fake clock: the real provider, Socket.IO client and
renewal scheduler against the fake TPOS server (which refuses expired tokens
once told to) over an in-memory network, and a scripted token endpoint.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent

from n2gateway.upstream.backoff import upstream_backoff
from n2gateway.upstream.oauth2 import GrantFailed, GrantRefused, TokenGrant
from n2gateway_plugins.tpos.session import TposCredentials
from n2gateway_plugins.tpos.provider import TposProvider
from n2gateway_plugins.tpos.tokens import TposTokens
from tests.fakes.credentials import MemoryStore
from tests.fakes.memory import MemoryEndpoint
from tests.fakes.tpos import FakeTpos

USERNAME = "shop-owner-username"
PASSWORD = "shop-owner-password-1234"
OLD_TOKEN = "TPOS-renewal-token-old-0000"
HOUR = 3600.0


class FakeTokenEndpoint:
    """Answers each grant with ``answer(form)``: a TokenGrant, or an exception raised."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.forms: list[dict[str, str]] = []
        self.issued: dict[str, float] = {}  # token -> expiry
        self.numbers = itertools.count(1)
        self.answer: Callable[[dict[str, str]], Any] = self.grant_hour

    def grant_hour(self, form: dict[str, str]) -> TokenGrant:
        n = next(self.numbers)
        token = f"TPOS-renewal-token-{n:04d}-secret"
        self.issued[token] = self.clock.seconds() + HOUR
        return TokenGrant(token, HOUR, f"TPOS-refresh-token-{n:04d}-secret")

    async def grant(self, form: dict[str, str]) -> TokenGrant:
        self.forms.append(form)
        answer = self.answer(form)
        if isinstance(answer, Deferred):
            answer = await answer
        if isinstance(answer, Exception):
            raise answer
        return answer

    @property
    def grant_types(self) -> list[str]:
        return [form["grant_type"] for form in self.forms]


class World:
    def __init__(self, rows: dict[str, Any] | None = None) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.fake = FakeTpos(self.clock)
        self.network = MemoryEndpoint(self.fake.factory, self.clock)
        self.store = MemoryStore()
        self.store.rows.update(rows or {})
        self.tokens = FakeTokenEndpoint(self.clock)
        self.events: list[tuple[str, str, Any]] = []
        self.provider = TposProvider(
            self.store, self.clock, url="ws://tpos.test/socket.io/",
            on_event=lambda *event: self.events.append(event), endpoint=self.network,
            backoff=upstream_backoff(jitter=lambda: 0.0), wall_clock=self.clock.seconds,
            tokens=TposTokens(self.tokens, wall_clock=self.clock.seconds))
        self.provider.startService()

    def start(self, credentials: TposCredentials) -> None:
        done = Deferred.fromCoroutine(self.provider.start(credentials))
        self.network.flush()
        assert done.called

    def advance(self, seconds: float, step: float = 25.0) -> None:
        """Let time pass; the fake TPOS refuses every token past its expiry."""
        end = self.clock.seconds() + seconds
        while self.clock.seconds() < end:
            self.network.advance(min(step, end - self.clock.seconds()))
            now = self.clock.seconds()
            self.fake.rejected_tokens |= {t for t, exp in self.tokens.issued.items() if exp <= now}

    def stop(self) -> None:
        done = self.provider.stopService()
        self.network.flush()
        assert done.called
        assert self.clock.getDelayedCalls() == []

    @property
    def status(self) -> dict[str, Any]:
        return self.provider.status().as_json()

    def session_token(self) -> str:
        return self.fake.connected[-1].headers["authorization"].removeprefix("Bearer ")


@pytest.fixture
def world() -> World:
    return World()


def with_password(token: str = "", **fields: Any) -> TposCredentials:
    return TposCredentials(token, "shop.tpos.vn", username=USERNAME, password=PASSWORD, **fields)


def test_a_day_of_one_hour_tokens_renews_before_each_expiry_on_one_connection(world) -> None:
    with capturedLogs() as logged:
        world.start(with_password())
        assert world.tokens.grant_types == ["password"]
        assert world.status["connected"] and world.network.attempts == 1
        first = world.session_token()

        for hour in range(24):
            world.advance(HOUR)
            world.fake.emit("on-events", {"Type": "Product", "EventName": "updated", "Id": hour})
            world.network.flush()
            assert not world.status["needsLogin"], hour

    status = world.status
    # The first token, then one renewal 5 minutes before each 1-hour token
    # expires: every 55 minutes, 26 in 24 hours.
    assert status["renewals"] == 1 + int(24 * 60 / 55) == 27
    assert world.tokens.grant_types == ["password"] + ["refresh_token"] * 26
    assert status["lastRenewal"]["outcome"] == "renewed"
    assert (status["connected"], status["tokenExpired"], status["tokenExpiresSoon"]) == (
        True, False, False)
    # The live socket was never dropped: one connect, every event relayed.
    assert world.network.attempts == 1 and world.fake.closed == 0
    assert world.session_token() == first
    assert [e[2]["Id"] for e in world.events] == list(range(24))
    # The newest token and refresh token are in the row, for a restart.
    row = world.store.rows["tpos"]
    newest = max(world.tokens.issued, key=world.tokens.issued.get)
    assert row.token == newest
    assert row.extra["refreshToken"] == newest.replace("renewal-token", "refresh-token")
    assert row.extra["expiresAt"] == world.tokens.issued[newest]
    assert status["tokenExpiresAt"].startswith("2027-")

    # A reconnect now uses the newest token, which TPOS accepts.
    world.fake.connected[0].transport.loseConnection()
    world.advance(5, step=1)
    assert world.status["connected"] and world.session_token() == newest
    text = "\n".join(formatEvent(e) for e in logged)
    for secret in (USERNAME, PASSWORD, *world.tokens.issued):
        assert secret not in text and secret not in str(world.status)
    world.stop()


def test_a_refused_refresh_token_falls_back_to_the_password(world) -> None:
    def answer(form: dict[str, str]) -> Any:
        if form["grant_type"] == "refresh_token":
            return GrantRefused("invalid_grant")
        assert (form["username"], form["password"], form["client_id"]) == (
            USERNAME, PASSWORD, "tmtWebApp")
        return world.tokens.grant_hour(form)

    world.tokens.answer = answer
    world.start(with_password(refresh_token="TPOS-refresh-token-stale-0000"))
    assert world.tokens.grant_types == ["refresh_token", "password"]
    assert world.tokens.forms[0]["refresh_token"] == "TPOS-refresh-token-stale-0000"
    assert world.status["connected"] and world.status["renewals"] == 1
    # The refused refresh token is forgotten; the new one is kept.
    assert world.store.rows["tpos"].extra["refreshToken"] == "TPOS-refresh-token-0001-secret"
    world.stop()


def test_an_invalid_grant_needs_login_and_asks_no_more(world) -> None:
    world.start(with_password(token=OLD_TOKEN, expires_at=world.clock.seconds() + HOUR))
    assert world.status["connected"] and world.tokens.forms == []
    world.tokens.answer = lambda form: GrantRefused("invalid_grant")

    world.advance(HOUR - 5 * 60)
    status = world.status
    assert status["needsLogin"] and not status["connected"]
    assert status["lastError"] == "token renewal refused: invalid_grant"
    assert status["lastRenewal"]["outcome"] == "refused: invalid_grant"
    assert world.tokens.grant_types == ["password"]

    world.advance(24 * HOUR, step=600)
    assert world.tokens.grant_types == ["password"] and world.network.attempts == 1
    assert world.status["tokenExpired"]
    world.stop()


def test_an_endpoint_down_is_retried_with_backoff_while_the_token_is_valid(world) -> None:
    world.start(with_password(token=OLD_TOKEN, expires_at=world.clock.seconds() + HOUR))
    failures = iter([GrantFailed("token endpoint unreachable: ConnectionRefusedError")] * 4)
    world.tokens.answer = lambda form: next(failures, None) or world.tokens.grant_hour(form)

    world.advance(HOUR - 5 * 60, step=5)
    assert world.status["lastRenewal"]["outcome"] == (
        "failed: token endpoint unreachable: ConnectionRefusedError")
    world.advance(2 + 4 + 8 + 16, step=1)  # the backoff: 2 s, 4 s, 8 s, 16 s
    status = world.status
    assert len(world.tokens.forms) == 5 and status["renewals"] == 1
    assert status["lastRenewal"]["outcome"] == "renewed"
    assert status["connected"] and not status["needsLogin"] and world.network.attempts == 1
    world.stop()


def test_a_renewal_that_never_answers_times_out_and_is_retried(world) -> None:
    world.start(with_password(token=OLD_TOKEN, expires_at=world.clock.seconds() + HOUR))
    hanging: list[Deferred] = []
    world.tokens.answer = lambda form: hanging.append(Deferred()) or hanging[-1]
    world.advance(HOUR - 5 * 60 + 30, step=5)
    assert world.status["lastRenewal"]["outcome"] == "failed: timeout"
    assert hanging[0].called  # cancelled, not left pending
    world.advance(2, step=1)
    assert len(world.tokens.forms) == 2  # one more try after 2 s, still only one at a time
    world.stop()


def test_a_token_tpos_refuses_is_renewed_at_once_and_only_once(world) -> None:
    world.fake.rejected_tokens.add(OLD_TOKEN)
    with capturedLogs() as logged:
        world.start(with_password(token=OLD_TOKEN))
        assert world.tokens.grant_types == ["password"]
        world.advance(5, step=1)
        assert world.status["connected"] and world.session_token() != OLD_TOKEN
        assert not world.status["needsLogin"]

        # The renewed token is refused too: a person must log in; no renewal storm.
        world.fake.rejected_tokens |= set(world.tokens.issued)
        world.fake.connected[0].transport.loseConnection()
        world.advance(60, step=1)
    assert world.status["needsLogin"]
    assert world.status["lastError"] == "connect refused: unauthorized"
    assert world.tokens.grant_types == ["password"]
    assert "credentials refused" in "\n".join(formatEvent(e) for e in logged)
    world.stop()


def test_a_refusal_echoing_a_renewed_token_is_withheld(world) -> None:
    world.start(with_password())
    renewed = world.session_token()
    world.fake.rejected_tokens.add(renewed)
    world.fake.echo_refused_token = True
    with capturedLogs() as logged:
        world.fake.connected[0].transport.loseConnection()
        world.advance(5, step=1)
    assert renewed not in str(world.status)
    assert renewed not in "\n".join(formatEvent(e) for e in logged)
    world.stop()


def test_a_restart_uses_the_saved_token_without_asking_for_another(world) -> None:
    world.start(with_password())
    saved = world.store.rows["tpos"]
    world.stop()

    again = World({"tpos": saved})
    again.network.flush()
    assert again.tokens.forms == [] and again.status["connected"]
    assert again.session_token() == saved.token
    again.stop()


def test_stop_during_a_renewal_leaves_nothing_behind(world) -> None:
    pending: Deferred = Deferred()
    world.tokens.answer = lambda form: pending
    world.start(with_password())
    assert not world.status["connected"] and world.tokens.grant_types == ["password"]
    done = Deferred.fromCoroutine(world.provider.stop())
    world.network.flush()
    assert done.called and pending.called
    assert world.store.rows["tpos"].is_active is False
    world.stop()


def test_a_refused_first_password_grant_needs_login_without_connecting(world) -> None:
    world.tokens.answer = lambda form: GrantRefused("invalid_grant")
    world.start(with_password())
    status = world.status
    assert status["needsLogin"] and status["lastError"] == "token renewal refused: invalid_grant"
    world.advance(HOUR, step=60)
    assert world.network.attempts == 0 and world.tokens.grant_types == ["password"]
    world.stop()


def test_a_gateway_not_holding_tpos_saves_the_credentials_and_asks_for_no_token() -> None:
    world = World()
    world.stop()  # the leadership gave TPOS to another gateway
    done = Deferred.fromCoroutine(world.provider.start(with_password()))
    world.network.flush()
    assert done.result is False and world.store.rows["tpos"].extra["username"] == USERNAME
    world.advance(HOUR, step=60)
    assert world.tokens.forms == [] and world.network.attempts == 0


def test_tokens_that_barely_live_are_renewed_no_more_than_once_a_second(world) -> None:
    world.tokens.answer = lambda form: TokenGrant(f"TPOS-renewal-short-{len(world.tokens.forms)}"
                                                  "-token", 0.01, None)
    world.start(with_password())
    world.advance(60, step=0.5)
    assert 55 <= len(world.tokens.forms) <= 61 and not world.status["needsLogin"]
    world.stop()
