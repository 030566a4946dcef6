"""A token's exp ends the session, as real clients see it: the official socket.io-client
gets a disconnect whose close details say "token expired" (and, reconnecting with the
same token, a connect_error saying so), and an in-band refresh keeps a session open
past its first exp, on /socket.io/ and on /ws."""

from __future__ import annotations

import time

import pytest_twisted

from n2gateway.downstream.auth import issue_token
from n2gateway.downstream.close_codes import CLOSE_UNAUTHORIZED
from tests.support.waiting import sleep
from tests.support.socketio_peer import SocketIoPeer
from tests.support.ws import WsClient

SECRET = "interop-secret-of-at-least-32-bytes"
TTL = 3  # seconds: exp is a whole second, so a shorter life could end at the handshake


@pytest_twisted.ensureDeferred
async def test_socketio_client_sees_token_expired_and_cannot_resume_with_that_token(
        gateway_factory) -> None:
    gw = await gateway_factory(jwt_secret=SECRET)
    peer = await SocketIoPeer.connected(gw.url, {"token": issue_token(SECRET, "u1", ttl=TTL)})
    try:
        gone = await peer.next("disconnect", timeout=TTL + 10)
        assert gone == {"type": "disconnect", "reason": "transport close",
                        "code": CLOSE_UNAUTHORIZED, "closeReason": "token expired"}
        # socket.io-client reconnects by itself, with the token it has: refused.
        assert (await peer.next("connect_error"))["message"] == "token expired"
    finally:
        await peer.close()


@pytest_twisted.ensureDeferred
async def test_socketio_refresh_keeps_the_session_past_the_first_exp(gateway_factory) -> None:
    gw = await gateway_factory(jwt_secret=SECRET)
    peer = await SocketIoPeer.connected(gw.url, {"token": issue_token(SECRET, "u1", ttl=TTL)})
    try:
        fresh = issue_token(SECRET, "u1", ttl=600)
        answer = await peer.emit("refresh", fresh)
        assert answer["ok"] is True and answer["exp"] > time.time() + 500
        assert await peer.emit("refresh", issue_token(SECRET, "u2", ttl=600)) == {
            "ok": False, "error": "a refresh cannot change sub"}
        await sleep(TTL + 1)
        assert not [r for r in peer.records if r["type"] == "disconnect"]
        offset = (await gw.publish(["user:u1"], "message:new", {"n": 1}))[1]["offset"]
        assert (await peer.next("event"))["args"] == [{"n": 1}, offset]
    finally:
        await peer.close()


@pytest_twisted.ensureDeferred
async def test_ws_session_is_closed_at_exp_unless_refreshed(gateway_factory) -> None:
    gw = await gateway_factory(jwt_secret=SECRET)
    expiring = await WsClient.connect(gw.port, "token=" + issue_token(SECRET, "a", ttl=TTL))
    refreshed = await WsClient.connect(
        gw.port, "token=" + issue_token(SECRET, "b", ["staff"], ttl=TTL))
    try:
        assert (await refreshed.subscribe("staff"))["type"] == "subscribed"
        refreshed.send({"type": "refresh", "token": issue_token(SECRET, "b", ttl=600)})
        assert (await refreshed.next("unsubscribed"))["room"] == "staff"
        assert (await refreshed.next("refreshed"))["exp"] > time.time() + 500
        code, reason = await expiring.closed
        assert (code, reason) == (CLOSE_UNAUTHORIZED, "token expired")
        await sleep(1)
        assert not refreshed.closed.called
        await gw.publish(["user:b"], "mine", {})
        await refreshed.wait_events(1)
    finally:
        for client in (expiring, refreshed):
            if not client.closed.called:
                client.protocol.dropConnection(abort=True)


async def recovered_after_exp(gw, **options) -> dict:
    """A socket.io-client (with ``options``) whose auth function hands out a fresh
    token by its exp: it comes back recovered with what it missed. Its disconnect."""
    peer = SocketIoPeer.spawn()
    try:
        peer.command("connect", url=gw.url, refreshable=True, options=options,
                     auth={"token": issue_token(SECRET, "u1", ["staff"], ttl=TTL)})
        assert (await peer.next("connect"))["recovered"] is False
        assert await peer.emit("subscribe", "staff") == {"ok": True}
        peer.command("setAuth", auth={"token": issue_token(SECRET, "u1", ["staff"], ttl=600)})
        gone = await peer.next("disconnect", timeout=TTL + 10)
        missed = (await gw.publish(["staff"], "message:new", {"n": 1}))[1]["offset"]
        assert (await peer.next("connect"))["recovered"] is True
        assert (await peer.next("event"))["args"] == [{"n": 1}, missed]
        return gone
    finally:
        await peer.close()


@pytest_twisted.ensureDeferred
async def test_socketio_client_with_an_auth_function_comes_back_recovered_after_exp(
        gateway_factory) -> None:
    gw = await gateway_factory(jwt_secret=SECRET)
    gone = await recovered_after_exp(gw)
    assert (gone["code"], gone["closeReason"]) == (CLOSE_UNAUTHORIZED, "token expired")


@pytest_twisted.ensureDeferred
async def test_socketio_client_on_long_polling_comes_back_recovered_after_exp(
        gateway_factory) -> None:
    # Over polling there is no close code: the GET answers a CLOSE packet, and the
    # client reconnects and recovers as it does after a WebSocket 4001.
    gw = await gateway_factory(jwt_secret=SECRET)
    gone = await recovered_after_exp(gw, transports=["polling"])
    assert gone == {"type": "disconnect", "reason": "transport close"}
