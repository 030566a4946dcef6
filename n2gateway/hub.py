"""Rooms, sessions and fan-out: the journal, delivered to whoever is listening.

The hub of each gateway follows the shared journal: it wakes on the doorbell (a
NOTIFY after every append) and on a short poll, so a silently dead LISTEN
connection delays delivery by at most one poll interval and loses nothing. It reads
everything after the last offset it dispatched, in order, and hands each event to
the sessions in its rooms: each event is encoded once per wire format (and room,
where the format names it) and the same prepared frame goes to every receiver.

A session subscribing with an offset is replayed from the journal first. Live
events that arrive meanwhile are held for it and sent after the replay, so the
client sees no gap, no duplicate and no reordering at the seam.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger

from n2gateway.db import DatabaseUnavailable
from n2gateway.downstream.auth import Identity
from n2gateway.journal import READ_BATCH, Event, Journal

MAX_HELD = 10_000  # live events held for one session while its replay runs


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

    def close_slow(self) -> None: ...

    def close(self, code: int, reason: str) -> None: ...


class Refused(Exception):
    """A subscription the client may not have; the message is safe to send back."""


@dataclass
class Subscription:
    live: bool
    #: Events above this offset were offered to the session through this room.
    live_since: int = 0
    held: list[Event] = field(default_factory=list)


class Session:
    """One downstream client, whatever its protocol, as the hub sees it."""

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

    def offer(self, event: Event, frames: dict) -> None:
        """A live event in at least one of this session's rooms."""
        held_in = None
        for room in event.rooms:
            subscription = self.subscriptions.get(room)
            if subscription is None:
                continue
            if subscription.live:
                self._send(event, room, frames)
                return
            held_in = held_in or subscription
        if held_in is not None:
            if len(held_in.held) >= MAX_HELD:
                self.channel.close_slow()
                return
            held_in.held.append(event)

    def _send(self, event: Event, room: str, frames: dict) -> None:
        key = (self.wire, room if self.wire.names_room else None)
        frame = frames.get(key)
        if frame is None:
            frame = frames[key] = self.wire.prepare(event, room)
        self.channel.send_prepared(frame)

    def _sent_live(self, event: Event) -> bool:
        """Whether ``event`` already reached this session through a live room."""
        return any(
            (s := self.subscriptions.get(room)) is not None and s.live and event.offset > s.live_since
            for room in event.rooms)

    def join(self, room: str) -> None:
        """Join ``room`` from now on, without replay."""
        if room not in self.subscriptions:
            self.subscriptions[room] = Subscription(live=True, live_since=self.hub.head)
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
        ``offset`` in one offset-ordered pass (as ``subscribe`` does for one room).

        One pass rather than one ``subscribe`` per room: rooms replayed one after the
        other would send an event in two of them twice, and an older event of the
        second room after newer live events of the first, so a client that keeps its
        last offset would resume from the wrong place.
        """
        for room in rooms:
            if not self.identity.may_join(room):
                raise Refused(f"not allowed to join {room}")
        # Rooms that were live: what they delivered since then is not sent again.
        delivered_since = {room: s.live_since for room in rooms
                           if (s := self.subscriptions.get(room)) is not None and s.live}
        resumed = {room: Subscription(live=False) for room in rooms}
        for room, subscription in resumed.items():
            self.subscriptions[room] = subscription
            self.hub._add(room, self)
        through = self.hub.head
        horizon = await self.hub.journal.horizon()
        if offset < horizon:
            on_gap()
        after = max(offset, horizon)
        while after < through and not self.closed:
            events = await self.hub.journal.replay(rooms, after, through)
            if not events:
                break
            for event in events:
                if self._sent_live(event) or any(
                        event.offset > delivered_since.get(room, event.offset)
                        for room in event.rooms):
                    continue
                self._send(event, self._room_of(event, resumed), {})
                self.hub.replayed += 1
            after = events[-1].offset
        current = [s for room, s in resumed.items() if self.subscriptions.get(room) is s]
        held = sorted({e.offset: e for s in current for e in s.held}.values(),
                      key=lambda e: e.offset)
        for event in held:
            if not self._sent_live(event):
                self._send(event, self._room_of(event, resumed), {})
        for subscription in current:
            subscription.held.clear()
            subscription.live, subscription.live_since = True, through

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
                events = await self.journal.read_after(self.head, READ_BATCH)
                for event in events:
                    self.dispatch(event)
                if len(events) == READ_BATCH:
                    self._wanted = True  # a full page may have more behind it
        except DatabaseUnavailable as e:
            self.log.warn("hub cannot read the journal ({reason}); next poll retries",
                          reason=str(e))
        except Exception:
            self.log.failure("hub read failed")
        finally:
            self._reading = False

    def dispatch(self, event: Event) -> None:
        receivers: set[Session] = set()
        for room in event.rooms:
            members = self.rooms.get(room)
            if members:
                receivers.update(members)
        frames: dict = {}
        for session in receivers:
            session.offer(event, frames)
        self.head = event.offset
        self.delivered += len(receivers)

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
        }
