"""The Socket.IO namespace protocol, whatever Engine.IO transport carries it.

The chat app's unchanged official client talks to this layer: handshake
``auth: {token}`` (development mode: ``{userId}``), ``emit("subscribe", room, ack)``
and ``emit("unsubscribe", room, ack)`` answered ``{ok: true}`` or
``{ok: false, error}``, ``emit("refresh", token, ack)`` answered ``{ok: true, exp}``
or ``{ok: false, error}`` (the session then ends at the new token's ``exp``), hub
events emitted under their own names with the payload as the argument and the
journal offset as a last string argument.

Connection state recovery works the way socket.io-client expects it: the CONNECT
ack carries a private session id (``pid``); a client that comes back with
``{pid, offset}`` in its auth gets the same ``pid`` (``socket.recovered``), its rooms
and every event it missed after that offset. Recovery sessions live in PostgreSQL
(``SessionStore``), so this holds on any gateway of the database.

A `Link` is the transport's side: the WebSocket keeps a session in memory, HTTP
long-polling in the database (any gateway may serve its next request).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.logger import Logger

from n2gateway.codecs.socketio import (PacketError, SocketPacket, SocketType,
                                       encode_event_frame_raw)
from n2gateway.db import DatabaseUnavailable
from n2gateway.downstream.auth import AuthError, Authenticator, Identity
from n2gateway.downstream.close_codes import CLOSE_TRY_AGAIN, CLOSE_UNSUPPORTED
from n2gateway.downstream.socketio_sessions import SessionStore
from n2gateway.hub import Hub
from n2gateway.journal import Event
from n2gateway.session import MAX_NAME, Refused


NOT_A_STRING = "must be a non-empty string"


class ProtocolError(Exception):
    """The peer broke the protocol: its Engine.IO session is closed with this reason."""


def event_frame(event: Event) -> str:
    """``42["<event>", <payload>, "<offset>"]``, the frame of a hub event."""
    return encode_event_frame_raw(event.name, [event.payload_json, f'"{event.offset}"'])


def string(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def parse_offset(value: Any) -> int | None:
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 19:
        return int(value)
    return None


def _user_id(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return string(value)


class Link(Protocol):
    """One Engine.IO session under the namespace, as a transport keeps it."""

    sid: str
    #: False once the Engine.IO session closed: what was pending is dropped.
    open: bool
    #: Set while the "/" namespace is connected: its private session id.
    pid: str | None

    @property
    def rooms(self) -> list[str]: ...

    def send(self, packet: SocketPacket) -> None:
        """A control packet, delivered in order with the events."""

    def start(self, identity: Identity, pid: str) -> None:
        """Connect the namespace: the session is in ``user:<sub>`` from the hub's head."""

    async def resume(self, rooms: list[str], after: int) -> None:
        """The session's rooms become exactly ``rooms``: deliver what they had after
        ``after``, then live."""

    async def join(self, room: str) -> None:
        """Join ``room`` from now on; raises `Refused`."""

    def leave(self, room: str) -> None: ...

    def refresh(self, token: object) -> tuple[Identity, list[str]]:
        """Go on with ``token`` (same ``sub``): returns the new identity and the rooms
        it no longer allows, which were left; raises `AuthError`."""

    def stop(self) -> str | None:
        """Disconnect the namespace; returns the pid it had."""

    def fail(self, code: int, reason: str) -> None:
        """Close the Engine.IO session."""


@dataclass(frozen=True)
class SocketIoServer:
    """What the namespace needs of the gateway, shared by every transport."""

    hub: Hub
    authenticator: Authenticator
    sessions: SessionStore


class Namespace:
    """The "/" namespace of one Engine.IO session: packets in, effects on its link."""

    failures = Logger()
    __slots__ = ("server", "link")  # one per connection

    def __init__(self, server: SocketIoServer, link: Link) -> None:
        self.server = server
        self.link = link

    async def handle(self, packet: SocketPacket) -> None:
        """Act on one packet; raises `ProtocolError` when the session must close."""
        link = self.link
        if not link.open:
            return
        if packet.attachments or packet.type in (SocketType.BINARY_EVENT, SocketType.BINARY_ACK):
            self.refuse_binary()
            return
        if packet.type == SocketType.CONNECT and packet.namespace != "/":
            link.send(SocketPacket(SocketType.CONNECT_ERROR, packet.namespace,
                                   {"message": "Invalid namespace"}))
            return
        if packet.namespace != "/":
            raise ProtocolError(f"namespace {packet.namespace[:40]!r} is not connected")
        match packet.type:
            case SocketType.CONNECT if link.pid is None:
                await self._connect(packet.data or {})
            case SocketType.EVENT if link.pid is not None:
                await self._event(packet)
            case SocketType.ACK if link.pid is not None:
                pass  # acks of our emits are optional: we request none
            case SocketType.DISCONNECT if link.pid is not None:
                await self._disconnect()
            case _:
                raise ProtocolError(f"unexpected Socket.IO {packet.type.name}"
                                    f" while {'connected' if link.pid else 'not connected'}")

    def refuse_binary(self) -> None:
        self.link.send(SocketPacket(SocketType.CONNECT_ERROR, data={
            "message": "binary attachments are not supported; send JSON"}))
        self.link.fail(CLOSE_UNSUPPORTED, "binary attachments are not supported")

    async def _connect(self, auth: dict) -> None:
        try:
            identity = self.server.authenticator.authenticate(
                string(auth.get("token")), _user_id(auth.get("userId")))
        except AuthError as e:
            self.link.send(SocketPacket(SocketType.CONNECT_ERROR, data={"message": str(e)}))
            return
        if not self.server.hub.ready:
            # A close, not a CONNECT_ERROR: the client reconnects by itself after a close.
            self.link.fail(CLOSE_TRY_AGAIN, "gateway starting; try again shortly")
            return
        pid, offset = string(auth.get("pid")), auth.get("offset")
        saved = await self._recoverable(pid, offset, identity)
        if not self.link.open:
            return
        if saved is None:
            await self._connect_fresh(identity)
        else:
            await self._recover(identity, pid, *saved)

    async def _recoverable(self, pid: str | None, offset: Any,
                           identity: Identity) -> tuple[int, list[str]] | None:
        """``(replay after, rooms)`` when ``pid`` can be recovered from ``offset``."""
        after = None if offset is None else parse_offset(offset)
        if pid is None or (offset is not None and after is None):
            return None
        try:
            saved = await self.server.sessions.find(pid)
            if saved is None or saved.sub != identity.sub:
                return None
            if after is None:
                after = saved.since
            if after < await self.server.hub.journal.horizon():
                return None  # older than retention
        except DatabaseUnavailable as e:
            self.failures.warn("Socket.IO recovery impossible: {reason}", reason=str(e))
            return None
        # A lower --max-subscriptions since it was saved: keep the first rooms.
        limit = self.server.hub.max_subscriptions - 1  # its own room is added to them
        rooms = [room for room in saved.rooms if identity.may_join(room)][:limit]
        return after, rooms

    async def _connect_fresh(self, identity: Identity) -> None:
        pid = secrets.token_urlsafe(24)
        since = self.server.hub.head
        self._attach(identity, pid)
        try:
            await self.server.sessions.create(pid, identity.sub, since)
        except DatabaseUnavailable as e:
            self.failures.warn("Socket.IO session not saved, it cannot be recovered: {reason}",
                               reason=str(e))

    async def _recover(self, identity: Identity, pid: str, after: int, rooms: list[str]) -> None:
        self._attach(identity, pid)
        # Socket.IO sends the CONNECT ack first, then the missed events.
        await self.link.resume(sorted({identity.own_room, *rooms}), after)
        await self._save_rooms()

    def _attach(self, identity: Identity, pid: str) -> None:
        self.link.start(identity, pid)
        self.link.send(SocketPacket(SocketType.CONNECT, data={"sid": self.link.sid, "pid": pid}))

    async def _event(self, packet: SocketPacket) -> None:
        name, args = packet.data[0], packet.data[1:]
        if name == "refresh":
            await self._refresh(packet, args[0] if args else None)
            return
        try:
            if name not in ("subscribe", "unsubscribe"):
                raise ProtocolError(f"unknown event {name[:40]!r};"
                                    " use subscribe, unsubscribe or refresh")
            room = string(args[0] if args else None)
            if room is None or len(room) > MAX_NAME:
                raise ProtocolError(f"room {NOT_A_STRING} of at most {MAX_NAME} characters")
            if name == "subscribe":
                await self.link.join(room)
            else:
                self.link.leave(room)
        except (ProtocolError, Refused) as e:
            self._ack(packet, {"ok": False, "error": str(e)})
            return
        self._ack(packet, {"ok": True})
        await self._save_rooms()

    async def _refresh(self, packet: SocketPacket, token: Any) -> None:
        try:
            identity, left = self.link.refresh(token)
        except AuthError as e:
            self._ack(packet, {"ok": False, "error": str(e)})
            return
        self._ack(packet, {"ok": True, "exp": identity.expires})
        if left:
            await self._save_rooms()

    def _ack(self, packet: SocketPacket, answer: dict) -> None:
        if packet.id is not None:
            self.link.send(SocketPacket(SocketType.ACK, data=[answer], id=packet.id))

    async def _save_rooms(self) -> None:
        if self.link.pid is None:
            return
        try:
            await self.server.sessions.save_rooms(self.link.pid, self.link.rooms)
        except DatabaseUnavailable as e:
            self.failures.warn("Socket.IO rooms not saved: {reason}", reason=str(e))

    async def _disconnect(self) -> None:
        # The client left on purpose: as in socket.io, nothing is kept to recover.
        pid = self.link.stop()
        try:
            await self.server.sessions.forget(pid)
        except DatabaseUnavailable as e:
            self.failures.warn("Socket.IO session not deleted: {reason}", reason=str(e))


def packet_failure(e: Exception) -> str:
    """The close reason for a packet the namespace could not take."""
    if isinstance(e, PacketError):
        return f"bad Socket.IO packet: {e}"
    return str(e)
