"""The Twisted ``Site`` on the gateway's one port: a cap on request bodies, deadlines
for a request to arrive, and JSON for the answers Twisted would give in plain text.

Twisted buffers a whole body before routing, so the cap is enforced while it
arrives: past the limit the rest is discarded (memory stays bounded) and the route
answers 413.

Twisted's own idle timeout restarts with every byte, so a client sending a byte
every few seconds (slowloris) would hold its connection, and its buffers, forever.
Here a request's headers must all arrive within ``HEADER_DEADLINE`` seconds of its
first byte and its body within ``BODY_DEADLINE`` seconds of its headers, or the
client gets a 408 JSON answer and the connection is closed. A connection waiting for
its next request is closed after ``IDLE_TIMEOUT``. Once a request is being answered
no deadline runs: a WebSocket upgraded from it lives as long as it likes.
"""

from __future__ import annotations

import json
from collections import Counter
from io import BytesIO
from typing import Any

from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.web import http, server

from n2gateway.http.errors import HttpError

access = Logger(namespace="n2gateway.http.access")

MAX_BODY = 1024 * 1024
HEADER_DEADLINE = 10.0
BODY_DEADLINE = 30.0
IDLE_TIMEOUT = 75.0
# The request's method becomes a metric label: anything else counts as "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class CappedRequest(server.Request):
    body_too_large = False
    _received = 0

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > self.channel.site.max_body:
            self.body_too_large = True
            length = 0
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self.body_too_large:
            return
        self._received += len(data)
        if self._received > self.channel.site.max_body:
            self.body_too_large = True
            self.content.close()
            self.content = BytesIO()
            return
        super().handleContentChunk(data)


class DeadlineChannel(http.HTTPChannel):
    """An HTTP channel whose requests must arrive in bounded time (see the module)."""

    _deadline: IDelayedCall | None = None
    _waiting_for = ""

    def dataReceived(self, data: bytes) -> None:
        # The first byte of a request starts its clock (not Twisted's, which each
        # byte resets). While a request is answered, bytes are the next one's, queued.
        if self._deadline is None and not self._handlingRequest:
            self._expect("headers", HEADER_DEADLINE)
        super().dataReceived(data)

    def allHeadersReceived(self) -> None:
        # A body a little over the cap is read (and thrown away) before the 413, so
        # that the client, still sending, is there to read it; one announced far too
        # big for that (Content-Length: 10^23) is answered at once.
        if self.length is not None and self.length > 16 * self.site.max_body:
            self.answer_and_close(413, f"request body over {self.site.max_body} bytes")
            return
        if self.length == 0:
            self._stop_clock()  # no body to wait for (a GET): no timer to set and cancel
        else:
            self._expect("body", BODY_DEADLINE)
        super().allHeadersReceived()

    def allContentReceived(self) -> None:
        self._stop_clock()
        super().allContentReceived()

    def connectionLost(self, reason: Any) -> None:
        self._stop_clock()
        super().connectionLost(reason)

    def _expect(self, what: str, seconds: float) -> None:
        self._stop_clock()
        self._waiting_for = what
        self._deadline = self.callLater(seconds, self._too_slow, seconds)

    def _stop_clock(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _too_slow(self, seconds: float) -> None:
        self._deadline = None
        self.answer_and_close(408, f"the request's {self._waiting_for} did not arrive "
                              f"within {seconds:g} s")

    def _respondToBadRequestAndDisconnect(self) -> None:
        # Twisted's is an empty plain-text 400 (bad request line, headers or length).
        self.answer_and_close(400, "malformed HTTP request (request line, headers, "
                              "Content-Length or chunked encoding)")

    def answer_and_close(self, status: int, message: str) -> None:
        """A JSON error written straight to the socket, for a request no route saw."""
        self._stop_clock()
        body = json.dumps(HttpError(status, message).body()).encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncache-control: no-store"
            b"\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s" % (
                status, http.RESPONSES.get(status, b"Error"), len(body), body))
        self.site.answered[("other", "unmatched", status)] += 1
        self.loseConnection()


def _deadline_channel(factory: http.HTTPFactory) -> http._GenericHTTPChannelProtocol:
    # As Twisted's own factory, with our channel inside.
    return http._GenericHTTPChannelProtocol(DeadlineChannel())


class GatewaySite(server.Site):
    """The gateway's site: Klein routes ``resource``; ``direct`` maps path prefixes
    to resources served without Klein's routing (``"/socket.io/"``: a long-polling
    client makes a request for each event it receives, and Klein's matching and
    request wrapping cost a tenth of a polling gateway's CPU). Their requests are
    counted in the metrics by prefix but not access-logged: twistd formats every
    event, debug ones too, and one line per poll would be most of the log."""

    requestFactory = CappedRequest
    protocol = _deadline_channel

    def __init__(self, resource, max_body: int = MAX_BODY,
                 direct: dict[str, Any] | None = None, **kwargs) -> None:
        kwargs.setdefault("timeout", IDLE_TIMEOUT)
        # No route takes an HTML form. Twisted would parse every POST's Content-Type
        # with the email package to look for one: a tenth of the CPU of a gateway
        # serving idle polling clients, whose pongs come as POSTs.
        kwargs.setdefault("parsePOSTFormSubmission", False)
        super().__init__(resource, **kwargs)
        self.max_body = max_body
        self.noisy = False
        self._direct = [(prefix.encode(), prefix, leaf) for prefix, leaf in (direct or {}).items()]
        #: Answers by (method, route template, status), read by the metrics collector.
        self.answered: Counter[tuple[str, str, int]] = Counter()

    def getResourceFor(self, request) -> Any:
        for raw, prefix, leaf in self._direct:
            if request.path.startswith(raw):
                request.site = self
                request.sitepath = []
                request.route_template = prefix
                request.quiet = True
                return leaf
        return super().getResourceFor(request)

    def log(self, request) -> None:
        method = request.method.decode("ascii", "replace")
        template = getattr(request, "route_template", "unmatched")
        self.answered[(method if method in METHODS else "other", template, request.code)] += 1
        if getattr(request, "quiet", False):
            return
        # Not twisted.web's access log: that prints query strings, which carry
        # tokens (/ws?token=...). The path alone is enough to follow traffic.
        access.debug("{method} {path} {status}", method=method,
                     path=request.path.decode("utf-8", "replace"), status=request.code)
