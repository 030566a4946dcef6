"""The gateway's Site on a fake clock over a fake socket.

Slowloris: a request's headers and body must arrive in bounded time, whatever the
pace of its bytes; the client gets a 408 JSON answer. A request being answered (a
WebSocket upgraded from it) is never cut. And the answers Twisted and werkzeug give
in plain text or HTML (bad Content-Length, a doubled slash) are JSON."""

from __future__ import annotations

import json

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web import resource, server

from n2gateway.http.routes import Routes
from n2gateway.http.site import BODY_DEADLINE, HEADER_DEADLINE, IDLE_TIMEOUT, GatewaySite


class Forever(resource.Resource):
    """Answers never end, as a WebSocket's request does not once upgraded."""

    isLeaf = True

    def render_GET(self, request):
        return server.NOT_DONE_YET


@pytest.fixture
def connect():
    clock = Clock()
    routes = Routes()

    async def echo(request):
        return {"ok": True}

    routes.add("POST", "/echo", echo, body={"type": "object"})
    routes.add("GET", "/ping", echo)
    routes.add("GET", "/api/hub/ping", echo)
    routes.mount("/forever", Forever)
    site = GatewaySite(routes.app.resource(), reactor=clock)

    def open_connection():
        channel = site.buildProtocol(None)
        transport = StringTransport()
        channel.makeConnection(transport)
        return channel, transport

    return clock, site, open_connection


def answer_of(transport: StringTransport) -> tuple[bytes, dict]:
    head, _, body = transport.value().partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        size, _, rest = body.partition(b"\r\n")
        body = rest[:int(size, 16)]
    return head.split(b"\r\n")[0], json.loads(body)


def test_headers_sent_a_byte_at_a_time_get_408_at_the_deadline(connect):
    clock, site, open_connection = connect
    channel, transport = open_connection()
    channel.dataReceived(b"GET /ping HTTP/1.1\r\nHost: gw\r\n")
    for _ in range(int(HEADER_DEADLINE / 3)):
        clock.advance(3)
        channel.dataReceived(b"X")  # each byte would reset Twisted's idle timeout
    assert transport.value() == b""
    clock.advance(HEADER_DEADLINE - 3 * int(HEADER_DEADLINE / 3))  # 10 s after the first byte
    status, body = answer_of(transport)
    assert status.startswith(b"HTTP/1.1 408 ")
    assert body == {"error": "request_timeout",
                    "message": "the request's headers did not arrive within 10 s"}
    assert transport.disconnecting
    assert site.answered[("other", "unmatched", 408)] == 1


def test_a_body_trickling_in_gets_408_at_its_deadline(connect):
    clock, _, open_connection = connect
    channel, transport = open_connection()
    channel.dataReceived(b"POST /echo HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json"
                         b"\r\nContent-Length: 1000\r\n\r\n{")
    for _ in range(int(BODY_DEADLINE / 3) - 1):
        clock.advance(3)
        channel.dataReceived(b" ")
    assert transport.value() == b""
    clock.advance(3)
    status, body = answer_of(transport)
    assert status.startswith(b"HTTP/1.1 408 ") and "body" in body["message"]
    assert transport.disconnecting


def test_each_request_of_a_kept_alive_connection_has_its_own_clock(connect):
    clock, _, open_connection = connect
    channel, transport = open_connection()
    for _ in range(3):
        channel.dataReceived(b"GET /ping HTTP/1.1\r\nHost: gw\r\n\r\n")
        assert transport.value().startswith(b"HTTP/1.1 200")
        transport.clear()
        clock.advance(HEADER_DEADLINE + 1)  # idle between requests is not slowness
    assert not transport.disconnecting
    clock.advance(IDLE_TIMEOUT)  # but idle for long is closed, without an answer
    assert transport.disconnecting and transport.value() == b""


def test_a_request_being_answered_is_never_cut(connect):
    clock, _, open_connection = connect
    channel, transport = open_connection()
    channel.dataReceived(b"GET /forever HTTP/1.1\r\nHost: gw\r\n\r\n")
    clock.advance(24 * 3600)
    assert transport.value() == b"" and not transport.disconnecting
    assert clock.getDelayedCalls() == []


@pytest.mark.parametrize("header", [b"Content-Length: abc", b"Content-Length: -5",
                                    b"Content-Length: 1, 2"])
def test_a_bad_content_length_is_a_json_400(connect, header):
    _, site, open_connection = connect
    channel, transport = open_connection()
    channel.dataReceived(b"POST /echo HTTP/1.1\r\nHost: gw\r\n" + header + b"\r\n\r\n")
    status, body = answer_of(transport)
    assert status == b"HTTP/1.1 400 Bad Request"
    assert body["error"] == "bad_request" and "Content-Length" in body["message"]
    assert transport.disconnecting


def test_a_doubled_slash_is_a_json_redirect_to_the_route(connect):
    _, _, open_connection = connect
    channel, transport = open_connection()
    channel.dataReceived(b"GET /api//hub//ping?x=1 HTTP/1.1\r\nHost: gw\r\n\r\n")
    head = transport.value().partition(b"\r\n\r\n")[0].lower()
    status, body = answer_of(transport)
    assert status.startswith(b"HTTP/1.1 308 ")
    assert body == {"error": "redirect", "message": "use /api/hub/ping",
                    "location": "/api/hub/ping?x=1"}
    assert b"\r\nlocation: /api/hub/ping?x=1" in head
    assert b"content-type: application/json" in head


def test_a_body_announced_far_over_the_cap_is_a_413_at_once(connect):
    _, _, open_connection = connect
    channel, transport = open_connection()
    channel.dataReceived(b"POST /echo HTTP/1.1\r\nHost: gw\r\n"
                         b"Content-Length: 99999999999999999999999\r\n\r\n{")
    status, body = answer_of(transport)
    assert status.startswith(b"HTTP/1.1 413 ") and body["error"] == "payload_too_large"
    assert transport.disconnecting
