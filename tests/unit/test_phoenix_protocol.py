"""
The Pancake session end to end over an in-memory network: the real Phoenix
client protocol against the fake Pancake server, both on Autobahn, with time
on a fake clock.
"""

from typing import Any

import pytest
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent

from n2gateway.upstream.backoff import upstream_backoff
from n2gateway_plugins.pancake.session import (
    PancakeCredentials,
    build_pancake_service,
    page_retry_backoff,
)
from n2gateway.upstream.status import UpstreamStatus
from tests.fakes.memory import MemoryEndpoint, ServiceOnMemory
from tests.fakes.pancake import FakePancake

TOKEN = "TOKEN-0123456789"
COOKIE = "sid=COOKIE-9876543210"


class Session(ServiceOnMemory):
    """A Pancake service wired to a fake server, on one fake clock."""

    def __init__(
        self, cookie: str | None = COOKIE, server_factory: Any = None, on_event: Any = None,
        page_ids: tuple[str, ...] = ("101", "102"),
    ) -> None:
        self.clock = Clock()
        self.fake = FakePancake(self.clock)
        self.network = MemoryEndpoint(server_factory or self.fake.factory, self.clock)
        self.status = UpstreamStatus(self.clock.seconds)
        self.events: list[tuple[str, str, Any]] = []
        self.service = build_pancake_service(
            PancakeCredentials(TOKEN, "42", page_ids, cookie),
            reactor=self.clock,
            status=self.status,
            on_event=on_event or (lambda *event: self.events.append(event)),
            url="ws://pancake.test/socket/websocket",
            endpoint=self.network,
            backoff=upstream_backoff(jitter=lambda: 0.0),
            page_backoff=page_retry_backoff(jitter=lambda: 0.0),
        )

    def sent(self, event: str) -> list[list[Any]]:
        return [f for f in self.fake.frames if isinstance(f, list) and f[3] == event]

    @property
    def server(self) -> Any:
        return self.fake.open_sessions[-1]


@pytest.fixture
def session() -> Session:
    return Session()


def test_opening_request(session: Session) -> None:
    session.start()
    request = session.fake.sessions[0]
    assert request.params == {"vsn": ["2.0.0"]}
    assert request.headers["origin"] == "https://pancake.vn"
    assert request.headers["user-agent"].startswith("Mozilla/5.0 ")
    assert request.headers["cookie"] == COOKIE
    session.stop()


def test_no_cookie_header_without_a_cookie() -> None:
    session = Session(cookie=None)
    session.start()
    assert "cookie" not in session.fake.sessions[0].headers
    session.stop()


def test_joins_users_then_one_channel_per_page_with_exact_payloads(session: Session) -> None:
    session.start()
    params = {"accessToken": TOKEN, "userId": "42", "platform": "web"}
    assert session.sent("phx_join") == [
        ["1", "1", "users:42", "phx_join", params],
        ["2", "2", "pages:101", "phx_join", params],
        ["3", "3", "pages:102", "phx_join", params],
    ]
    assert session.fake.joined_topics == {"users:42", "pages:101", "pages:102"}
    assert session.status.as_dict()["connected"] is True
    assert {topic: c.joined for topic, c in session.status.channels.items()} == {
        "users:42": True, "pages:101": True, "pages:102": True}
    session.stop()


def test_heartbeat_every_30_seconds(session: Session) -> None:
    session.start()
    session.advance(29.9)
    assert session.sent("heartbeat") == []
    session.advance(0.1)
    session.advance(30)
    beats = session.sent("heartbeat")
    assert beats == [
        [None, beats[0][1], "phoenix", "heartbeat", {}],
        [None, beats[1][1], "phoenix", "heartbeat", {}],
    ]
    assert int(beats[1][1]) > int(beats[0][1]) > 2
    assert session.fake.open_sessions  # answered heartbeats keep it alive
    for _ in range(20):
        session.advance(30)
    assert session.fake.open_sessions
    session.stop()


def test_90_seconds_of_silence_drops_the_connection(session: Session) -> None:
    session.start()
    session.fake.silent = True
    session.advance(89.9)
    assert session.fake.open_sessions
    session.advance(0.1)
    assert session.fake.open_sessions == []
    assert session.status.as_dict()["lastError"] == "silence timeout"
    assert not session.status.connected
    session.fake.silent = False
    session.advance(2)
    assert len(session.fake.open_sessions) == 1
    assert session.status.connected
    session.stop()


def test_every_application_event_reaches_the_callback(session: Session) -> None:
    session.start()
    conversation = {"conversation": {"id": "101_9", "page_id": "101"}}
    session.fake.push("pages:101", "pages:update_conversation", conversation)
    session.fake.push("users:42", "something:never_seen_before", [1, 2])
    session.network.flush()
    assert session.events == [
        ("pages:101", "pages:update_conversation", conversation),
        ("users:42", "something:never_seen_before", [1, 2]),
    ]
    session.stop()


def test_control_frames_and_other_topics_are_not_events(session: Session) -> None:
    session.start()
    server = session.server
    server.send_frame(None, None, "users:42", "phx_unknown_control", {})
    server.send_frame(None, None, "users:7", "pages:new_message", {})
    server.send_frame("999", None, "users:42", "pages:new_message", {"stale": True})
    session.network.flush()
    assert session.events == []
    session.stop()


def test_invalid_frames_are_skipped_without_quoting_them(session: Session) -> None:
    session.start()
    server = session.server
    with capturedLogs() as events:
        for garbage in [b"not json " + TOKEN.encode(), b'{"a": 1}', b'["' + TOKEN.encode(),
                        b'[null, null, "users:42", 5, {}]', b"[" * 50_000]:
            server.sendMessage(garbage)
        server.sendMessage(b"\x00\x01", isBinary=True)
        server.send_frame("1", "1", "users:42", "phx_reply", "no status")
        session.network.flush()
    assert len([e for e in events if "skipped" in formatEvent(e)]) == 7
    assert all(TOKEN not in formatEvent(e) for e in events)
    session.fake.push("users:42", "pages:new_message", {"ok": True})
    session.network.flush()
    assert session.events == [("users:42", "pages:new_message", {"ok": True})]
    assert session.status.connected
    session.stop()


def test_a_failing_event_handler_does_not_end_the_session() -> None:
    seen = []

    def fragile(topic: str, event: str, payload: Any) -> None:
        seen.append(event)
        if event == "boom":
            raise RuntimeError("handler bug")

    session = Session(on_event=fragile)
    session.start()
    with capturedLogs() as events:
        session.fake.push("users:42", "boom", {})
        session.fake.push("users:42", "after", {})
        session.network.flush()
    assert seen == ["boom", "after"]
    assert [e["log_failure"].type for e in events if "log_failure" in e] == [RuntimeError]
    assert session.fake.open_sessions
    session.stop()


def test_channel_error_rejoins_that_channel_with_backoff(session: Session) -> None:
    session.start()
    session.fake.crash("users:42")
    session.network.flush()
    assert session.fake.joined_topics == {"pages:101", "pages:102"}
    session.advance(1.9)
    assert len(session.sent("phx_join")) == 3
    session.advance(0.1)
    rejoin = session.sent("phx_join")[-1]
    assert rejoin[2] == "users:42" and rejoin[0] == rejoin[1] and rejoin[0] not in ("1", "2", "3")
    assert session.fake.joined_topics == {"users:42", "pages:101", "pages:102"}
    assert len(session.fake.sessions) == 1  # same socket
    session.stop()


def test_refused_token_means_login_and_no_further_attempt(session: Session) -> None:
    session.fake.reject_token(TOKEN)
    with capturedLogs() as events:
        session.start()
        session.advance(3600)
    assert session.network.attempts == 1
    assert session.fake.open_sessions == []
    assert session.clock.getDelayedCalls() == []
    assert session.status.as_dict() | {"since": None} == {
        "connected": False, "since": None, "reconnectAttempts": 0,
        "lastError": "join refused: unauthorized", "needsLogin": True,
    }
    assert all(TOKEN not in formatEvent(e) and "COOKIE" not in formatEvent(e) for e in events)
    session.stop()


def test_delays_grow_while_down_and_reset_after_a_join(session: Session) -> None:
    session.start()
    session.network.refusing = True
    session.fake.drop_all()
    session.network.flush()
    attempts_at = []
    for _ in range(5):
        before = session.network.attempts
        waited = 0.0
        while session.network.attempts == before:
            session.advance(0.5)
            waited += 0.5
        attempts_at.append(waited)
    assert attempts_at == [2, 4, 8, 16, 32]
    assert session.status.as_dict()["reconnectAttempts"] == 6
    assert session.status.as_dict()["lastError"] == "ConnectionRefusedError"
    session.network.refusing = False
    session.advance(60)
    assert session.status.as_dict()["reconnectAttempts"] == 0
    assert session.status.connected
    assert session.status.as_dict()["lastError"] is None  # not the refusal of before
    session.fake.drop_all()
    session.network.flush()
    session.advance(2)  # back to the first delay
    assert session.status.connected
    session.stop()


class ClosesAtOnce(Protocol):
    def connectionMade(self) -> None:
        self.transport.loseConnection()


def test_socket_closed_before_the_handshake_is_retried_with_growing_delays() -> None:
    session = Session(server_factory=Factory.forProtocol(ClosesAtOnce))
    with capturedLogs() as events:
        session.start()
        assert session.network.attempts == 1
        for expected_attempts, delay in [(2, 2), (3, 4), (4, 8)]:
            session.advance(delay - 0.1)
            assert session.network.attempts == expected_attempts - 1
            session.advance(0.1)
            assert session.network.attempts == expected_attempts
    assert [e for e in events if "log_failure" in e] == []
    assert session.status.as_dict()["reconnectAttempts"] == 4  # the 4th failed too
    session.stop()


def test_stop_closes_cleanly_and_leaves_no_timer(session: Session) -> None:
    session.start()
    session.advance(45)
    session.stop()
    assert session.fake.open_sessions == []
    assert not session.status.connected


def test_stop_while_waiting_to_reconnect(session: Session) -> None:
    session.start()
    session.fake.drop_all()
    session.network.flush()
    assert session.clock.getDelayedCalls()
    session.stop()
    session.advance(120)
    assert session.network.attempts == 1
