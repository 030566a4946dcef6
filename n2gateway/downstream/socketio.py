"""The Socket.IO v4 endpoint at ``/socket.io/``: the HTTP gate in front of the
Engine.IO transports.

It answers what does not deserve a transport with a clear JSON error (another
Engine.IO version, an unknown transport, a disallowed browser origin), applies
CORS to the long-polling requests, and hands the rest to the WebSocket transport
(`engineio_websocket`) or the long-polling one (`engineio_polling`), both serving
the same Socket.IO namespace layer (`socketio_namespace`).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from autobahn.twisted.resource import WebSocketResource
from twisted.internet import defer
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from n2gateway.db import DatabaseUnavailable
from n2gateway.downstream.engineio_polling import PollingError, PollingTransport
from n2gateway.downstream.engineio_websocket import MAX_PAYLOAD, SocketIoFactory
from n2gateway.downstream.write_now import flush_now
from n2gateway.http.routes import write_answer, write_json

#: What Engine.IO 3 clients (socket.io-client 2.x) are told (see `_eio3_refusal`).
EIO3_REASON = ("this server speaks Engine.IO 4 only: upgrade to socket.io-client 3 or"
               " later (EIO=4)")


class SocketIoResource(Resource):
    isLeaf = True
    log = Logger()

    def __init__(self, factory: SocketIoFactory, polling: PollingTransport,
                 cors_origins: tuple[str, ...]) -> None:
        super().__init__()
        self._factory = factory
        self._polling = polling
        self._origins = frozenset(cors_origins)

    def render(self, request) -> Any:
        eio = request.args.get(b"EIO", [b""])[0]
        transport = request.args.get(b"transport", [b""])[0]
        if eio == b"3":
            return _eio3_refusal(request)
        if eio != b"4":
            return _error(request, 400, "unsupported_protocol",
                          "only Engine.IO 4 (socket.io-client 3 or later) is supported: EIO=4")
        if transport == b"websocket":
            if (request.getHeader("upgrade") or "").lower() != "websocket":
                return _error(request, 400, "websocket_upgrade_required",
                              "transport=websocket needs a WebSocket upgrade request")
            return WebSocketResource(self._factory).render(request)
        if transport != b"polling":
            return _error(request, 400, "unknown_transport",
                          "transport must be polling or websocket")
        refused = self._cors(request)
        if refused is not None:
            return refused
        if request.method == b"OPTIONS":
            return self._preflight(request)
        sid = request.args.get(b"sid", [b""])[0].decode("ascii", "replace")
        if request.method == b"GET":
            work = self._polling.poll(sid, request.notifyFinish()) if sid else \
                self._polling.handshake()
        elif request.method == b"POST" and sid:
            work = self._post(sid, request)
        else:
            return _error(request, 400, "bad_request",
                          "long-polling takes GET (with or without sid) and POST with sid")
        d = defer.Deferred.fromCoroutine(work)
        d.addCallbacks(lambda text: self._write(request, text), lambda f: self._failed(request, f))
        return NOT_DONE_YET

    async def _post(self, sid: str, request) -> str:
        # Past the site's own cap nothing of the body was kept: it is just too large.
        too_large = getattr(request, "body_too_large", False)
        await self._polling.post(sid, None if too_large else request.content.read(MAX_PAYLOAD + 1))
        return "ok"

    def _write(self, request, text: str) -> None:
        if request.finished or request._disconnected:
            return
        body = text.encode("utf-8")
        request.setHeader("content-type", "text/plain; charset=UTF-8")
        request.setHeader("cache-control", "no-store")
        # A length, not chunks: the answer leaves in one send, at once.
        request.setHeader("content-length", b"%d" % len(body))
        transport = request.channel.transport
        request.write(body)
        request.finish()
        flush_now(transport)

    def _failed(self, request, failure) -> None:
        if request.finished or request._disconnected:
            return
        if failure.check(PollingError):
            e = failure.value
            body = _error(request, e.status, e.code, str(e))
        elif failure.check(DatabaseUnavailable):
            body = _error(request, 503, "unavailable",
                          "the database is unavailable; try again shortly")
        else:
            self.log.failure("Socket.IO long-polling request failed", failure)
            body = _error(request, 500, "internal_error", "internal error")
        request.write(body)
        request.finish()

    def _cors(self, request) -> bytes | None:
        """None when the request may proceed; the CORS headers are set then."""
        origin = request.getHeader("origin")
        if origin is None:
            return None  # not a browser's cross-origin request
        if origin in self._origins:
            request.setHeader("access-control-allow-origin", origin)
            request.setHeader("vary", "Origin")
            return None
        if urlsplit(origin).netloc == (request.getHeader("host") or ""):
            return None
        return _error(request, 403, "origin_not_allowed",
                      f"origin {origin[:100]!r} may not use this endpoint; the gateway's"
                      " operator can allow it with --cors-origins")

    def _preflight(self, request) -> bytes:
        request.setResponseCode(204)
        request.setHeader("access-control-allow-methods", "GET, POST")
        request.setHeader("access-control-allow-headers",
                          request.getHeader("access-control-request-headers") or "content-type")
        request.setHeader("access-control-max-age", "86400")
        return b""


def _error(request, status: int, code: str, message: str) -> bytes:
    return write_json(request, status, {"error": code, "message": message})


def _eio3_refusal(request) -> bytes:
    """What an Engine.IO 3 client (socket.io-client 2.x) can show.

    For any answer but a 200, 2.x reports only "xhr poll error" and retries forever.
    Its long-polling handshake therefore gets an Engine.IO 3 payload it understands:
    an OPEN, then a Socket.IO ERROR for the main namespace, which 2.x hands to the
    application's ``error`` handler with the reason; its next poll gets a CLOSE.
    A WebSocket (which 2.x opens only when told to) gets a 400 JSON error.
    """
    transport = request.args.get(b"transport", [b""])[0]
    if transport != b"polling":
        return _error(request, 400, "unsupported_protocol", EIO3_REASON)
    if request.args.get(b"sid"):
        packets = ["1"]
    else:
        packets = ["0" + json.dumps({"sid": "unsupported-engine-io-3", "upgrades": [],
                                     "pingInterval": 25000, "pingTimeout": 20000}),
                   "44" + json.dumps(EIO3_REASON)]
    # Engine.IO 3's text payload: <length>:<packet> for each packet.
    return write_answer(request, 200, "text/plain; charset=UTF-8",
                        "".join(f"{len(p)}:{p}" for p in packets).encode())
