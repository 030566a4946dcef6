"""
The Socket.IO endpoint protocol driven in memory: frames in through ``onMessage``,
frames out recorded, a hub over an in-memory journal, time on a fake clock.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from n2gateway.downstream.auth import Authenticator, issue_token
from n2gateway.downstream.close_codes import (CLOSE_PROTOCOL_ERROR, CLOSE_TIMEOUT,
                                              CLOSE_UNSUPPORTED)
from n2gateway.downstream.engineio_websocket import (MAX_PAYLOAD, SocketIoFactory,
                                                     SocketIoProtocol)
from n2gateway.downstream.socketio_namespace import SocketIoServer
from n2gateway.downstream.socketio_sessions import SavedSession
from n2gateway.hub import Hub
from n2gateway.journal import Event
from tests.fakes.journal import FakeJournal

SECRET = "unit-secret-of-at-least-32-bytes-long"


@dataclass
class MemoryStore:
    rows: dict[str, dict] = field(default_factory=dict)
    touched: list[list[str]] = field(default_factory=list)
    ttl: float = 120.0

    async def create(self, pid, sub, since):
        self.rows[pid] = {"sub": sub, "rooms": [], "since": since, "expired": False}

    async def find(self, pid):
        row = self.rows.get(pid)
        if row is None or row["expired"]:
            return None
        return SavedSession(row["sub"], tuple(row["rooms"]), row["since"])

    async def save_rooms(self, pid, rooms):
        self.rows[pid]["rooms"] = sorted(rooms)

    async def touch(self, pids):
        self.touched.append(list(pids))

    async def forget(self, pid):
        del self.rows[pid]


class RecordingProtocol(SocketIoProtocol):
    """The endpoint with Autobahn's framing replaced by a list of sent text frames."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str] = []
        self.prepared: list = []
        self.closed_with: tuple[int, str] | None = None

    def sendMessage(self, payload, isBinary=False, **kwargs) -> None:
        self.sent.append(payload.decode())

    def send_frames(self, frames) -> None:
        for prepared in frames:
            self.prepared.append(prepared)
            self.sent.append(prepared.payload.decode())

    def sendClose(self, code=None, reason=None) -> None:
        self.closed_with = (code, reason)
        self.state = self.STATE_CLOSED
        self.onClose(True, code, reason)

    def receive(self, frame: str | bytes, binary: bool = False) -> None:
        self.onMessage(frame if isinstance(frame, bytes) else frame.encode(), binary)

    def take(self) -> list[str]:
        sent, self.sent = self.sent, []
        return sent


class Setup:
    def __init__(self, secret: str | None = SECRET) -> None:
        self.clock = Clock()
        self.journal = FakeJournal()
        self.hub = Hub(self.journal, self.clock)
        self.hub.startService()
        self.store = MemoryStore()
        self.factory = SocketIoFactory(SocketIoServer(self.hub, Authenticator(secret), self.store),
                                       None, self.clock,
                                       ping_interval=25, ping_timeout=20)
        self.factory.protocol = RecordingProtocol

    def open(self) -> RecordingProtocol:
        protocol = self.factory.buildProtocol(None)
        protocol.transport = StringTransport()
        protocol.transport.registerProducer(object(), True)  # the HTTP channel's, until the upgrade
        protocol.state = protocol.STATE_OPEN
        protocol.onOpen()
        return protocol

    def connect(self, auth: dict) -> RecordingProtocol:
        protocol = self.open()
        protocol.take()
        protocol.receive("40" + json.dumps(auth))
        return protocol

    def publish(self, rooms: list[str], name: str, payload) -> Event:
        event = self.journal.add(rooms, name, payload)
        self.hub.dispatch(event)
        return event

    def stop(self) -> None:
        self.hub.stopService()


@pytest.fixture
def setup():
    s = Setup()
    yield s
    s.stop()
    assert s.clock.getDelayedCalls() == []


def token(sub: str = "u1", rooms=("staff",)) -> str:
    return issue_token(SECRET, sub, list(rooms))


def connect_ack(frame: str) -> dict:
    assert frame.startswith("40{")
    return json.loads(frame[2:])


def test_handshake_announces_websocket_only_and_the_frame_limit(setup) -> None:
    protocol = setup.open()
    [opening] = protocol.sent
    assert opening[0] == "0"
    info = json.loads(opening[1:])
    assert info["upgrades"] == [] and info["maxPayload"] == MAX_PAYLOAD
    assert (info["pingInterval"], info["pingTimeout"]) == (25000, 20000)
    assert setup.factory.maxMessagePayloadSize == MAX_PAYLOAD
    protocol.sendClose(1000, "done")


def test_connect_subscribe_and_events_carry_their_offset(setup) -> None:
    protocol = setup.connect({"token": token()})
    ack = connect_ack(protocol.take()[0])
    assert set(ack) == {"sid", "pid"} and setup.store.rows[ack["pid"]]["sub"] == "u1"

    protocol.receive('421["subscribe","staff"]')
    protocol.receive('422["subscribe","user:u2"]')
    protocol.receive('423["unsubscribe","staff"]')
    protocol.receive('424["hello"]')
    assert protocol.take() == [
        '431[{"ok":true}]',
        '432[{"ok":false,"error":"not allowed to join user:u2"}]',
        '433[{"ok":true}]',
        '434[{"ok":false,"error":"unknown event \'hello\';'
        ' use subscribe, unsubscribe or refresh"}]',
    ]
    protocol.receive('42["subscribe","staff"]')  # no ack asked, none sent
    assert protocol.take() == []
    assert setup.store.rows[ack["pid"]]["rooms"] == ["staff", "user:u1"]

    setup.publish(["staff"], "message:new", {"text": "xin chào"})
    setup.publish(["other"], "message:new", {})
    setup.publish(["user:u1", "staff"], "message:read", "m1")
    assert protocol.take() == ['42["message:new",{"text":"xin chào"},"1"]',
                               '42["message:read","m1","3"]']
    protocol.sendClose(1000, "done")
    assert setup.store.touched == [[ack["pid"]]]


def test_events_share_one_prepared_frame(setup) -> None:
    first, second = (setup.connect({"token": token()}) for _ in range(2))
    setup.publish(["user:u1"], "message:new", 1)
    [frame] = first.prepared
    assert second.prepared == [frame] and second.prepared[0] is frame
    for protocol in (first, second):
        protocol.sendClose(1000, "done")


def test_wrong_token_and_missing_user_id_get_connect_error(setup) -> None:
    protocol = setup.connect({"token": "not-a-jwt"})
    [error] = protocol.take()
    assert error.startswith('44{"message":"invalid token')
    assert protocol.closed_with is None and setup.hub.sessions == set()
    protocol.receive("40" + json.dumps({"token": token()}))  # may try again
    assert connect_ack(protocol.take()[0])["pid"]
    protocol.sendClose(1000, "done")

    development = Setup(secret=None)
    protocol = development.connect({})
    assert protocol.take() == ['44{"message":"development mode: name yourself with userId"}']
    protocol.receive('40{"userId":42}')
    assert connect_ack(protocol.take()[0])
    assert {s.identity.sub for s in development.hub.sessions} == {"42"}
    protocol.sendClose(1000, "done")
    development.stop()


def test_other_namespaces_get_connect_error(setup) -> None:
    protocol = setup.open()
    protocol.take()
    protocol.receive('40/admin,{"token":"x"}')
    assert protocol.take() == ['44/admin,{"message":"Invalid namespace"}']
    protocol.sendClose(1000, "done")


def test_server_pings_and_closes_without_pong(setup) -> None:
    protocol = setup.connect({"token": token()})
    protocol.take()
    setup.clock.advance(25)
    assert protocol.take() == ["2"]
    setup.clock.advance(19)
    protocol.receive("3")
    setup.clock.advance(25)
    assert protocol.take() == ["2"]
    setup.clock.advance(19.9)
    assert protocol.closed_with is None
    setup.clock.advance(0.1)
    assert protocol.closed_with == (CLOSE_TIMEOUT, "ping timeout")
    assert setup.hub.sessions == set()


def test_an_engine_without_socket_is_closed_after_the_connect_timeout(setup) -> None:
    protocol = setup.open()
    setup.clock.advance(25)
    protocol.receive("3")  # ping-ponging does not keep it open
    setup.clock.advance(19.9)
    assert protocol.closed_with is None
    setup.clock.advance(0.1)
    assert protocol.closed_with == (CLOSE_TIMEOUT, "no Socket.IO CONNECT in time")


@pytest.mark.parametrize("frame, why", [
    ("", "bad Engine.IO packet: empty Engine.IO frame"),
    ("9", "bad Engine.IO packet: unknown Engine.IO packet type '9'"),
    ("4{", "bad Socket.IO packet: unknown Socket.IO packet type '{'"),
    ("42[", "bad Socket.IO packet: invalid JSON"),
    ('42[1,"staff"]', "bad Socket.IO packet: event name must be a string, not int"),
    ("40", "unexpected Socket.IO CONNECT while connected"),
    ("5", "unexpected Engine.IO UPGRADE on a WebSocket connection"),
])
def test_garbage_closes_only_that_connection(setup, frame: str, why: str) -> None:
    bystander = setup.connect({"token": token()})
    protocol = setup.connect({"token": token()})
    protocol.receive(frame)
    code, reason = protocol.closed_with
    assert code == CLOSE_PROTOCOL_ERROR and reason.startswith(why)
    assert bystander.closed_with is None and len(setup.hub.sessions) == 1
    bystander.sendClose(1000, "done")


@pytest.mark.parametrize("frame, binary", [
    ('451-["subscribe",{"_placeholder":true,"num":0}]', False),
    (b"\x00\x01", True),
])
def test_binary_attachments_are_refused_clearly(setup, frame, binary: bool) -> None:
    protocol = setup.connect({"token": token()})
    protocol.take()
    protocol.receive(frame, binary)
    assert protocol.take() == [
        '44{"message":"binary attachments are not supported; send JSON"}']
    assert protocol.closed_with == (CLOSE_UNSUPPORTED, "binary attachments are not supported")


def test_recovery_replays_missed_events_once_in_order_after_the_connect_ack(setup) -> None:
    protocol = setup.connect({"token": token()})
    pid = connect_ack(protocol.take()[0])["pid"]
    protocol.receive('421["subscribe","staff"]')
    setup.publish(["staff"], "message:new", 1)
    protocol.sendClose(4000, "transport lost")

    setup.publish(["staff", "user:u1"], "message:new", 2)  # in two rooms: sent once
    setup.publish(["user:u1"], "message:read", 3)
    setup.publish(["other"], "message:new", 4)
    again = setup.connect({"token": token(), "pid": pid, "offset": "1"})
    setup.publish(["staff"], "users:updated", 5)  # no need to subscribe again
    frames = again.take()
    assert connect_ack(frames[0])["pid"] == pid
    assert frames[1:] == ['42["message:new",2,"2"]', '42["message:read",3,"3"]',
                          '42["users:updated",5,"5"]']
    again.sendClose(1000, "done")


def test_recovery_without_offset_replays_from_the_session_start(setup) -> None:
    protocol = setup.connect({"token": token()})
    pid = connect_ack(protocol.take()[0])["pid"]
    protocol.receive('421["subscribe","staff"]')
    protocol.sendClose(4000, "transport lost")
    setup.publish(["staff", "user:u1"], "message:new", 2)
    setup.publish(["user:u1"], "message:read", 3)
    setup.publish(["other"], "message:new", 4)

    again = setup.connect({"token": token(), "pid": pid})  # never had an event: no offset
    setup.publish(["staff"], "users:updated", 5)
    frames = again.take()
    assert connect_ack(frames[0])["pid"] == pid
    assert frames[1:] == ['42["message:new",2,"1"]', '42["message:read",3,"2"]',
                          '42["users:updated",5,"4"]']
    again.sendClose(1000, "done")


@pytest.mark.parametrize("auth", [
    {"pid": "unknown", "offset": "0"},
    {"pid": "PID", "offset": "not-a-number"},
    {"pid": "PID", "offset": "0", "other_user": True},
    {"pid": "PID", "offset": "0", "trimmed": True},
    {"pid": "PID", "offset": "0", "expired": True},
])
def test_unrecoverable_sessions_get_a_fresh_connect(setup, auth: dict) -> None:
    setup.store.rows["PID"] = {"sub": "u1", "rooms": ["staff"], "since": 0,
                               "expired": auth.pop("expired", False)}
    if auth.pop("trimmed", False):
        setup.journal.trimmed_through = 1
    sub = "u2" if auth.pop("other_user", False) else "u1"
    protocol = setup.connect({"token": token(sub), **auth})
    assert connect_ack(protocol.take()[0])["pid"] not in ("PID", "unknown")
    assert [s.rooms for s in setup.hub.sessions] == [[f"user:{sub}"]]
    protocol.sendClose(1000, "done")


def test_client_disconnect_forgets_the_session(setup) -> None:
    protocol = setup.connect({"token": token()})
    pid = connect_ack(protocol.take()[0])["pid"]
    protocol.receive("41")
    assert pid not in setup.store.rows and setup.hub.sessions == set()
    assert setup.factory.live_pids == {}
    protocol.receive("40" + json.dumps({"token": token()}))  # the engine stays open
    assert connect_ack(protocol.take()[0])["pid"] != pid
    protocol.sendClose(1000, "done")
