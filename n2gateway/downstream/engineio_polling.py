"""The Engine.IO 4 HTTP long-polling transport, served by any gateway of a database.

The handshake GET opens a session in the `PollingStore`; each GET then claims it
(one at a time: a second concurrent GET closes the session, as Engine.IO does),
answers its waiting control packets and the journal's events in its rooms after
the offset it has had them through, and commits the new offset as it ends the
claim: the hub's head, when the GET saw its rooms through it (so that a room
joined later starts there, not at the last event of the others). A GET with
nothing to answer waits on the hub (events) and on the store's NOTIFY (control
packets, upgrade, close from any gateway) until a ping is due, which it then
answers. A POST carries client packets to the Socket.IO layer,
whose effects (the CONNECT answer, acks, rooms) go to the store in one round trip.
At the token's ``exp`` (unless a ``refresh`` moved it) the session ends as a
WebSocket one is closed 4001: its GET answers CLOSE, the session is deleted, and the
Socket.IO session stays recoverable.

After its answer, a GET's hub session lingers on its gateway for up to a ping
timeout, gathering what comes next: if the session's next GET comes to the same
gateway and nothing changed meanwhile (its offset and rooms in the store are what
the lingering session started from), it answers from there without a journal read.

Memory stays bounded: a GET (or a lingering session) takes at most ``max_payload``
bytes of events (the rest stay in the journal for the next GET), a POST at most
``max_payload`` bytes, and a session that stops polling or answering pings is deleted
by the sweeper.
"""

from __future__ import annotations

import math
import secrets
from typing import Any, Callable

from twisted.internet import defer
from twisted.logger import Logger

from n2gateway.codecs.engineio import (CLOSE_FRAME, NOOP_FRAME, PING_FRAME, EnginePacket,
                                       EngineType, OpenInfo, PacketError, decode_payload,
                                       encode_open, encode_payload)
from n2gateway.codecs.socketio import SocketPacket, decode_socket, encode_message
from n2gateway.downstream.auth import Identity
from n2gateway.downstream.engineio_store import (Changes, ConcurrentPoll,
                                                 PollingState, PollingStore, SessionUpgraded,
                                                 UnknownSession)
from n2gateway.downstream.engineio_websocket import CONNECT_TIMEOUT, text_of
from n2gateway.downstream.socketio_namespace import (Namespace, ProtocolError, SocketIoServer,
                                                     packet_failure)
from n2gateway.journal import Event
from n2gateway.scheduling import Periodic
from n2gateway.session import Session, check_joinable

#: The claim of a GET outlives its ping interval by this much if its gateway dies.
CLAIM_SLACK = 10.0


class PollingError(Exception):
    """A request that cannot be served: answered ``status`` with ``{"error": code}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class PollingWire:
    """Hub events as ``(offset, frame text)``: a GET must know how far it delivered."""

    names_room = False
    protocol_name = "socket.io"
    log = Logger()

    def prepare(self, event: Event, room: str) -> tuple[int, str]:
        return event.offset, text_of(event, self.log)


class PendingGet:
    """The hub's channel for one waiting GET: gathers events up to ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self.frames: list[str] = []
        self.delivered: int | None = None
        self.size = 0
        self.full = False
        self.session: Session | None = None
        #: As a lingering tail: the offset its events follow, and when it goes.
        self.start: int | None = None
        self.expiry: Any = None
        #: The session changed in the store (packets, upgrade, close): look again.
        self.notified = False
        self._wake: defer.Deferred = defer.Deferred()

    def send_prepared(self, frame: tuple[int, str]) -> None:
        self.send_batch((frame,))

    def send_batch(self, frames) -> None:
        for offset, text in frames:
            if self.full or self.session is None or self.session.closed:
                return
            self.frames.append(text)
            self.delivered = offset
            self.size += len(text)
            if self.size >= self._limit:
                # The rest waits in the journal for the next GET.
                self.close_slow()
        self.wake()

    def close_slow(self) -> None:
        self.full = True
        if self.session is not None:
            self.session.close()
        self.wake()

    def close(self, code: int, reason: str) -> None:
        self.close_slow()  # the gateway stops: answer what there is

    def writable(self) -> defer.Deferred:
        return defer.succeed(None)

    def notify(self) -> None:
        self.notified = True
        self.wake()

    def cut(self) -> tuple[int, int | None, int]:
        """Where the gathered events end now, for `truncate`."""
        return len(self.frames), self.delivered, self.size

    def truncate(self, cut: tuple[int, int | None, int]) -> None:
        """Forget the events gathered since ``cut``: they stay in the journal."""
        length, self.delivered, self.size = cut
        del self.frames[length:]

    def adopt(self, tail: "PendingGet") -> None:
        """Take over what a lingering hub session gathered since the last GET."""
        self.frames, self.delivered, self.size = tail.frames, tail.delivered, tail.size
        self.session = tail.session
        self.session.channel = self

    def linger(self) -> "PendingGet":
        """A new channel for this GET's hub session: it keeps gathering events after
        the answer, for the session's next GET if that comes to this gateway."""
        tail = PendingGet(self._limit)
        tail.session, self.session = self.session, None
        tail.session.channel = tail
        return tail

    def wake(self) -> None:
        if not self._wake.called:
            self._wake.callback(None)

    def woken(self) -> defer.Deferred:
        """Fires at the next wake-up, or at once for one that came since the last."""
        woken = self._wake
        if woken.called:
            self._wake = defer.Deferred()
        return woken


class PollingLink:
    """The namespace's link for one POST: reads the stored session, collects changes."""

    def __init__(self, state: PollingState, server: SocketIoServer) -> None:
        self.sid = state.sid
        self.pid = state.pid
        self.identity = state.identity
        self._rooms = set(state.rooms)
        self._server = server
        self.changes = Changes(frames=[])
        self.open = True
        self.failure: str | None = None

    @property
    def rooms(self) -> list[str]:
        return sorted(self._rooms)

    def send(self, packet: SocketPacket) -> None:
        self.changes.frames.append(encode_message(packet))

    def start(self, identity: Identity, pid: str) -> None:
        self.identity, self.pid = identity, pid
        self.changes.identity, self.changes.pid = identity, pid
        self._set_rooms({identity.own_room})
        self.changes.delivered = self._server.hub.head

    async def resume(self, rooms: list[str], after: int) -> None:
        self._check_joinable(rooms)
        self._set_rooms(set(rooms))
        self.changes.delivered = after

    async def join(self, room: str) -> None:
        self._check_joinable([room])
        self._set_rooms(self._rooms | {room})

    def _check_joinable(self, rooms: list[str]) -> None:
        check_joinable(self.identity, self._rooms, rooms, self._server.hub.max_subscriptions)

    def leave(self, room: str) -> None:
        self._set_rooms(self._rooms - {room})

    def refresh(self, token: object) -> tuple[Identity, list[str]]:
        identity = self._server.authenticator.refresh(self.identity, token)
        left = [room for room in self.rooms if not identity.may_join(room)]
        self.identity = self.changes.identity = identity
        self.changes.pid = self.pid
        self._set_rooms(self._rooms - set(left))
        return identity, left

    def _set_rooms(self, rooms: set[str]) -> None:
        self._rooms = rooms
        self.changes.rooms = tuple(rooms)

    def stop(self) -> str | None:
        pid, self.pid = self.pid, None
        self._set_rooms(set())
        return pid

    def fail(self, code: int, reason: str) -> None:
        self.open = False
        self.failure = reason


class PollingTransport:
    log = Logger()

    def __init__(self, server: SocketIoServer, store: PollingStore, clock: Any, *,
                 ping_interval: float, ping_timeout: float, max_payload: int) -> None:
        self.server = server
        self.store = store
        self.clock = clock
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.max_payload = max_payload
        self.wire = PollingWire()
        #: sid -> wake-up calls of the GETs waiting here for that session.
        self._waiting: dict[str, set[Callable[[], None]]] = {}
        #: sid -> the hub session its last GET here left gathering events.
        self._tails: dict[str, PendingGet] = {}

    def on_notify(self, sid: str) -> None:
        # The session changed (packets, rooms, an upgrade, a close): what lingers
        # here for it may no longer fit.
        self._drop_tail(sid)
        for notify in list(self._waiting.get(sid, ())):
            notify()

    async def handshake(self) -> str:
        sid = secrets.token_urlsafe(15)
        await self.store.create(sid, self.ping_interval + self.ping_timeout, CONNECT_TIMEOUT)
        return encode_open(OpenInfo(
            sid=sid, ping_interval=self.ping_interval, ping_timeout=self.ping_timeout,
            max_payload=self.max_payload, upgrades=("websocket",)))

    # -- GET ------------------------------------------------------------------------

    async def poll(self, sid: str, gone: defer.Deferred) -> str:
        """The answer to one GET; ``gone`` fires if its client disconnects first."""
        poller = self.store.new_poller()
        pending = PendingGet(self.max_payload)
        # Listening before the claim: a packet committed after it still wakes us.
        self._waiting.setdefault(sid, set()).add(pending.notify)
        gone.addBoth(lambda _: pending.wake())
        try:
            try:
                state, packets = await self.store.claim(
                    sid, poller, self.ping_interval + CLAIM_SLACK)
            except UnknownSession:
                raise PollingError(400, "unknown_session", "unknown or expired sid") from None
            except SessionUpgraded:
                raise PollingError(400, "transport_upgraded",
                                   "this session was upgraded to WebSocket: poll no more") from None
            except ConcurrentPoll:
                await self.store.close(sid)
                raise PollingError(400, "concurrent_poll", "a GET for this session was"
                                   " already pending: the session is closed") from None
            return await self._answer(sid, poller, state, packets, pending, gone)
        finally:
            waiting = self._waiting.get(sid)
            waiting.discard(pending.notify)
            if not waiting:
                del self._waiting[sid]
            if pending.session is not None:
                pending.session.close()

    async def _answer(self, sid: str, poller: str, state: PollingState, packets: list,
                      pending: PendingGet, gone: defer.Deferred) -> str:
        if state.identity is None or state.pid is None:
            self._drop_tail(sid)
        elif not self._adopt_tail(state, pending):
            pending.session = self.server.hub.connect(state.identity, self.wire, pending)
            await self._catch_up(state, pending)
        ping_due = state.ping_at + self.ping_interval
        ends = _token_end(state)
        upgrading, closed, moved = state.state == "upgrading", False, False
        expired = ends <= self.clock.seconds()
        claimed = len(packets)  # produced before this GET; those after follow its events
        cut = None
        while not (packets or pending.frames or upgrading or closed or expired or gone.called
                   or moved):
            if ends <= self.clock.seconds():
                # A POST may have refreshed the token meanwhile.
                current = await self.store.load(sid)
                closed = current is None
                ends = ends if closed else _token_end(current)
                expired = not closed and ends <= self.clock.seconds()
                continue
            wait = min(ping_due, ends) - self.clock.seconds()
            if wait <= 0:
                break
            woken = pending.woken()
            timer = self.clock.callLater(wait, pending.wake)
            await woken
            if timer.active():
                timer.cancel()
            if pending.notified and not gone.called:
                pending.notified = False
                # The session changed: an event gathered from now on may be of a room
                # it left, or belong after a packet produced meanwhile.
                cut = pending.cut()
                current, more, rooms = await self.store.peek(
                    sid, packets[-1][0] if packets else 0)
                closed, upgrading = current is None, current == "upgrading"
                moved = not closed and sorted(rooms) != sorted(state.rooms)
                packets += more
        if gone.called:
            await self.store.release(sid, poller)
            return ""
        if expired:
            await self._end_expired(sid, state.pid)
        if expired or closed:
            return CLOSE_FRAME
        # What arrives from now on is for the next GET: gathered here meanwhile, in
        # case that GET comes to this gateway, else read from the journal there.
        changed = cut is not None and (moved or len(packets) > claimed)
        if changed:
            # As over WebSocket: nothing of a room left after its unsubscribe (or the
            # refresh) took effect; the next GET reads the rest in the rooms it has.
            pending.truncate(cut)
        lingers = (pending.session is not None and not pending.full and not upgrading
                   and not changed)
        # Then the hub session, live in the session's rooms, got every event of
        # them through the hub's head: those not delivered before are in this answer.
        seen = (self.server.hub.head, state.rooms) if lingers else None
        tail = pending.linger() if lingers else None
        frames = ([frame for _, frame in packets[:claimed]] + pending.frames
                  + [frame for _, frame in packets[claimed:]])
        pinged = self.clock.seconds() >= ping_due
        if pinged:
            frames.append(PING_FRAME)
        follows = await self.store.finish_poll(
            sid, poller, delivered=pending.delivered or state.delivered, seen=seen,
            through_seq=packets[-1][0] if packets else 0, pinged=pinged,
            lifetime=self.ping_interval + self.ping_timeout, pong_within=self.ping_timeout)
        if tail is not None:
            if follows is not None:
                self._keep_tail(sid, tail, follows)
            else:
                tail.session.close()
        if follows is None:
            return CLOSE_FRAME
        return encode_payload(frames) if frames else NOOP_FRAME

    async def _end_expired(self, sid: str, pid: str | None) -> None:
        """The token's ``exp`` passed: the Engine.IO session ends (as a WebSocket one
        is closed 4001), its Socket.IO session stays recoverable for --recovery-ttl."""
        self._drop_tail(sid)
        await self.store.close(sid)
        if pid is not None:
            await self.server.sessions.touch([pid])

    def _adopt_tail(self, state: PollingState, pending: PendingGet) -> bool:
        """Give ``pending`` the hub session lingering here since the session's last
        GET, if it gathered everything since: no journal read then."""
        tail = self._tails.pop(state.sid, None)
        if tail is None:
            return False
        tail.expiry.cancel()
        if (tail.start != state.delivered or tail.full
                or tail.session.rooms != sorted(state.rooms)):
            tail.session.close()  # another gateway answered since, or rooms changed
            return False
        pending.adopt(tail)
        return True

    async def _catch_up(self, state: PollingState, pending: PendingGet) -> None:
        if state.delivered == self.server.hub.head:
            # Caught up (the usual wait): live from here, no journal read.
            for room in state.rooms:
                pending.session.join(room)
        else:
            await pending.session.resume(sorted(state.rooms), state.delivered)

    def _keep_tail(self, sid: str, tail: PendingGet, start: int) -> None:
        tail.start = start
        tail.expiry = self.clock.callLater(self.ping_timeout, self._drop_tail, sid)
        self._tails[sid] = tail

    def _drop_tail(self, sid: str) -> None:
        tail = self._tails.pop(sid, None)
        if tail is not None:
            if tail.expiry.active():
                tail.expiry.cancel()
            tail.session.close()

    # -- POST -----------------------------------------------------------------------

    async def post(self, sid: str, body: bytes | None) -> None:
        """Act on the client packets of one POST body (None: one too large to keep);
        raises `PollingError`."""
        state = await self.store.load(sid)
        if state is None:
            raise PollingError(400, "unknown_session", "unknown or expired sid")
        if state.state == "upgraded":
            raise PollingError(400, "transport_upgraded",
                               "this session was upgraded to WebSocket: post no more")
        if _token_end(state) <= self.clock.seconds():
            await self._end_expired(sid, state.pid)
            raise PollingError(400, "token_expired", "token expired; the session is closed")
        if body is None or len(body) > self.max_payload:
            await self.store.close(sid)
            raise PollingError(413, "payload_too_large",
                               f"a POST body holds at most {self.max_payload} bytes"
                               " (maxPayload); the session is closed")
        try:
            packets = decode_payload(body.decode("utf-8"))
        except (PacketError, UnicodeDecodeError) as e:
            await self.store.close(sid)
            if body.startswith(b"b") or b"\x1eb" in body:
                e = "binary packets are not supported; send JSON"
            raise PollingError(400, "bad_payload", f"{e}; the session is closed") from None
        link = PollingLink(state, self.server)
        namespace = Namespace(self.server, link)
        closing = False
        for packet in packets:
            closing = await self._take(packet, link, namespace)
            if closing or not link.open:
                break
        if link.open and not closing:
            if not await self.store.apply(sid, link.changes):
                raise PollingError(400, "too_many_pending", "the session's answers are not"
                                   " being read: the session is closed")
            return
        await self.store.apply(sid, link.changes)
        await self.store.close(sid)
        if link.failure is not None:
            raise PollingError(400, "protocol_error", f"{link.failure}; the session is closed")

    async def _take(self, packet: EnginePacket, link: PollingLink, namespace: Namespace) -> bool:
        """One client packet; True when it closes the session."""
        match packet.type:
            case EngineType.PONG:
                link.changes.ponged = True
            case EngineType.CLOSE:
                return True
            case EngineType.MESSAGE:
                try:
                    await namespace.handle(decode_socket(packet.data))
                except (PacketError, ProtocolError) as e:
                    link.fail(0, packet_failure(e))
            case EngineType.NOOP:
                pass
            case _:
                link.fail(0, f"unexpected Engine.IO {packet.type.name} over polling")
        return False


def _token_end(state: PollingState) -> float:
    """When the session's token expires (never without a connected ``exp``)."""
    expires = state.identity.expires if state.identity is not None else None
    return math.inf if expires is None else expires


class PollingSweeper(Periodic):
    """Every ``interval``: close the polling sessions whose client went quiet."""

    def __init__(self, store: PollingStore, clock: Any, interval: float,
                 recovery_ttl: float) -> None:
        super().__init__(interval, lambda: store.sweep(recovery_ttl), clock,
                         what="polling session sweep")
