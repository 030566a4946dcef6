"""The TPOS provider's stored rows and status fields, and the relay's rooms."""

from typing import Any

import pytest
from twisted.internet.defer import fail, succeed
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent

from n2gateway.credentials import StoredCredentials
from n2gateway.upstream.provider import BadCredentials
from n2gateway.upstream.tpos import TposCredentials
from plugins.tpos.api import credentials_from_body
from plugins.tpos.provider import TposProvider
from plugins.tpos.relay import TposRelay

TOKEN = "TPOS-plugin-token-1"


def provider() -> TposProvider:
    return TposProvider(None, Clock(), url="ws://tpos.test/socket.io/", on_event=lambda *e: None)


def row(token: str | None = TOKEN, room: str | None = "shop.tpos.vn") -> StoredCredentials:
    return StoredCredentials("tpos", token, None, None, None, room, True)


def test_a_stored_row_gives_credentials_with_the_default_room() -> None:
    assert provider().credentials_from_row(row()) == TposCredentials(TOKEN, "shop.tpos.vn")
    assert provider().credentials_from_row(row(room=None)).room == "tomato.tpos.vn"
    assert provider().row_for(TposCredentials(TOKEN, "a.b")) == {"token": TOKEN, "room": "a.b"}


@pytest.mark.parametrize("bad, why", [(row(token=""), "no token"),
                                      (row(room="a b/c"), "room is not a TPOS room name")])
def test_unusable_rows_are_refused_without_quoting_them(bad: StoredCredentials, why: str) -> None:
    with pytest.raises(BadCredentials, match=why) as caught:
        provider().credentials_from_row(bad)
    assert TOKEN not in str(caught.value)


def test_status_names_the_room_never_the_token() -> None:
    status = provider().status()
    assert (status["room"], status["hasToken"], status["connected"]) == (None, False, False)
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
