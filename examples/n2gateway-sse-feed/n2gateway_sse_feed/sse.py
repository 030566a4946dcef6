"""
A Server-Sent Events reader as an n2gateway :class:`Source`: one streaming GET,
reconnected with backoff (resuming with ``Last-Event-ID``) until stopped; a 401
or 403 means the token is no good, and it stays closed until started again.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers

from n2gateway.upstream.backoff import BackoffPolicy
from n2gateway.upstream.status import UpstreamStatus

# Bounded memory: a line (or an event's data) longer than this drops the stream.
MAX_EVENT_BYTES = 1 << 20


class _EventStream(Protocol):
    """Parses the text/event-stream body into (id, event, data) blocks."""

    def __init__(self, source: SseSource) -> None:
        self._source = source
        self._buffer = b""
        self._fields: dict[str, Any] = {"data": []}
        self.gone: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self._line(line.rstrip(b"\r").decode("utf-8", "replace"))
        if len(self._buffer) + sum(map(len, self._fields["data"])) > MAX_EVENT_BYTES:
            self._source.status.error("an event too large")
            self.transport.stopProducing()

    def _line(self, line: str) -> None:
        if not line:
            fields, self._fields = self._fields, {"data": []}
            if fields["data"]:
                self._source.received(fields.get("id"), fields.get("event", "message"),
                                      "\n".join(fields["data"]))
            return
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            self._fields["data"].append(value)
        elif name in ("event", "id"):
            self._fields[name] = value
        # A line starting with ":" is a comment (a keep-alive); other fields are ignored.

    def connectionLost(self, reason: Failure = None) -> None:
        self._source.stream_ended()
        self.gone.callback(None)

    def close(self) -> Deferred[None]:
        if self.transport is not None and not self.gone.called:
            self.transport.stopProducing()
        return self.gone


class SseSource:
    log = Logger()

    def __init__(self, url: str, headers: dict[str, str], *, reactor: Any,
                 status: UpstreamStatus, backoff: BackoffPolicy,
                 on_event: Callable[[str, Any], None]) -> None:
        self.status = status
        self.last_event_id: str | None = None
        self._url = url.encode()
        self._headers = headers
        self._reactor = reactor
        self._backoff = backoff
        self._on_event = on_event
        self._agent = Agent(reactor)
        self._running = False
        self._request: Deferred[Any] | None = None
        self._stream: _EventStream | None = None
        self._retry: Any = None

    # Source

    def start(self) -> None:
        self._running = True
        self._connect()

    async def stop(self) -> None:
        self._running = False
        await self._close()

    def login_needed(self, reason: str) -> None:
        self.status.login_needed(reason)
        self.log.warn("feed: credentials refused ({reason}); not reconnecting until started "
                      "with new ones", reason=self.status.last_error)
        self._running = False
        Deferred.fromCoroutine(self._close())

    # The stream

    def received(self, event_id: str | None, event: str, data: str) -> None:
        if event_id is not None:
            self.last_event_id = event_id
        try:
            payload = json.loads(data)
        except (ValueError, RecursionError):
            payload = data  # not JSON: relayed as the text it is
        self._on_event(event, payload)

    def stream_ended(self) -> None:
        self._stream = None
        if self._running:
            self.status.disconnected("the stream ended")
            self._schedule()

    # Internals

    def _connect(self) -> None:
        self._retry = None
        headers = Headers({"Accept": ["text/event-stream"]})
        for name, value in self._headers.items():
            headers.setRawHeaders(name, [value])
        if self.last_event_id is not None:
            headers.setRawHeaders("Last-Event-ID", [self.last_event_id])
        self._request = self._agent.request(b"GET", self._url, headers)
        self._request.addCallbacks(self._answered, self._failed)

    def _answered(self, response: Any) -> None:
        self._request = None
        if response.code in (401, 403):
            readBody(response).addErrback(lambda _: None)
            self.login_needed(f"HTTP {response.code}")
        elif response.code != 200:
            readBody(response).addErrback(lambda _: None)
            self.status.disconnected(f"HTTP {response.code}")
            self._schedule()
        elif self._running:
            self.log.info("feed: stream open")
            self.status.session_established()
            self._stream = _EventStream(self)
            response.deliverBody(self._stream)

    def _failed(self, failure: Failure) -> None:
        self._request = None
        if self._running:
            self.status.disconnected(failure.type.__name__)
            self._schedule()

    def _schedule(self) -> None:
        attempt = self.status.count_attempt()
        delay = self._backoff(attempt - 1)
        self.log.warn("feed: upstream down ({why}); reconnecting in {delay:.1f} s, attempt "
                      "{attempt}", why=self.status.last_error, delay=delay, attempt=attempt)
        self._retry = self._reactor.callLater(delay, self._connect)

    async def _close(self) -> None:
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._request is not None:
            self._request.cancel()
        stream, self._stream = self._stream, None
        await (stream.close() if stream is not None else succeed(None))
