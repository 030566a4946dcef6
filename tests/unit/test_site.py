"""The body cap of the gateway's Site and its direct (unrouted) prefixes, over a real
listening port: StubTreq brings its own Site, so it cannot see them."""

from __future__ import annotations

import json

import pytest
import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.internet.defer import succeed
from twisted.logger import capturedLogs
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from twisted.web.resource import Resource
from zope.interface import implementer

from n2gateway.http.routes import Routes
from n2gateway.http.site import MAX_BODY, GatewaySite

SCHEMA = {"type": "object", "properties": {"blob": {"type": "string"}}}


@pytest.fixture
def served():
    routes = Routes()
    seen = []

    async def echo(request):
        seen.append(request.raw.getHeader("content-length"))
        return {"size": len(request.body["blob"])}

    routes.add("POST", "/echo", echo, body=SCHEMA)
    port = reactor.listenTCP(0, GatewaySite(routes.app.resource()), interface="127.0.0.1")
    yield f"http://127.0.0.1:{port.getHost().port}", seen
    port.stopListening()


def body_of(size: int) -> bytes:
    """A JSON body of exactly ``size`` bytes."""
    frame = b'{"blob": ""}'
    return frame[:-2] + b"x" * (size - len(frame)) + frame[-2:]


@implementer(IBodyProducer)
class ChunkedOnly:
    """A body producer of unknown length: the Agent sends it chunked, no Content-Length."""

    length = UNKNOWN_LENGTH

    def __init__(self, data: bytes, piece: int = 64 * 1024) -> None:
        self.data, self.piece = data, piece

    def startProducing(self, consumer):
        for start in range(0, len(self.data), self.piece):
            consumer.write(self.data[start:start + self.piece])
        return succeed(None)

    def stopProducing(self):
        pass

    def pauseProducing(self):
        pass

    def resumeProducing(self):
        pass


async def post(url: str, body) -> tuple[int, dict]:
    response = await treq.post(url + "/echo", data=body,
                               headers={"content-type": "application/json"})
    return response.code, json.loads(await response.content())


@pytest_twisted.ensureDeferred
async def test_a_body_at_the_cap_is_accepted(served):
    url, seen = served
    code, answer = await post(url, body_of(MAX_BODY))
    assert code == 200 and answer["size"] == MAX_BODY - len(b'{"blob": ""}')


@pytest_twisted.ensureDeferred
async def test_a_body_over_the_cap_is_413_and_never_reaches_the_handler(served):
    url, seen = served
    code, answer = await post(url, body_of(MAX_BODY + 1))
    assert (code, answer["error"]) == (413, "payload_too_large")
    assert str(MAX_BODY) in answer["message"]
    assert seen == []


@pytest_twisted.ensureDeferred
async def test_a_chunked_body_over_the_cap_is_413(served):
    url, seen = served
    code, answer = await post(url, ChunkedOnly(body_of(2 * MAX_BODY)))
    assert (code, answer["error"]) == (413, "payload_too_large")
    assert seen == []


@pytest_twisted.ensureDeferred
async def test_a_small_chunked_body_is_accepted(served):
    url, seen = served
    code, answer = await post(url, ChunkedOnly(body_of(200_000), piece=1000))
    assert code == 200 and answer["size"] == 200_000 - len(b'{"blob": ""}')
    assert seen == [None]  # it really came without a Content-Length


class Direct(Resource):
    """What the Socket.IO endpoint is to the site: a leaf with its own query args."""

    isLeaf = True

    def render_GET(self, request) -> bytes:
        return b"direct " + request.args.get(b"sid", [b""])[0]


@pytest_twisted.ensureDeferred
async def test_a_direct_prefix_is_served_without_routing_counted_and_not_access_logged():
    routes = Routes()

    async def hello(request):
        return {"hello": True}

    routes.add("GET", "/hello", hello)
    site = GatewaySite(routes.app.resource(), direct={"/socket.io/": Direct()})
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    url = f"http://127.0.0.1:{port.getHost().port}"
    try:
        with capturedLogs() as events:
            polled = await treq.get(url + "/socket.io/?EIO=4&transport=polling&sid=s1")
            assert (polled.code, await polled.content()) == (200, b"direct s1")
            routed = await treq.get(url + "/hello")
            assert json.loads(await routed.content()) == {"hello": True}
            missing = await treq.get(url + "/socket.iox")
            assert missing.code == 404
    finally:
        await port.stopListening()
    assert site.answered[("GET", "/socket.io/", 200)] == 1
    assert site.answered[("GET", "/hello", 200)] == 1
    access = [e for e in events if e.get("log_namespace") == "n2gateway.http.access"]
    assert [e["path"] for e in access] == ["/hello", "/socket.iox"]


class Args(Resource):
    isLeaf = True

    def render_POST(self, request) -> bytes:
        return json.dumps({k.decode(): [v.decode() for v in vs]
                           for k, vs in request.args.items()}).encode()


@pytest_twisted.ensureDeferred
async def test_a_form_posted_in_the_body_is_not_taken_for_query_parameters():
    port = reactor.listenTCP(0, GatewaySite(Args()), interface="127.0.0.1")
    try:
        answer = await treq.post(
            f"http://127.0.0.1:{port.getHost().port}/socket.io/?EIO=4&sid=s1", data=b"sid=s2",
            headers={"content-type": "application/x-www-form-urlencoded"})
        assert json.loads(await answer.content()) == {"EIO": ["4"], "sid": ["s1"]}
    finally:
        await port.stopListening()
