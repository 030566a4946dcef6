"""The ``n2gateway.journal.Journal`` protocol in memory, for unit tests: offsets from 1,
every append durable at once, ``add`` for an append by another gateway (nobody is
told), ``down`` for a database that does not answer reads, and replays and reads that
can be held open to let live events arrive in the middle of them."""

from __future__ import annotations

import json
from typing import Any, Callable, Collection, Sequence

from twisted.internet import defer

from n2gateway.db import DatabaseUnavailable, Transaction
from n2gateway.journal import READ_BATCH, READ_BYTES, Event, JsonText, encode_append
from n2gateway.traffic import SourceTally


class FakeJournal:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.trimmed_through = 0
        self.pending = 0
        self.refusals = SourceTally()
        #: Called by ``ring``, as ``PostgresJournal.on_appended`` is.
        self.on_appended: Callable[[Sequence[Event]], None] = lambda committed: None
        self.down = False
        #: While True, each replay page (each read) waits in ``stalled`` until the test
        #: fires it.
        self.stall_replays = False
        self.stall_reads = False
        self.stalled: list[defer.Deferred] = []
        self.replay_calls = 0
        self.read_calls = 0
        self._keys: dict[str, int] = {}

    def add(self, rooms: Sequence[str], name: str = "e", payload: Any = None) -> Event:
        """Append directly, as another gateway would: nobody is told."""
        offset = (self.events[-1].offset if self.events else self.trimmed_through) + 1
        text = payload.text if isinstance(payload, JsonText) else json.dumps(
            payload, ensure_ascii=False, separators=(",", ":"))
        event = Event(offset, tuple(rooms), name, text)
        self.events.append(event)
        return event

    def trim_through(self, offset: int) -> None:
        self.events = [e for e in self.events if e.offset > offset]
        self.trimmed_through = offset

    def _check(self) -> None:
        if self.down:
            raise DatabaseUnavailable("connection refused")

    def _stored(self, rooms: Sequence[str], event: str, payload: Any,
                key: str | None = None) -> int:
        encode_append(rooms, event, payload, key)  # refuses what the real journal refuses
        if key in self._keys:
            return self._keys[key]
        offset = self.add(list(dict.fromkeys(rooms)), event, payload).offset
        if key is not None:
            self._keys[key] = offset
        return offset

    def append(self, rooms: Sequence[str], event: str, payload: Any, *,
               key: str | None = None) -> defer.Deferred:
        offset = self._stored(rooms, event, payload, key)
        self.ring()
        return defer.succeed(offset)

    async def append_in(self, tx: Transaction,
                        events: Sequence[tuple[Sequence[str], str, Any]]) -> list[int]:
        """Stored at once, as if ``tx`` had committed."""
        return [self._stored(*event) for event in events]

    async def commit_with(self, tx: Transaction, encoded: Sequence[str], sql: str,
                          params: dict, *, then: str | None = None) -> list[tuple]:
        """The events stored at once; the caller's statements still go to ``tx``."""
        for text in encoded:
            item = json.loads(text)
            self._stored(item["rooms"], item["event"], item["payload"], item.get("key"))
        return await tx.commit(sql, params, then=then)

    def ring(self, committed: Sequence[Event] = ()) -> None:
        self.on_appended(committed)

    @staticmethod
    def _page(events: list[Event], limit: int, max_bytes: int) -> list[Event]:
        # As PostgresJournal's page: cut by count, and once the bytes before reach max_bytes.
        page: list[Event] = []
        before = 0
        for event in events[:limit]:
            if before >= max_bytes:
                break
            page.append(event)
            before += len(event.payload_json.encode())
        return page

    async def read_after(self, offset: int, limit: int = READ_BATCH,
                         max_bytes: int = READ_BYTES) -> list[Event]:
        self._check()
        self.read_calls += 1
        # What was committed when the read began, as a statement's snapshot.
        page = self._page([e for e in self.events if e.offset > offset], limit, max_bytes)
        if self.stall_reads:
            await self._stall()
        return page

    async def replay(self, rooms: Collection[str], after: int, through: int,
                     limit: int = READ_BATCH, max_bytes: int = READ_BYTES) -> list[Event]:
        self._check()
        self.replay_calls += 1
        if self.stall_replays:
            await self._stall()
        return self._page([e for e in self.events
                           if after < e.offset <= through and set(rooms) & set(e.rooms)],
                          limit, max_bytes)

    async def tail(self, limit: int) -> list[Event]:
        self._check()
        return self.events[::-1][:limit]

    async def head(self) -> int:
        self._check()
        return self.events[-1].offset if self.events else self.trimmed_through

    async def horizon(self) -> int:
        self._check()
        return self.trimmed_through

    async def _stall(self) -> None:
        gate: defer.Deferred = defer.Deferred()
        self.stalled.append(gate)
        await gate

    def release(self) -> None:
        """Let the replay pages stalled so far through (in the order they stalled)."""
        gates, self.stalled = self.stalled, []
        for gate in gates:
            gate.callback(None)
