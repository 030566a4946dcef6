"""A bench-only plugin (``--plugin bench.publisher``): publishes at a set rate through
``context.publish``, as an in-process source would, stamping each payload with the
wall-clock time of the publish call so clients can measure publish-to-receive.

``POST /api/bench/run {rate, seconds, rooms, step?}`` publishes ``bench`` events
``{t, i, step}`` and answers once every one of them is durable (or failed), so the
answer comes from the gateway process that ran it even when several share a port."""

from __future__ import annotations

import time

from twisted.internet import defer, task

from n2gateway.hookspecs import hookimpl

TICK = 0.01
RUN_BODY = {
    "type": "object", "required": ["rate", "seconds", "rooms"], "additionalProperties": False,
    "properties": {"rate": {"type": "number", "minimum": 1},
                   "seconds": {"type": "number", "minimum": 0.1},
                   "rooms": {"type": "array", "minItems": 1, "items": {"type": "string"}},
                   "step": {"type": "integer", "minimum": 0}},
}


class Run:
    def __init__(self, context, rate: float, seconds: float, rooms: list[str], step: int) -> None:
        self.context, self.rate, self.rooms, self.step = context, rate, rooms, step
        self.total = max(1, int(rate * seconds))
        self.published = self.durable = self.failed = 0
        self.finished: defer.Deferred = defer.Deferred()
        self.started = context.reactor.seconds()
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
            self.finished.callback(self.state())

    def state(self) -> dict:
        return {"published": self.published, "durable": self.durable, "failed": self.failed,
                "total": self.total}


@hookimpl
def n2gateway_routes(context, routes) -> None:
    async def run(request) -> dict:
        body = request.body
        return await Run(context, body["rate"], body["seconds"], body["rooms"],
                         body.get("step", 0)).finished

    routes.add("POST", "/api/bench/run", run, body=RUN_BODY,
               summary="bench: publish at a rate, answer when every event is durable")
