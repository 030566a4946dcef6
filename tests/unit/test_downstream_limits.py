"""What every downstream connection shares, over both protocols, through Autobahn's
real framing on an in-memory transport and a fake clock: everything written counts
against the 1 MiB bound (pongs too, before any login), pings are rate limited, a
session ends at its token's exp unless refreshed in band, and a connection may hold
only so many rooms."""

from __future__ import annotations

import base64
import json
import os
import struct

import pytest
import txaio
from twisted.internet.error import ConnectionLost
from twisted.python.failure import Failure
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from n2gateway.downstream.auth import Authenticator, issue_token
from n2gateway.downstream.close_codes import (CLOSE_SLOW_CONSUMER, CLOSE_TOO_MANY_PINGS,
                                              CLOSE_UNAUTHORIZED)
from n2gateway.downstream.connection import PING_BURST, DownstreamProtocol
from n2gateway.downstream.jsonws import JsonSocketFactory, JsonSocketProtocol
from n2gateway.downstream.outbox import DEFAULT_LIMIT
from n2gateway.downstream.engineio_websocket import SocketIoFactory
from n2gateway.downstream.socketio_namespace import SocketIoServer
from n2gateway.hub import Hub
from tests.fakes.journal import FakeJournal
from tests.unit.test_socketio_endpoint import MemoryStore

SECRET = "unit-secret-of-at-least-32-bytes-long"
START = 1_000_000.0  # the fake clock's epoch: tokens' exp are checked against it


def client_frame(opcode: int, payload: bytes = b"") -> bytes:
    """One masked, final client frame."""
    mask = os.urandom(4)
    size = len(payload)
    head = bytes([0x80 | opcode])
    head += bytes([0x80 | size]) if size < 126 else bytes([0x80 | 126]) + struct.pack("!H", size)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """``(opcode, payload)`` of every unmasked server frame in ``data``."""
    frames = []
    while data:
        opcode, size, at = data[0] & 0x0F, data[1] & 0x7F, 2
        if size == 126:
            size, at = struct.unpack("!H", data[2:4])[0], 4
        elif size == 127:
            size, at = struct.unpack("!Q", data[2:10])[0], 10
        frames.append((opcode, data[at:at + size]))
        data = data[at + size:]
    return frames


class Connection:
    """A client of ``factory`` at ``path``: raw bytes in, parsed frames out."""

    def __init__(self, factory, path: str, headers: str = "") -> None:
        self.transport = StringTransport()
        self.transport.registerProducer(object(), True)  # the HTTP channel's, until the upgrade
        self.protocol = factory.buildProtocol(None)
        self.protocol.makeConnection(self.transport)
        key = base64.b64encode(os.urandom(16)).decode()
        self.protocol.dataReceived(
            f"GET {path} HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n".encode())
        head, _, rest = self.transport.value().partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        self.head = head
        self.transport.clear()
        self._unread = rest

    def take(self) -> list[tuple[int, bytes]]:
        data, self._unread = self._unread + self.transport.value(), b""
        self.transport.clear()
        return server_frames(data)

    def texts(self) -> list[str]:
        return [payload.decode() for opcode, payload in self.take() if opcode == 1]

    def json_frames(self) -> list[dict]:
        return [json.loads(text) for text in self.texts()]

    def send_text(self, text: str) -> None:
        self.protocol.dataReceived(client_frame(1, text.encode()))

    def ping(self, payload: bytes = b"") -> None:
        self.protocol.dataReceived(client_frame(9, payload))

    def stop_reading(self) -> None:
        """The client reads nothing: the socket's buffer fills and Twisted pauses the
        connection's producer (its outbox)."""
        self.transport.producer.pauseProducing()

    def close_frame(self) -> tuple[int, str] | None:
        for opcode, payload in self.take():
            if opcode == 8:
                return struct.unpack("!H", payload[:2])[0], payload[2:].decode()
        return None


class Setup:
    def __init__(self, secret: str | None) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.journal = FakeJournal()
        self.hub = Hub(self.journal, self.clock, max_subscriptions=3)
        self.hub.startService()
        authenticator = Authenticator(secret, now=self.clock.seconds)
        self.ws = JsonSocketFactory(self.hub, authenticator, self.clock)
        self.sessions = MemoryStore()
        self.socketio = SocketIoFactory(SocketIoServer(self.hub, authenticator, self.sessions),
                                        None, self.clock)

    def open_ws(self, query: str) -> Connection:
        connection = Connection(self.ws, f"/ws?{query}")
        assert connection.json_frames()[0]["type"] == "welcome"
        return connection

    def open_socketio(self) -> Connection:
        connection = Connection(self.socketio, "/socket.io/?EIO=4&transport=websocket")
        assert connection.texts()[0].startswith("0{")
        return connection

    def token(self, sub: str = "u1", rooms=(), ttl: float = 60) -> str:
        return issue_token(SECRET, sub, list(rooms), ttl=ttl, now=self.clock.seconds())


def setup_with(secret: str | None, monkeypatch):
    s = Setup(secret)
    # Autobahn's own timers (handshake and close deadlines, keep-alive pings) run on
    # txaio's loop: the fake clock too.
    monkeypatch.setattr(txaio.config, "loop", s.clock)
    yield s
    s.hub.stopService()


@pytest.fixture
def setup(monkeypatch):
    yield from setup_with(SECRET, monkeypatch)


@pytest.fixture
def dev(monkeypatch):
    """Development mode: clients name themselves with userId."""
    yield from setup_with(None, monkeypatch)


# -- everything written counts, pings are limited ---------------------------------------

PONG = 127  # bytes on the wire, for a ping of 125
LIMIT = 10 * PONG  # instead of 1 MiB: ten pongs fit within the ping allowance


def pings_until_closed(connection: Connection) -> int:
    sent = 0
    while connection.protocol.state == connection.protocol.STATE_OPEN and sent < PING_BURST:
        connection.ping(b"p" * 125)
        sent += 1
    return sent


@pytest.mark.parametrize("protocol", ["ws", "socket.io before CONNECT"])
def test_pongs_a_client_never_reads_count_against_its_bound(dev, protocol,
                                                            monkeypatch) -> None:
    monkeypatch.setattr(DownstreamProtocol, "outbox_limit", LIMIT)
    connection = dev.open_ws("userId=u") if protocol == "ws" else dev.open_socketio()
    connection.stop_reading()
    assert pings_until_closed(connection) == 11  # closed once they exceed it, not later
    assert connection.close_frame()[0] == CLOSE_SLOW_CONSUMER
    assert dev.hub.sessions == set()


def test_a_client_that_reads_its_pongs_is_not_closed(dev, monkeypatch) -> None:
    monkeypatch.setattr(DownstreamProtocol, "outbox_limit", LIMIT)
    connection = dev.open_ws("userId=u")
    for _ in range(3):  # more pong bytes in all than the bound, read as they come
        pings_until_closed(connection)
        connection.take()
        dev.clock.advance(10)  # a fresh ping allowance
    assert connection.protocol.state == connection.protocol.STATE_OPEN
    assert dev.hub.sessions != set()


def test_the_default_bound_is_one_mebibyte() -> None:
    assert DownstreamProtocol.outbox_limit == DEFAULT_LIMIT == 1024 * 1024


@pytest.mark.parametrize("protocol", ["ws", "socket.io before CONNECT"])
def test_a_ping_flood_is_closed_with_4029(dev, protocol) -> None:
    connection = dev.open_ws("userId=u") if protocol == "ws" else dev.open_socketio()
    for _ in range(PING_BURST):
        connection.ping(b"x")
    assert [op for op, _ in connection.take()] == [10] * PING_BURST  # pongs
    connection.ping(b"x")
    code, reason = connection.close_frame()
    assert code == CLOSE_TOO_MANY_PINGS and "too many pings" in reason
    factory = dev.ws if protocol == "ws" else dev.socketio
    assert factory.closes == {CLOSE_TOO_MANY_PINGS: 1}  # for /metrics


def test_a_close_the_client_began_is_not_counted_as_the_gateways(dev) -> None:
    connection = dev.open_ws("userId=u")
    connection.protocol.dataReceived(client_frame(8, struct.pack("!H", 1000)))
    assert connection.close_frame() == (1000, "")  # the echo
    assert dev.ws.closes == {}


def test_the_ping_allowance_refills_with_time(dev) -> None:
    connection = dev.open_ws("userId=u")
    for _ in range(PING_BURST):
        connection.ping()
    dev.clock.advance(1)  # two more
    connection.ping()
    connection.ping()
    assert connection.protocol.state == connection.protocol.STATE_OPEN
    assert [op for op, _ in connection.take()] == [10] * (PING_BURST + 2)


# -- a token's exp ends the session ------------------------------------------------------

def test_ws_session_is_closed_at_exp_with_4001(setup) -> None:
    connection = setup.open_ws("token=" + setup.token(ttl=60))
    setup.clock.advance(59)
    assert connection.protocol.state == connection.protocol.STATE_OPEN
    setup.clock.advance(1)
    assert connection.close_frame() == (CLOSE_UNAUTHORIZED, "token expired")
    assert setup.hub.sessions == set()
    assert setup.ws.closes == {CLOSE_UNAUTHORIZED: 1}


def test_ws_refresh_moves_exp_and_narrows_rooms_with_unsubscribed(setup) -> None:
    connection = setup.open_ws("token=" + setup.token(rooms=["staff", "tpos"], ttl=60))
    for room in ("staff", "tpos"):
        connection.send_text(json.dumps({"type": "subscribe", "room": room}))
    connection.take()
    fresh = setup.token(rooms=["tpos"], ttl=600)
    connection.send_text(json.dumps({"type": "refresh", "token": fresh}))
    assert connection.json_frames() == [
        {"type": "unsubscribed", "room": "staff"},
        {"type": "refreshed", "exp": int(START + 600)}]
    setup.clock.advance(60)
    assert connection.protocol.state == connection.protocol.STATE_OPEN
    [session] = setup.hub.sessions
    assert session.rooms == ["tpos", "user:u1"]
    connection.send_text(json.dumps({"type": "subscribe", "room": "staff"}))
    assert "not allowed" in connection.json_frames()[0]["message"]
    setup.clock.advance(540)
    assert connection.close_frame() == (CLOSE_UNAUTHORIZED, "token expired")


@pytest.mark.parametrize("token, message", [
    ("other user", "cannot change sub"),
    ("expired", "token expired"),
    ("garbage", "invalid token"),
])
def test_ws_refused_refresh_is_an_error_frame_and_the_old_exp_still_holds(setup, token,
                                                                         message) -> None:
    connection = setup.open_ws("token=" + setup.token(ttl=60))
    token = {"other user": setup.token(sub="u2", ttl=600), "expired": setup.token(ttl=-1),
             "garbage": "not.a.jwt"}[token]
    connection.send_text(json.dumps({"type": "refresh", "token": token}))
    [error] = connection.json_frames()
    assert error["type"] == "error" and message in error["message"]
    assert token not in error["message"]
    setup.clock.advance(60)
    assert connection.close_frame() == (CLOSE_UNAUTHORIZED, "token expired")


def socketio_connect(setup: Setup, token: str) -> Connection:
    connection = setup.open_socketio()
    connection.send_text("40" + json.dumps({"token": token}))
    assert connection.texts()[0].startswith("40{")
    return connection


def test_socketio_session_is_closed_at_exp_with_4001(setup) -> None:
    connection = socketio_connect(setup, setup.token(ttl=30))
    setup.clock.advance(29)
    assert connection.protocol.state == connection.protocol.STATE_OPEN
    setup.clock.advance(1)
    assert connection.close_frame() == (CLOSE_UNAUTHORIZED, "token expired")
    assert setup.hub.sessions == set()
    assert setup.socketio.closes == {CLOSE_UNAUTHORIZED: 1}


def test_socketio_refresh_answers_the_ack_and_narrows_rooms(setup) -> None:
    connection = socketio_connect(setup, setup.token(rooms=["staff", "tpos"], ttl=60))
    connection.send_text('421["subscribe","staff"]')
    assert connection.texts() == ['431[{"ok":true}]']
    fresh = setup.token(rooms=["tpos"], ttl=600)
    connection.send_text("422" + json.dumps(["refresh", fresh]))
    assert connection.texts() == ['432[{"ok":true,"exp":%d}]' % (START + 600)]
    [session] = setup.hub.sessions
    assert session.rooms == ["user:u1"]
    assert setup.sessions.rows[connection.protocol.pid]["rooms"] == ["user:u1"]
    connection.send_text("423" + json.dumps(["refresh", setup.token(sub="u2")]))
    [ack] = connection.texts()
    assert json.loads(ack[3:]) == [{"ok": False, "error": "a refresh cannot change sub"}]
    setup.clock.advance(599)
    assert connection.protocol.state == connection.protocol.STATE_OPEN
    setup.clock.advance(1)
    assert connection.close_frame() == (CLOSE_UNAUTHORIZED, "token expired")


# -- rooms per connection -----------------------------------------------------------------

def test_ws_subscriptions_past_the_maximum_are_refused_and_the_session_goes_on(dev) -> None:
    connection = dev.open_ws("userId=u")
    for room in ("a", "b"):  # with user:u, three: the maximum here
        connection.send_text(json.dumps({"type": "subscribe", "room": room}))
    assert [f["type"] for f in connection.json_frames()] == ["subscribed"] * 2
    connection.send_text(json.dumps({"type": "subscribe", "room": "c"}))
    [error] = connection.json_frames()
    assert error == {"type": "error",
                     "message": "at most 3 rooms per connection (--max-subscriptions)"}
    connection.send_text(json.dumps({"type": "subscribe", "room": "a", "offset": "0"}))
    assert connection.json_frames() == [{"type": "subscribed", "room": "a"}]  # already in
    connection.send_text(json.dumps({"type": "unsubscribe", "room": "a"}))
    connection.send_text(json.dumps({"type": "subscribe", "room": "c"}))
    assert [f["type"] for f in connection.json_frames()] == ["unsubscribed", "subscribed"]


def test_socketio_subscriptions_past_the_maximum_get_a_refusing_ack(dev) -> None:
    connection = dev.open_socketio()
    connection.send_text('40{"userId":"u"}')
    connection.take()
    for n, room in enumerate(("a", "b", "c")):
        connection.send_text(f'42{n}["subscribe","{room}"]')
    assert connection.texts() == ['430[{"ok":true}]', '431[{"ok":true}]',
                                  '432[{"ok":false,"error":"at most 3 rooms per connection'
                                  ' (--max-subscriptions)"}]']
    assert connection.protocol.state == connection.protocol.STATE_OPEN


# -- bad input on /ws ---------------------------------------------------------------------

@pytest.mark.parametrize("frame, message", [
    ("[" * 30_000 + "]" * 30_000, "nested too deeply"),
    ('{"type":"subscribe","room":"r","offset":"' + "9" * 4400 + '"}', "at most 19 digits"),
    ('{"type":"subscribe","room":"r","offset":"99999999999999999999"}', "at most 19 digits"),
    ('{"type":"subscribe","room":"r","offset":' + "9" * 30 + "}", "at most 19 digits"),
    ('{"type":"subscribe","room":"a\\u0000b"}', "room must not contain control"),
    ('{"type":"unsubscribe","room":"\\ud800"}', "room must not contain control"),
    ('{"type":"refresh"}', "refresh refused: development mode"),
])
def test_bad_ws_frames_get_an_error_frame_and_the_session_goes_on(dev, frame, message) -> None:
    connection = dev.open_ws("userId=u")
    connection.send_text(frame)
    [error] = connection.json_frames()
    assert error["type"] == "error" and message in error["message"]
    connection.send_text(json.dumps({"type": "subscribe", "room": "ok"}))
    assert connection.json_frames() == [{"type": "subscribed", "room": "ok"}]


@pytest.mark.parametrize("query", ["userId=a%00b", "userId=%0A"])
def test_a_development_user_id_with_control_characters_is_closed_with_4001(dev, query) -> None:
    connection = Connection(dev.ws, f"/ws?{query}")
    frames = connection.take()
    assert "userId must not contain" in json.loads(frames[0][1])["message"]
    assert frames[-1][0] == 8 and struct.unpack("!H", frames[-1][1][:2])[0] == CLOSE_UNAUTHORIZED
    assert dev.hub.sessions == set()


def test_a_socketio_user_id_with_a_lone_surrogate_gets_connect_error(dev) -> None:
    connection = dev.open_socketio()
    connection.send_text('40{"userId":"\\ud800"}')
    [refusal] = connection.texts()
    assert refusal.startswith("44") and "userId must not contain" in refusal


def test_plain_http_get_on_ws_is_a_json_426(dev) -> None:
    from twisted.web.test.requesthelper import DummyRequest

    request = DummyRequest([b""])
    body = json.loads(dev.ws.as_resource().render(request))
    assert request.responseCode == 426
    assert request.responseHeaders.getRawHeaders("content-type") == ["application/json"]
    assert body["error"] == "upgrade_required" and "WebSocket" in body["message"]


def test_socketio_acks_a_client_never_reads_count_against_its_bound(dev, monkeypatch) -> None:
    monkeypatch.setattr(DownstreamProtocol, "outbox_limit", 200)
    connection = dev.open_socketio()
    connection.send_text('40{"userId":"u"}')
    connection.take()
    connection.stop_reading()
    sent = 0
    while connection.protocol.state == connection.protocol.STATE_OPEN and sent < 100:
        connection.send_text(f'42{sent}["unsubscribe","r"]')  # each answered by an ack
        sent += 1
    assert sent < 20
    assert connection.close_frame()[0] == CLOSE_SLOW_CONSUMER


def test_socketio_recovery_keeps_at_most_the_maximum_of_its_saved_rooms(dev) -> None:
    first = dev.open_socketio()
    first.send_text('40{"userId":"u"}')
    pid = json.loads(first.texts()[0][2:])["pid"]
    first.protocol.connectionLost(Failure(ConnectionLost()))
    dev.sessions.rows[pid]["rooms"] = ["a", "b", "c", "d", "user:u"]
    again = dev.open_socketio()
    again.send_text("40" + json.dumps({"userId": "u", "pid": pid, "offset": "0"}))
    assert json.loads(again.texts()[0][2:])["pid"] == pid  # recovered
    [session] = dev.hub.sessions
    assert session.rooms == ["a", "b", "user:u"]
    assert again.protocol.state == again.protocol.STATE_OPEN


def test_ws_frames_queued_behind_a_replay_are_dropped_quietly_once_the_session_ended(
        setup, monkeypatch) -> None:
    from twisted.logger import Logger

    failures: list = []
    monkeypatch.setattr(JsonSocketProtocol, "failures", Logger(observer=failures.append))
    connection = setup.open_ws("token=" + setup.token(rooms=["staff"], ttl=60))
    setup.hub.dispatch(setup.journal.add(["staff"], "e", 1))
    setup.journal.stall_replays = True
    connection.send_text(json.dumps({"type": "subscribe", "room": "staff", "offset": "0"}))
    connection.send_text(json.dumps({"type": "refresh", "token": setup.token(ttl=600)}))
    connection.send_text(json.dumps({"type": "unsubscribe", "room": "staff"}))
    setup.clock.advance(60)  # exp while the replay waits: closed
    setup.journal.release()
    assert connection.close_frame() == (CLOSE_UNAUTHORIZED, "token expired")
    assert failures == []
