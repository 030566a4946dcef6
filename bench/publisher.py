"""A bench-only plugin (``--plugin bench.publisher``): publishes at a set rate through
``context.publish``, as an in-process source would, stamping each payload with the
wall-clock time of the publish call so clients can measure publish-to-receive.

``POST /api/bench/run {rate, seconds, rooms, step?}`` publishes ``bench`` events
``{t, i, step}`` and answers once every one of them is durable (or failed), so the
answer comes from the gateway process that ran it even when several share a port.
The answer also says how the garbage collector paused this process meanwhile: the
collections of each generation and the longest pause, in ms (``gc.callbacks``).
``GET /api/bench/gc`` tells what a full collection would walk: the objects of each
generation, the frozen ones, and the most common types of the oldest generation."""

from __future__ import annotations

import gc
import time
from collections import Counter

from twisted.internet import defer, task

from n2gateway.hookspecs import hookimpl

TICK = 0.01
RUN_BODY = {
    "type": "object", "required": ["rate", "seconds", "rooms"], "additionalProperties": False,
    "properties": {"rate": {"type": "number", "exclusiveMinimum": 0},
                   "seconds": {"type": "number", "minimum": 0.1},
                   "rooms": {"type": "array", "minItems": 1, "items": {"type": "string"}},
                   "step": {"type": "integer", "minimum": 0}},
}


class Pauses:
    """The collector's pauses while it is installed in ``gc.callbacks``."""

    def __init__(self) -> None:
        self.collections = [0, 0, 0]
        self.longest_ms = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        self.collections[info["generation"]] += 1
        self.longest_ms = max(self.longest_ms, (time.perf_counter() - self._started) * 1000)


class Run:
    def __init__(self, context, rate: float, seconds: float, rooms: list[str], step: int) -> None:
        self.context, self.rate, self.rooms, self.step = context, rate, rooms, step
        self.total = max(1, int(rate * seconds))
        self.published = self.durable = self.failed = 0
        self.finished: defer.Deferred = defer.Deferred()
        self.started = context.reactor.seconds()
        self.pauses = Pauses()
        gc.callbacks.append(self.pauses)
        self.loop = task.LoopingCall(self.tick)
        self.loop.clock = context.reactor
        self.loop.start(TICK)

    def tick(self) -> None:
        due = min(self.total, int((self.context.reactor.seconds() - self.started) * self.rate) + 1)
        while self.published < due:
            room = self.rooms[self.published % len(self.rooms)]
            d = self.context.publish([room], "bench", {"t": time.time() * 1000,
                                                       "i": self.published, "step": self.step})
            d.addCallbacks(self._durable, self._failed)
            self.published += 1
        if self.published >= self.total:
            self.loop.stop()

    def _durable(self, _offset) -> None:
        self.durable += 1
        self._settled()

    def _failed(self, _failure) -> None:
        self.failed += 1
        self._settled()

    def _settled(self) -> None:
        if self.durable + self.failed == self.total:
            gc.callbacks.remove(self.pauses)
            self.finished.callback(self.state())

    def state(self) -> dict:
        return {"published": self.published, "durable": self.durable, "failed": self.failed,
                "total": self.total, "gc": {"collections": self.pauses.collections,
                                            "longest_ms": round(self.pauses.longest_ms, 1)}}


@hookimpl
def n2gateway_routes(context, routes) -> None:
    async def run(request) -> dict:
        body = request.body
        return await Run(context, body["rate"], body["seconds"], body["rooms"],
                         body.get("step", 0)).finished

    async def collector(request) -> dict:
        oldest = gc.get_objects(generation=2)
        return {"thresholds": gc.get_threshold(), "counts": gc.get_count(),
                "generations": [len(gc.get_objects(generation=g)) for g in (0, 1)] + [len(oldest)],
                "frozen": gc.get_freeze_count(),
                "oldest_types": Counter(type(o).__qualname__ for o in oldest).most_common(25)}

    routes.add("POST", "/api/bench/run", run, body=RUN_BODY,
               summary="bench: publish at a rate, answer when every event is durable")
    routes.add("GET", "/api/bench/gc", collector,
               summary="bench: the collector's generations and the oldest one's types")
