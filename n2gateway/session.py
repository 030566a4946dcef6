"""One downstream client as the hub sees it, whatever its protocol: its rooms, what
it may join, and the replay that brings a resuming client up to the live stream.

A session subscribing with an offset is replayed from the journal first. Live
events that arrive meanwhile are held for it and sent after the replay, so the
client sees no gap, no duplicate and no reordering at the seam.

A session reaches its hub only through `Host`, and its client's identity only
through `Grants`: the hub's room index stays the hub's, and this layer knows
nothing of tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol, Sequence

from twisted.internet import defer
from twisted.logger import Logger

from n2gateway.journal import Event, Journal

MAX_HELD = 10_000  # live events held for one session while its replay runs
MAX_NAME = 200  # characters of a user id or a room name


class Grants(Protocol):
    """A client's identity, as far as its rooms go (``downstream.auth.Identity``)."""

    def may_join(self, room: str) -> bool: ...


class Host(Protocol):
    """What a session needs of its hub: the offset dispatched so far, the journal to
    replay from, and the hub's room index, which only the hub writes."""

    head: int
    max_subscriptions: int
    journal: Journal

    def enter(self, room: str, session: Session) -> None: ...

    def leave(self, room: str, session: Session) -> None: ...

    def ended(self, session: Session) -> None: ...

    def count_replayed(self) -> None: ...


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


@dataclass(slots=True)
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


def name_problem(value: object) -> str | None:
    """Why ``value`` cannot name a user or a room, or None when it can.

    Names travel into PostgreSQL text (no NUL), JSON sent as UTF-8 (no lone
    surrogate) and log lines (no control character).
    """
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    if len(value) > MAX_NAME:
        return f"must be at most {MAX_NAME} characters"
    if any(ord(c) < 0x20 or ord(c) == 0x7F or 0xD800 <= ord(c) <= 0xDFFF for c in value):
        return "must not contain control characters or lone surrogates"
    return None


def check_joinable(identity: Grants, held: Iterable[str], rooms: Sequence[str],
                   limit: int) -> None:
    """Raise `Refused` unless ``identity``, in ``held``, may also be in ``rooms``."""
    for room in rooms:
        if (problem := name_problem(room)) is not None:
            raise Refused(f"room {problem}")
        if not identity.may_join(room):
            raise Refused(f"not allowed to join {room}")
    if len(set(held) | set(rooms)) > limit:
        raise Refused(f"at most {limit} rooms per connection (--max-subscriptions)")


class Session:
    """One downstream client, whatever its protocol, as the hub sees it.

    Each event reaches a session at most once, through the first room that covers
    it, however its rooms' replays and live deliveries interleave.
    """

    log = Logger()
    # One per connection, most of them idle.
    __slots__ = ("hub", "identity", "wire", "channel", "subscriptions", "closed")

    def __init__(self, hub: Host, identity: Grants, wire: Wire, channel: Channel) -> None:
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

    def _check_joinable(self, rooms: Sequence[str]) -> None:
        check_joinable(self.identity, self.subscriptions.keys(), rooms,
                       self.hub.max_subscriptions)

    def reauthorize(self, identity: Grants) -> list[str]:
        """Go on as ``identity`` (a refreshed token): leave the rooms it does not allow,
        and return them."""
        self.identity = identity
        left = [room for room in self.rooms if not identity.may_join(room)]
        for room in left:
            self.unsubscribe(room)
        return left

    def join(self, room: str) -> None:
        """Join ``room`` from now on, without replay."""
        if room not in self.subscriptions:
            self.subscriptions[room] = Subscription(since=self.hub.head)
            self.hub.enter(room, self)

    async def subscribe(self, room: str, offset: int | None = None,
                        on_gap: Callable[[], None] = lambda: None) -> None:
        """Join ``room``; with ``offset``, first replay what it missed after that offset.

        When the offset is older than retention, ``on_gap`` is called before the
        replay (the client must be told that events are gone); what is still retained
        is replayed anyway.
        """
        if offset is None:
            self._check_joinable([room])
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
        self._check_joinable(rooms)
        # Re-subscribing a live room: what it delivered since then is not sent again.
        delivered_since = {room: s.since for room in rooms
                           if (s := self.subscriptions.get(room)) is not None and s.live}
        through = self.hub.head
        resumed = {room: Subscription(since=min(offset, delivered_since.get(room, offset)),
                                      live=False, progress=offset) for room in rooms}
        for room, subscription in resumed.items():
            self.subscriptions[room] = subscription
            self.hub.enter(room, self)
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
                    self.hub.count_replayed()
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
            self.hub.leave(room, self)

    def close(self) -> None:
        self.closed = True
        for room in list(self.subscriptions):
            self.unsubscribe(room)
        self.hub.ended(self)
