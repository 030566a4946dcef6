"""The feed provider: stored credentials in and out, one :class:`SseSource` per start."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from n2gateway.credentials import StoredCredentials
from n2gateway.upstream.provider import BadCredentials, Provider
from n2gateway.upstream.source import Source
from n2gateway.upstream.status import UpstreamStatus

from .sse import SseSource

# A channel becomes part of the upstream URL and of a room name: nothing else gets through.
CHANNEL_PATTERN = r"^[A-Za-z0-9_.-]{1,100}$"
_CHANNEL = re.compile(CHANNEL_PATTERN)


@dataclass(frozen=True)
class FeedCredentials:
    token: str = field(repr=False)  # a secret: never in a repr, a log or a status
    channel: str


class FeedProvider(Provider[FeedCredentials]):
    client_type = "feed"

    def credentials_from_row(self, row: StoredCredentials) -> FeedCredentials:
        # The seed's columns serve: the token, and the channel in ``room``.
        if not row.token:
            raise BadCredentials("no token")
        if not (row.room and _CHANNEL.fullmatch(row.room)):
            raise BadCredentials("room is not a feed channel")
        return FeedCredentials(row.token, row.room)

    def row_for(self, credentials: FeedCredentials) -> dict[str, Any]:
        return {"token": credentials.token, "room": credentials.channel}

    def build_session(self, credentials: FeedCredentials, status: UpstreamStatus) -> Source:
        channel = credentials.channel
        return SseSource(
            f"{self.url}?channel={channel}", {"Authorization": f"Bearer {credentials.token}"},
            reactor=self.reactor, status=status, backoff=self.backoff,
            on_event=lambda event, payload: self.on_event(channel, event, payload))

    def describe(self, credentials: FeedCredentials | None) -> dict[str, Any]:
        session = self._session
        return {"channel": credentials.channel if credentials else None,
                "lastEventId": session.last_event_id if isinstance(session, SseSource) else None}
