"""
Two gateways on one database behind a proxy that sends every request to the other
gateway than the last (no affinity at all): official socket.io-client peers, with
their default options (polling, then the upgrade) and with polling only, connect,
receive every event once and in order, and recover when one gateway is killed
(the proxy then does what nginx does: see `tests.support.round_robin_proxy`);
python-socketio's client with its default options gets every event once too.
"""

import pytest
import pytest_twisted
from twisted.internet import defer

from n2gateway.downstream.auth import issue_token
from tests.interop.test_socketio_interop import SECRET, TRANSPORTS, in_publish_order, publish
from tests.support.gateway import WITHOUT_SOURCES, GatewayProcess
from tests.support.round_robin_proxy import RoundRobinProxy
from tests.support.socketio_peer import SocketIoPeer


@pytest_twisted.async_yield_fixture
async def behind_a_proxy(tmp_path, database_url):
    """Two gateways on one database, and the round-robin proxy in front of them."""
    gateways = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        gateways.append(GatewayProcess(folder, *WITHOUT_SOURCES, "--jwt-secret", SECRET,
                                       "--node-id", name, database_url=database_url).start())
    proxy = None
    try:
        for gateway in gateways:
            await gateway.wait_healthy()
        proxy = await RoundRobinProxy([g.port for g in gateways]).start()
        yield gateways, proxy
    finally:
        if proxy is not None:
            await proxy.stop()
        for gateway in gateways:
            gateway.ensure_stopped()


async def staff_peer(proxy: RoundRobinProxy, transports: str) -> SocketIoPeer:
    """A client connected through the proxy, on its final transport, in room staff."""
    options, final = TRANSPORTS[transports]
    peer = await SocketIoPeer.connected(
        proxy.url, {"token": issue_token(SECRET, "u1", ["staff"])}, **options)
    if final != peer.records[-1]["transport"]:
        assert (await peer.next("upgrade"))["transport"] == final
    assert await peer.emit("subscribe", "staff") == {"ok": True}
    return peer


async def twelve_events_arrive(peer: SocketIoPeer, gateways: list) -> None:
    """Published on both gateways in turn, delivered by whichever answers."""
    offsets = [await publish(gateways[n % 2], ["staff"], "message:new", {"n": n})
               for n in range(12)]
    received = [(await peer.next("event"))["args"] for _ in offsets]
    assert received == [[{"n": n}, o] for n, o in enumerate(offsets)]


@pytest.mark.parametrize("transports", ["default", "polling"])
@pytest_twisted.ensureDeferred
async def test_any_gateway_answers_any_request_of_a_session(behind_a_proxy, transports) -> None:
    final = TRANSPORTS[transports][1]
    gateways, proxy = behind_a_proxy
    peer = await staff_peer(proxy, transports)
    try:
        assert await peer.emit("subscribe", "user:u2") == {
            "ok": False, "error": "not allowed to join user:u2"}
        await twelve_events_arrive(peer, gateways)

        # The session's requests reached both gateways (every kind of them when it
        # stays on polling; a default client upgrades after a few).
        ports = {g.port for g in gateways}
        assert {port for port, _, _ in proxy.requests} == ports
        if final == "polling":
            for kind in ("GET", "POST"):
                assert {port for port, method, _ in proxy.requests if method == kind} == ports
        else:
            assert sum(n for (_, _, upgrade), n in proxy.requests.items() if upgrade) >= 1

    finally:
        await peer.close()


@pytest.mark.parametrize("transports", ["default", "polling"])
@pytest_twisted.ensureDeferred
async def test_a_gateway_dies_and_the_client_recovers_through_the_proxy(
        behind_a_proxy, transports) -> None:
    gateways, proxy = behind_a_proxy
    peer = await staff_peer(proxy, transports)
    try:
        await twelve_events_arrive(peer, gateways)

        # One gateway dies; the client comes back through the proxy, recovered.
        await gateways[0].kill()
        try:
            await peer.next("disconnect", timeout=3)  # its transport was on that one
        except defer.TimeoutError:
            # On the other one: drop it, as a network failure would. (Not at once:
            # closing a reconnecting client's new transport can leave it stuck.)
            peer.command("closeTransport")
        missed = [await publish(gateways[1], ["staff"], "message:new", {"n": n})
                  for n in range(12, 15)]
        assert (await peer.next("connect", timeout=30))["recovered"] is True
        replayed = [(await peer.next("event"))["args"] for _ in missed]
        assert replayed == [[{"n": n}, o] for n, o in zip(range(12, 15), missed)]
        assert len(peer.events()) == 15
    finally:
        await peer.close()


@pytest_twisted.ensureDeferred
async def test_python_socketio_client_without_sticky_sessions(behind_a_proxy) -> None:
    gateways, proxy = behind_a_proxy
    peer = await SocketIoPeer.connected(
        proxy.url, {"token": issue_token(SECRET, "u1", ["staff"])}, client="python")
    try:
        assert await peer.emit("subscribe", "staff") == {"ok": True}
        offsets = [await publish(gateways[n % 2], ["staff"], "message:new", {"n": n})
                   for n in range(8)]
        received = [(await peer.next("event"))["args"] for _ in offsets]
        assert in_publish_order(received) == [[{"n": n}, o] for n, o in enumerate(offsets)]
        assert {port for port, _, _ in proxy.requests} == {g.port for g in gateways}
    finally:
        await peer.close()
