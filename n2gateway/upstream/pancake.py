"""
Pancake's realtime socket: which channels to join, with what, and where.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.interfaces import IStreamClientEndpoint

from .backoff import BackoffPolicy, upstream_backoff
from .phoenix import ChannelSpec, EventCallback, PhoenixClientFactory
from .service import UpstreamService
from .status import UpstreamStatus

PANCAKE_URL = "wss://pancake.vn/socket/websocket"
PANCAKE_ORIGIN = "https://pancake.vn"
CLIENT_SESSION_LENGTH = 64
_ALPHANUMERICS = string.ascii_letters + string.digits


@dataclass(frozen=True)
class PancakeCredentials:
    token: str = field(repr=False)
    user_id: str
    page_ids: tuple[str, ...]
    cookie: str | None = field(default=None, repr=False)


def new_client_session() -> str:
    return "".join(secrets.choice(_ALPHANUMERICS) for _ in range(CLIENT_SESSION_LENGTH))


def pancake_channels(credentials: PancakeCredentials, client_session: str) -> list[ChannelSpec]:
    """The two channels the Pancake web app joins, as it joins them."""
    user_id = credentials.user_id
    return [
        ChannelSpec(
            topic=f"users:{user_id}",
            params={"accessToken": credentials.token, "userId": user_id, "platform": "web"},
        ),
        ChannelSpec(
            topic=f"multiple_pages:{user_id}",
            params={
                "accessToken": credentials.token,
                "userId": user_id,
                "clientSession": client_session,
                "pageIds": [str(page_id) for page_id in credentials.page_ids],
                "platform": "web",
            },
            after_join=(("get_online_status", {}),),
        ),
    ]


def build_pancake_service(
    credentials: PancakeCredentials,
    *,
    reactor: Any,
    status: UpstreamStatus,
    on_event: EventCallback,
    url: str = PANCAKE_URL,
    endpoint: IStreamClientEndpoint | None = None,
    backoff: BackoffPolicy | None = None,
) -> UpstreamService:
    """
    The service holding one Pancake session for C{credentials}; start it
    with C{startService}, end it with C{stop}. C{on_event(topic, event,
    payload)} receives every application event.
    """
    backoff = backoff or upstream_backoff()
    headers = {"Cookie": credentials.cookie} if credentials.cookie else {}
    factory = PhoenixClientFactory(
        url,
        reactor=reactor,
        channels=lambda: pancake_channels(credentials, new_client_session()),
        on_event=on_event,
        origin=PANCAKE_ORIGIN,
        headers=headers,
        rejoin_backoff=backoff,
    )
    return UpstreamService(
        provider="pancake",
        factory=factory,
        reactor=reactor,
        status=status,
        endpoint=endpoint,
        backoff=backoff,
    )
