"""A bench-only plugin (``--plugin bench.publisher``): publishes at a set rate through
``context.publish``, as an in-process source would, stamping each payload with the
wall-clock time of the publish call so clients can measure publish-to-receive."""

from __future__ import annotations

import time

from twisted.internet import task

from n2gateway.hookspecs import hookimpl

TICK = 0.01
RUN_BODY = {
    "type": "object", "required": ["rate", "seconds", "rooms"], "additionalProperties": False,
    "properties": {"rate": {"type": "number", "minimum": 1},
                   "seconds": {"type": "number", "minimum": 0.1},
                   "rooms": {"type": "array", "minItems": 1, "items": {"type": "string"}}},
}


class Run:
    def __init__(self, context, rate: float, seconds: float, rooms: list[str]) -> None:
        self.context, self.rate, self.rooms = context, rate, rooms
        self.total = int(rate * seconds)
        self.published = self.durable = self.failed = 0
        self.started = context.reactor.seconds()
        self.loop = task.LoopingCall(self.tick)
        self.loop.clock = context.reactor
        self.loop.start(TICK)

    def tick(self) -> None:
        due = min(self.total, int((self.context.reactor.seconds() - self.started) * self.rate) + 1)
        while self.published < due:
            room = self.rooms[self.published % len(self.rooms)]
            d = self.context.publish([room], "bench", {"t": time.time() * 1000, "i": self.published})
            d.addCallbacks(self._durable, self._failed)
            self.published += 1
        if self.published >= self.total:
            self.loop.stop()

    def _durable(self, _offset) -> None:
        self.durable += 1

    def _failed(self, _failure) -> None:
        self.failed += 1

    def state(self) -> dict:
        return {"published": self.published, "durable": self.durable, "failed": self.failed,
                "total": self.total}


@hookimpl
def n2gateway_routes(context, routes) -> None:
    runs: list[Run] = []

    async def start(request) -> dict:
        body = request.body
        runs.append(Run(context, body["rate"], body["seconds"], body["rooms"]))
        return runs[-1].state()

    async def state(request) -> dict:
        return runs[-1].state() if runs else {}

    routes.add("POST", "/api/bench/run", start, body=RUN_BODY, summary="bench: publish at a rate")
    routes.add("GET", "/api/bench/run", state, summary="bench: progress of the last run")
