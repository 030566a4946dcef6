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
from typing import Any, Callable, Collection, Iterable, Sequence

from twisted.application import service
from twisted.internet import defer, task
from twisted.internet.task import deferLater
from twisted.logger import Logger

from n2gateway.db import Database, DatabaseUnavailable, Transaction, retry_delay

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


def encode_append(rooms: Sequence[str], event: str, payload: Any) -> str:
    """Check one append and encode it for the batch; ``ValueError`` says what is wrong.
    ``payload`` is anything JSON-serializable, or a ``JsonText``."""
    if isinstance(rooms, str) or not rooms or not all(isinstance(r, str) and r for r in rooms):
        raise ValueError("rooms must be a non-empty list of room names")
    if not isinstance(event, str) or not event:
        raise ValueError("event must be a non-empty string")
    # Refused here, alone: in the database it would fail its whole batch.
    if "\x00" in event or any("\x00" in r for r in rooms):
        raise ValueError("rooms and event must not contain NUL characters")
    raw = payload.text if isinstance(payload, JsonText) else None
    try:
        encoded = json.dumps({"rooms": list(dict.fromkeys(rooms)), "event": event,
                              "payload": None if raw is not None else payload},
                             separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"payload is not JSON-serializable: {e}") from None
    if raw is not None:
        encoded = encoded[:-len("null}")] + raw + "}"
    try:
        encoded.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("event is not valid Unicode (a lone surrogate)") from None
    if len(encoded) > MAX_PAYLOAD:
        raise ValueError(f"event over {MAX_PAYLOAD} bytes")
    return encoded


def encode_batch(encoded: Iterable[str]) -> str:
    """Events encoded by ``encode_append``, as the JSON array ``APPEND`` takes."""
    return "[" + ",".join(encoded) + "]"


def _row_to_event(row: tuple) -> Event:
    offset, rooms, name, payload_json = row
    return Event(offset, tuple(rooms), name, payload_json)


class Journal:
    log = Logger()

    def __init__(self, db: Database, reactor: Any, *, node: str = "", batch_size: int = 500,
                 max_pending: int = 100_000) -> None:
        #: Called after each durable batch; the local hub reads at once instead of
        #: waiting for the doorbell to come back from PostgreSQL.
        self.on_appended: Callable[[], None] = lambda: None
        self._node = node
        self._db = db
        self._reactor = reactor
        self._ringing = False
        self._ring_again = False
        self._batch_size = batch_size
        self._max_pending = max_pending
        self._pending: deque[tuple[str, defer.Deferred]] = deque()
        self._flushing = False
        self._closed = False

    @property
    def pending(self) -> int:
        return len(self._pending)

    def append(self, rooms: Sequence[str], event: str, payload: Any) -> defer.Deferred:
        """Publish; fires with the event's offset once durable. Raises ``ValueError``
        for a malformed event and ``JournalFull`` when too much is waiting."""
        encoded = encode_append(rooms, event, payload)
        if len(self._pending) >= self._max_pending:
            raise JournalFull(f"{len(self._pending)} events are waiting for the database")
        done: defer.Deferred = defer.Deferred()
        self._pending.append((encoded, done))
        if not self._flushing:
            self._flushing = True
            # Give the rest of this reactor turn the chance to join the batch.
            self._reactor.callLater(0, lambda: defer.Deferred.fromCoroutine(self._flush()))
        return done

    async def _flush(self) -> None:
        attempt = 0
        while self._pending and not self._closed:
            batch = [self._pending[i] for i in range(min(self._batch_size, len(self._pending)))]
            try:
                rows = await self._db.query(
                    APPEND, {"batch": encode_batch(encoded for encoded, _ in batch)})
            except DatabaseUnavailable as e:
                delay = retry_delay(attempt)
                attempt += 1
                self.log.warn("journal append waiting for the database ({reason}); "
                              "{count} events pending, retry in {delay:.1f} s",
                              reason=str(e), count=len(self._pending), delay=delay)
                await deferLater(self._reactor, delay)
                continue
            except Exception as e:
                # The database refused the batch itself (a bug, not an outage): fail
                # these appends rather than retry them forever.
                self.log.failure("journal append failed")
                for _ in batch:
                    self._pending.popleft()[1].errback(e)
                continue
            attempt = 0
            self.ring()
            for (_, done), (offset,) in zip(batch, rows):
                self._pending.popleft()
                done.callback(offset)
        self._flushing = False

    def ring(self) -> None:
        """Events were committed: wake this gateway's hub, and the others through the
        doorbell. One doorbell is in flight at a time; rings meanwhile send one more."""
        self.on_appended()
        if self._ringing:
            self._ring_again = True
            return
        self._ringing = True
        defer.Deferred.fromCoroutine(self._send_doorbells())

    async def _send_doorbells(self) -> None:
        try:
            again = True
            while again:
                self._ring_again = False
                await self._db.query(RING, (self._node,))
                again = self._ring_again
        except DatabaseUnavailable:
            pass  # the other hubs' poll finds the events; nothing is lost
        except Exception:
            self.log.failure("journal doorbell failed")
        finally:
            self._ringing = False

    @staticmethod
    async def append_in(tx: Transaction, events: Sequence[tuple[Sequence[str], str, Any]]) -> list[int]:
        """Append ``(rooms, event, payload)`` items inside the caller's transaction, so a
        source can publish and record its own progress atomically (no duplicate after
        a crash). Call ``ring`` once it has committed: the hubs read them then (or at
        their next poll)."""
        batch = encode_batch([encode_append(*event) for event in events])
        rows = await tx.query(APPEND, {"batch": batch})
        return [offset for (offset,) in rows]

    def close(self) -> None:
        """Stop retrying; appends still waiting fail with ``DatabaseUnavailable``."""
        self._closed = True
        while self._pending:
            self._pending.popleft()[1].errback(DatabaseUnavailable("the gateway is stopping"))

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


class RetentionService(service.Service):
    """Trims the journal on a timer (every gateway may run it: trimming is idempotent)."""

    log = Logger()

    def __init__(self, journal: Journal, reactor: Any, max_age: float, max_rows: int,
                 interval: float = 60.0) -> None:
        self._journal = journal
        self._max_age = max_age
        self._max_rows = max_rows
        self._loop = task.LoopingCall(lambda: defer.Deferred.fromCoroutine(self._trim()))
        self._loop.clock = reactor
        self._interval = interval

    def startService(self) -> None:
        super().startService()
        self._loop.start(self._interval, now=True)

    def stopService(self) -> None:
        super().stopService()
        if self._loop.running:
            self._loop.stop()

    async def _trim(self) -> None:
        try:
            await self._journal.trim(self._max_age, self._max_rows)
        except DatabaseUnavailable as e:
            self.log.warn("journal retention skipped: {reason}", reason=str(e))
