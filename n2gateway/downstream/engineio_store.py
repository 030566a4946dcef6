"""Engine.IO long-polling sessions in PostgreSQL: what lets any gateway of one
database answer any request of any polling session, without sticky sessions.

A session's queue is not kept in memory: its events are the journal's, after the
offset it was delivered through (``delivered``), in its rooms; only control
packets (the CONNECT answer, acks) are rows of their own, in the order produced.
A GET claims the session (one GET at a time, whichever gateway holds it; the
claim names the gateway, ``<node>/<token>``, and a claim whose gateway died is free:
the client's proxy may send that GET again to another gateway), answers
what is pending and commits how far it delivered in the same statement that ends
the claim. The claims (and the ends of claims) of a gateway's GETs that come while
one such statement is in flight go together in its next: one event that wakes a
thousand GETs costs two statements per batch, not two per GET. Every change a GET
may wait for (a control packet, its rooms, an upgrade, a close) is followed by a
NOTIFY on ``CHANNEL`` naming the session, heard by every gateway.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any, Sequence

from twisted.logger import Logger

from n2gateway.db import Database, DatabaseUnavailable
from n2gateway.downstream.auth import Identity
from n2gateway.leadership import node_alive
from n2gateway.scheduling import Coalesced

CHANNEL = "n2_engineio"
#: Control packets one session may have waiting: past this it is not reading them.
MAX_PENDING = 1000

_STATE = "state, pid, sub, grants, development, token_exp, rooms, delivered, ping_at"
_COLUMNS = _STATE.count(",") + 1
_NOTIFY = "SELECT pg_notify('" + CHANNEL + "', %(sid)s)"
#: The session ``t`` has no GET: none, one whose claim ran out, or one whose gateway died.
_UNCLAIMED = ("(t.poller IS NULL OR t.poll_until < %(now)s OR NOT "
              + node_alive("split_part(t.poller, '/', 1)") + ")")


class UnknownSession(Exception):
    """No such session, or it expired: the client must open a new one."""


class SessionUpgraded(Exception):
    """The session moved to WebSocket: polling it is over."""


class ConcurrentPoll(Exception):
    """A GET arrived while another one holds the session."""


@dataclass(frozen=True)
class PollingState:
    sid: str
    state: str
    pid: str | None
    identity: Identity | None
    rooms: tuple[str, ...]
    delivered: int
    ping_at: float

    @classmethod
    def from_row(cls, sid: str, row: Sequence[Any]) -> "PollingState":
        state, pid, sub, grants, development, token_exp, rooms, delivered, ping_at = row[:_COLUMNS]
        identity = None if sub is None else Identity(sub, tuple(grants), development, token_exp)
        return cls(sid, state, pid, identity, tuple(rooms), delivered, ping_at)


@dataclass
class Changes:
    """What one POST did to its session, written in one round trip."""

    ponged: bool = False
    pid: str | None = None
    identity: Identity | None = None
    rooms: tuple[str, ...] | None = None
    delivered: int | None = None
    frames: list[str] | None = None


class PollingStore:
    log = Logger()

    def __init__(self, db: Database, clock: Any, node: str) -> None:
        self._db = db
        self._clock = clock
        self._node = node
        self._claims = Coalesced(self._claim_all)
        self._finishes = Coalesced(self._finish_all)

    async def create(self, sid: str, lifetime: float, connect_within: float) -> None:
        now = self._clock.seconds()
        await self._db.execute(
            "INSERT INTO n2_engineio_sessions (sid, ping_at, expires_at, connect_by)"
            " VALUES (%s, %s, %s, %s)", (sid, now, now + lifetime, now + connect_within))

    def new_poller(self) -> str:
        """A name for one GET of this gateway."""
        return f"{self._node}/{secrets.token_hex(8)}"

    async def claim(self, sid: str, poller: str, hold: float) -> tuple[PollingState, list]:
        """Make ``poller`` the session's one GET for at most ``hold`` seconds; returns
        the session and its waiting control packets ``[(seq, frame)]``."""
        row = await self._claims((sid, poller, self._clock.seconds() + hold))
        if row is None:
            await self._why_not_claimed(sid)
        return PollingState.from_row(sid, row), list(zip(row[_COLUMNS], row[_COLUMNS + 1]))

    async def _claim_all(self, claims: list[tuple[str, str, float]]) -> list:
        """The claims of one batch in one statement: each its row, or None."""
        sids, pollers, untils = zip(*claims)
        rows = await self._db.query(
            "WITH v AS (SELECT * FROM unnest(%(sids)s::text[], %(pollers)s::text[],"
            " %(untils)s::float8[]) AS v (sid, poller, until)),"
            " c AS (UPDATE n2_engineio_sessions t SET poller = v.poller, poll_until = v.until"
            " FROM v WHERE t.sid = v.sid AND t.state <> 'upgraded' AND " + _UNCLAIMED +
            " RETURNING " + _STATE + ", t.sid, t.poller)"
            " SELECT c.*, ARRAY(SELECT seq FROM n2_engineio_packets p WHERE p.sid = c.sid"
            " ORDER BY seq), ARRAY(SELECT frame FROM n2_engineio_packets p WHERE p.sid = c.sid"
            " ORDER BY seq) FROM c",
            {"sids": list(sids), "pollers": list(pollers), "untils": list(untils),
             "now": self._clock.seconds()})
        # Two GETs of one session in one batch: one of them wins, the other finds the
        # session claimed (a concurrent GET).
        won = {(row[_COLUMNS], row[_COLUMNS + 1]): row[:_COLUMNS] + row[_COLUMNS + 2:]
               for row in rows}
        return [won.get((sid, poller)) for sid, poller, _ in claims]

    async def _why_not_claimed(self, sid: str) -> None:
        rows = await self._db.query(
            "SELECT state FROM n2_engineio_sessions WHERE sid = %s", (sid,))
        if not rows:
            raise UnknownSession(sid)
        if rows[0][0] == "upgraded":
            raise SessionUpgraded(sid)
        raise ConcurrentPoll(sid)

    async def peek(self, sid: str, after_seq: int) -> tuple[str | None, list, tuple[str, ...]]:
        """The session's state (None: gone), its control packets after ``after_seq``
        and its rooms."""
        rows = await self._db.query(
            "SELECT state, rooms, ARRAY(SELECT seq FROM n2_engineio_packets WHERE sid = %(sid)s"
            " AND seq > %(seq)s ORDER BY seq), ARRAY(SELECT frame FROM n2_engineio_packets"
            " WHERE sid = %(sid)s AND seq > %(seq)s ORDER BY seq)"
            " FROM n2_engineio_sessions WHERE sid = %(sid)s", {"sid": sid, "seq": after_seq})
        if not rows:
            return None, [], ()
        state, rooms, seqs, frames = rows[0]
        return state, list(zip(seqs, frames)), tuple(rooms)

    async def finish_poll(self, sid: str, poller: str, *, delivered: int,
                          seen: tuple[int, Sequence[str]] | None, through_seq: int,
                          pinged: bool, lifetime: float, pong_within: float) -> int | None:
        """End the claim, recording what this GET delivered, and return the offset
        the session now follows; None when it was closed or taken from this GET
        meanwhile (then nothing is recorded).

        ``seen``: the GET saw every event in these rooms through this offset, so the
        session follows from there if its rooms are still those. (Delivered alone
        stays at the last event of its rooms: a room joined later would then start
        there, long before the join.)"""
        now = self._clock.seconds()
        through, rooms = seen if seen is not None else (0, ())
        return await self._finishes((sid, poller, delivered, through, json.dumps(list(rooms)),
                                     through_seq, pinged, now, now + lifetime,
                                     now + pong_within))

    async def _finish_all(self, finishes: list[tuple]) -> list[int | None]:
        """The ends of the claims of one batch in one statement: each the offset its
        session follows, or None when not kept."""
        columns = [list(column) for column in zip(*finishes)]
        rows = await self._db.query(
            "WITH v AS (SELECT v.*, ARRAY(SELECT jsonb_array_elements_text(v.rooms::jsonb))"
            " AS seen_rooms FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::bigint[],"
            " %s::text[], %s::bigint[], %s::bool[], %s::float8[], %s::float8[], %s::float8[])"
            " AS v (sid, poller, delivered, seen, rooms, seq, pinged, now, expires, pong_due)),"
            " s AS (UPDATE n2_engineio_sessions t SET poller = NULL, poll_until = NULL,"
            " delivered = GREATEST(t.delivered, v.delivered, CASE WHEN t.rooms @> v.seen_rooms"
            " AND t.rooms <@ v.seen_rooms THEN v.seen ELSE 0 END), expires_at = v.expires,"
            " ping_at = CASE WHEN v.pinged THEN v.now ELSE t.ping_at END,"
            " pong_due = CASE WHEN v.pinged THEN v.pong_due ELSE t.pong_due END"
            " FROM v WHERE t.sid = v.sid AND t.poller = v.poller RETURNING t.sid, v.poller,"
            " v.seq, t.delivered), d AS (DELETE FROM n2_engineio_packets p USING s"
            " WHERE p.sid = s.sid AND p.seq <= s.seq) SELECT sid, poller, delivered FROM s",
            columns)
        follows = {(sid, poller): delivered for sid, poller, delivered in rows}
        return [follows.get((sid, poller)) for sid, poller, *_ in finishes]

    async def release(self, sid: str, poller: str) -> None:
        """The GET's client went away: end the claim, deliver nothing."""
        await self._db.execute(
            "UPDATE n2_engineio_sessions SET poller = NULL, poll_until = NULL"
            " WHERE sid = %s AND poller = %s", (sid, poller))

    async def load(self, sid: str) -> PollingState | None:
        rows = await self._db.query(
            "SELECT " + _STATE + " FROM n2_engineio_sessions WHERE sid = %s", (sid,))
        return PollingState.from_row(sid, rows[0]) if rows else None

    async def apply(self, sid: str, changes: Changes) -> bool:
        """Write a POST's effects and wake the session's GET; False when the session
        has too many control packets waiting (it was then closed)."""
        sets, params = [], {"sid": sid}
        if changes.ponged:
            sets.append("pong_due = NULL")
        if changes.identity is not None:
            sets.append("pid = %(pid)s, sub = %(sub)s, grants = %(grants)s::text[],"
                        " development = %(development)s, token_exp = %(token_exp)s")
            params.update(pid=changes.pid, sub=changes.identity.sub,
                          grants=list(changes.identity.rooms),
                          development=changes.identity.development,
                          token_exp=changes.identity.expires)
        if changes.rooms is not None:
            sets.append("rooms = %(rooms)s::text[]")
            params["rooms"] = sorted(changes.rooms)
        if changes.delivered is not None:
            sets.append("delivered = %(delivered)s")
            params["delivered"] = changes.delivered
        statements = []
        if sets:
            statements.append("UPDATE n2_engineio_sessions SET " + ", ".join(sets)
                              + " WHERE sid = %(sid)s")
        if changes.frames:
            values = ", ".join(f"(%(sid)s, %(f{i})s)" for i in range(len(changes.frames)))
            params.update({f"f{i}": frame for i, frame in enumerate(changes.frames)})
            statements.append("INSERT INTO n2_engineio_packets (sid, frame) SELECT * FROM"
                              " (VALUES " + values + ") v WHERE EXISTS (SELECT 1 FROM"
                              " n2_engineio_sessions WHERE sid = %(sid)s)")
            statements.append(_NOTIFY)
            statements.append("SELECT count(*) FROM n2_engineio_packets WHERE sid = %(sid)s")
        if not changes.frames:
            if changes.rooms is not None:
                # The session's GET, wherever it waits, must stop serving a room left.
                await self._db.query(statements[0] + "; " + _NOTIFY, params)
            elif statements:
                await self._db.execute(statements[0], params)
            return True
        rows = await self._db.query("; ".join(statements), params)
        if rows[0][0] > MAX_PENDING:
            await self.close(sid)
            return False
        return True

    async def close(self, sid: str) -> None:
        """Delete the session; its GET, wherever it waits, answers CLOSE."""
        await self._db.query("DELETE FROM n2_engineio_sessions WHERE sid = %(sid)s; " + _NOTIFY,
                             {"sid": sid})

    async def mark_upgrading(self, sid: str) -> None:
        """A WebSocket probe succeeded: the pending GET answers NOOP at once."""
        await self._db.query(
            "UPDATE n2_engineio_sessions SET state = 'upgrading' WHERE sid = %(sid)s"
            " AND state = 'polling'; " + _NOTIFY, {"sid": sid})

    async def cancel_upgrade(self, sid: str) -> None:
        """The probing WebSocket went before the upgrade: the session polls again."""
        await self._db.execute(
            "UPDATE n2_engineio_sessions SET state = 'polling' WHERE sid = %s"
            " AND state = 'upgrading'", (sid,))

    async def take_over(self, sid: str, linger: float) -> tuple[PollingState, list[str]] | None:
        """The upgrade: the session leaves polling (a late poll is told so for
        ``linger`` seconds); returns its state and the control packets not yet sent."""

        async def work(tx) -> tuple[PollingState, list[str]] | None:
            rows = await tx.query(
                "UPDATE n2_engineio_sessions t SET state = 'upgraded', expires_at = %(expires)s"
                " WHERE sid = %(sid)s AND state <> 'upgraded' AND " + _UNCLAIMED
                + " RETURNING " + _STATE, {"sid": sid, "now": self._clock.seconds(),
                                           "expires": self._clock.seconds() + linger})
            if not rows:
                return None
            packets = await tx.query(
                "DELETE FROM n2_engineio_packets WHERE sid = %s RETURNING seq, frame", (sid,))
            # Sent at commit: what lingers for the session on any gateway ends.
            await tx.execute(_NOTIFY, {"sid": sid})
            return PollingState.from_row(sid, rows[0]), [f for _, f in sorted(packets)]

        return await self._db.transaction(work)

    async def sweep(self, recovery_ttl: float) -> None:
        """Close the sessions whose client stopped polling or answering pings, or never
        connected the namespace; keep the recovery sessions of the polling ones alive
        (any gateway may do it).

        A recovery session is extended only once a quarter of its TTL has passed, as
        the WebSocket keeper does: the sweep comes every few seconds from every
        gateway, and rewrote each polling client's (logged) row every time."""
        now = self._clock.seconds()
        try:
            await self._db.query(
                "UPDATE n2_socketio_sessions SET expires_at = NOW() + make_interval(secs => %(ttl)s)"
                " WHERE expires_at < NOW() + make_interval(secs => %(ttl)s * 0.75)"
                " AND pid IN (SELECT pid FROM n2_engineio_sessions WHERE pid IS NOT NULL"
                " AND state <> 'upgraded');"
                " WITH gone AS (DELETE FROM n2_engineio_sessions WHERE pong_due < %(now)s"
                " OR (pid IS NULL AND connect_by < %(now)s)"
                " OR (expires_at < %(now)s AND (poller IS NULL OR poll_until < %(now)s))"
                " RETURNING sid) SELECT count(pg_notify('" + CHANNEL + "', sid)) FROM gone",
                {"now": now, "ttl": recovery_ttl})
        except DatabaseUnavailable as e:
            self.log.warn("Engine.IO polling sessions not swept: {reason}", reason=str(e))
