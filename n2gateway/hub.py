"""Rooms, sessions and fan-out: the journal, delivered to whoever is listening.

The hub of each gateway follows the shared journal: it wakes on the doorbell (a
NOTIFY after every append) and on a short poll, so a silently dead LISTEN
connection delays delivery by at most one poll interval and loses nothing. It reads
everything after the last offset it dispatched, in order, and hands each event to
the sessions in its rooms: each event is encoded once per wire format (and room,
where the format names it) and the same prepared frame goes to every receiver.
Events read together (the hub fell behind, or a burst) reach each connection in
one write rather than one per event, so the busier it is, the less each costs.

A session subscribing with an offset is replayed from the journal first. Live
events that arrive meanwhile are held for it and sent after the replay, so the
client sees no gap, no duplicate and no reordering at the seam.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger

from n2gateway.db import DatabaseUnavailable
from n2gateway.downstream.auth import Identity
from n2gateway.journal import Event, Journal, is_full_page
from n2gateway.traffic import SourceTally

MAX_HELD = 10_000  # live events held for one session while its replay runs
#: Payload bytes dispatched before the hub lets the reactor write to the sockets: a
#: burst written in one turn would fill a fast client's outbox as if it were slow.
TURN_BYTES = 64 * 1024
TOP_ROOMS = 10  # rooms listed in the status answer, busiest first


class Wire(Protocol):
    """A wire format: how an event becomes a frame for one kind of client."""

    #: Whether the frame names the room it was delivered through (then it is
    #: prepared once per room rather than once per event).
    names_room: bool
    #: The endpoint's name in status answers ("ws", "socket.io").
    protocol_name: str

    def prepare(self, event: Event, room: str) -> Any: ...


class Channel(Protocol):
    """The connection under a session, as the hub drives it."""

    def send_prepared(self, frame: Any) -> None: ...

    def send_batch(self, frames: Sequence[Any]) -> None:
        """Several frames, in order, written together."""

    def close_slow(self) -> None: ...

    def close(self, code: int, reason: str) -> None: ...

    def writable(self) -> defer.Deferred:
        """Fires when the connection takes frames without buffering them."""


class Refused(Exception):
    """A subscription the client may not have; the message is safe to send back."""


class Outgoing:
    """The frames of events dispatched together, gathered per channel until
    ``flush``: a connection then gets a batch of events in one write (one system
    call), not one write per event, as the hub falls behind under load."""

    def __init__(self) -> None:
        self._frames: dict[Channel, list] = {}

    def add(self, channel: Channel, frame: Any) -> None:
        self._frames.setdefault(channel, []).append(frame)

    def flush(self) -> None:
        pending, self._frames = self._frames, {}
        for channel, frames in pending.items():
            channel.send_batch(frames)


@dataclass
class Subscription:
    #: Events in the room above ``since`` are this subscription's to deliver: up to
    #: ``progress`` while its replay runs, all of them once it is live.
    since: int
    live: bool = True
    progress: int = 0
    #: Live events that arrived during the replay, sent when it ends.
    held: list[Event] = field(default_factory=list)

    def covers(self, offset: int) -> bool:
        return self.since < offset and (self.live or offset <= self.progress)


class Session:
    """One downstream client, whatever its protocol, as the hub sees it.

    Each event reaches a session at most once, through the first room that covers
    it, however its rooms' replays and live deliveries interleave.
    """

    log = Logger()

    def __init__(self, hub: "Hub", identity: Identity, wire: Wire, channel: Channel) -> None:
        self.hub = hub
        self.identity = identity
        self.wire = wire
        self.channel = channel
        self.subscriptions: dict[str, Subscription] = {}
        self.closed = False

    @property
    def rooms(self) -> list[str]:
        return sorted(self.subscriptions)

    def offer(self, event: Event, frames: dict, out: Outgoing | None) -> None:
        """A live event in at least one of this session's rooms; its frame goes to
        ``out`` if given, else straight to the channel."""
        replaying = []
        for room in event.rooms:
            subscription = self.subscriptions.get(room)
            if subscription is None or subscription.since >= event.offset:
                continue
            if subscription.live:
                frame = self._frame(event, room, frames)
                if out is None:
                    self.channel.send_prepared(frame)
                else:
                    out.add(self.channel, frame)
                return
            replaying.append(subscription)
        # Held by every replaying room: the first to go live sends it, the others
        # then see it covered.
        for subscription in replaying:
            if len(subscription.held) >= MAX_HELD:
                self.channel.close_slow()
                return
            subscription.held.append(event)

    def _frame(self, event: Event, room: str, frames: dict) -> Any:
        key = (self.wire, room if self.wire.names_room else None)
        frame = frames.get(key)
        if frame is None:
            frame = frames[key] = self.wire.prepare(event, room)
        return frame

    def _send(self, event: Event, room: str) -> None:
        self.channel.send_prepared(self._frame(event, room, {}))

    def _delivered(self, event: Event) -> bool:
        """Whether ``event`` already reached this session through one of its rooms."""
        return any((s := self.subscriptions.get(room)) is not None and s.covers(event.offset)
                   for room in event.rooms)

    def join(self, room: str) -> None:
        """Join ``room`` from now on, without replay."""
        if room not in self.subscriptions:
            self.subscriptions[room] = Subscription(since=self.hub.head)
            self.hub._add(room, self)

    async def subscribe(self, room: str, offset: int | None = None,
                        on_gap: Callable[[], None] = lambda: None) -> None:
        """Join ``room``; with ``offset``, first replay what it missed after that offset.

        When the offset is older than retention, ``on_gap`` is called before the
        replay (the client must be told that events are gone); what is still retained
        is replayed anyway.
        """
        if offset is None:
            if not self.identity.may_join(room):
                raise Refused(f"not allowed to join {room}")
            self.join(room)
            return
        await self.resume([room], offset, on_gap)

    async def resume(self, rooms: list[str], offset: int,
                     on_gap: Callable[[], None] = lambda: None) -> None:
        """Join ``rooms`` together, first replaying what any of them missed after
        ``offset`` in one offset-ordered pass.

        One pass rather than one replay per room: rooms replayed one after the other
        would send an older event of the second room after newer live events of the
        first, and a client that keeps its last offset would resume from the wrong place.
        """
        for room in rooms:
            if not self.identity.may_join(room):
                raise Refused(f"not allowed to join {room}")
        # Re-subscribing a live room: what it delivered since then is not sent again.
        delivered_since = {room: s.since for room in rooms
                           if (s := self.subscriptions.get(room)) is not None and s.live}
        through = self.hub.head
        resumed = {room: Subscription(since=min(offset, delivered_since.get(room, offset)),
                                      live=False, progress=offset) for room in rooms}
        for room, subscription in resumed.items():
            self.subscriptions[room] = subscription
            self.hub._add(room, self)
        horizon = await self.hub.journal.horizon()
        if offset < horizon:
            on_gap()
        after = max(offset, horizon)

        def current() -> list[Subscription]:
            return [] if self.closed else [
                s for room, s in resumed.items() if self.subscriptions.get(room) is s]

        while after < through and current():
            events = await self.hub.journal.replay(rooms, after, through)
            if not events or not current():
                break
            for event in events:
                # Pull at the client's pace: a long replay must not overflow the outbox.
                await self.channel.writable()
                if not current():
                    return
                sent_live = any(event.offset > delivered_since.get(room, event.offset)
                                for room in event.rooms)
                if not self._delivered(event) and not sent_live:
                    self._send(event, self._room_of(event, resumed))
                    self.hub.replayed += 1
                after = event.offset
                for subscription in resumed.values():
                    subscription.progress = after
        still = current()
        held = sorted({e.offset: e for s in still for e in s.held}.values(),
                      key=lambda e: e.offset)
        for event in held:
            if not self._delivered(event):
                self._send(event, self._room_of(event, resumed))
        for subscription in still:
            subscription.held.clear()
            subscription.live = True

    @staticmethod
    def _room_of(event: Event, rooms: dict[str, Subscription]) -> str:
        return next(room for room in event.rooms if room in rooms)

    def unsubscribe(self, room: str) -> None:
        if self.subscriptions.pop(room, None) is not None:
            self.hub._remove(room, self)

    def close(self) -> None:
        self.closed = True
        for room in list(self.subscriptions):
            self.unsubscribe(room)
        self.hub.sessions.discard(self)


class Hub(service.Service):
    """Follows the journal and fans events out to this gateway's sessions."""

    log = Logger()

    def __init__(self, journal: Journal, reactor: Any, poll_interval: float = 1.0) -> None:
        self.journal = journal
        self.reactor = reactor
        self.poll_interval = poll_interval
        self.head = 0
        self.rooms: dict[str, set[Session]] = defaultdict(set)
        self.sessions: set[Session] = set()
        self.ready = False
        self.delivered = 0
        self.replayed = 0
        self._wanted = False
        self._reading = False
        self._poll = task.LoopingCall(self.wake)
        self._poll.clock = reactor
        self.traffic = SourceTally()

    def startService(self) -> None:
        super().startService()
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
            self._poll.start(self.poll_interval, now=False)
            self.log.info("hub following the journal from offset {head}", head=self.head)

    def stopService(self) -> None:
        super().stopService()
        if self._poll.running:
            self._poll.stop()

    def connect(self, identity: Identity, wire: Wire, channel: Channel) -> Session:
        session = Session(self, identity, wire, channel)
        self.sessions.add(session)
        return session

    def _add(self, room: str, session: Session) -> None:
        self.rooms[room].add(session)

    def _remove(self, room: str, session: Session) -> None:
        members = self.rooms.get(room)
        if members is not None:
            members.discard(session)
            if not members:
                del self.rooms[room]

    def wake(self) -> None:
        """Something may have been appended: read the journal soon (coalesced)."""
        if not self.ready:
            return
        self._wanted = True
        if not self._reading:
            self._reading = True
            defer.Deferred.fromCoroutine(self._read())

    async def _read(self) -> None:
        try:
            while self._wanted and self.running:
                self._wanted = False
                events = await self.journal.read_after(self.head)
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
                if is_full_page(events):
                    self._wanted = True
        except DatabaseUnavailable as e:
            self.log.warn("hub cannot read the journal ({reason}); next poll retries",
                          reason=str(e))
        except Exception:
            self.log.failure("hub read failed")
        finally:
            self._reading = False

    def dispatch(self, event: Event, out: Outgoing | None = None) -> None:
        """Hand ``event`` to the sessions in its rooms; with ``out``, their frames wait
        there for the caller's flush."""
        receivers: set[Session] = set()
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
