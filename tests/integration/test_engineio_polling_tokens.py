"""
A token's life over Engine.IO long-polling, on real PostgreSQL with time on a fake
clock, as over WebSocket: the session ends at ``exp`` (the GET answers CLOSE, the
Engine.IO session is gone, the Socket.IO session stays recoverable) unless the
client sends ``refresh`` first, and a connection holds at most --max-subscriptions
rooms.
"""

from __future__ import annotations

import json

import pytest
import pytest_twisted
from twisted.internet.task import Clock

from n2gateway.downstream.auth import issue_token
from n2gateway.downstream.engineio_polling import PollingError
from tests.integration.test_engineio_polling import (answer, claimed, connect_with, get,
                                                     two_nodes)

SECRET = "polling-token-secret-of-32-bytes!"
TTL = 10.0  # under the ping interval: no ping in the answers


@pytest_twisted.async_yield_fixture
async def nodes(migrated_db):
    async with two_nodes(migrated_db, secret=SECRET, max_subscriptions=2) as both:
        yield both


def token(clock: Clock, rooms=(), ttl: float = TTL) -> str:
    return issue_token(SECRET, "u1", list(rooms), ttl=ttl, now=clock.seconds())


async def connected(nodes, auth_token: str) -> tuple[str, str]:
    return await connect_with(nodes, {"token": auth_token})


async def acked(nodes, sid: str, emit: str) -> dict:
    """The ack of ``42<n>[...]`` posted on one gateway, read on the other."""
    _, (a, b) = nodes
    await a.transport.post(sid, ("421" + emit).encode())
    d, _ = get(b, sid)
    [frame] = (await answer(d)).split("\x1e")
    assert frame.startswith("431[")
    return json.loads(frame[3:])[0]


@pytest_twisted.ensureDeferred
async def test_a_waiting_get_answers_close_at_exp_and_the_session_stays_recoverable(
        nodes) -> None:
    clock, (a, b) = nodes
    sid, pid = await connected(nodes, token(clock, ttl=TTL))
    d, _ = get(b, sid)
    clock.advance(TTL - 1)
    assert not d.called
    clock.advance(1)
    assert await answer(d) == "1"
    for request in (get(a, sid)[0], a.transport.post(sid, b"3")):
        with pytest.raises(PollingError) as refused:
            await request
        assert (refused.value.status, refused.value.code) == (400, "unknown_session")
    saved = await a.sessions.find(pid)
    assert saved is not None and saved.sub == "u1"


@pytest_twisted.ensureDeferred
async def test_a_post_after_exp_is_refused_and_ends_the_session(nodes) -> None:
    clock, (a, b) = nodes
    sid, pid = await connected(nodes, token(clock, ttl=TTL))
    clock.advance(TTL)
    with pytest.raises(PollingError) as refused:
        await a.transport.post(sid, b'421["refresh","%s"]' % token(clock).encode())
    assert (refused.value.status, refused.value.code) == (400, "token_expired")
    with pytest.raises(PollingError) as gone:
        await get(b, sid)[0]
    assert gone.value.code == "unknown_session"
    assert await a.sessions.find(pid) is not None


@pytest_twisted.ensureDeferred
async def test_refresh_moves_exp_and_leaves_the_rooms_the_new_token_does_not_allow(
        nodes, sql) -> None:
    clock, (a, b) = nodes
    sid, _ = await connected(nodes, token(clock, rooms=["staff"], ttl=TTL))
    assert await acked(nodes, sid, '["subscribe","staff"]') == {"ok": True}
    # A GET waiting since before a refresh (sent without an ack: nothing to answer)
    # wakes at the old exp, sees the new one and goes on, to answer what comes next.
    d, _ = get(a, sid)
    clock.advance(TTL / 2)
    await b.transport.post(
        sid, b"42" + json.dumps(["refresh", token(clock, rooms=["staff"])]).encode())
    clock.advance(TTL / 2)
    event = await b.journal.append(["staff"], "message:new", {"n": 1})
    assert await answer(d) == f'42["message:new",{{"n":1}},"{event}"]'
    # One whose new token drops a room: the waiting GET lets go of it at once.
    d = await claimed(a, sid, sql)
    await b.transport.post(sid, b"42" + json.dumps(["refresh", token(clock)]).encode())
    assert await answer(d) == "6"
    await b.journal.append(["staff"], "message:new", {"n": 2})
    await b.transport.post(sid, b'421["subscribe","staff"]')
    d, _ = get(a, sid)
    assert json.loads((await answer(d))[3:]) == [{
        "ok": False, "error": "not allowed to join staff"}]
    again = token(clock, ttl=TTL)
    assert await acked(nodes, sid, json.dumps(["refresh", again])) == {
        "ok": True, "exp": int(clock.seconds() + TTL)}
    d, _ = get(a, sid)
    clock.advance(TTL - 1)
    assert not d.called
    clock.advance(1)
    assert await answer(d) == "1"


@pytest_twisted.ensureDeferred
async def test_a_refused_refresh_is_acked_and_the_old_exp_holds(nodes) -> None:
    clock, (a, _) = nodes
    sid, _ = await connected(nodes, token(clock, ttl=TTL))
    other = issue_token(SECRET, "someone-else", ttl=TTL * 10, now=clock.seconds())
    assert await acked(nodes, sid, json.dumps(["refresh", other])) == {
        "ok": False, "error": "a refresh cannot change sub"}
    d, _ = get(a, sid)
    clock.advance(TTL)
    assert await answer(d) == "1"


@pytest_twisted.ensureDeferred
async def test_subscriptions_past_the_maximum_get_a_refusing_ack(nodes) -> None:
    clock, _ = nodes
    sid, _ = await connected(nodes, token(clock, rooms=["*"], ttl=TTL * 10))
    assert await acked(nodes, sid, '["subscribe","a"]') == {"ok": True}
    assert await acked(nodes, sid, '["subscribe","b"]') == {
        "ok": False, "error": "at most 2 rooms per connection (--max-subscriptions)"}
