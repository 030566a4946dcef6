"""A bounded send buffer per connection: the slow-consumer policy.

The outbox registers as the transport's push producer, so Twisted tells it when the
socket's own buffer is full (``pauseProducing``) and when it has drained. Frames
sent meanwhile wait here; past ``limit`` bytes the client is too slow to follow and
is closed with a clear reason (it resumes from its last offset), so one slow client
never makes the gateway's memory grow without limit nor slows the others.

What the connection writes around the queue (pongs, close frames, protocol replies)
counts too: while the socket is paused those bytes wait in the transport's buffer,
so a client that sends pings and never reads the answers meets the same limit.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Sequence

from autobahn.websocket.protocol import PreparedMessage
from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from n2gateway.downstream.close_codes import CLOSE_SLOW_CONSUMER

SLOW_CONSUMER_REASON = "slow consumer: reconnect and resume from your last offset"
DEFAULT_LIMIT = 1024 * 1024


@implementer(IPushProducer)
class Outbox:
    # One per connection: no instance dictionary, and no queue until one is needed.
    __slots__ = ("_send", "_close", "_limit", "_waiting", "_waiting_bytes",
                 "_written_while_paused", "_paused", "_writable", "closed")

    def __init__(self, send: Callable[[Sequence[PreparedMessage]], None],
                 close: Callable[[int, str], None], limit: int = DEFAULT_LIMIT) -> None:
        #: Writes frames, in order, to the connection (together when it can).
        self._send = send
        self._close = close
        self._limit = limit
        self._waiting: deque[PreparedMessage] | None = None
        self._waiting_bytes = 0
        #: Bytes written around the queue since the transport paused: they wait in
        #: its buffer, which Twisted drains completely before it resumes us.
        self._written_while_paused = 0
        self._paused = False
        self._writable: list[defer.Deferred] | None = None
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
        if self._waiting is None:
            self._waiting = deque()
        self._waiting.extend(frames)
        self._waiting_bytes += sum(len(frame.payloadHybi) for frame in frames)
        self._check_limit()

    def wrote(self, size: int) -> None:
        """``size`` bytes went to the transport without passing through the queue."""
        if self._paused and not self.closed:
            self._written_while_paused += size
            self._check_limit()

    def _check_limit(self) -> None:
        if self._waiting_bytes + self._written_while_paused > self._limit:
            self.close_slow()

    def writable(self) -> defer.Deferred:
        """Fires once frames flow straight to the socket again (or the outbox closed):
        replays pull from the journal at this pace instead of overflowing the limit."""
        if self.closed or (not self._paused and not self._waiting):
            return defer.succeed(None)
        waiter: defer.Deferred = defer.Deferred()
        if self._writable is None:
            self._writable = []
        self._writable.append(waiter)
        return waiter

    def _wake_writers(self) -> None:
        waiters, self._writable = self._writable, None
        for waiter in waiters or ():
            waiter.callback(None)

    def close_slow(self) -> None:
        self.close(CLOSE_SLOW_CONSUMER, SLOW_CONSUMER_REASON)

    def close(self, code: int, reason: str) -> None:
        if not self.closed:
            self._drop()
            self._close(code, reason)

    def _drop(self) -> None:
        self.closed = True
        self._waiting = None
        self._waiting_bytes = 0
        self._written_while_paused = 0
        self._wake_writers()

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._written_while_paused = 0
        while self._waiting and not self._paused:
            frame = self._waiting.popleft()
            self._waiting_bytes -= len(frame.payloadHybi)
            self._send((frame,))
        if not self._paused:
            self._waiting = None
            self._wake_writers()

    def stopProducing(self) -> None:
        self._drop()
