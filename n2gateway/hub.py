"""Rooms, sessions and fan-out: the journal, delivered to whoever is listening.

The hub of each gateway follows the shared journal: it wakes on the doorbell (a
NOTIFY after every append) and on a short poll, so a silently dead LISTEN
connection delays delivery by at most one poll interval and loses nothing. It reads
everything after the last offset it dispatched, in order, and hands each event to
the sessions in its rooms: each event is encoded once per wire format (and room,
where the format names it) and the same prepared frame goes to every receiver, in
the order they joined the room, as Node's socket.io does. (A set's hash order would
spread one client machine's connections over the whole burst, waking its event loop
once per few frames instead of once per many.)
Events read together (the hub fell behind, or a burst) reach each connection in
one write rather than one per event, so the busier it is, the less each costs.

This gateway's own appends are handed to its hub as they commit, offsets and all:
when they follow on from the last offset dispatched, nothing can lie between (the
journal commits appends one at a time, in offset order), so they go out without
being read back. Anything else (another gateway's events, a hole, a backlog) is
read from the journal as before.

The sessions themselves, and their replays, are in ``session.py``.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from typing import Any, Sequence

from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger

from n2gateway.db import DatabaseUnavailable
from n2gateway.journal import READ_BATCH, Event, Journal, is_full_page
from n2gateway.scheduling import Coalescer, Periodic
from n2gateway.session import Channel, Grants, Outgoing, Session, Wire
from n2gateway.traffic import SourceTally

#: Payload bytes dispatched before the hub lets the reactor write to the sockets: a
#: burst written in one turn would fill a fast client's outbox as if it were slow.
TURN_BYTES = 64 * 1024
TOP_ROOMS = 10  # rooms listed in the status answer, busiest first
DEFAULT_MAX_SUBSCRIPTIONS = 1000  # rooms per session, its own user: room included


class Hub(service.Service):
    """Follows the journal and fans events out to this gateway's sessions."""

    log = Logger()

    def __init__(self, journal: Journal, reactor: Any, poll_interval: float = 1.0,
                 max_subscriptions: int = DEFAULT_MAX_SUBSCRIPTIONS) -> None:
        self.journal = journal
        self.reactor = reactor
        self.poll_interval = poll_interval
        self.max_subscriptions = max_subscriptions
        self.head = 0
        #: Each room's sessions, in the order they joined (a dict: an ordered set).
        self.rooms: dict[str, dict[Session, None]] = defaultdict(dict)
        self.sessions: set[Session] = set()
        self.ready = False
        self.delivered = 0
        self.replayed = 0
        self._reads = Coalescer(self._read, what="hub read")
        #: This gateway's events committed since the last read, in commit order; None
        #: once more than a page came: the read fetches them instead.
        self._committed: list[Event] | None = []
        #: Something else may have been appended: the next read asks the journal.
        self._look = False
        self._poll = Periodic(poll_interval, self.wake, reactor, what="hub poll")
        self.traffic = SourceTally()

    def startService(self) -> None:
        super().startService()
        self._reads.start()
        defer.Deferred.fromCoroutine(self._start())

    async def _start(self) -> None:
        while self.running and not self.ready:
            try:
                self.head = await self.journal.head()
            except DatabaseUnavailable as e:
                self.log.warn("hub waiting for the journal: {reason}", reason=str(e))
                await task.deferLater(self.reactor, self.poll_interval)
                continue
            self.ready = True
        if self.running:
            self._poll.startService()
            self.log.info("hub following the journal from offset {head}", head=self.head)

    def stopService(self) -> None:
        super().stopService()
        self._reads.stop()  # a read under way ends on its own: nothing waits for it
        if self._poll.running:
            self._poll.stopService()

    def connect(self, identity: Grants, wire: Wire, channel: Channel) -> Session:
        session = Session(self, identity, wire, channel)
        self.sessions.add(session)
        return session

    # Host, for the sessions: the room index and the counters are written only here.

    def enter(self, room: str, session: Session) -> None:
        self.rooms[room][session] = None

    def leave(self, room: str, session: Session) -> None:
        members = self.rooms.get(room)
        if members is not None:
            members.pop(session, None)
            if not members:
                del self.rooms[room]

    def ended(self, session: Session) -> None:
        self.sessions.discard(session)

    def count_replayed(self) -> None:
        self.replayed += 1

    def wake(self) -> None:
        """Something may have been appended: read the journal soon (coalesced)."""
        if self.ready and self.running:
            self._look = True
            self._reads.request()

    def committed(self, events: Sequence[Event]) -> None:
        """This gateway appended ``events`` (all of one commit, as stored; none: not
        known) and they are durable: send them soon, reading them back only if they
        do not follow on from what was dispatched."""
        if not events:
            self.wake()
        elif self.ready and self.running:
            if self._committed is not None and len(self._committed) + len(events) <= READ_BATCH:
                self._committed.extend(events)
            else:
                self._committed = None
            self._reads.request()

    def _follow_on(self) -> list[Event] | None:
        """The events handed over since the last read, when they are exactly what a
        read would return: offsets on from ``head`` without a hole. None: read."""
        committed, self._committed = self._committed, []
        look, self._look = self._look, False
        if look or committed is None:
            return None
        fresh = [event for event in committed if event.offset > self.head]
        expected = self.head + 1
        for event in fresh:
            if event.offset != expected:
                return None
            expected += 1
        return fresh

    async def _read(self) -> None:
        events = self._follow_on()
        if events is None:
            try:
                events = await self.journal.read_after(self.head)
            except DatabaseUnavailable as e:
                self.log.warn("hub cannot read the journal ({reason}); next poll retries",
                              reason=str(e))
                return
            if is_full_page(events):
                self.wake()
        written = 0
        # One event (the usual case below saturation) goes straight out.
        out = Outgoing() if len(events) > 1 else None
        try:
            for event in events:
                if written > TURN_BYTES:
                    out.flush()  # past a first event: out is an Outgoing
                    written = 0
                    await task.deferLater(self.reactor, 0)
                    if not self.running:
                        return
                self.dispatch(event, out)
                written += len(event.payload_json)
        finally:
            if out is not None:
                out.flush()

    def dispatch(self, event: Event, out: Outgoing | None = None) -> None:
        """Hand ``event`` to the sessions in its rooms; with ``out``, their frames wait
        there for the caller's flush."""
        receivers: dict[Session, None] = {}
        for room in event.rooms:
            members = self.rooms.get(room)
            if members:
                receivers.update(members)
        frames: dict = {}
        for session in receivers:
            session.offer(event, frames, out)
        self.head = event.offset
        self.delivered += len(receivers)
        self.traffic.count(event.rooms[0], len(receivers))

    async def close_all(self, code: int, reason: str, timeout: float = 2.0) -> None:
        """Ask every client to go, and give the closing handshakes ``timeout`` seconds."""
        for session in list(self.sessions):
            session.channel.close(code, reason)
        waited = 0.0
        while self.sessions and waited < timeout:
            await task.deferLater(self.reactor, 0.05)
            waited += 0.05

    def status(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "head": str(self.head),
            "connections": len(self.sessions),
            "rooms": len(self.rooms),
            "delivered": self.delivered,
            "replayed": self.replayed,
            "pendingAppends": self.journal.pending,
            "topRooms": [{"room": room, "connections": len(members)} for room, members in
                         heapq.nlargest(TOP_ROOMS, self.rooms.items(), key=lambda r: len(r[1]))],
        }
