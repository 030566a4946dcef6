"""The durable event journal: every published event, in offset order, in PostgreSQL.

``append`` is how every source publishes. Appends made in the same reactor turn (or
while the previous batch is in flight) go to the database as one statement. While
the database is unreachable, accepted appends wait in memory, in order, and are
retried with backoff; callers get their offset once the event is durable. Past
``max_pending`` waiting events new appends are refused at once, so memory is bounded.

After each commit the journal rings: this gateway's hub is woken at once, the
others by the doorbell, a NOTIFY sent in a transaction of its own (not inside the
durable append: see schema/0005_journal_doorbell.sql).
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Collection, Iterable, Protocol, Sequence, runtime_checkable

from twisted.application import service
from twisted.internet import defer
from twisted.internet.task import deferLater
from twisted.logger import Logger

from n2gateway.codecs.text import compact
from n2gateway.db import Database, DatabaseError, DatabaseUnavailable, Transaction, retry_delay
from n2gateway.scheduling import Coalescer, Periodic
from n2gateway.storable import MAX_DEPTH, Unstorable, check_storable
from n2gateway.traffic import SourceTally

MAX_PAYLOAD = 1024 * 1024
READ_BATCH = 1000
#: Appends ``%(batch)s`` (``encode_batch``); one offset a row. A source may send it
#: together with statements of its own, in one round trip, then ``ring``.
APPEND = "SELECT n2_journal_append(%(batch)s::json)"
RING = "SELECT n2_journal_ring(%s)"
#: The doorbell's channel; its payload is the node that rang.
DOORBELL = "n2_journal"
# A page read from the journal stops once it holds this many payload bytes (a page of
# a thousand 1 MiB events would otherwise be a gigabyte in memory at once).
READ_BYTES = 8 * 1024 * 1024


def is_full_page(events: Sequence[Event], limit: int = READ_BATCH,
                 max_bytes: int = READ_BYTES) -> bool:
    """Whether a page may have more events behind it (it was cut by count or by size).
    A UTF-8 character is at most 4 bytes: counting characters errs towards one more read."""
    return len(events) >= limit or 4 * sum(len(e.payload_json) for e in events) >= max_bytes


class JournalFull(Exception):
    """Too many events are waiting for the database; this one was not accepted."""


class Withdrawn(Exception):
    """An append given up (cancelled) before it was sent: it will never be stored."""


@dataclass(frozen=True, slots=True)
class Event:
    offset: int
    rooms: tuple[str, ...]
    name: str
    payload_json: str  # as stored: spliced into frames without decoding

    @property
    def payload(self) -> Any:
        return json.loads(self.payload_json)


@dataclass(frozen=True, slots=True)
class JsonText:
    """A payload that is JSON text already (read from the database as ``::text``): the
    event takes it as it is, without decoding it and encoding it again."""

    text: str


def encode_append(rooms: Sequence[str], event: str, payload: Any, key: str | None = None) -> str:
    """Check one append and encode it for the batch; ``Unstorable`` (a ``ValueError``)
    says what is wrong. ``payload`` is anything JSON-serializable, or a ``JsonText``;
    ``key`` an idempotency key (see ``PostgresJournal.append``)."""
    return _encode(rooms, event, payload, key)[0]


def _encode(rooms: Sequence[str], event: str, payload: Any,
            key: str | None) -> tuple[str, tuple[str, ...], str]:
    """``encode_append``'s text, with the rooms and the payload's JSON text as the
    journal stores them: what a reader of the row would get back."""
    if isinstance(rooms, str) or not rooms or not all(isinstance(r, str) and r for r in rooms):
        raise Unstorable("rooms", "rooms must be a non-empty list of room names")
    if not isinstance(event, str) or not event:
        raise Unstorable("event", "event must be a non-empty string")
    # Refused here, alone: in the database it would fail its whole batch.
    if "\x00" in event or any("\x00" in r for r in rooms):
        raise Unstorable("nul", "rooms and event must not contain NUL characters")
    if isinstance(payload, JsonText):
        text = payload.text
        if "\\u0000" in text or text.count("[") + text.count("{") > MAX_DEPTH:
            check_storable(json.loads(text))  # rarely: a look at what the cheap test suspects
    else:
        check_storable(payload)
        try:
            text = compact(payload)
        except (TypeError, ValueError) as e:
            raise Unstorable("json", f"payload is not JSON-serializable: {e}") from None
    unique = tuple(dict.fromkeys(rooms))
    # The payload goes last, spliced in as it is: the column keeps its text verbatim.
    envelope = compact({"rooms": unique, "event": event, **({"key": key} if key is not None else {}),
                       "payload": None})
    encoded = envelope[:-len("null}")] + text + "}"
    try:
        encoded.encode("utf-8")
    except UnicodeEncodeError:
        raise Unstorable("surrogate", "event is not valid Unicode (a lone surrogate)") from None
    if len(encoded) > MAX_PAYLOAD:
        raise Unstorable("size", f"event over {MAX_PAYLOAD} bytes")
    return encoded, unique, text


def encode_batch(encoded: Iterable[str]) -> str:
    """Events encoded by ``encode_append``, as the JSON array ``APPEND`` takes."""
    return "[" + ",".join(encoded) + "]"


@dataclass(eq=False, slots=True)
class _Append:
    """An append waiting for the database."""

    encoded: str
    done: defer.Deferred | None
    event: str
    rooms: tuple[str, ...]
    payload_json: str
    keyed: bool = False
    #: Sent to the database at least once: it may be stored, it can no longer be withdrawn.
    sent: bool = False


def _settle(done: defer.Deferred, result: Any) -> None:
    """Fire an append's Deferred, unless its caller gave up on it (cancelled it)."""
    if not done.called:
        (done.errback if isinstance(result, Exception) else done.callback)(result)


def _first_room(rooms: Any) -> str:
    """The room that names an event's source, for metrics (anything, for a bad event)."""
    first = rooms[0] if isinstance(rooms, list | tuple) and rooms else None
    return first if isinstance(first, str) else ""


def _row_to_event(row: tuple) -> Event:
    offset, rooms, name, payload_json = row
    return Event(offset, tuple(rooms), name, payload_json)


@runtime_checkable
class Journal(Protocol):
    """What the hub, the publish route, the status page, ``/metrics`` and the sources use
    of the journal: ``PostgresJournal`` in a gateway, ``tests.fakes.journal.FakeJournal``
    in unit tests. The methods are ``PostgresJournal``'s; see there what each does."""

    #: Events refused, by source and reason.
    refusals: SourceTally

    @property
    def pending(self) -> int: ...

    def append(self, rooms: Sequence[str], event: str, payload: Any, *,
               key: str | None = None) -> defer.Deferred: ...

    async def append_in(self, tx: Transaction,
                        events: Sequence[tuple[Sequence[str], str, Any]]) -> list[int]: ...

    async def commit_with(self, tx: Transaction, encoded: Sequence[str], sql: str,
                          params: dict, *, then: str | None = None) -> list[tuple]: ...

    def ring(self, committed: Sequence[Event] = ()) -> None: ...

    async def read_after(self, offset: int, limit: int = READ_BATCH,
                         max_bytes: int = READ_BYTES) -> list[Event]: ...

    async def replay(self, rooms: Collection[str], after: int, through: int,
                     limit: int = READ_BATCH, max_bytes: int = READ_BYTES) -> list[Event]: ...

    async def tail(self, limit: int) -> list[Event]: ...

    async def head(self) -> int: ...

    async def horizon(self) -> int: ...


class PostgresJournal:
    """The journal in PostgreSQL (``n2_journal``), appends batched (see the module)."""

    log = Logger()

    def __init__(self, db: Database, reactor: Any, *, node: str = "", batch_size: int = 500,
                 max_pending: int = 100_000) -> None:
        #: Called after each durable batch, with its events when they are known
        #: (``ring``): the local hub sends them at once instead of waiting for the
        #: doorbell to come back from PostgreSQL, and of reading them back.
        self.on_appended: Callable[[Sequence[Event]], None] = lambda committed: None
        self._node = node
        self._db = db
        self._reactor = reactor
        self._doorbells = Coalescer(self._send_doorbell, what="journal doorbell")
        self._batch_size = batch_size
        self._max_pending = max_pending
        self._pending: deque[_Append] = deque()
        self._flusher = Coalescer(self._flush, reactor, what="journal append")
        #: How many of the next appends go alone: a refused batch is retried so.
        self._one_by_one = 0
        #: Events refused, by source (the first room's prefix) and reason.
        self.refusals = SourceTally()
        self._closed = False

    @property
    def pending(self) -> int:
        return len(self._pending)

    def append(self, rooms: Sequence[str], event: str, payload: Any, *,
               key: str | None = None) -> defer.Deferred:
        """Publish; fires with the event's offset once durable. Raises ``Unstorable``
        (a ``ValueError``) for an event the journal cannot store, and ``JournalFull``
        when too much is waiting.

        With ``key`` (an idempotency key), an event whose key is in the journal already
        is not stored again: the offset of the first is the answer. Cancelling the
        Deferred withdraws an append not yet sent (it fails with ``Withdrawn`` and is
        never stored); one already on its way to the database may still be stored."""
        try:
            encoded, unique, payload_json = _encode(rooms, event, payload, key)
        except Unstorable as e:
            self.refusals.refuse(_first_room(rooms), e.reason)
            raise
        if len(self._pending) >= self._max_pending:
            raise JournalFull(f"{len(self._pending)} events are waiting for the database")
        item = _Append(encoded, None, event, unique, payload_json, key is not None)
        item.done = done = defer.Deferred(canceller=lambda d: self._withdraw(item))
        self._pending.append(item)
        # At the end of the turn: the rest of this reactor turn joins the batch.
        self._flusher.request(0)
        return done

    async def _flush(self) -> None:
        attempt = 0
        while self._pending and not self._closed:
            batch = self._next_batch()
            for item in batch:
                item.sent = True
            try:
                rows = await self._db.query(
                    APPEND, {"batch": encode_batch(item.encoded for item in batch)})
            except DatabaseUnavailable as e:
                delay = retry_delay(attempt)
                attempt += 1
                self.log.warn("journal append waiting for the database ({reason}); "
                              "{count} events pending, retry in {delay:.1f} s",
                              reason=str(e), count=len(self._pending), delay=delay)
                await deferLater(self._reactor, delay)
                continue
            except Exception as e:
                self._refused(batch, e)
                continue
            attempt = 0
            self._one_by_one = max(self._one_by_one - len(batch), 0)
            # A keyed append may answer an older event's offset: not handed over.
            self.ring([Event(offset, item.rooms, item.event, item.payload_json)
                       for item, (offset,) in zip(batch, rows) if not item.keyed])
            for _, (offset,) in zip(batch, rows):
                _settle(self._pending.popleft().done, offset)

    def _next_batch(self) -> list[_Append]:
        # A keyed append goes alone: the database looks its key up (0007_journal_idempotency.sql).
        size = 1 if self._one_by_one else self._batch_size
        batch: list[_Append] = []
        for item in self._pending:
            if len(batch) == size or (batch and item.keyed):
                break
            batch.append(item)
            if item.keyed:
                break
        return batch

    def _withdraw(self, item: _Append) -> None:
        """The caller gave up on an append: one not sent yet is dropped for good."""
        if item.sent:
            return  # it may be stored already: the Deferred just fails with CancelledError
        self._pending.remove(item)
        item.done.errback(Withdrawn("given up before it was sent: it will not be stored"))

    def _refused(self, batch: list[_Append], error: Exception) -> None:
        """The database refused a batch although each event passed ``encode_append``.
        Its events are tried again one by one, so that only the offending one fails.
        PostgreSQL's message quotes the payload: only its class and code are told."""
        what = str(error) if isinstance(error, DatabaseError) else type(error).__name__
        if len(batch) > 1:
            self.log.warn("journal: the database refused a batch of {count} events ({what}); "
                          "appending them one by one", count=len(batch), what=what)
            self._one_by_one = len(batch)
            return
        item = self._pending.popleft()
        self._one_by_one = max(self._one_by_one - 1, 0)
        self.refusals.refuse(item.rooms[0], "database")
        self.log.error("journal: the database refused event {event} for {room} ({what})",
                       event=item.event, room=item.rooms[0], what=what)
        _settle(item.done, Unstorable("database", f"the database refused this event ({what})"))

    def ring(self, committed: Sequence[Event] = ()) -> None:
        """Events were committed: wake this gateway's hub, and the others through the
        doorbell. One doorbell is in flight at a time; rings meanwhile send one more.
        ``committed``: those events, as stored, when the caller knows all of them."""
        self.on_appended(committed)
        self._doorbells.request()

    async def _send_doorbell(self) -> None:
        try:
            await self._db.query(RING, (self._node,))
        except DatabaseUnavailable:
            pass  # the other hubs' poll finds the events; nothing is lost

    @staticmethod
    async def append_in(tx: Transaction, events: Sequence[tuple[Sequence[str], str, Any]]) -> list[int]:
        """Append ``(rooms, event, payload)`` items inside the caller's transaction, so a
        source can publish and record its own progress atomically (no duplicate after
        a crash). Call ``ring`` once it has committed: the hubs read them then (or at
        their next poll)."""
        batch = encode_batch([encode_append(*event) for event in events])
        rows = await tx.query(APPEND, {"batch": batch})
        return [offset for (offset,) in rows]

    @staticmethod
    async def commit_with(tx: Transaction, encoded: Sequence[str], sql: str, params: dict,
                          *, then: str | None = None) -> list[tuple]:
        """End the caller's transaction in one round trip (``Transaction.commit``): append
        ``encoded`` (events from ``encode_append``, which refuses one the journal cannot
        store), run ``sql`` (named parameters; ``batch`` is the journal's) and COMMIT,
        then the query ``then``, whose rows are returned. Call ``ring`` afterwards."""
        if encoded:
            sql = f"{APPEND};\n{sql}"
            params = {**params, "batch": encode_batch(encoded)}
        return await tx.commit(sql, params, then=then)

    def close(self) -> None:
        """Stop retrying; appends still waiting fail with ``DatabaseUnavailable``."""
        self._closed = True
        self._flusher.stop()
        while self._pending:
            _settle(self._pending.popleft().done, DatabaseUnavailable("the gateway is stopping"))

    async def read_after(self, offset: int, limit: int = READ_BATCH,
                         max_bytes: int = READ_BYTES) -> list[Event]:
        """Events after ``offset``, oldest first: a page (see ``is_full_page``)."""
        return await self._page("seq > %s", (offset,), limit, max_bytes)

    async def replay(self, rooms: Collection[str], after: int, through: int,
                     limit: int = READ_BATCH, max_bytes: int = READ_BYTES) -> list[Event]:
        """Events in any of ``rooms`` with ``after < offset <= through``, oldest first."""
        return await self._page("seq > %s AND seq <= %s AND rooms && %s::text[]",
                                (after, through, list(rooms)), limit, max_bytes)

    async def _page(self, where: str, params: tuple, limit: int, max_bytes: int) -> list[Event]:
        # Of the first ``limit`` rows, those whose preceding bytes are under max_bytes:
        # one huge event still makes a page of its own.
        rows = await self._db.query(
            "SELECT seq, rooms, event, payload FROM ("
            " SELECT *, sum(octet_length(payload)) OVER (ORDER BY seq)"
            " - octet_length(payload) AS before FROM ("
            "  SELECT seq, rooms, event, payload::text AS payload"
            f"  FROM n2_journal WHERE {where} ORDER BY seq LIMIT %s) page) sized"
            " WHERE before < %s ORDER BY seq",
            (*params, limit, max_bytes))
        return [_row_to_event(r) for r in rows]

    async def tail(self, limit: int) -> list[Event]:
        """The newest ``limit`` events, newest first."""
        rows = await self._db.query(
            "SELECT seq, rooms, event, payload::text FROM n2_journal ORDER BY seq DESC LIMIT %s",
            (limit,))
        return [_row_to_event(r) for r in rows]

    async def head(self) -> int:
        """The newest offset (or the retention horizon when the journal is empty)."""
        rows = await self._db.query(
            "SELECT GREATEST((SELECT MAX(seq) FROM n2_journal),"
            " (SELECT trimmed_through FROM n2_journal_horizon))")
        return rows[0][0] or 0

    async def horizon(self) -> int:
        """Offsets at or below this were removed by retention."""
        rows = await self._db.query("SELECT trimmed_through FROM n2_journal_horizon")
        return rows[0][0]

    async def extent(self) -> tuple[int, int]:
        """The retention horizon and the newest offset: the offsets between are at
        least the rows kept (an append rolled back leaves a hole)."""
        rows = await self._db.query(
            "SELECT (SELECT trimmed_through FROM n2_journal_horizon), COALESCE(MAX(seq), 0)"
            " FROM n2_journal")
        return rows[0]

    async def trim(self, max_age: float, max_rows: int) -> int:
        """Apply retention: drop events older than ``max_age`` seconds or beyond the newest
        ``max_rows``. Returns the new horizon."""

        async def work(tx) -> int:
            rows = await tx.query(
                "SELECT GREATEST("
                " (SELECT MAX(seq) FROM n2_journal WHERE created_at < NOW() - make_interval(secs => %s)),"
                " (SELECT MAX(seq) - %s FROM n2_journal),"
                " (SELECT trimmed_through FROM n2_journal_horizon))",
                (max_age, max_rows))
            cut = rows[0][0] or 0
            await tx.execute("DELETE FROM n2_journal WHERE seq <= %s", (cut,))
            await tx.execute("UPDATE n2_journal_horizon SET trimmed_through = %s", (cut,))
            return cut

        return await self._db.transaction(work)


class RetentionService(service.MultiService):
    """Applies retention: the row bound after every commit of this gateway
    (``appended``: counted from the committed offsets while the journal is within
    it), both bounds on a timer.
    Every gateway may run it: trimming is idempotent."""

    log = Logger()

    def __init__(self, journal: PostgresJournal, reactor: Any, max_age: float, max_rows: int,
                 interval: float = 60.0) -> None:
        super().__init__()
        self._journal = journal
        self._max_age = max_age
        self._max_rows = max_rows
        Periodic(interval, self._trim, reactor, what="journal retention",
                 now=True).setServiceParent(self)
        self._row_checks = Coalescer(self._check_rows, what="journal row bound")
        #: The horizon as last seen (None: not yet). Only retention moves it, upwards,
        #: so a span counted from it errs towards one more check, never one less.
        self._horizon: int | None = None

    def appended(self, committed: Sequence[Event] = ()) -> None:
        """Events were committed: trim if the journal is over its row bound. With
        the events (``Journal.ring``) and the horizon known, a journal within the bound
        needs no statement; otherwise one check at a time, commits meanwhile asking for
        one more."""
        if not self.running:
            return
        if committed and self._horizon is not None \
                and committed[-1].offset - self._horizon <= self._max_rows:
            return
        self._row_checks.request()

    async def _check_rows(self) -> None:
        try:
            self._horizon, newest = await self._journal.extent()
        except DatabaseUnavailable:
            return  # the timer's trim says so, once a minute
        if newest - self._horizon > self._max_rows:
            await self._trim()

    def startService(self) -> None:
        super().startService()
        self._row_checks.start()

    def stopService(self) -> defer.Deferred:
        self._row_checks.stop()
        return super().stopService()

    async def _trim(self) -> None:
        try:
            self._horizon = await self._journal.trim(self._max_age, self._max_rows)
        except DatabaseUnavailable as e:
            self.log.warn("journal retention skipped: {reason}", reason=str(e))
