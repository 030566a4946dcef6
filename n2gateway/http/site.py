"""The Twisted ``Site`` on the gateway's one port, with a cap on request bodies.

Twisted buffers a whole body before routing, so the cap is enforced while it
arrives: past the limit the rest is discarded (memory stays bounded) and the route
answers 413.
"""

from __future__ import annotations

from collections import Counter
from io import BytesIO

from twisted.logger import Logger
from twisted.web import server

access = Logger(namespace="n2gateway.http.access")

MAX_BODY = 1024 * 1024
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


class GatewaySite(server.Site):
    requestFactory = CappedRequest

    def __init__(self, resource, max_body: int = MAX_BODY, **kwargs) -> None:
        super().__init__(resource, **kwargs)
        self.max_body = max_body
        self.noisy = False
        #: Answers by (method, route template, status), read by the metrics collector.
        self.answered: Counter[tuple[str, str, int]] = Counter()

    def log(self, request) -> None:
        method = request.method.decode("ascii", "replace")
        template = getattr(request, "route_template", "unmatched")
        self.answered[(method if method in METHODS else "other", template, request.code)] += 1
        # Not twisted.web's access log: that prints query strings, which carry
        # tokens (/ws?token=...). The path alone is enough to follow traffic.
        access.debug("{method} {path} {status}", method=request.method.decode(),
                     path=request.path.decode("utf-8", "replace"), status=request.code)
