"""An in-memory journal for hub unit tests: same reading interface as
``n2gateway.journal.Journal``, with replays that can be held open to let live
events arrive in the middle of them."""

from __future__ import annotations

import json
from typing import Any, Collection

from twisted.internet import defer

from n2gateway.db import DatabaseUnavailable
from n2gateway.journal import READ_BATCH, Event


class FakeJournal:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.trimmed_through = 0
        self.pending = 0
        self.down = False
        #: While True, each replay page waits in ``stalled`` until the test fires it.
        self.stall_replays = False
        self.stalled: list[defer.Deferred] = []
        self.replay_calls = 0

    def add(self, rooms: list[str], name: str = "e", payload: Any = None) -> Event:
        """Append directly, as another gateway would: nobody is told."""
        offset = (self.events[-1].offset if self.events else self.trimmed_through) + 1
        event = Event(offset, tuple(rooms), name, json.dumps(payload))
        self.events.append(event)
        return event

    def trim_through(self, offset: int) -> None:
        self.events = [e for e in self.events if e.offset > offset]
        self.trimmed_through = offset

    def _check(self) -> None:
        if self.down:
            raise DatabaseUnavailable("connection refused")

    async def head(self) -> int:
        self._check()
        return self.events[-1].offset if self.events else self.trimmed_through

    async def horizon(self) -> int:
        self._check()
        return self.trimmed_through

    async def read_after(self, offset: int, limit: int = READ_BATCH) -> list[Event]:
        self._check()
        return [e for e in self.events if e.offset > offset][:limit]

    async def replay(self, rooms: Collection[str], after: int, through: int,
                     limit: int = READ_BATCH) -> list[Event]:
        self._check()
        self.replay_calls += 1
        if self.stall_replays:
            gate: defer.Deferred = defer.Deferred()
            self.stalled.append(gate)
            await gate
        return [e for e in self.events
                if after < e.offset <= through and set(rooms) & set(e.rooms)][:limit]

    def release(self) -> None:
        """Let the replay pages stalled so far through (in the order they stalled)."""
        gates, self.stalled = self.stalled, []
        for gate in gates:
            gate.callback(None)
