"""
The Engine.IO long-polling transport on real PostgreSQL with time on a fake clock:
the ping over polling and its timeout, concurrent GETs, the bounds, bad input, and
two transports (two gateways) serving one session.
"""

from __future__ import annotations

import gc
import json
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_twisted
from autobahn.exception import Disconnected
from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher

from n2gateway.db import Database
from n2gateway.db.listen import Listener
from n2gateway.downstream.auth import Authenticator
from n2gateway.downstream.engineio_polling import PollingError, PollingTransport
from n2gateway.downstream.engineio_store import CHANNEL, MAX_PENDING, PollingStore
from n2gateway.downstream.engineio_websocket import SocketIoFactory, SocketIoProtocol
from n2gateway.downstream.socketio_namespace import SocketIoServer
from n2gateway.downstream.socketio_sessions import SessionStore
from n2gateway.hub import Hub
from n2gateway.journal import DOORBELL, RING, PostgresJournal
from n2gateway.leadership import APP_PREFIX, new_node_id
from tests.support.waiting import eventually

INTERVAL, TIMEOUT, MAX_PAYLOAD = 25.0, 20.0, 4096


class Node:
    """One gateway's polling transport: its own hub and LISTEN, the shared database."""

    def __init__(self, db: Database, clock: Clock, secret: str | None = None,
                 max_subscriptions: int = 1000) -> None:
        self.db = db
        self.node_id = new_node_id()
        self.presence = None
        self.journal = PostgresJournal(db, reactor)
        self.hub = Hub(self.journal, clock, max_subscriptions=max_subscriptions)
        self.listener = Listener(db, reactor)
        self.store = PollingStore(db, clock, self.node_id)
        self.sessions = SessionStore(db)
        self.transport = PollingTransport(
            SocketIoServer(self.hub, Authenticator(secret, clock.seconds), self.sessions),
            self.store, clock,
            ping_interval=INTERVAL, ping_timeout=TIMEOUT, max_payload=MAX_PAYLOAD)
        self.listener.subscribe(CHANNEL, self.transport.on_notify)
        self.listener.subscribe(DOORBELL, lambda node: self.hub.wake())
        self.journal.on_appended = self.hub.committed

    async def start(self) -> "Node":
        # What the gateway's leadership connection is: the node's sign of life.
        self.presence = await self.db.connect(application_name=APP_PREFIX + self.node_id)
        self.listener.startService()
        self.hub.startService()
        await eventually(lambda: self.hub.ready and self.listener.connected)
        return self

    def die(self) -> None:
        """As when the gateway is killed: PostgreSQL sees its connection go."""
        if self.presence is not None:
            self.presence.close()
            self.presence = None

    async def stop(self) -> None:
        self.die()
        self.hub.stopService()
        await self.listener.stopService()


@asynccontextmanager
async def two_nodes(db: Database, **options: Any):
    """A fake clock and two started `Node`s (``options`` for each) on one database."""
    clock = Clock()
    clock.advance(1_000_000)
    started = [await Node(db, clock, **options).start() for _ in range(2)]
    try:
        yield clock, started
    finally:
        for node in started:
            await node.stop()


@pytest_twisted.async_yield_fixture
async def nodes(migrated_db):
    async with two_nodes(migrated_db) as both:
        yield both


async def handshake(node: Node) -> str:
    opening = await node.transport.handshake()
    assert opening.startswith("0")
    return json.loads(opening[1:])["sid"]


def get(node: Node, sid: str) -> tuple[defer.Deferred, defer.Deferred]:
    """A GET in flight and the Deferred that says its client went away."""
    gone: defer.Deferred = defer.Deferred()
    return defer.Deferred.fromCoroutine(node.transport.poll(sid, gone)), gone


async def claimed(node: Node, sid: str, sql) -> defer.Deferred:
    """A GET of ``node`` that holds the session (what happens from now on happens
    during it)."""
    d, _ = get(node, sid)
    await eventually(lambda: (sql("SELECT poller FROM n2_engineio_sessions WHERE sid = %s",
                                  (sid,))[0][0] or "").startswith(node.node_id + "/"))
    return d


async def answer(d: defer.Deferred, timeout: float = 5.0) -> str:
    await eventually(lambda: d.called, timeout)
    return await d


async def connect_with(nodes, auth: dict) -> tuple[str, str]:
    """A polling session whose namespace is connected with ``auth``: its sid and pid."""
    clock, (a, b) = nodes
    sid = await handshake(a)
    await b.transport.post(sid, ("40" + json.dumps(auth)).encode())
    d, _ = get(a, sid)
    [ack] = (await answer(d)).split("\x1e")
    assert ack.startswith('40{"sid":"' + sid)
    return sid, json.loads(ack[2:])["pid"]


async def connected(nodes, user: str = "u1") -> str:
    return (await connect_with(nodes, {"userId": user}))[0]


@pytest_twisted.ensureDeferred
async def test_handshake_offers_the_upgrade_and_the_bounds(nodes) -> None:
    _, (a, _) = nodes
    info = json.loads((await a.transport.handshake())[1:])
    assert info["upgrades"] == ["websocket"]
    assert (info["pingInterval"], info["pingTimeout"], info["maxPayload"]) == (
        25000, 20000, MAX_PAYLOAD)


@pytest_twisted.ensureDeferred
async def test_a_quiet_get_answers_a_ping_and_an_unanswered_ping_closes(nodes, sql) -> None:
    clock, (a, b) = nodes
    sid = await connected(nodes)
    d, _ = get(b, sid)
    clock.advance(INTERVAL - 1)
    assert not d.called
    clock.advance(1)
    assert await answer(d) == "2"
    await a.transport.post(sid, b"3")  # the pong, on the other gateway
    await a.store.sweep(recovery_ttl=60)
    clock.advance(TIMEOUT + 1)
    await a.store.sweep(recovery_ttl=60)
    assert sql("SELECT count(*) FROM n2_engineio_sessions") == [(1,)]

    d, _ = get(a, sid)
    clock.advance(INTERVAL)
    assert await answer(d) == "2"
    clock.advance(TIMEOUT + 1)  # no pong this time
    await b.store.sweep(recovery_ttl=60)
    assert sql("SELECT count(*) FROM n2_engineio_sessions") == [(0,)]
    with pytest.raises(PollingError) as refused:
        await get(a, sid)[0]
    assert (refused.value.status, refused.value.code) == (400, "unknown_session")


@pytest_twisted.ensureDeferred
async def test_the_sweep_keeps_a_polling_clients_recovery_session_without_rewriting_it_each_time(
        nodes, sql) -> None:
    _, (a, b) = nodes
    _, pid = await connect_with(nodes, {"userId": "u1"})
    left = "SELECT expires_at - NOW(), xmin::text FROM n2_socketio_sessions WHERE pid = %s"
    sql("UPDATE n2_socketio_sessions SET expires_at = NOW() + interval '40 seconds'"
        " WHERE pid = %s", (pid,))
    await a.store.sweep(recovery_ttl=60)  # under 3/4 of the TTL left: extended
    [(after_first, version)] = sql(left, (pid,))
    assert after_first.total_seconds() > 55
    await b.store.sweep(recovery_ttl=60)  # the other gateway's sweep, seconds later
    assert sql(left, (pid,))[0][1] == version  # the row was not written again


@pytest_twisted.ensureDeferred
async def test_a_client_that_stops_polling_is_closed_and_its_packets_freed(nodes, sql) -> None:
    clock, (a, b) = nodes
    sid = await connected(nodes)
    await a.transport.post(sid, b'421["subscribe","staff"]')
    assert sql("SELECT count(*) FROM n2_engineio_packets") == [(1,)]
    clock.advance(INTERVAL + TIMEOUT + 1)
    await b.store.sweep(recovery_ttl=60)
    assert sql("SELECT count(*) FROM n2_engineio_sessions") == [(0,)]
    assert sql("SELECT count(*) FROM n2_engineio_packets") == [(0,)]


@pytest_twisted.ensureDeferred
async def test_a_session_that_never_connects_the_namespace_is_closed(nodes, sql) -> None:
    clock, (a, b) = nodes
    connecting = await connected(nodes)
    idle = await handshake(a)
    for _ in range(2):  # both poll and answer pings; one never sends CONNECT
        polls = [get(b, sid)[0] for sid in (connecting, idle)]
        clock.advance(INTERVAL)
        for sid, d in zip((connecting, idle), polls):
            assert await answer(d) == "2"
            await a.transport.post(sid, b"3")
        await a.store.sweep(recovery_ttl=60)
    assert sql("SELECT sid FROM n2_engineio_sessions") == [(connecting,)]


@pytest_twisted.ensureDeferred
async def test_a_second_concurrent_get_closes_the_session(nodes) -> None:
    clock, (a, b) = nodes
    sid = await connected(nodes)
    first, _ = get(a, sid)
    with pytest.raises(PollingError) as refused:
        await get(b, sid)[0]
    assert (refused.value.status, refused.value.code) == (400, "concurrent_poll")
    assert await answer(first) == "1"  # woken by the NOTIFY on the other gateway


@pytest_twisted.ensureDeferred
async def test_a_get_held_by_a_gateway_that_died_is_not_a_concurrent_one(nodes, sql) -> None:
    # Its client's GET met a gateway that was then killed: the proxy (or the client)
    # sends it again, to another gateway, which answers it.
    clock, (a, b) = nodes
    sid = await connected(nodes)
    held = await claimed(a, sid, sql)
    a.die()
    await eventually(lambda: not sql("SELECT 1 FROM pg_stat_activity"
                                     " WHERE application_name = %s", (APP_PREFIX + a.node_id,)))
    again = await claimed(b, sid, sql)
    event = await b.journal.append(["user:u1"], "message:new", {"n": 1})
    assert await answer(again) == f'42["message:new",{{"n":1}},"{event}"]'
    # Were the dead gateway's GET still running, it would deliver nothing twice.
    assert await answer(held) == "1"


@pytest_twisted.ensureDeferred
async def test_events_and_acks_reach_a_get_on_either_gateway_once_and_in_order(nodes) -> None:
    clock, (a, b) = nodes
    sid = await connected(nodes)
    d, _ = get(a, sid)
    await b.transport.post(sid, b'421["subscribe","staff"]')
    assert await answer(d) == '431[{"ok":true}]'
    offsets = [await b.journal.append(["staff"], "message:new", {"n": n}) for n in range(3)]
    await eventually(lambda: a.hub.head == b.hub.head == offsets[-1])
    d, _ = get(a, sid)
    assert (await answer(d)).split("\x1e") == [
        f'42["message:new",{{"n":{n}}},"{o}"]' for n, o in enumerate(offsets)]
    # A GET waiting on one gateway wakes for an event published on the other.
    d, _ = get(b, sid)
    later = await a.journal.append(["staff"], "message:new", {"n": 3})
    assert await answer(d) == f'42["message:new",{{"n":3}},"{later}"]'
    d, _ = get(a, sid)
    clock.advance(INTERVAL)
    assert await answer(d) == "2"  # nothing twice


@pytest_twisted.ensureDeferred
async def test_a_waiting_get_stops_serving_a_room_the_session_left(nodes, sql) -> None:
    # As over WebSocket: once the session left a room (and its ack, when asked for,
    # is sent), no event of that room, even to a GET waiting since before.
    clock, (a, b) = nodes
    sid = await connected(nodes)
    await b.transport.post(sid, b'42["subscribe","staff"]')
    d = await claimed(a, sid, sql)
    await b.transport.post(sid, b'42["unsubscribe","staff"]')  # no ack asked for
    assert await answer(d) == "6"  # let go: its rooms changed
    d, _ = get(a, sid)
    await b.journal.append(["staff"], "message:new", {"n": 1})
    own = await b.journal.append(["user:u1"], "message:new", {"n": 2})
    assert await answer(d) == f'42["message:new",{{"n":2}},"{own}"]'

    await b.transport.post(sid, b'421["subscribe","staff"]')
    d, _ = get(a, sid)
    assert await answer(d) == '431[{"ok":true}]'
    d = await claimed(a, sid, sql)
    await b.transport.post(sid, b'422["unsubscribe","staff"]')
    await b.journal.append(["staff"], "message:new", {"n": 3})
    assert await answer(d) == '432[{"ok":true}]'
    d, _ = get(a, sid)
    own = await b.journal.append(["user:u1"], "message:new", {"n": 4})
    assert await answer(d) == f'42["message:new",{{"n":4}},"{own}"]'


@pytest_twisted.ensureDeferred
async def test_a_get_takes_at_most_max_payload_and_the_rest_waits(nodes) -> None:
    clock, (a, b) = nodes
    sid = await connected(nodes)
    await a.transport.post(sid, b'42["subscribe","staff"]')
    offsets = [await a.journal.append(["staff"], "big", "x" * 1000) for _ in range(10)]
    await eventually(lambda: b.hub.head == offsets[-1])
    delivered: list[str] = []
    while len(delivered) < 10:
        d, _ = get(b, sid)
        frames = (await answer(d)).split("\x1e")
        assert sum(map(len, frames)) < MAX_PAYLOAD + 1100
        delivered += [json.loads(f[2:])[-1] for f in frames]
    assert delivered == [str(o) for o in offsets]


@pytest_twisted.ensureDeferred
async def test_a_client_gone_mid_poll_loses_nothing(nodes) -> None:
    clock, (a, b) = nodes
    sid = await connected(nodes)
    d, gone = get(a, sid)
    gone.callback(None)
    assert await answer(d) == ""
    await b.transport.post(sid, b'421["subscribe","staff"]')
    d, _ = get(b, sid)
    assert await answer(d) == '431[{"ok":true}]'


@pytest.mark.parametrize("body, status, code", [
    (b"x" * (MAX_PAYLOAD + 1), 413, "payload_too_large"),
    (b"4", 400, "protocol_error"),
    (b"", 400, "bad_payload"),
    (b"9hello", 400, "bad_payload"),
    (b"bAQID", 400, "bad_payload"),
    (b"\xff\xfe", 400, "bad_payload"),
    (b'42["hello"]\x1e45', 400, "protocol_error"),
    (b"2", 400, "protocol_error"),
])
@pytest_twisted.ensureDeferred
async def test_bad_posts_close_only_their_session(nodes, sql, body, status, code) -> None:
    clock, (a, b) = nodes
    bystander = await connected(nodes, "u2")
    sid = await connected(nodes)
    with pytest.raises(PollingError) as refused:
        await a.transport.post(sid, body)
    assert (refused.value.status, refused.value.code) == (status, code)
    if body.startswith(b"b"):
        assert str(refused.value).startswith("binary packets are not supported")
    assert sql("SELECT sid FROM n2_engineio_sessions") == [(bystander,)]


@pytest_twisted.ensureDeferred
async def test_a_session_not_reading_its_acks_is_closed(nodes, sql) -> None:
    clock, (a, b) = nodes
    sid = await connected(nodes)
    body = "\x1e".join(f'42{n}["subscribe","r{n}"]' for n in range(100)).encode()
    with pytest.raises(PollingError) as refused:
        for _ in range(MAX_PENDING // 100 + 1):
            await a.transport.post(sid, body)
    assert refused.value.code == "too_many_pending"
    assert sql("SELECT count(*) FROM n2_engineio_packets") == [(0,)]


@pytest_twisted.ensureDeferred
async def test_the_upgrade_answers_the_pending_get_and_takes_the_packets(nodes, sql) -> None:
    clock, (a, b) = nodes
    sid = await connected(nodes)
    await a.transport.post(sid, b'421["subscribe","staff"]')
    await a.transport.post(sid, b'422["subscribe","pancake"]')
    d, _ = get(b, sid)
    assert await answer(d) == '431[{"ok":true}]\x1e432[{"ok":true}]'
    d, _ = get(b, sid)
    await a.transport.post(sid, b'423["unsubscribe","pancake"]')
    assert await answer(d) == '433[{"ok":true}]'
    d, _ = get(a, sid)
    await b.store.mark_upgrading(sid)  # "3probe" sent on a WebSocket elsewhere
    assert await answer(d) == "6"
    await a.transport.post(sid, b'424["unsubscribe","staff"]')  # drained before "5"
    state, frames = await b.store.take_over(sid, linger=60)
    assert frames == ['434[{"ok":true}]']
    assert (state.pid is not None, state.rooms) == (True, ("user:u1",))
    with pytest.raises(PollingError) as refused:
        await get(a, sid)[0]
    assert refused.value.code == "transport_upgraded"


@pytest_twisted.ensureDeferred
async def test_round_trips_per_request(nodes, round_trips, sql) -> None:
    """What serving polling from the database costs (bench/RESULTS.md quotes it)."""
    clock, (a, b) = nodes
    sid = await connected(nodes)
    await a.transport.post(sid, b'42["subscribe","staff"]')
    offset = await a.journal.append(["staff"], "message:new", {})
    await eventually(lambda: b.hub.head == offset)

    del round_trips[:]
    d, _ = get(b, sid)
    assert (await answer(d)).endswith(f'"{offset}"]')
    # claim with its packets; the hub session's horizon check; the replay of the
    # event that came between two GETs; the end of the claim
    assert len(round_trips) == 4

    del round_trips[:]
    await a.transport.post(sid, b'421["subscribe","pancake"]')
    # the session; the recovery session's rooms; the rooms, the ack and its NOTIFY
    assert len(round_trips) == 3

    del round_trips[:]
    await a.transport.post(sid, b"3")
    assert len(round_trips) == 2  # the session; the pong

    d, _ = get(b, sid)
    await answer(d)
    del round_trips[:]
    d = await claimed(b, sid, sql)  # (the POST below comes after the claim)
    assert len(round_trips) == 1  # claimed, waiting: caught up
    await a.transport.post(sid, b'422["subscribe","tpos"]')
    await answer(d)
    # the GET: claim, the packets it was woken for, the end of the claim; the POST's 3
    assert len(round_trips) == 3 + 3


@pytest_twisted.ensureDeferred
async def test_many_gets_share_their_claims_and_ends_of_claims(nodes, round_trips, sql) -> None:
    """A busy gateway: 20 GETs claimed together, woken by one event, ended together,
    each answered that event once; what the bench's 1,000 polling clients need."""
    clock, (a, b) = nodes
    sids = [await connected(nodes, f"u{n}") for n in range(20)]
    for sid in sids:
        await a.transport.post(sid, b'42["subscribe","staff"]')
    del round_trips[:]
    gets = [get(b, sid)[0] for sid in sids]
    await eventually(lambda: sql("SELECT count(*) FROM n2_engineio_sessions"
                                 " WHERE poller IS NOT NULL") == [(20,)])
    # Only the claims and their ends: a GET also looks again when a NOTIFY of the
    # subscribes above comes in late (on a loaded machine, after the claims).
    claims = [q for q in round_trips if "SET poller = v.poller" in q]
    del round_trips[:]
    offset = await a.journal.append(["staff"], "message:new", {"n": 1})
    answers = [await answer(d) for d in gets]
    assert answers == [f'42["message:new",{{"n":1}},"{offset}"]'] * 20
    ends = [q for q in round_trips if "AS v (sid, poller, delivered" in q]
    # The first of each goes alone at once; the others come while it is in flight.
    assert len(claims) <= 3 and len(ends) <= 3, (len(claims), len(ends))
    d, _ = get(a, sids[0])
    clock.advance(INTERVAL)
    assert await answer(d) == "2"  # its end of claim was recorded: nothing twice


@pytest_twisted.ensureDeferred
async def test_two_gets_of_one_session_in_one_batch_close_it(nodes) -> None:
    clock, (a, b) = nodes
    other, sid = await connected(nodes, "u1"), await connected(nodes, "u2")
    busy, _ = get(a, other)  # in flight: the next two claims go together
    first, second = get(a, sid)[0], get(a, sid)[0]
    outcomes = []
    for d in (first, second):
        try:
            outcomes.append(await answer(d))
        except PollingError as e:
            outcomes.append(e.code)
    assert sorted(outcomes) == ["1", "concurrent_poll"]
    with pytest.raises(PollingError) as gone:
        await get(b, sid)[0]
    assert gone.value.code == "unknown_session"
    clock.advance(INTERVAL)
    assert await answer(busy) == "2"


class RecordingSocket(SocketIoProtocol):
    """The WebSocket transport with Autobahn's framing replaced by a list of frames."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str] = []
        self.closed_with = None

    def sendMessage(self, payload, isBinary=False, **kwargs) -> None:
        if self.state != self.STATE_OPEN:
            raise Disconnected("Attempt to send on a closed protocol")  # as Autobahn does
        self.sent.append(payload.decode())

    def dropped(self) -> None:
        """The client's connection went."""
        self.state = self.STATE_CLOSED
        self.onClose(False, 1006, "connection lost")

    def send_frames(self, frames) -> None:
        self.sent += [frame.payload.decode() for frame in frames]

    def sendClose(self, code=None, reason=None) -> None:
        self.closed_with = (code, reason)
        self.state = self.STATE_CLOSED
        self.onClose(True, code, reason)


def upgrading_socket(node: Node, clock: Clock, sid: str) -> RecordingSocket:
    factory = SocketIoFactory(node.transport.server, node.store, clock,
                              ping_interval=INTERVAL, ping_timeout=TIMEOUT)
    factory.protocol = RecordingSocket
    socket = factory.buildProtocol(None)
    socket.transport = StringTransport()
    socket.transport.registerProducer(object(), True)
    socket.onConnect(SimpleNamespace(params={"sid": [sid]}))
    socket.state = socket.STATE_OPEN
    socket.onOpen()
    return socket


@pytest_twisted.ensureDeferred
async def test_the_upgrade_on_another_gateway_loses_and_reorders_nothing(nodes) -> None:
    clock, (a, b) = nodes
    sid = await connected(nodes)
    await a.transport.post(sid, b'42["subscribe","staff"]')
    first = await a.journal.append(["staff"], "message:new", {"n": 1})
    d, _ = get(a, sid)
    assert (await answer(d)).endswith(f'"{first}"]')
    waiting, _ = get(a, sid)

    socket = upgrading_socket(b, clock, sid)
    assert socket.sent == []  # no OPEN: the session exists
    socket.onMessage(b"2probe", False)
    await eventually(lambda: socket.sent == ["3probe"])
    assert await answer(waiting) == "6"  # the pending GET let go
    assert a.hub.sessions == set()  # and left nothing lingering: the session moves

    # Produced while the client drains its polling transport, before "5".
    await a.transport.post(sid, b'421["subscribe","pancake"]')
    missed = await a.journal.append(["staff"], "message:new", {"n": 2})
    await eventually(lambda: b.hub.head == missed)
    socket.onMessage(b"5", False)
    await eventually(lambda: len(socket.sent) == 3)
    assert socket.sent[1:] == ['431[{"ok":true}]', f'42["message:new",{{"n":2}},"{missed}"]']
    live = await a.journal.append(["staff", "pancake"], "message:new", {"n": 3})
    await eventually(lambda: len(socket.sent) == 4)
    assert socket.sent[3] == f'42["message:new",{{"n":3}},"{live}"]'

    with pytest.raises(PollingError) as refused:
        await get(a, sid)[0]
    assert refused.value.code == "transport_upgraded"
    clock.advance(INTERVAL)
    assert socket.sent[-1] == "2"  # the WebSocket pings now
    socket.sendClose(1000, "done")


@pytest_twisted.ensureDeferred
async def test_the_upgrade_keeps_the_rooms_the_client_left(nodes) -> None:
    # An upgrade changes the transport, not the subscriptions: a client that left its
    # own room over polling does not find itself back in it on the WebSocket.
    clock, (a, b) = nodes
    sid = await connected(nodes)
    await a.transport.post(sid, b'42["subscribe","staff"]\x1e42["unsubscribe","user:u1"]')
    socket = upgrading_socket(b, clock, sid)
    socket.onMessage(b"2probe", False)
    await eventually(lambda: socket.sent == ["3probe"])
    socket.onMessage(b"5", False)
    await probe_done(socket)
    await a.journal.append(["user:u1"], "message:new", {"n": "not for it"})
    staff = await a.journal.append(["staff"], "message:new", {"n": "for it"})
    await eventually(lambda: len(socket.sent) > 1)
    assert socket.sent[1:] == [f'42["message:new",{{"n":"for it"}},"{staff}"]']
    socket.sendClose(1000, "done")


async def probe_done(socket: RecordingSocket) -> None:
    """The probe's steps on the database are over (in order behind each other)."""
    await eventually(lambda: not socket._work.paused)


@pytest_twisted.ensureDeferred
async def test_the_upgrade_takes_a_session_whose_get_a_dead_gateway_held(nodes, sql) -> None:
    clock, (a, b) = nodes
    sid = await connected(nodes)
    await claimed(a, sid, sql)
    a.die()
    await a.listener.stopService()  # dead: its GET hears nothing more, never ends
    await eventually(lambda: not sql("SELECT 1 FROM pg_stat_activity"
                                     " WHERE application_name = %s", (APP_PREFIX + a.node_id,)))
    socket = upgrading_socket(b, clock, sid)
    socket.onMessage(b"2probe", False)
    await eventually(lambda: socket.sent == ["3probe"])
    socket.onMessage(b"5", False)
    await probe_done(socket)
    assert socket.closed_with is None  # not "unknown_session"
    event = await b.journal.append(["user:u1"], "message:new", {"n": 1})
    await eventually(lambda: socket.sent[-1] == f'42["message:new",{{"n":1}},"{event}"]')
    socket.sendClose(1000, "done")


@pytest_twisted.ensureDeferred
async def test_a_probe_whose_websocket_went_leaves_the_session_polling(nodes, sql) -> None:
    clock, (a, b) = nodes
    sid = await connected(nodes)
    failures = []

    def observe(event) -> None:
        if "log_failure" in event:
            failures.append(event["log_failure"])

    globalLogPublisher.addObserver(observe)
    try:
        # Gone while the session was being read (before "3probe"), then after it.
        for went in ("before", "after"):
            socket = upgrading_socket(b, clock, sid)
            socket.onMessage(b"2probe", False)
            if went == "after":
                await eventually(lambda: socket.sent == ["3probe"])
            socket.dropped()
            await probe_done(socket)
            del socket
            gc.collect()
            assert failures == []  # no "Unhandled error in Deferred"
            assert sql("SELECT state FROM n2_engineio_sessions WHERE sid = %s",
                       (sid,)) == [("polling",)]
            # The client goes on polling: its GETs wait for events again.
            waiting, _ = get(a, sid)
            event = await b.journal.append(["user:u1"], "message:new", {"went": went})
            assert await answer(waiting) == f'42["message:new",{{"went":"{went}"}},"{event}"]'
    finally:
        globalLogPublisher.removeObserver(observe)


def without_doorbells(statements: list[str]) -> list[str]:
    """The statements but the journal's doorbells and the hubs' reads that follow them."""
    return [q for q in statements if q != RING and "FROM n2_journal WHERE seq > %s ORDER" not in q]


@pytest_twisted.ensureDeferred
async def test_events_between_two_gets_on_one_gateway_need_no_journal_read(
        nodes, round_trips) -> None:
    clock, (a, b) = nodes
    sid = await connected(nodes)
    await a.transport.post(sid, b'42["subscribe","staff"]')
    d, _ = get(b, sid)
    first = await a.journal.append(["staff"], "message:new", {"n": 1})
    assert (await answer(d)).endswith(f'"{first}"]')
    gap = [await a.journal.append(["staff"], "message:new", {"n": n}) for n in (2, 3)]
    await eventually(lambda: b.hub.head == gap[-1])

    del round_trips[:]
    d, _ = get(b, sid)
    assert [json.loads(f[2:])[-1] for f in (await answer(d)).split("\x1e")] == [
        str(o) for o in gap]
    # The claim and its end: b's hub session lingered. (Of the two appends just before,
    # the second's doorbell may still be ringing, and make b's hub follow once more.)
    assert len(without_doorbells(round_trips)) == 2

    # A GET answered elsewhere in between: b's lingering events are not trusted.
    later = await a.journal.append(["staff"], "message:new", {"n": 4})
    d, _ = get(a, sid)
    assert (await answer(d)).endswith(f'"{later}"]')
    last = await a.journal.append(["staff"], "message:new", {"n": 5})
    await eventually(lambda: b.hub.head == last)
    d, _ = get(b, sid)
    assert await answer(d) == f'42["message:new",{{"n":5}},"{last}"]'


@pytest_twisted.ensureDeferred
async def test_a_room_joined_while_polling_starts_at_the_join(nodes) -> None:
    """As over WebSocket: a session whose rooms were quiet for a while, subscribing to
    a busy room, gets that room's events from then on, not all since it connected."""
    clock, (a, b) = nodes
    sid = await connected(nodes)
    d, _ = get(b, sid)
    for n in range(3):
        earlier = await a.journal.append(["staff"], "message:new", {"n": n})
    await eventually(lambda: b.hub.head == earlier)
    clock.advance(INTERVAL)
    assert await answer(d) == "2"  # nothing of its rooms came: a ping ends the GET
    await a.transport.post(sid, b"3")
    await a.transport.post(sid, b'42["subscribe","staff"]')
    later = await a.journal.append(["staff"], "message:new", {"n": "later"})
    await eventually(lambda: b.hub.head == later)
    d, _ = get(b, sid)
    assert await answer(d) == f'42["message:new",{{"n":"later"}},"{later}"]'


@pytest_twisted.ensureDeferred
async def test_a_get_that_saw_other_rooms_than_the_sessions_records_only_what_it_sent(
        nodes) -> None:
    # A POST on another gateway changed the rooms while the GET was answering (its
    # NOTIFY not yet heard): what the GET saw says nothing of the new room.
    clock, (a, b) = nodes
    sid = await connected(nodes)
    await a.transport.post(sid, b'42["subscribe","staff"]')
    ends = {"through_seq": 0, "pinged": False, "lifetime": 45, "pong_within": 20}
    # seen before a subscribe, before an unsubscribe, and the session's own rooms
    for seen_rooms, follows in ((["user:u1"], 0), (["user:u1", "staff", "tpos"], 0),
                                (["staff", "user:u1"], 7)):
        poller = b.store.new_poller()
        await b.store.claim(sid, poller, 30)
        assert await b.store.finish_poll(sid, poller, delivered=0, seen=(7, seen_rooms),
                                         **ends) == follows
