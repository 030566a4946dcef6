"""Relaying chat rows exactly once: the durable cursor and the catch-up transaction.

The cursor
----------
``chat_id`` is a ``serial``, and ids commit out of order: a transaction holding id
100 may commit after the one holding 101. A plain "last id relayed" cursor would
skip 100 forever. So the cursor is two things, per messages table:

* ``low``: every id at or below it has been relayed or will never appear;
* ``n2_chat_relayed``: the ids above ``low`` already relayed, each with ``seen_xmax``,
  the ``pg_snapshot_xmax`` of the snapshot in which it was first seen committed.

A catch-up relays every visible row above ``low`` that is not in the relayed set,
smallest id first. ``low`` then moves up over relayed ids, and over a gap only when
the gap is settled: a missing id g below a relayed id h was drawn from the sequence
before h was, and h had committed when it was seen, so g's transaction was already
running then. Once ``pg_snapshot_xmin`` of the current snapshot reaches h's
``seen_xmax``, every transaction that had an xid then has ended; if g is still not
visible it was rolled back (or deleted) and will never come. The one transaction
this cannot see is one that drew g but had no xid yet (a ``SELECT nextval`` followed
later by the INSERT): ``grace`` seconds cover it. Under a steady flow without
rollbacks ``low`` keeps up with every batch and the relayed set stays empty.

Chosen over a cursor on the rows' inserting transaction (``xmin``) because an
UPDATE of a read flag gives the row a new ``xmin``, which would make an old message
look new again; and over a plain "recent ids" window because that either grows
without bound or forgets a long transaction's row.

It assumes the sequence hands ids out in order (``CACHE 1``, the ``serial``
default). Rows present when the plugin first sees a table are history: ``low``
starts at the table's largest id.

Exactly once
------------
Each batch is one REPEATABLE READ transaction of two round trips: lock the cursor
row and read the rows; then append the events to the journal, record the ids, move
``low`` and COMMIT. A crash before COMMIT relays nothing; after it, the ids are
recorded. Two
gateways running the sync at once serialize on the cursor row (the loser of a
concurrent update retries).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from n2gateway.db import Database, SerializationConflict, Transaction
from n2gateway.journal import Journal, JsonText, encode_append

from n2gateway_plugins.chat.schema import Tables, ensure_schema

BATCH = 1000
GRACE = 10.0
SERIALIZATION_RETRIES = 5


@dataclass
class SyncResult:
    relayed: int = 0  # message:new events published
    reads: int = 0  # message:read events published
    low: int = 0  # the cursor after this sync
    waiting: int = 0  # ids relayed above low (a gap below them is not settled yet)
    deleted: list[int] = field(default_factory=list)  # hinted ids whose row is gone
    # Rows that cannot become an event (over the journal's size limit), with the reason:
    # the cursor moves past them, or every later row would wait behind them forever.
    unrelayable: list[tuple[int, str]] = field(default_factory=list)
    fetched: set[int] = field(default_factory=set)  # the chat ids relayed
    more: bool = False  # the batch was full: call again


# The usual batch: nothing was waiting and the ids run on from low + 1 without a
# hole, so low moves to the last of them and there is nothing to record.
ADVANCE = """
    UPDATE n2_chat_cursor SET low = %(last)s
    WHERE messages_table = %(table)s AND low < %(last)s"""
# Any other batch: records the relayed ids, moves ``low`` over those that run on from
# it and over settled gaps (module docstring), and forgets the ids at or below it.
RECORD = """
    INSERT INTO n2_chat_relayed (messages_table, chat_id, seen_xmax)
    SELECT %(table)s, x, pg_snapshot_xmax(pg_current_snapshot())
    FROM unnest(%(fetched)s::bigint[]) AS x;

    UPDATE n2_chat_cursor SET low = GREATEST(low,
        -- relayed ids that run on without a hole from low + 1
        (SELECT MAX(chat_id) FROM (
            SELECT chat_id, chat_id - ROW_NUMBER() OVER (ORDER BY chat_id) AS k
            FROM n2_chat_relayed WHERE messages_table = %(table)s) run
         WHERE k = %(low)s),
        -- a relayed id whose holes below are settled
        (SELECT MAX(chat_id) FROM n2_chat_relayed
         WHERE messages_table = %(table)s
           AND chat_id <= COALESCE(%(ceiling)s, chat_id)
           AND seen_xmax <= pg_snapshot_xmin(pg_current_snapshot())
           AND relayed_at <= NOW() - make_interval(secs => %(grace)s)))
    WHERE messages_table = %(table)s;

    DELETE FROM n2_chat_relayed WHERE messages_table = %(table)s
      AND chat_id <= (SELECT low FROM n2_chat_cursor WHERE messages_table = %(table)s)"""
# After COMMIT: the cursor and how many relayed ids still wait above it.
PROGRESS = """
    SELECT low, (SELECT COUNT(*) FROM n2_chat_relayed WHERE messages_table = %(table)s)
    FROM n2_chat_cursor WHERE messages_table = %(table)s"""


def rooms_for(user_id: Any, sender: Any) -> list[str]:
    # Student messages go to staff, not to everyone: every connected student would
    # otherwise receive every other student's messages.
    rooms = [f"user:{user_id}"] if user_id is not None else []
    return rooms + (["staff"] if sender == "student" else [])


class ChatStore:
    def __init__(self, db: Database, journal: Journal, tables: Tables, *, batch: int = BATCH,
                 grace: float = GRACE) -> None:
        self._db = db
        self._journal = journal
        self.tables = tables
        self._batch = batch
        self.grace = grace
        self._relayed_last: set[int] = set()  # chat ids relayed by the last sync
        t, u = tables.messages_sql, tables.users_sql
        # The first statement of the transaction: it locks the cursor row and reads the
        # new rows above it in one round trip (one row of NULLs when there are none).
        self._lock_and_fetch = f"""
            SET TRANSACTION ISOLATION LEVEL REPEATABLE READ;
            SELECT k.low, k.waiting, n.chat_id, n.user_id, n.sender, n.payload::text
            FROM (SELECT low, EXISTS (SELECT 1 FROM n2_chat_relayed r
                                      WHERE r.messages_table = %(table)s) AS waiting
                  FROM n2_chat_cursor WHERE messages_table = %(table)s FOR UPDATE) k
            LEFT JOIN LATERAL (
                SELECT c.chat_id, c.user_id, c.sender,
                       to_jsonb(c) || jsonb_build_object('users', jsonb_build_object(
                           'user_id', u.user_id, 'full_name', u.full_name,
                           'avatar_url', u.avatar_url)) AS payload
                FROM {t} c
                LEFT JOIN LATERAL (SELECT user_id, full_name, avatar_url FROM {u}
                                   WHERE user_id = c.user_id LIMIT 1) u ON TRUE
                WHERE c.chat_id > k.low AND NOT EXISTS (
                    SELECT 1 FROM n2_chat_relayed r
                    WHERE r.messages_table = %(table)s AND r.chat_id = c.chat_id)
                ORDER BY c.chat_id
                LIMIT %(batch)s) n ON TRUE
            ORDER BY n.chat_id"""
        self._fetch_flags = (f"SELECT chat_id, user_id, read_by_student, read_by_teacher"
                             f" FROM {t} WHERE chat_id = ANY(%s)")
        self._find_deleted = (f"SELECT x FROM unnest(%s::bigint[]) AS x"
                              f" WHERE NOT EXISTS (SELECT 1 FROM {t} WHERE chat_id = x) ORDER BY x")
        self._seed_cursor = (f"INSERT INTO n2_chat_cursor (messages_table, low)"
                             f" SELECT %s, COALESCE(MAX(chat_id), 0) FROM {t}"
                             f" ON CONFLICT DO NOTHING")

    async def prepare(self) -> list[str]:
        """Create missing tables and triggers and the cursor; return what was created."""

        async def work(tx: Transaction) -> list[str]:
            created = await ensure_schema(tx, self.tables)
            await tx.execute(self._seed_cursor, (self.tables.messages,))
            return created

        return await self._db.transaction(work)

    async def sync(self, *, reads: dict[int, dict | None], hinted: set[int],
                   announce: bool) -> SyncResult:
        """Relay new rows (one batch), the read changes in ``reads`` (chat id → flags
        from the NOTIFY, or ``None`` to read them from the table), and, when anything
        was relayed or ``announce`` is set, one ``users:updated`` to staff."""
        # A doorbell often rings after its row was relayed (the row committed before
        # the previous sync's snapshot, its NOTIFY was read while that sync ran): such
        # an id is not missing, and no query needs to look for it.
        hinted = hinted - self._relayed_last
        for attempt in range(SERIALIZATION_RETRIES):
            try:
                result = await self._db.transaction(
                    lambda tx: self._sync(tx, reads, hinted, announce))
            except SerializationConflict:
                if attempt == SERIALIZATION_RETRIES - 1:
                    raise
                continue
            self._relayed_last = result.fetched
            if result.relayed or result.reads or announce:  # then events were appended
                self._journal.ring()
            return result
        raise AssertionError("unreachable")

    async def _sync(self, tx: Transaction, reads: dict[int, dict | None], hinted: set[int],
                    announce: bool) -> SyncResult:
        table = self.tables.messages
        found = await tx.query(self._lock_and_fetch, {"table": table, "batch": self._batch})
        low, held = found[0][:2]  # held: relayed ids wait above low
        rows = [row[2:] for row in found if row[2] is not None]
        result = SyncResult(more=len(rows) == self._batch)
        events: list[str] = []  # encoded for the journal
        for chat_id, user_id, sender, payload in rows:
            rooms = rooms_for(user_id, sender)
            if not rooms:
                continue
            try:
                events.append(encode_append(rooms, "message:new", JsonText(payload)))
            except ValueError as e:
                result.unrelayable.append((chat_id, str(e)))
        result.relayed = len(events)

        events += [encode_append(*event) for event in await self._read_events(tx, reads, result)]
        result.fetched = fetched = {chat_id for chat_id, *_ in rows}
        unseen = (hinted - fetched) | {i for i, flags in reads.items() if flags is None}
        if unseen:
            result.deleted = [x for (x,) in await tx.query(self._find_deleted, (sorted(unseen),))]
        if events or announce:
            events.append(encode_append(["staff"], "users:updated", None))
        result.low, result.waiting = await self._record(
            tx, events, low, held, sorted(fetched),
            ceiling=max(fetched) if result.more else None)
        return result

    async def _read_events(self, tx: Transaction, reads: dict[int, dict | None],
                           result: SyncResult) -> list[tuple[list[str], str, Any]]:
        flags = {i: f for i, f in reads.items() if f is not None}
        lookup = sorted(i for i, f in reads.items() if f is None)
        if lookup:
            for chat_id, user_id, by_student, by_teacher in await tx.query(
                    self._fetch_flags, (lookup,)):
                flags[chat_id] = {"user_id": user_id, "read_by_student": by_student,
                                  "read_by_teacher": by_teacher}
        events = []
        for chat_id in sorted(flags):
            f = flags[chat_id]
            if f["user_id"] is None:
                continue
            events.append(([f"user:{f['user_id']}"], "message:read", {
                "messageId": chat_id, "read_by_student": f["read_by_student"],
                "read_by_teacher": f["read_by_teacher"]}))
        result.reads = len(events)
        return events

    async def _record(self, tx: Transaction, events: list[str], low: int,
                      held: bool, fetched: list[int], ceiling: int | None) -> tuple[int, int]:
        """Append ``events`` (encoded) to the journal, record ``fetched`` as relayed, move ``low``
        up and COMMIT, in one round trip; returns the new ``low`` and how many relayed
        ids wait above it."""
        params = {"table": self.tables.messages, "low": low, "fetched": fetched,
                  "ceiling": ceiling, "grace": self.grace}
        usual = not held and fetched == list(range(low + 1, low + 1 + len(fetched)))
        if usual:
            sql, params["last"] = ADVANCE, low + len(fetched)
        else:
            sql = RECORD
        if usual:  # nothing waits, and the cursor row is locked until COMMIT: no need to look
            await self._journal.commit_with(tx, events, sql, params)
            return low + len(fetched), 0
        (new_low, waiting), = await self._journal.commit_with(tx, events, sql, params,
                                                             then=PROGRESS)
        return new_low, waiting
