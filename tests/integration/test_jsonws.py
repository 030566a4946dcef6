"""The plain JSON WebSocket at /ws (SPEC §9) against a real gateway and PostgreSQL:
subscribe, replay-then-live under concurrent publishing, gaps, auth, bad input, slow
consumers, the poll path, and the publish/status routes."""

from __future__ import annotations

import json

import pytest
import pytest_twisted
from twisted.internet import defer

from n2gateway.downstream.auth import issue_token
from n2gateway.downstream.close_codes import CLOSE_SLOW_CONSUMER
from tests.support.waiting import eventually, sleep
from tests.support.ws import WsClient

SECRET = "integration-secret-0123456789abcdef"
ADMIN = "admin-token-for-tests"


@pytest.fixture
def clients():
    opened: list[WsClient] = []

    async def connect(port: int, query: str, **kwargs) -> WsClient:
        client = await WsClient.connect(port, query, **kwargs)
        opened.append(client)
        return client

    yield connect
    for client in opened:
        if client.protocol is not None and not client.closed.called:
            client.protocol.dropConnection(abort=True)


def token(sub: str, rooms=None, ttl=300) -> str:
    return "token=" + issue_token(SECRET, sub, rooms, ttl=ttl)


@pytest_twisted.ensureDeferred
async def test_welcome_own_room_live_events_and_the_publish_route(gateway_factory, clients):
    gw = await gateway_factory(jwt_secret=SECRET, admin_token=ADMIN)
    alice = await clients(gw.port, token("alice"))
    assert alice.frames[0]["type"] == "welcome"
    assert alice.frames[0]["userId"] == "alice" and alice.frames[0]["rooms"] == ["user:alice"]

    code, answer = await gw.publish(["user:alice"], "message:new", {"text": "xin chào"})
    assert code == 401  # the publish route is admin-protected
    code, answer = await gw.publish(["user:alice"], "message:new", {"text": "xin chào"}, ADMIN)
    assert code == 200
    [event] = await alice.wait_events(1)
    assert event == {"type": "message:new", "room": "user:alice",
                     "payload": {"text": "xin chào"}, "offset": answer["offset"]}

    code, answer = await gw.publish([], "e", None, ADMIN)
    assert code == 400 and "rooms" in json.dumps(answer)


@pytest_twisted.ensureDeferred
async def test_publish_through_the_plugin_context_returns_the_offset(gateway_factory, clients):
    gw = await gateway_factory()
    client = await clients(gw.port, "userId=u1")
    offset = await gw.gateway.context.publish(["user:u1"], "e", {"n": 1})
    offsets = await defer.gatherResults(
        [gw.gateway.context.publish(["user:u1"], "e", {"n": n}) for n in range(2, 6)])
    assert offsets == list(range(offset + 1, offset + 5))
    events = await client.wait_events(5)
    assert [e["payload"]["n"] for e in events] == [1, 2, 3, 4, 5]
    assert client.offsets() == [offset, *offsets]


@pytest_twisted.ensureDeferred
async def test_hub_status_reports_connections_rooms_head_and_retention(gateway_factory, clients):
    gw = await gateway_factory(admin_token=ADMIN, retention=3600.0, retention_rows=5000)
    a = await clients(gw.port, "userId=a")
    await clients(gw.port, "userId=b")
    await a.subscribe("staff")
    offset = await gw.gateway.context.publish(["staff"], "e", {})
    await a.wait_events(1)
    status = await gw.status(ADMIN)
    assert status["connections"] == 2
    assert status["rooms"] == 3  # user:a, user:b, staff
    assert status["head"] == str(offset)
    assert status["retention"] == {"seconds": 3600.0, "rows": 5000}
    assert status["protocols"] == {"ws": 2, "socket.io": 0}
    assert ADMIN not in json.dumps(status)


@pytest_twisted.ensureDeferred
async def test_resume_replays_then_goes_live_without_duplicates_under_concurrent_publishing(
        gateway_factory, clients):
    gw = await gateway_factory()
    publish = gw.gateway.context.publish
    for n in range(300):
        await publish(["room"] if n % 3 else ["room", "other"], "e", {"n": n})
    client = await clients(gw.port, "userId=u")

    async def keep_publishing():
        for n in range(300, 600):
            await publish(["room"], "e", {"n": n})

    publisher = defer.Deferred.fromCoroutine(keep_publishing())
    await sleep(0.01)  # the subscribe's replay runs while events keep coming
    answer = await client.subscribe("room", offset="100")
    assert answer["type"] == "subscribed"
    await publisher
    await eventually(lambda: client.events() and client.events()[-1]["payload"]["n"] == 599)
    ns = [e["payload"]["n"] for e in client.events()]
    assert ns == list(range(100, 600))
    offsets = client.offsets()
    assert offsets == sorted(set(offsets))
    subscribed_at = client.frames.index(answer)
    replayed = [f for f in client.frames[:subscribed_at] if "offset" in f and f["type"] == "e"]
    assert replayed and replayed[0]["payload"]["n"] == 100


@pytest_twisted.ensureDeferred
async def test_the_subscribed_frame_comes_after_the_replay_even_when_the_socket_is_full(
        gateway_factory, clients):
    gw = await gateway_factory()
    for n in range(20):
        await gw.gateway.context.publish(["room"], "e", {"n": n})
    client = await clients(gw.port, "userId=u")
    [session] = gw.gateway.hub.sessions
    session.channel.pauseProducing()  # as Twisted does when the socket's buffer is full
    client.send({"type": "subscribe", "room": "room", "offset": "0"})
    session.channel.send_prepared(gw.gateway.endpoints["ws"].prepareMessage(b'{"type":"queued"}'))
    await sleep(0.2)
    assert len(client.frames) == 1  # the welcome only: everything else waits
    session.channel.resumeProducing()
    await client.wait_events(20)
    await client.next("subscribed")
    kinds = [f["type"] for f in client.frames[1:]]
    assert kinds == ["queued"] + ["e"] * 20 + ["subscribed"]


@pytest_twisted.ensureDeferred
async def test_an_offset_older_than_retention_is_announced_as_a_gap(gateway_factory, clients, sql):
    gw = await gateway_factory()
    for n in range(10):
        await gw.gateway.context.publish(["room"], "e", {"n": n})
    horizon = await gw.gateway.journal.trim(max_age=3600, max_rows=4)
    assert horizon == 6
    client = await clients(gw.port, "userId=u")
    answer = await client.subscribe("room", offset="2")
    assert answer["type"] == "subscribed"
    kinds = [f["type"] for f in client.frames[1:]]
    assert kinds == ["gap"] + ["e"] * 4 + ["subscribed"]
    assert client.frames[1] == {"type": "gap", "room": "room"}
    assert client.offsets() == [7, 8, 9, 10]


@pytest_twisted.ensureDeferred
async def test_events_appended_without_a_doorbell_arrive_by_the_poll(gateway_factory, clients, sql):
    gw = await gateway_factory(poll_interval=0.3)
    client = await clients(gw.port, "userId=u")
    # Another writer, and a NOTIFY that never reaches this gateway: a plain INSERT.
    sql("INSERT INTO n2_journal (rooms, event, payload) VALUES (ARRAY['user:u'], 'e', '{\"n\": 1}')")
    [event] = await client.wait_events(1, timeout=2.0)
    assert event["payload"] == {"n": 1}


@pytest_twisted.ensureDeferred
async def test_payloads_over_8000_bytes_travel_whole(gateway_factory, clients):
    gw = await gateway_factory()
    client = await clients(gw.port, "userId=u")
    payload = {"text": "đ" * 30_000, "list": list(range(2000))}
    await gw.gateway.context.publish(["user:u"], "big", payload)
    [event] = await client.wait_events(1)
    assert event["payload"] == payload


@pytest_twisted.ensureDeferred
async def test_tokens_and_forbidden_rooms(gateway_factory, clients):
    gw = await gateway_factory(jwt_secret=SECRET)
    for query, reason in [
        ("", "a token is required"),
        ("userId=admin", "a token is required"),
        (token("u", ttl=-30), "token expired"),
        ("token=" + issue_token("wrong-secret-wrong-secret-wrong-s", "u", ttl=60), "invalid token"),
    ]:
        client = await clients(gw.port, query, wait_welcome=False)
        code, close_reason = await client.closed
        assert code == 4001, query
        assert reason in close_reason
        assert client.frames[0]["type"] == "error" and reason in client.frames[0]["message"]
    assert gw.gateway.hub.sessions == set()

    staff = await clients(gw.port, token("s1", ["staff", "tpos:*"]))
    assert (await staff.subscribe("tpos:shop")).get("type") == "subscribed"
    refused = await staff.subscribe("user:someone-else")
    assert refused["type"] == "error" and "not allowed" in refused["message"]
    await gw.gateway.context.publish(["user:someone-else"], "secret", {})
    await gw.gateway.context.publish(["tpos:shop"], "ok", {})
    await staff.wait_events(1)
    await sleep(0.1)
    assert [e["type"] for e in staff.events()] == ["ok"]


@pytest_twisted.ensureDeferred
async def test_bad_frames_get_an_error_and_affect_only_their_session(gateway_factory, clients):
    gw = await gateway_factory()
    bad = await clients(gw.port, "userId=bad")
    good = await clients(gw.port, "userId=good")
    await good.subscribe("room")
    cases = [
        (b"{not json", "malformed JSON"),
        (b"[1, 2]", "JSON object"),
        (json.dumps({"type": "dance", "room": "room"}).encode(), "unknown type"),
        (json.dumps({"type": "subscribe"}).encode(), "room"),
        (json.dumps({"type": "subscribe", "room": "room", "offset": "ten"}).encode(), "offset"),
        (json.dumps({"type": "subscribe", "room": "room", "offset": -3}).encode(), "offset"),
        (b"\xff\xfe", None),  # invalid UTF-8 in a text frame: a protocol error, closed
    ]
    for payload, message in cases[:-1]:
        seen = len(bad.frames)
        bad.send_raw(payload)
        error = await bad.next("error", start=seen)
        assert message in error["message"], payload
    seen = len(bad.frames)
    bad.send_raw(b"\x00\x01", binary=True)
    assert "binary" in (await bad.next("error", start=seen))["message"]
    assert (await bad.subscribe("room"))["type"] == "subscribed"  # still usable

    await gw.gateway.context.publish(["room"], "e", {"n": 1})
    await bad.wait_events(1)
    await good.wait_events(1)

    bad.protocol.sendMessage(b"x" * (64 * 1024 + 1))
    code, reason = await bad.closed
    assert code == 1009  # message too big
    await gw.gateway.context.publish(["room"], "e", {"n": 2})
    await good.wait_events(2)
    assert len(gw.gateway.hub.sessions) == 1


@pytest_twisted.ensureDeferred
async def test_a_slow_consumer_is_closed_with_4008_others_keep_receiving_and_it_resumes(
        gateway_factory, clients):
    gw = await gateway_factory()
    slow = await clients(gw.port, "userId=slow")
    fast = await clients(gw.port, "userId=fast")
    await slow.subscribe("room")
    await fast.subscribe("room")
    slow.stop_reading()
    blob = "x" * 60_000
    count = 250  # 15 MB: more than every kernel buffer on the way plus the outbox
    for n in range(count):
        await gw.gateway.context.publish(["room"], "e", {"n": n, "blob": blob})
    await fast.wait_events(count, timeout=30)
    await eventually(lambda: gw.gateway.endpoints["ws"].closes[CLOSE_SLOW_CONSUMER], 5,
                     "a slow close")
    await sleep(3)  # a client stalled for a while still learns why it was closed
    slow.resume_reading()
    assert [e["payload"]["n"] for e in fast.events()] == list(range(count))
    assert gw.gateway.endpoints["ws"].closes == {CLOSE_SLOW_CONSUMER: 1}
    code, reason = await slow.closed
    assert code == CLOSE_SLOW_CONSUMER
    assert "slow consumer" in reason
    got = slow.offsets()
    assert got == sorted(set(got)) and len(got) < count
    last = got[-1] if got else 0

    again = await clients(gw.port, "userId=slow")
    await again.subscribe("room", offset=str(last))
    await again.wait_events(count - len(got), timeout=30)
    assert got + again.offsets() == fast.offsets()
    assert len(gw.gateway.hub.sessions) == 2


@pytest_twisted.ensureDeferred
async def test_a_burst_larger_than_the_outbox_reaches_a_client_that_keeps_reading(
        gateway_factory, clients):
    gw = await gateway_factory()
    client = await clients(gw.port, "userId=u")
    blob = "y" * 5_000
    await defer.gatherResults([gw.gateway.context.publish(["user:u"], "e", {"n": n, "b": blob})
                               for n in range(600)])  # 3 MB in one journal batch
    await client.wait_events(600)
    assert gw.gateway.endpoints["ws"].closes[CLOSE_SLOW_CONSUMER] == 0
    assert not client.closed.called


@pytest_twisted.ensureDeferred
async def test_unsubscribe_stops_delivery(gateway_factory, clients):
    gw = await gateway_factory()
    client = await clients(gw.port, "userId=u")
    await client.subscribe("room")
    client.send({"type": "unsubscribe", "room": "room"})
    assert (await client.next("unsubscribed"))["room"] == "room"
    await gw.gateway.context.publish(["room"], "e", {})
    await gw.gateway.context.publish(["user:u"], "mine", {})
    await client.wait_events(1)
    assert [e["type"] for e in client.events()] == ["mine"]


@pytest_twisted.ensureDeferred
async def test_keep_alive_pings_are_sent_and_a_silent_peer_is_dropped(gateway_factory, clients):
    gw = await gateway_factory()
    # Autobahn's timers are quantized to whole seconds: these are the shortest safe.
    gw.gateway.endpoints["ws"].setProtocolOptions(autoPingInterval=1, autoPingTimeout=2)
    answering = await clients(gw.port, "userId=a")
    pings = []
    original = answering.protocol.onPing
    answering.protocol.onPing = lambda payload: (pings.append(payload), original(payload))
    silent = await clients(gw.port, "userId=b")
    silent.stop_reading()  # never answers a ping
    await eventually(lambda: len(gw.gateway.hub.sessions) == 1, 6, "the silent peer to be dropped")
    await eventually(lambda: len(pings) >= 2, 3, "two pings")
    assert len(pings) < 6  # one per interval, not a storm
    assert not answering.closed.called
