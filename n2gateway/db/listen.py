"""One LISTEN connection for the whole gateway, kept alive and re-LISTENed after loss.

Every subscriber (the hub's journal doorbell, the chat sync, ...) shares it. A NOTIFY
is a doorbell: it may be missed while the connection is down, so each subscriber
keeps its progress in the database and catches up in ``on_recovered``, which is
called every time LISTEN on its channel takes effect: the first time, and after
every reconnection. After ``on_recovered`` a subscriber either gets every NOTIFY on
its channel or another ``on_recovered``.

A dead connection is noticed two ways: the socket closing (the server ended the
backend, the database restarted) and a cheap keepalive query that must answer in
time (a silently dead network path never closes the socket).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger

from n2gateway.db.errors import describe_error
from n2gateway.db.pool import Database, retry_delay
from n2gateway.pause import Pause

KEEPALIVE_INTERVAL = 10.0
# Named, so that pg_stat_activity shows what the LISTEN connection last did.
KEEPALIVE = "SELECT 1 -- n2gateway listener keepalive"
KEEPALIVE_TIMEOUT = 5.0


def backoff(attempt: int) -> float:
    """Seconds before reconnection attempt ``attempt`` + 1 (0-based), with jitter so
    that gateways sharing a database do not reconnect in lockstep."""
    return retry_delay(attempt) * random.uniform(0.8, 1.2)


def quote_channel(channel: str) -> str:
    return '"' + channel.replace('"', '""') + '"'


@dataclass(frozen=True, eq=False)
class Subscription:
    channel: str
    on_notify: Callable[[str], None]
    on_recovered: Callable[[], None] | None


class Listener(service.Service):
    log = Logger()

    def __init__(self, db: Database, reactor: Any, *, keepalive: float = KEEPALIVE_INTERVAL,
                 keepalive_timeout: float = KEEPALIVE_TIMEOUT,
                 backoff: Callable[[int], float] = backoff) -> None:
        self._db = db
        self._reactor = reactor
        self._keepalive = keepalive
        self._keepalive_timeout = keepalive_timeout
        self._backoff = backoff
        self._subscriptions: list[Subscription] = []
        # Made while connected and not yet told LISTEN is in effect for them.
        self._new: list[Subscription] = []
        #: True while LISTEN is in effect on a live connection.
        self.connected = False
        #: Successful reconnections since start (the first connection is not one).
        self.reconnects = 0
        self._connection: Any = None
        self._listening: set[str] = set()
        self._lost: defer.Deferred | None = None
        self._pause = Pause(reactor)
        self._loop: defer.Deferred | None = None
        self._timers: dict[str, Any] = {}

    # -- public API -------------------------------------------------------------------

    def subscribe(self, channel: str, on_notify: Callable[[str], None],
                  on_recovered: Callable[[], None] | None = None) -> Callable[[], None]:
        """Call ``on_notify(payload)`` for each NOTIFY on ``channel``; returns a function
        that unsubscribes. Callbacks must not block; their exceptions are logged."""
        subscription = Subscription(channel, on_notify, on_recovered)
        self._subscriptions.append(subscription)
        if self.connected:
            self._new.append(subscription)
            if "listen" not in self._timers:
                # Subscriptions made in one reactor turn share one LISTEN round trip.
                self._timers["listen"] = self._reactor.callLater(0, self._listen_new)
        return lambda: self._subscriptions.remove(subscription)

    # -- lifecycle --------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._loop = defer.Deferred.fromCoroutine(self._run())
        self._loop.addErrback(lambda f: self.log.failure("LISTEN loop failed", f))

    def stopService(self) -> defer.Deferred:
        super().stopService()
        self._connection_lost("the gateway is stopping")
        self._pause.cancel()
        return self._loop if self._loop is not None else defer.succeed(None)

    # -- the connection loop ----------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        ever_connected = False
        while self.running:
            try:
                await self._open()
            except defer.CancelledError:
                break
            except Exception as e:
                self._close()
                if not self.running:
                    break
                delay = self._backoff(attempt)
                attempt += 1
                self.log.warn("LISTEN connection failed ({reason}); retrying in {delay:.1f} s",
                              reason=describe_error(e), delay=delay)
                if not await self._pause(delay):
                    break
                continue
            attempt = 0
            if ever_connected:
                self.reconnects += 1
                self.log.info("LISTEN connection recovered on {channels}",
                              channels=", ".join(sorted(self._listening)))
            ever_connected = True
            self.connected = True
            self._schedule_keepalive()
            self._recovered(self._subscriptions)
            why = await self._lost
            self.connected = False
            self._close()
            if self.running:
                self.log.warn("LISTEN connection lost ({reason}); reconnecting", reason=why)

    async def _open(self) -> None:
        self._lost = lost = defer.Deferred()
        self._listening = set()
        self._connection = await self._db.connect(
            on_lost=lambda e: self._connection_lost(describe_error(e), lost),
            on_notify=self._dispatch)
        while self.running and not lost.called:
            new = {s.channel for s in self._subscriptions} - self._listening
            if not new:
                break
            for channel in sorted(new):
                await self._connection.runOperation("LISTEN " + quote_channel(channel))
                self._listening.add(channel)
        if lost.called:
            raise ConnectionError(lost.result)
        if not self.running:
            raise defer.CancelledError()

    def _close(self) -> None:
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        self._timers.clear()
        self._new = []  # the next connection tells every subscriber
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def _connection_lost(self, why: str, lost: defer.Deferred | None = None) -> None:
        lost = lost or self._lost
        # The socket closing, a failed keepalive and stopping may all report one loss.
        if lost is not None and not lost.called and lost is self._lost:
            lost.callback(why)

    # -- keepalive --------------------------------------------------------------------

    def _schedule_keepalive(self) -> None:
        self._timers["keepalive"] = self._reactor.callLater(self._keepalive, self._ping)

    def _ping(self) -> None:
        lost = self._lost
        self._timers["keepalive timeout"] = self._reactor.callLater(
            self._keepalive_timeout, self._connection_lost,
            f"no answer to a keepalive in {self._keepalive_timeout:g} s", lost)
        d = self._connection.runQuery(KEEPALIVE)
        d.addCallbacks(lambda _: self._pong(lost),
                       lambda f: self._connection_lost(describe_error(f.value), lost))

    def _pong(self, lost: defer.Deferred) -> None:
        if lost is not self._lost or lost.called:
            return
        timeout = self._timers.pop("keepalive timeout", None)
        if timeout is not None and timeout.active():
            timeout.cancel()
        self._schedule_keepalive()

    # -- subscribers ------------------------------------------------------------------

    def _listen_new(self) -> None:
        del self._timers["listen"]
        new, self._new = self._new, []
        lost = self._lost

        async def listen() -> None:
            # A channel another subscriber listens on already needs no LISTEN, but its
            # new subscriber still needs its on_recovered to catch up.
            for channel in sorted({s.channel for s in new} - self._listening):
                await self._connection.runOperation("LISTEN " + quote_channel(channel))
                self._listening.add(channel)
            self._recovered([s for s in new if s in self._subscriptions])

        def failed(f) -> None:
            # The connection died under us: reconnecting LISTENs every channel and
            # calls every ``on_recovered``, these new ones included.
            self._connection_lost(describe_error(f.value), lost)

        defer.Deferred.fromCoroutine(listen()).addErrback(failed)

    def _recovered(self, subscriptions: list[Subscription]) -> None:
        for subscription in list(subscriptions):
            if subscription.on_recovered is not None:
                try:
                    subscription.on_recovered()
                except Exception:
                    self.log.failure("on_recovered for {channel} failed",
                                     channel=subscription.channel)

    def _dispatch(self, channel: str, payload: str) -> None:
        for subscription in list(self._subscriptions):
            if subscription.channel != channel:
                continue
            try:
                subscription.on_notify(payload)
            except Exception:
                self.log.failure("NOTIFY handler for {channel} failed", channel=channel)
