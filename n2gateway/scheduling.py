"""The gateway's scheduling toolkit: a periodic loop, a coalescer, and batched calls.

Every service that polls, and every piece of work that must not run twice at once,
uses these three instead of its own flags and timers:

* `Periodic`: work every ``interval`` seconds while the service runs;
* `Coalescer`: work on request, one run at a time; requests made while it runs ask
  for exactly one more run;
* `Coalesced`: calls with an item and a result each, gathered into one run (one
  statement) while the previous one is in flight.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Awaitable, Callable, Generic, Sequence, TypeVar

from twisted.application import service
from twisted.internet import defer, task
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

Item = TypeVar("Item")

#: Items of one `Coalesced` run at most: bounds its size and its parameters' memory.
MAX_BATCH = 500


class Periodic(service.Service):
    """Calls ``work`` (plain or ``async``) every ``interval`` seconds while running;
    with ``now``, also at start.

    Our own small `TimerService`: its first call is at start, and a failed call ends
    its loop; here an error is logged (``what`` names the work) and the loop goes on,
    and stopping does not wait for a call under way (a query to a vanished database
    could hold the gateway's stop for minutes)."""

    log = Logger()

    def __init__(self, interval: float, work: Callable[[], Awaitable[Any] | None],
                 clock: IReactorTime, *, what: str, now: bool = False) -> None:
        self.interval = interval
        self._work = work
        self._what = what
        self._now = now
        self._loop = task.LoopingCall(self._call)
        self._loop.clock = clock

    def startService(self) -> None:
        super().startService()
        self._loop.start(self.interval, now=self._now)

    def stopService(self) -> None:
        super().stopService()
        if self._loop.running:
            self._loop.stop()

    def _call(self) -> defer.Deferred | None:
        # An error, raised or from the awaitable, is logged here: the loop never sees it.
        try:
            result = self._work()
        except Exception:
            self.log.failure("{what} failed", what=self._what)
            return None
        if not inspect.isawaitable(result):
            return None
        d = defer.ensureDeferred(result)
        d.addErrback(lambda f: self.log.failure("{what} failed", f, what=self._what))
        return d


class Coalescer:
    """Runs ``work`` on request, one run at a time: every request made while a run is
    under way is served by exactly one more run after it.

    ``work`` may return a delay: the next run then waits that long (a retry after a
    failure), whatever was requested meanwhile. An error from ``work`` is logged
    (``what`` names it) and ends that run only. After ``stop`` requests are ignored
    until ``start``. ``clock`` is needed for delayed requests only."""

    log = Logger()

    def __init__(self, work: Callable[[], Awaitable[float | None]],
                 clock: IReactorTime | None = None, *, what: str) -> None:
        self._work = work
        self._clock = clock
        self._what = what
        self._stopped = False
        self._running = False
        self._done: defer.Deferred | None = None  # of the runs under way
        #: While running: when the next run is due (clock seconds, -inf: at once).
        self._again: float | None = None
        self._due: IDelayedCall | None = None

    def request(self, delay: float | None = None) -> None:
        """Run soon: at once without ``delay``, else after ``delay`` seconds (0: at the
        end of this reactor turn, so that the turn's other requests share the run). A
        request sooner than the one waiting moves it up."""
        if self._stopped:
            return
        if self._running:
            due = -math.inf if delay is None else self._clock.seconds() + delay
            self._again = due if self._again is None else min(self._again, due)
        elif delay is None:
            self._cancel_due()
            self._start()
        elif self._due is None:
            self._due = self._clock.callLater(delay, self._start)
        elif self._due.getTime() > self._clock.seconds() + delay:
            self._due.reset(delay)

    def start(self) -> None:
        """Take requests again after ``stop``."""
        self._stopped = False

    def stop(self) -> defer.Deferred:
        """Ignore requests from now on and drop a waiting run; fires once the run under
        way (if any) has ended."""
        self._stopped = True
        self._cancel_due()
        ended: defer.Deferred = defer.Deferred()
        if self._running and self._done is not None:
            self._done.addBoth(lambda result: (ended.callback(None), result)[1])
        else:
            ended.callback(None)
        return ended

    def _cancel_due(self) -> None:
        due, self._due = self._due, None
        if due is not None and due.active():
            due.cancel()

    def _start(self) -> None:
        self._due = None
        self._running = True
        self._done = defer.Deferred.fromCoroutine(self._runs())

    async def _runs(self) -> None:
        try:
            while True:
                self._again = None
                try:
                    retry = await self._work()
                except Exception:
                    self.log.failure("{what} failed", what=self._what)
                    retry = None
                if self._stopped:
                    return
                if retry is not None:
                    self._again = self._clock.seconds() + retry
                if self._again is None:
                    return
                wait = self._again - self._clock.seconds() if self._again > -math.inf else 0
                if wait > 0:
                    self._due = self._clock.callLater(wait, self._start)
                    return
        finally:
            self._running = False
            self._again = None


class Coalesced(Generic[Item]):
    """One run for many callers: calls made while one run is in flight go together in
    the next, so an idle gateway runs each call at once (no added latency) and a busy
    one runs one statement per round trip for all of them.

    ``run(items)`` returns one result per item, in order; an error it raises is every
    item's of that batch."""

    def __init__(self, run: Callable[[list[Item]], Awaitable[Sequence[Any]]]) -> None:
        self._run = run
        self._queue: list[tuple[Item, defer.Deferred]] = []
        self._runs = Coalescer(self._next_batch, what="a coalesced statement")

    async def __call__(self, item: Item) -> Any:
        done: defer.Deferred = defer.Deferred()
        self._queue.append((item, done))
        self._runs.request()
        return await done

    async def _next_batch(self) -> None:
        batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
        if self._queue:
            self._runs.request()
        try:
            results = await self._run([item for item, _ in batch])
        except Exception as e:
            for _, done in batch:
                done.errback(e)
            return
        for (_, done), result in zip(batch, results):
            done.callback(result)

