"""
Phoenix Channels v2 client on Autobahn: joins channels, keeps the socket
alive with heartbeats, rejoins failed channels and hands every application
event to a callback.

A channel is required (its refusal means the credentials are no good) or
optional (a refusal fails that channel alone: it is retried on a slow backoff
while the others relay, unless every optional channel was refused for the
credentials).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from n2gateway.codecs.phoenix import (
    CLOSE,
    CONTROL_PREFIX,
    ERROR,
    HEARTBEAT,
    JOIN,
    REPLY,
    SOCKET_TOPIC,
    InvalidFrame,
    PhoenixMessage,
    decode_frame,
    encode_frame,
    reply_status,
)

from .backoff import BackoffPolicy
from .websocket import UpstreamClientFactory, UpstreamProtocol, with_query

PROTOCOL_VERSION = "2.0.0"

EventCallback = Callable[[str, str, Any], None]


def with_vsn(url: str) -> str:
    """``url`` with ``vsn=2.0.0`` in its query, whatever vsn it had before."""
    return with_query(url, {"vsn": PROTOCOL_VERSION})


@dataclass(frozen=True)
class ChannelSpec:
    """A topic to join, its join parameters, and whether it may fail alone."""

    topic: str
    params: dict[str, Any] = field(repr=False)  # holds the access token
    optional: bool = False


@dataclass(frozen=True)
class JoinRefusal:
    """An error reply to a join, as the upstream's own reader understood it."""

    reason: str  # short, shown in the status: no upstream text that could hold a secret
    about_credentials: bool


#: Reads the ``response`` of an error reply to a join; None for a shape it does not know.
RefusalReader = Callable[[Any], "JoinRefusal | None"]

JOINING, JOINED, FAILED = "joining", "joined", "failed"


class _Channel:
    """What one connection knows about one of its channels."""

    def __init__(self, spec: ChannelSpec) -> None:
        self.spec = spec
        self.join_ref: str | None = None
        self.state = JOINING
        self.rejoins = 0
        self.slow_rejoins = 0
        self.refused_credentials = False
        self.timer: IDelayedCall | None = None

    def cancel_timer(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None


class PhoenixProtocol(UpstreamProtocol):
    factory: PhoenixClientFactory

    silence_timeout = 90.0
    heartbeat_interval = 30.0
    # Same default as the official client: an unanswered join is retried.
    join_timeout = 10.0

    def connectionMade(self) -> None:
        self._refs = itertools.count(1)
        self._established = False
        self._channels: dict[str, _Channel] = {}
        self._heartbeat = LoopingCall(self._send_heartbeat)
        self._heartbeat.clock = self.clock
        super().connectionMade()

    def onOpen(self) -> None:
        self._heartbeat.start(self.heartbeat_interval, now=False)
        self._channels = {spec.topic: _Channel(spec) for spec in self.factory.channels()}
        for channel in self._channels.values():
            self._join(channel)

    def connectionLost(self, reason: Failure) -> None:
        if self._heartbeat.running:
            self._heartbeat.stop()
        for channel in self._channels.values():
            channel.cancel_timer()
        super().connectionLost(reason)

    # Sending.

    def _next_ref(self) -> str:
        return str(next(self._refs))

    def _send_message(self, message: PhoenixMessage) -> None:
        self.sendMessage(encode_frame(message), isBinary=False)

    def _send_heartbeat(self) -> None:
        self._send_message(PhoenixMessage(None, self._next_ref(), SOCKET_TOPIC, HEARTBEAT, {}))

    def _join(self, channel: _Channel) -> None:
        channel.cancel_timer()
        channel.state = JOINING
        channel.join_ref = self._next_ref()
        spec = channel.spec
        self._send_message(
            PhoenixMessage(channel.join_ref, channel.join_ref, spec.topic, JOIN, spec.params)
        )
        channel.timer = self.clock.callLater(
            self.join_timeout, self._rejoin_later, channel, "join timeout"
        )

    def _rejoin_later(self, channel: _Channel, why: str) -> None:
        delay = self.factory.rejoin_backoff(channel.rejoins)
        channel.rejoins += 1
        self._failed(channel, why, delay)

    def _rejoin_slowly(self, channel: _Channel, why: str) -> None:
        delay = self.factory.refused_rejoin_backoff(channel.slow_rejoins)
        channel.slow_rejoins += 1
        self._failed(channel, why, delay)

    def _failed(self, channel: _Channel, why: str, delay: float) -> None:
        channel.cancel_timer()
        channel.state = FAILED
        channel.join_ref = None
        status = self.session.status
        why = status.shown(why)
        self.log.warn(
            "{provider}: {topic}: {why}; rejoining in {delay:.1f} s",
            provider=self.session.provider,
            topic=channel.spec.topic,
            why=why,
            delay=delay,
        )
        status.channel(channel.spec.topic, False, why)
        if not channel.spec.optional:
            status.error(why)
        channel.timer = self.clock.callLater(delay, self._join, channel)
        self._check_established()

    # Receiving.

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if isBinary:
            self.log.warn(
                "{provider}: skipped a binary frame", provider=self.session.provider
            )
            return
        try:
            message = decode_frame(payload)
        except InvalidFrame as e:
            self.log.warn(
                "{provider}: skipped an invalid frame of {size} bytes: {why}",
                provider=self.session.provider,
                size=len(payload),
                why=str(e),
            )
            return
        if message.topic == SOCKET_TOPIC:
            return  # heartbeat replies: arriving at all is what counts
        channel = self._channels.get(message.topic)
        if channel is None:
            self.log.info(
                "{provider}: skipped {event} on unjoined {topic}",
                provider=self.session.provider,
                event=message.event,
                topic=message.topic,
            )
            return
        if message.join_ref is not None and message.join_ref != channel.join_ref:
            return  # addressed to an earlier join of this topic
        try:
            self._dispatch(channel, message)
        except InvalidFrame as e:
            self.log.warn(
                "{provider}: skipped {event} on {topic}: {why}",
                provider=self.session.provider,
                event=message.event,
                topic=message.topic,
                why=str(e),
            )

    def _dispatch(self, channel: _Channel, message: PhoenixMessage) -> None:
        if message.event == REPLY:
            if message.ref is not None and message.ref == channel.join_ref:
                self._join_replied(channel, message.payload)
            else:
                self._push_replied(channel, message.payload)
        elif message.event == ERROR:
            self._rejoin_later(channel, "channel error")
        elif message.event == CLOSE:
            # The official client forgets a channel the server closes; a
            # gateway that must keep relaying joins it again, politely.
            self._rejoin_later(channel, "channel closed")
        elif not message.event.startswith(CONTROL_PREFIX):
            self._deliver(message)

    def _join_replied(self, channel: _Channel, payload: Any) -> None:
        if channel.state == JOINED:
            raise InvalidFrame("a second reply to one join")
        try:
            status, response = reply_status(payload)
        except InvalidFrame:
            status, response = None, None
        if status == "ok":
            self._joined(channel)
            return
        refusal = self.factory.read_refusal(response) if status == "error" else None
        if not channel.spec.optional:
            if refusal is None:
                self._rejoin_later(channel, "unrecognised join reply")
            else:
                self.session.login_needed(f"join refused: {refusal.reason}")
            return
        channel.refused_credentials = refusal is not None and refusal.about_credentials
        why = f"join refused: {refusal.reason}" if refusal else "unrecognised join reply"
        if all(c.refused_credentials for c in self._channels.values() if c.spec.optional):
            self.session.login_needed(why)
        else:
            self._rejoin_slowly(channel, why)

    def _joined(self, channel: _Channel) -> None:
        channel.cancel_timer()
        channel.state = JOINED
        channel.rejoins = channel.slow_rejoins = 0
        channel.refused_credentials = False
        self.session.status.channel(channel.spec.topic, True, None)
        self._check_established()

    def _check_established(self) -> None:
        """The session is up once every required channel is joined and every
        optional one has been answered."""
        if self._established:
            return
        channels = self._channels.values()
        if all(c.state == JOINED for c in channels if not c.spec.optional) and all(
            c.state != JOINING for c in channels if c.spec.optional
        ):
            self._established = True
            self.session.session_established()

    def _push_replied(self, channel: _Channel, payload: Any) -> None:
        status, _ = reply_status(payload)
        if status != "ok":
            self.log.warn(
                "{provider}: {topic}: a push was answered {status}",
                provider=self.session.provider,
                topic=channel.spec.topic,
                status=status,
            )

    def _deliver(self, message: PhoenixMessage) -> None:
        try:
            self.factory.on_event(message.topic, message.event, message.payload)
        except Exception:
            self.log.failure(
                "{provider}: event handler failed on {event}",
                provider=self.session.provider,
                event=message.event,
            )


class PhoenixClientFactory(UpstreamClientFactory):
    """
    ``channels`` is called once per connection, so each connection starts
    from fresh channel states. ``read_refusal`` understands the
    upstream's join errors; ``rejoin_backoff`` paces rejoins after a channel
    error or timeout, ``refused_rejoin_backoff`` (slower) those of an optional
    channel whose join was refused.
    """

    protocol = PhoenixProtocol

    def __init__(
        self,
        url: str,
        *,
        reactor: IReactorTime,
        channels: Callable[[], list[ChannelSpec]],
        on_event: EventCallback,
        origin: str,
        headers: dict[str, str] | None = None,
        read_refusal: RefusalReader,
        rejoin_backoff: BackoffPolicy,
        refused_rejoin_backoff: BackoffPolicy,
    ) -> None:
        super().__init__(with_vsn(url), reactor=reactor, origin=origin, headers=headers)
        self.channels = channels
        self.on_event = on_event
        self.read_refusal = read_refusal
        self.rejoin_backoff = rejoin_backoff
        self.refused_rejoin_backoff = refused_rejoin_backoff
