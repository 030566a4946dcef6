"""
The TPOS session end to end over an in-memory network: the real Socket.IO
client protocol against the fake TPOS server, both on Autobahn, with time on
a fake clock.
"""

import json
from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent

from n2gateway.upstream.backoff import upstream_backoff
from n2gateway.upstream.status import UpstreamStatus
from n2gateway_plugins.tpos.session import TposCredentials, build_tpos_service
from tests.fakes.memory import MemoryEndpoint, ServiceOnMemory
from tests.fakes.tpos import FakeTpos

TOKEN = "TPOS-TOKEN-0123456789"
ROOM = "shop.tpos.vn"


class Session(ServiceOnMemory):
    """A TPOS service wired to a fake server, on one fake clock."""

    def __init__(self, **fake_options: Any) -> None:
        self.clock = Clock()
        self.fake = FakeTpos(self.clock, **fake_options)
        self.network = MemoryEndpoint(self.fake.factory, self.clock)
        self.status = UpstreamStatus(self.clock.seconds)
        self.events: list[tuple[str, Any]] = []
        self.service = build_tpos_service(
            TposCredentials(TOKEN, ROOM),
            reactor=self.clock,
            status=self.status,
            on_event=lambda *event: self.events.append(event),
            url="ws://tpos.test/socket.io/?room=stale&EIO=3",
            endpoint=self.network,
            backoff=upstream_backoff(jitter=lambda: 0.0),
        )

    @property
    def server(self) -> Any:
        return self.fake.sessions[-1]

    def emit_raw(self, frame: str | bytes) -> None:
        self.fake.send_raw(frame)
        self.network.flush()


@pytest.fixture
def session() -> Session:
    return Session()


def test_opening_request(session: Session) -> None:
    session.start()
    request = session.server
    assert request.params == {"room": [ROOM], "EIO": ["4"], "transport": ["websocket"]}
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["origin"] == "https://tomato.tpos.vn"
    session.stop()


def test_handshake_connects_the_namespace_then_joins_the_room(session: Session) -> None:
    session.start()
    assert session.server.frames == [
        f'40/chatomni,{{"token":"{TOKEN}","room":"{ROOM}"}}',
        f'42/chatomni,["join",{{"room":"{ROOM}","token":"{TOKEN}"}}]',
    ]
    assert session.status.connected
    session.stop()


def test_join_waits_for_the_connect_ack_and_the_handshake_is_bounded() -> None:
    session = Session()
    session.fake.silent = True
    session.start()
    assert [f[:12] for f in session.server.frames] == ["40/chatomni,"]
    assert not session.status.connected
    session.advance(19.9)
    assert session.fake.sessions and session.server.frames[1:] == []
    session.advance(0.1)
    assert session.fake.sessions == []
    assert session.status.last_error == "handshake timeout"
    session.fake.silent = False
    session.advance(2)
    assert session.status.connected
    session.stop()


def test_every_ping_is_answered_at_once_and_the_client_never_pings(session: Session) -> None:
    session.start()
    for _ in range(8):
        session.advance(25)
    frames = session.server.frames[2:]
    assert frames == ["3"] * 8
    assert session.fake.closed == 0
    session.stop()


def test_no_ping_for_interval_plus_timeout_drops_and_reconnects() -> None:
    session = Session(ping_interval=5, ping_timeout=3)
    session.start()
    session.advance(5)  # one ping: the 8 s count restarts here
    session.fake.pinging = False
    for _ in range(7):
        session.advance(1)
        session.fake.emit("on-events", {"Type": "Product"})  # events are no ping
        session.network.flush()
    assert session.fake.closed == 0
    session.advance(1)
    assert session.fake.closed == 1
    assert session.status.as_dict()["lastError"] == "ping timeout"
    assert not session.status.connected
    session.fake.pinging = True
    session.advance(2)  # first retry after 2 s
    assert session.status.connected and len(session.fake.sessions) == 1
    session.stop()


def test_backoff_doubles_to_a_minute_and_resets_on_namespace_connect(session: Session) -> None:
    session.network.refusing = True
    session.start()
    attempts_at = []
    for _ in range(200):
        before = session.network.attempts
        session.advance(1)
        if session.network.attempts > before:
            attempts_at.append(session.clock.seconds())
    assert attempts_at == [2, 6, 14, 30, 62, 122, 182]
    assert session.status.reconnect_attempts == 8  # at 0 s and the seven retries
    assert session.status.last_error == "ConnectionRefusedError"
    session.network.refusing = False
    session.advance(60)
    assert session.status.connected
    assert session.status.reconnect_attempts == 0
    session.stop()


def test_a_socket_that_opens_but_never_connects_the_namespace_still_backs_off() -> None:
    session = Session()
    session.fake.silent = True
    session.start()
    for _ in range(4):
        session.advance(20)  # handshake timeout
        session.advance(2 ** session.status.reconnect_attempts)
    assert session.status.reconnect_attempts == 4
    assert len(session.fake.sessions) == 1 and session.fake.closed == 4
    session.stop()


def test_connect_error_needs_login_and_never_retries() -> None:
    session = Session()
    session.fake.rejected_tokens.add(TOKEN)
    session.start()
    assert session.status.needs_login
    assert session.status.last_error == "connect refused: unauthorized"
    session.advance(600)
    assert session.network.attempts == 1
    assert session.fake.sessions == []
    assert session.clock.getDelayedCalls() == []
    session.stop()


NEW_TOKEN = "TPOS-TOKEN-renewed-9876543210"


def test_a_token_renewed_while_connecting_reconnects_with_it_instead_of_giving_up() -> None:
    session = Session()
    session.fake.rejected_tokens.add(TOKEN)
    session.service.startService()  # connected, nothing delivered yet
    session.service.use_credentials(TposCredentials(NEW_TOKEN, ROOM))
    session.network.flush()  # the old token goes out, and is refused
    assert not session.status.needs_login
    assert session.status.last_error == "connect refused: unauthorized"
    session.advance(2)  # the first backoff delay
    assert session.network.attempts == 2 and session.status.connected
    assert session.server.headers["authorization"] == f"Bearer {NEW_TOKEN}"
    assert f'"token":"{NEW_TOKEN}"' in session.server.frames[0]
    session.stop()


def test_events_reach_the_callback_with_their_payload(session: Session) -> None:
    session.start()
    order = {"Type": "SaleOnline_Order", "EventName": "created", "Data": {"Id": 7}}
    session.fake.emit("on-events", order)
    session.fake.emit("on-events", json.dumps(order))
    session.fake.emit("typing", None)
    session.network.flush()
    assert session.events == [("on-events", order), ("on-events", json.dumps(order)), ("typing", None)]
    session.stop()


def test_an_event_asking_for_an_ack_gets_one(session: Session) -> None:
    session.start()
    session.emit_raw('42/chatomni,17["on-events",{"Type":"Product"}]')
    assert session.events == [("on-events", {"Type": "Product"})]
    assert session.server.frames[-1] == "43/chatomni,17[]"
    session.stop()


def test_malformed_and_binary_packets_are_logged_and_skipped(session: Session) -> None:
    session.start()
    with capturedLogs() as events:
        session.emit_raw("9nonsense")
        session.emit_raw(f'42/chatomni,["on-events", {{"token": "{TOKEN}"')  # cut short
        session.emit_raw("44/chatomni,")  # a connect error must carry data
        session.emit_raw('42/chatomni,["connect",{}]')  # a reserved name
        for _ in range(3):
            session.emit_raw('451-/chatomni,["file",{"_placeholder":true,"num":0}]')
            session.emit_raw(b"\x00\x01attachment")
        session.emit_raw('42/other,["on-events",{}]')
        session.fake.emit("on-events", {"Type": "Product"})
        session.network.flush()
    text = "\n".join(formatEvent(e) for e in events)
    assert text.count("skipped an invalid packet") == 4
    assert text.count("binary attachments are not supported") == 1
    assert "namespace /other" in text
    assert TOKEN not in text
    assert session.events == [("on-events", {"Type": "Product"})]
    assert session.status.connected and session.fake.closed == 0
    session.stop()


@pytest.mark.parametrize("frame, reason", [("41/chatomni,", "disconnected by server"),
                                           ("1", "closed by server")])
def test_server_disconnects_lead_to_a_reconnect(session: Session, frame: str, reason: str) -> None:
    session.start()
    session.emit_raw(frame)
    assert session.fake.sessions == []
    assert session.status.last_error == reason
    session.advance(2)
    assert session.status.connected
    session.stop()


def test_stop_leaves_the_namespace_and_engine_session(session: Session) -> None:
    session.start()
    server = session.server
    session.stop()
    assert server.frames[-2:] == ["41/chatomni,", "1"]
    assert session.fake.sessions == []
    session.advance(120)
    assert session.network.attempts == 1


def test_no_token_in_the_logs_of_a_whole_session() -> None:
    with capturedLogs() as events:
        session = Session()
        session.start()
        session.fake.emit("on-events", {"Type": "Product"})
        session.emit_raw("41/chatomni,")
        session.advance(2)
        session.fake.rejected_tokens.add(TOKEN)
        session.emit_raw("1")
        session.advance(2)
        session.stop()
    assert session.status.needs_login
    text = "\n".join(formatEvent(e) + repr(e) for e in events)
    assert "credentials refused" in text
    assert TOKEN not in text
    assert repr(TposCredentials(TOKEN)).count(TOKEN) == 0
