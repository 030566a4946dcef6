"""
The tests' round-robin proxy behaves as nginx does with its defaults towards a dead
backend (``proxy_next_upstream error timeout``, ``max_fails=1``, ``fail_timeout=10s``):
a refused backend is skipped and left alone for a while, an idempotent request whose
backend closed before answering is retried on the next one, and a request nobody can
take is answered 502, never a reset.
"""

from __future__ import annotations

import socket

import pytest_twisted
from twisted.internet import protocol, reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.threads import deferToThread
from twisted.web import resource, server

from tests.support.gateway import free_port
from tests.support.round_robin_proxy import RoundRobinProxy


class _Named(resource.Resource):
    isLeaf = True

    def __init__(self, name: bytes) -> None:
        super().__init__()
        self.name = name

    def render(self, request) -> bytes:
        return self.name


class _Dying(protocol.Protocol):
    """A backend that dies with the request in hand, before any answer."""

    def dataReceived(self, data: bytes) -> None:
        self.transport.abortConnection()


async def listening(factory) -> int:
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    return port


def send(url: str, request: bytes) -> socket.socket:
    """A client connection with ``request`` sent (the kernel holds it until the
    proxy reads it), as a browser's parallel requests are."""
    host, port = url.removeprefix("http://").split(":")
    client = socket.create_connection((host, int(port)))
    client.sendall(request)
    return client


def status_of(client: socket.socket) -> bytes:
    """The status line and body of the answer, read to the end of the connection."""
    answer = b""
    while chunk := client.recv(65536):
        answer += chunk
    client.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.split(b"\r\n", 1)[0] + b" " + body


GET = b"GET /x HTTP/1.1\r\nHost: proxy\r\nConnection: keep-alive\r\n\r\n"
POST = b"POST /x HTTP/1.1\r\nHost: proxy\r\nContent-Length: 2\r\n\r\nok"


@pytest_twisted.ensureDeferred
async def test_concurrent_requests_all_reach_the_live_backend_when_one_is_dead() -> None:
    live = await listening(server.Site(_Named(b"live")))
    proxy = await RoundRobinProxy([free_port(), live.getHost().port]).start()
    try:
        # Sent together, as a client's GET and POST are: the one that met the dead
        # backend first must not meet it again.
        clients = [send(proxy.url, request) for request in (GET, POST, GET, POST)]
        answers = [await deferToThread(status_of, client) for client in clients]
        assert answers == [b"HTTP/1.1 200 OK live"] * 4
        # Marked down: the next requests go straight to the live one.
        tried = sum(proxy.requests.values())
        assert await deferToThread(status_of, send(proxy.url, GET)) == b"HTTP/1.1 200 OK live"
        assert sum(proxy.requests.values()) == tried + 1
    finally:
        await proxy.stop()
        await live.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_get_whose_backend_dies_is_retried_and_a_post_is_answered_502() -> None:
    dying = await listening(protocol.Factory.forProtocol(_Dying))
    live = await listening(server.Site(_Named(b"live")))
    ports = [dying.getHost().port, live.getHost().port]
    proxies = [await RoundRobinProxy(ports).start() for _ in range(2)]
    try:
        # Each request meets the dying backend first.
        get, post = proxies
        assert await deferToThread(status_of, send(get.url, GET)) == b"HTTP/1.1 200 OK live"
        # A POST it already sent is not sent again (it may have been acted on).
        answer = await deferToThread(status_of, send(post.url, POST))
        assert answer.startswith(b"HTTP/1.1 502 Bad Gateway")
    finally:
        for proxy in proxies:
            await proxy.stop()
        await dying.stopListening()
        await live.stopListening()


@pytest_twisted.ensureDeferred
async def test_no_live_backend_is_a_502() -> None:
    proxy = await RoundRobinProxy([free_port(), free_port()]).start()
    try:
        answer = await deferToThread(status_of, send(proxy.url, GET))
        assert answer.startswith(b"HTTP/1.1 502 Bad Gateway")
    finally:
        await proxy.stop()
