"""The TPOS provider's stored rows and status fields, and the relay's rooms."""

import json
from types import SimpleNamespace
from typing import Any

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent

from n2gateway.credentials import StoredCredentials
from n2gateway.http.errors import HttpError
from n2gateway.http.validation import validate
from n2gateway.upstream.provider import BadCredentials
from n2gateway_plugins import tpos
from n2gateway_plugins.tpos.session import TposCredentials
from n2gateway_plugins.tpos.api import START_BODY, credentials_from_body
from n2gateway_plugins.tpos.provider import TposProvider
from n2gateway_plugins.tpos.relay import TposRelay
from tests.fakes.credentials import MemoryStore
from tests.fakes.memory import MemoryEndpoint
from tests.fakes.tpos import FakeTpos

TOKEN = "TPOS-plugin-token-1"


def provider() -> TposProvider:
    return TposProvider(None, Clock(), url="ws://tpos.test/socket.io/", on_event=lambda *e: None,
                        tokens=None)


def row(token: str | None = TOKEN, room: str | None = "shop.tpos.vn") -> StoredCredentials:
    return StoredCredentials("tpos", token, None, None, None, room, True)


def test_a_stored_row_gives_credentials_with_the_default_room() -> None:
    assert provider().credentials_from_row(row()) == TposCredentials(TOKEN, "shop.tpos.vn")
    assert provider().credentials_from_row(row(room=None)).room == "tomato.tpos.vn"
    assert provider().row_for(TposCredentials(TOKEN, "a.b")) == {"token": TOKEN, "room": "a.b",
                                                                 "extra": None}


@pytest.mark.parametrize("bad, why", [(row(token=""), "no token"),
                                      (row(room="a b/c"), "room is not a TPOS room name")])
def test_unusable_rows_are_refused_without_quoting_them(bad: StoredCredentials, why: str) -> None:
    with pytest.raises(BadCredentials, match=why) as caught:
        provider().credentials_from_row(bad)
    assert TOKEN not in str(caught.value)


def test_status_names_the_room_never_the_token() -> None:
    clock = Clock()
    fake = FakeTpos(clock)
    network = MemoryEndpoint(fake.factory, clock)
    live = TposProvider(MemoryStore(), clock, url="ws://tpos.test/socket.io/",
                        on_event=lambda *e: None, endpoint=network, wall_clock=clock.seconds,
                        tokens=None)
    live.startService()
    network.flush()
    assert (live.status().own["room"], live.status().has_token) == (None, False)

    started = Deferred.fromCoroutine(live.start(TposCredentials(TOKEN, "shop.tpos.vn")))
    network.flush()
    assert started.called
    status = live.status().as_json()
    assert (status["room"], status["hasToken"], status["connected"]) == (
        "shop.tpos.vn", True, True)
    assert TOKEN not in json.dumps(status)
    stopped = live.stopService()
    network.flush()
    assert stopped.called and clock.getDelayedCalls() == []


def test_a_start_without_a_room_is_for_the_default_room() -> None:
    assert credentials_from_body({"token": TOKEN}) == TposCredentials(TOKEN, "tomato.tpos.vn")


def test_the_relay_publishes_into_both_rooms_and_logs_a_failure() -> None:
    published: list[tuple[Any, ...]] = []
    relay = TposRelay(lambda *args: succeed(published.append(args)))
    relay("shop.tpos.vn", "on-events", '{"Type": "FastSaleOrder", "EventName": "created"}')
    assert published == [(["tpos", "tpos:shop.tpos.vn"], "tpos:invoice-update",
                          {"Type": "FastSaleOrder", "EventName": "created"})]
    with capturedLogs() as events:
        TposRelay(lambda *args: fail(RuntimeError("journal full")))("r", "typing", {})
    assert "tpos: tpos:event not published" in [formatEvent(e) for e in events]


def start_answer(body: Any) -> tuple[int, str | None, str]:
    """What a start with ``body`` answers: (status, field, message), 200 when accepted."""
    try:
        validate(START_BODY, body)
    except HttpError as e:
        return e.status, e.details.get("field"), e.message
    return 200, None, ""


PASSWORD = "TPOS-plugin-password-2"
OWNER = "tpos-plugin-owner-name"


@pytest.mark.parametrize("body, says", [
    ({}, "missing field 'token' (or 'refreshToken', or 'username' and 'password')"),
    ({"room": "shop.tpos.vn"}, "missing field 'token' (or"),
    ({"username": OWNER}, "missing field 'password' (given with 'username')"),
    ({"password": PASSWORD}, "missing field 'username' (given with 'password')"),
    ({"username": "", "password": PASSWORD}, "field 'username' must not be empty"),
    ({"username": 5, "password": PASSWORD}, "field 'username' must be a string"),
    ({"username": OWNER, "password": None}, "field 'password' must be a string"),
    ({"username": OWNER, "password": "a\nb"}, "field 'password' has an invalid format"),
    ({"username": OWNER, "password": PASSWORD, "room": "a b"}, "field 'room' has an invalid"),
    ({"refreshToken": ""}, "field 'refreshToken' must not be empty"),
    ({"token": TOKEN, "clientId": "x y"}, "field 'clientId' has an invalid format"),
    ({"token": TOKEN, "secret": PASSWORD}, "unknown field 'secret'"),
])
def test_a_bad_start_body_is_a_400_naming_the_field(body: dict, says: str) -> None:
    code, _, message = start_answer(body)
    assert code == 400 and message.startswith(says), (body, message)
    assert PASSWORD not in message and TOKEN not in message


def test_a_username_and_password_or_a_refresh_token_start_without_a_token() -> None:
    assert start_answer({"username": OWNER, "password": PASSWORD})[0] == 200
    assert credentials_from_body({"username": OWNER, "password": PASSWORD}) == TposCredentials(
        "", "tomato.tpos.vn", username=OWNER, password=PASSWORD)
    assert credentials_from_body({"refreshToken": "R" * 20, "clientId": "app", "room": "a.b"}) == (
        TposCredentials("", "a.b", refresh_token="R" * 20, client_id="app"))


def test_renewal_fields_go_to_extra_and_back_and_never_into_repr() -> None:
    credentials = TposCredentials(TOKEN, "a.b", username=OWNER, password=PASSWORD,
                                  refresh_token="R" * 20, client_id="app", expires_at=1.5e9)
    stored = provider().row_for(credentials)
    assert stored["extra"] == {"username": OWNER, "password": PASSWORD,
                               "refreshToken": "R" * 20, "clientId": "app", "expiresAt": 1.5e9}
    back = StoredCredentials("tpos", TOKEN, None, None, None, "a.b", True, stored["extra"])
    assert provider().credentials_from_row(back) == credentials
    assert PASSWORD not in repr(credentials) and OWNER not in repr(credentials)
    password_only = StoredCredentials("tpos", "", None, None, None, None, True,
                                      {"username": OWNER, "password": PASSWORD})
    assert provider().credentials_from_row(password_only).username == OWNER


def test_the_renewal_options_reach_the_provider() -> None:
    options = {"tpos-url": "ws://tpos.test/socket.io/", "tpos-token-url": "http://tpos.test/token",
               "tpos-renewal-margin": 120.0, "tpos-renewal-timeout": 7.0}
    context = SimpleNamespace(reactor=Clock(), publish=lambda *event: None,
                              settings=SimpleNamespace(plugin_options=options))
    built = tpos._provider(context, MemoryStore())
    assert (built.renewal_margin, built.renewal_timeout) == (120.0, 7.0)
