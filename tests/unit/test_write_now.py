"""``write_now`` over real loopback sockets: bytes leave at once when nothing is
queued, and otherwise take Twisted's path, in order, encrypted under TLS, and a
broken connection is still noticed; ``flush_now`` sends what was queued, but leaves
a closing connection's end to the reactor.

Unit tests, yet on real sockets and the real reactor: ``write_now`` is about the kernel
socket under Twisted's transport (a ``send`` before the reactor runs again), which no
in-memory transport has. They need nothing else and take well under a second.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest_twisted
import twisted.test
from twisted.internet import protocol, reactor, ssl
from twisted.internet.testing import StringTransport
from twisted.protocols import portforward

from n2gateway.downstream.write_now import flush_now, write_now
from tests.support.waiting import eventually


class Server(protocol.Protocol):
    def connectionMade(self) -> None:
        self.factory.connected.append(self)

    def connectionLost(self, reason) -> None:
        self.factory.lost.append(reason)


class Collecting(protocol.Protocol):
    def connectionMade(self) -> None:
        self.received = b""
        self.factory.connected.append(self)

    def dataReceived(self, data: bytes) -> None:
        self.received += data


def factory(kind: type[protocol.Protocol]) -> protocol.ClientFactory:
    made = protocol.ClientFactory.forProtocol(kind)  # serves listening ports too
    made.connected, made.lost = [], []
    return made


@pytest_twisted.async_yield_fixture
async def loopback():
    """``(server side, client socket)``: a Twisted TCP connection accepted from a raw,
    non-blocking client socket that the test reads (or not) itself."""
    server = factory(Server)
    port = reactor.listenTCP(0, server, interface="127.0.0.1")
    client = socket.socket()
    client.connect(("127.0.0.1", port.getHost().port))
    client.setblocking(False)
    await eventually(lambda: server.connected)
    yield server.connected[0], client
    client.close()
    await port.stopListening()
    await eventually(lambda: server.lost)


def read_some(client: socket.socket, into: bytearray, most: int = 1 << 30) -> bool:
    """Read what is there (at most ``most`` bytes); whether anything was."""
    before = len(into)
    while len(into) - before < most:
        try:
            chunk = client.recv(min(65536, most - (len(into) - before)))
        except BlockingIOError:
            break
        into += chunk
    return len(into) > before


@pytest_twisted.ensureDeferred
async def test_bytes_are_on_the_wire_before_the_reactor_runs_again(loopback):
    peer, client = loopback
    write_now(peer.transport, b"hello")
    # No reactor turn in between: the client can already read them.
    assert client.recv(100) == b"hello"


@pytest_twisted.ensureDeferred
async def test_bytes_queued_by_twisted_go_before_later_ones(loopback):
    peer, client = loopback
    big = bytes(range(256)) * (64 * 1024)  # 16 MiB, beyond any loopback buffer
    write_now(peer.transport, big)  # the rest of it waits in Twisted's buffer
    received = bytearray()
    # The client makes room in the socket before the reactor writes the rest:
    # a later write must still not overtake what Twisted holds.
    assert read_some(client, received, most=1 << 20)
    write_now(peer.transport, b"<tail>")

    def all_read() -> bool:
        read_some(client, received)
        return len(received) == len(big) + 6

    await eventually(all_read, timeout=20)
    assert received == big + b"<tail>"


@pytest_twisted.ensureDeferred
async def test_a_connection_reset_by_the_peer_is_still_noticed(loopback):
    peer, client = loopback
    peer.transport.pauseProducing()  # not reading: only the writes can notice
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    client.close()  # linger 0: a reset
    for _ in range(3):
        write_now(peer.transport, b"x" * 1000)
    await eventually(lambda: peer.factory.lost)


class WireTap(portforward.ProxyClient):
    """The relay's connection to the server: keeps every byte the server sends."""

    def dataReceived(self, data: bytes) -> None:
        self.peer.factory.wire += data
        super().dataReceived(data)


class WireTapFactory(portforward.ProxyClientFactory):
    protocol = WireTap


class TappedRelay(portforward.ProxyServer):
    clientProtocolFactory = WireTapFactory


@pytest_twisted.ensureDeferred
async def test_under_tls_the_bytes_are_encrypted_by_twisted():
    pem = (Path(twisted.test.__file__).parent / "server.pem").read_bytes()
    server, clients = factory(Server), factory(Collecting)
    port = reactor.listenSSL(0, server, ssl.PrivateCertificate.loadPEM(pem).options(),
                             interface="127.0.0.1")
    # The client talks to the server through a relay that sees what is on the wire.
    relay = portforward.ProxyFactory("127.0.0.1", port.getHost().port)
    relay.protocol, relay.wire = TappedRelay, b""
    relay_port = reactor.listenTCP(0, relay, interface="127.0.0.1")
    connector = reactor.connectSSL("127.0.0.1", relay_port.getHost().port, clients,
                                   ssl.CertificateOptions(verify=False))
    message = b"plaintext that must not travel as such"
    try:
        await eventually(lambda: server.connected and clients.connected)
        write_now(server.connected[0].transport, message)
        # Either outcome shows at once: the bytes in the clear, or decrypted at the client.
        await eventually(lambda: message in relay.wire
                         or clients.connected[0].received == message)
        assert message not in relay.wire
        assert clients.connected[0].received == message
    finally:
        connector.disconnect()
        await relay_port.stopListening()
        await port.stopListening()


def test_a_transport_without_a_socket_gets_the_bytes_through_write():
    transport = StringTransport()
    write_now(transport, b"frame")
    assert transport.value() == b"frame"


@pytest_twisted.ensureDeferred
async def test_flush_now_sends_what_was_queued_before_the_reactor_runs_again(loopback):
    peer, client = loopback
    peer.transport.write(b"head")
    peer.transport.writeSequence([b"-", b"body"])
    flush_now(peer.transport)
    assert client.recv(100) == b"head-body"


@pytest_twisted.ensureDeferred
async def test_flush_now_leaves_a_closing_connection_to_the_reactor(loopback):
    peer, client = loopback
    peer.transport.write(b"last words")
    peer.transport.loseConnection()
    flush_now(peer.transport)
    received = bytearray()

    def ended() -> bool:
        try:
            chunk = client.recv(100)
        except BlockingIOError:
            return False
        received.extend(chunk)
        return chunk == b""  # the server closed the connection

    # Still written, and the connection still ends once it is.
    await eventually(ended)
    assert received == b"last words"
