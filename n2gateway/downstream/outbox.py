"""A bounded send buffer per connection: the slow-consumer policy.

The outbox registers as the transport's push producer, so Twisted tells it when the
socket's own buffer is full (``pauseProducing``) and when it has drained. Frames
sent meanwhile wait here; past ``limit`` bytes the client is too slow to follow and
is closed with a clear reason (it resumes from its last offset), so one slow client
never makes the gateway's memory grow without limit nor slows the others.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Sequence

from autobahn.websocket.protocol import PreparedMessage
from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

SLOW_CONSUMER_CODE = 4008
SLOW_CONSUMER_REASON = "slow consumer: reconnect and resume from your last offset"
DEFAULT_LIMIT = 1024 * 1024


@implementer(IPushProducer)
class Outbox:
    def __init__(self, send: Callable[[Sequence[PreparedMessage]], None],
                 close: Callable[[int, str], None], limit: int = DEFAULT_LIMIT) -> None:
        #: Writes frames, in order, to the connection (together when it can).
        self._send = send
        self._close = close
        self._limit = limit
        self._waiting: deque[PreparedMessage] = deque()
        self._waiting_bytes = 0
        self._paused = False
        self._writable: list[defer.Deferred] = []
        self.closed = False

    def attach(self, transport) -> None:
        transport.registerProducer(self, True)

    def send_prepared(self, frame: PreparedMessage) -> None:
        self.send_batch((frame,))

    def send_batch(self, frames: Sequence[PreparedMessage]) -> None:
        if self.closed:
            return
        if not self._paused:
            self._send(frames)
            return
        self._waiting.extend(frames)
        self._waiting_bytes += sum(len(frame.payloadHybi) for frame in frames)
        if self._waiting_bytes > self._limit:
            self.close_slow()

    def writable(self) -> defer.Deferred:
        """Fires once frames flow straight to the socket again (or the outbox closed):
        replays pull from the journal at this pace instead of overflowing the limit."""
        if self.closed or (not self._paused and not self._waiting):
            return defer.succeed(None)
        waiter: defer.Deferred = defer.Deferred()
        self._writable.append(waiter)
        return waiter

    def _wake_writers(self) -> None:
        waiters, self._writable = self._writable, []
        for waiter in waiters:
            waiter.callback(None)

    def close_slow(self) -> None:
        self.close(SLOW_CONSUMER_CODE, SLOW_CONSUMER_REASON)

    def close(self, code: int, reason: str) -> None:
        if not self.closed:
            self._drop()
            self._close(code, reason)

    def _drop(self) -> None:
        self.closed = True
        self._waiting.clear()
        self._waiting_bytes = 0
        self._wake_writers()

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        while self._waiting and not self._paused:
            frame = self._waiting.popleft()
            self._waiting_bytes -= len(frame.payloadHybi)
            self._send((frame,))
        if not self._paused:
            self._wake_writers()

    def stopProducing(self) -> None:
        self._drop()
