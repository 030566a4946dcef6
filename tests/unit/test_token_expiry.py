"""
Expiry in sight: a provider whose token is a JWT shows its ``exp``, warns once a
day when it is near, says when it has passed, and exports it as a metric. Shown
with the real Pancake provider (its tokens are ~90-day JWTs) on a fake clock.
"""

from __future__ import annotations

from datetime import datetime

import jwt
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent

from n2gateway.http.metrics import GatewayCollector
from n2gateway_plugins.pancake.session import PancakeCredentials
from n2gateway.upstream.provider import ProviderStatus
from n2gateway.upstream.status import UpstreamStatus
from n2gateway.upstream.token_expiry import expiry_status, jwt_expiry
from n2gateway_plugins.pancake.provider import PancakeProvider
from tests.fakes.credentials import MemoryStore
from tests.fakes.memory import MemoryEndpoint
from tests.fakes.pancake import FakePancake

DAY = 86400.0
KEY = "a-key-the-gateway-never-has-0123456789"
NOW = 1_800_000_000.0


def token(**claims: object) -> str:
    return jwt.encode(claims, KEY, algorithm="HS256")


def test_the_exp_of_a_jwt_is_read_without_its_key() -> None:
    assert jwt_expiry(token(sub="42", exp=int(NOW))) == NOW
    assert jwt_expiry(token(sub="42", exp=NOW - DAY)) == NOW - DAY  # expired: still read
    for no_expiry in (token(sub="42"), token(exp="soon"), token(exp=True), "not-a-jwt",
                      "a.b.c", "", None):
        assert jwt_expiry(no_expiry) is None


def test_the_status_says_soon_only_for_a_token_nobody_renews() -> None:
    assert expiry_status(NOW + 3 * DAY, NOW, 7 * DAY, renewable=False).as_json() == {
        "tokenExpiresAt": "2027-01-18T08:00:00+00:00", "tokenExpired": False,
        "tokenExpiresSoon": True}
    assert expiry_status(NOW + 3 * DAY, NOW, 7 * DAY, renewable=True).expires_soon is False
    assert expiry_status(NOW + 8 * DAY, NOW, 7 * DAY, renewable=False).expires_soon is False
    assert expiry_status(NOW - 1, NOW, 7 * DAY, renewable=True).expired is True
    assert expiry_status(None, NOW, 7 * DAY, renewable=False).as_json() == {
        "tokenExpiresAt": None, "tokenExpired": False, "tokenExpiresSoon": False}


def test_a_pancake_jwt_near_its_end_is_warned_about_once_a_day_then_said_expired() -> None:
    clock = Clock()
    clock.advance(NOW)
    fake = FakePancake(clock)
    network = MemoryEndpoint(fake.factory, clock)
    provider = PancakeProvider(MemoryStore(), clock, url="ws://pancake.test/socket/websocket",
                               on_event=lambda *e: None, endpoint=network,
                               wall_clock=clock.seconds)
    secret = token(sub="42", exp=int(NOW + 2.5 * DAY))
    provider.startService()
    with capturedLogs() as logged:
        Deferred.fromCoroutine(provider.start(PancakeCredentials(secret, "42", ("101",))))
        network.flush()
        status = provider.status().as_json()
        assert status["connected"] and status["tokenExpiresSoon"] and not status["tokenExpired"]
        assert datetime.fromisoformat(status["tokenExpiresAt"]).timestamp() == NOW + 2.5 * DAY
        for _ in range(4 * 24):
            network.advance(3600)

    warnings = [formatEvent(e) for e in logged if "the token expire" in formatEvent(e)]
    # Checked hourly, warned daily: at 0, 24 and 48 h before the end (60 h), 72 and 96 h after.
    assert len(warnings) == 5 and sum("expired" in w for w in warnings) == 2
    assert warnings[0].startswith("pancake: the token expires at 2027-01-17T20:00:00+00:00 "
                                  "(in 2.5 days); log in again")
    assert warnings[-1].startswith("pancake: the token expired at 2027-01-17T20:00:00+00:00")
    status = provider.status().as_json()
    assert status["tokenExpired"] and not status["tokenExpiresSoon"]
    assert secret not in str(status) and secret not in "\n".join(
        formatEvent(e) for e in logged)
    stopped = provider.stopService()
    network.flush()
    assert stopped.called and clock.getDelayedCalls() == []


def test_the_warning_period_the_operator_set_holds_for_the_log_as_for_the_status() -> None:
    clock = Clock()
    clock.advance(NOW)
    network = MemoryEndpoint(FakePancake(clock).factory, clock)
    provider = PancakeProvider(MemoryStore(), clock, url="ws://pancake.test/socket/websocket",
                               on_event=lambda *e: None, endpoint=network,
                               wall_clock=clock.seconds)
    provider.token_warning = 1 * DAY  # --token-warning 1d, as ProviderPlugin sets it
    provider.startService()
    with capturedLogs() as logged:
        Deferred.fromCoroutine(provider.start(PancakeCredentials(
            token(sub="42", exp=int(NOW + 2.5 * DAY)), "42", ("101",))))
        network.flush()
        assert not provider.status().as_json()["tokenExpiresSoon"]
        for _ in range(24):
            network.advance(3600)  # a day later: 1.5 days left, still more than 1 day
    assert [e for e in logged if "the token expire" in formatEvent(e)] == []
    provider.stopService()
    network.flush()


def test_the_expiry_is_a_metric_for_the_providers_whose_token_says() -> None:
    def provider(expires_at: float | None) -> ProviderStatus:
        return ProviderStatus(UpstreamStatus(), held=True, has_token=True,
                              expiry=expiry_status(expires_at, NOW, 7 * DAY, renewable=False),
                              channels_not_joined=None, own={})

    statuses = {"pancake": provider(NOW), "tpos": provider(None), "chat": {"listening": True}}
    families = {f.name: f for f in GatewayCollector._upstreams(statuses)}
    samples = families["n2gateway_upstream_token_expiry_timestamp_seconds"].samples
    assert [(s.labels, s.value) for s in samples] == [({"provider": "pancake"}, NOW)]
