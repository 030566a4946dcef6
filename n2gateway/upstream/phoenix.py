"""
Phoenix Channels v2 client on Autobahn: joins channels, keeps the socket
alive with heartbeats, rejoins failed channels and hands every application
event to a callback.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from .backoff import BackoffPolicy
from .phoenix_frame import (
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
from .status import safe_reason
from .websocket import UpstreamClientFactory, UpstreamProtocol, with_query

PROTOCOL_VERSION = "2.0.0"

EventCallback = Callable[[str, str, Any], None]


def with_vsn(url: str) -> str:
    """C{url} with C{vsn=2.0.0} in its query, whatever vsn it had before."""
    return with_query(url, {"vsn": PROTOCOL_VERSION})


@dataclass(frozen=True)
class ChannelSpec:
    """A topic to join, its join parameters and the pushes to send once joined."""

    topic: str
    params: dict[str, Any] = field(repr=False)  # holds the access token
    after_join: tuple[tuple[str, dict[str, Any]], ...] = ()


class _Channel:
    """What one connection knows about one of its channels."""

    def __init__(self, spec: ChannelSpec) -> None:
        self.spec = spec
        self.join_ref: str | None = None
        self.joined = False
        self.rejoins = 0
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
        channel.join_ref = self._next_ref()
        spec = channel.spec
        self._send_message(
            PhoenixMessage(channel.join_ref, channel.join_ref, spec.topic, JOIN, spec.params)
        )
        channel.timer = self.clock.callLater(
            self.join_timeout, self._rejoin_later, channel, "join timeout"
        )

    def _rejoin_later(self, channel: _Channel, why: str) -> None:
        channel.cancel_timer()
        channel.joined = False
        channel.join_ref = None
        delay = self.factory.rejoin_backoff(channel.rejoins)
        channel.rejoins += 1
        self.log.warn(
            "{provider}: {topic}: {why}; rejoining in {delay:.1f} s",
            provider=self.session.provider,
            topic=channel.spec.topic,
            why=why,
            delay=delay,
        )
        self.session.status.error(why)
        channel.timer = self.clock.callLater(delay, self._join, channel)

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
        status, response = reply_status(payload)
        if status != "ok":
            reason = response.get("reason") if isinstance(response, dict) else None
            self.session.login_needed(f"join refused: {safe_reason(reason, status)}")
            return
        channel.cancel_timer()
        channel.joined = True
        channel.rejoins = 0
        topic = channel.spec.topic
        for event, push_payload in channel.spec.after_join:
            self._send_message(
                PhoenixMessage(channel.join_ref, self._next_ref(), topic, event, push_payload)
            )
        if not self._established and all(c.joined for c in self._channels.values()):
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
    C{channels} is called once per connection, so per-connection values (a
    client session id) are fresh each time.
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
        rejoin_backoff: BackoffPolicy,
    ) -> None:
        super().__init__(with_vsn(url), reactor=reactor, origin=origin, headers=headers)
        self.channels = channels
        self.on_event = on_event
        self.rejoin_backoff = rejoin_backoff
