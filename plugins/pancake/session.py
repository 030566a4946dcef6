"""
Pancake's realtime socket: which channels to join, with what, and where.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable

from twisted.application.internet import backoffPolicy
from twisted.internet.interfaces import IStreamClientEndpoint

from n2gateway.upstream.backoff import BackoffPolicy, upstream_backoff
from n2gateway.upstream.phoenix import ChannelSpec, EventCallback, JoinRefusal, PhoenixClientFactory
from n2gateway.upstream.service import UpstreamService
from n2gateway.upstream.status import UpstreamStatus, safe_reason

from .relay import PAGE_TOPIC_PREFIX

PANCAKE_URL = "wss://pancake.vn/socket/websocket"
PANCAKE_ORIGIN = "https://pancake.vn"
# A refused page (its package expired: error 122) is asked again after 5 min,
# then 10, 20, ... up to an hour: paying takes a person, not a second.
PAGE_RETRY = 300.0
PAGE_RETRY_MAX = 3600.0
# Join refusals that say the access token is no good; any other refusal of a
# page join is that page's own trouble.
_TOKEN_REASONS = frozenset({"unauthorized", "unauthenticated", "invalid_token",
                            "token_expired", "invalid token", "token expired"})


@dataclass(frozen=True)
class PancakeCredentials:
    token: str = field(repr=False)
    user_id: str
    page_ids: tuple[str, ...]
    cookie: str | None = field(default=None, repr=False)


def pancake_channels(credentials: PancakeCredentials) -> list[ChannelSpec]:
    """
    The channels the Pancake web app joins, as it joins them: ``users:<id>``,
    then one ``pages:<id>`` per page, each of which may be refused alone.
    """
    params = {"accessToken": credentials.token, "userId": credentials.user_id,
              "platform": "web"}
    return [
        ChannelSpec(topic=f"users:{credentials.user_id}", params=params),
        *(ChannelSpec(topic=PAGE_TOPIC_PREFIX + page_id, params=params, optional=True)
          for page_id in credentials.page_ids),
    ]


def pancake_refusal(response: Any) -> JoinRefusal | None:
    """
    Pancake answers a refused join with ``{"reason": ...}`` (a refused token)
    or with its API's ``{"error_code": 122, "message": ...}`` (122: the page's
    package has expired). Only the code is kept: the message is upstream text.
    """
    if not isinstance(response, dict):
        return None
    reason, code = response.get("reason"), response.get("error_code")
    if isinstance(reason, str):
        return JoinRefusal(safe_reason(reason, "refused"), reason.lower() in _TOKEN_REASONS)
    if isinstance(code, int) and not isinstance(code, bool):
        return JoinRefusal(f"error {code}", False)
    return None


def page_retry_backoff(first: float = PAGE_RETRY,
                       jitter: Callable[[], float] = random.random) -> BackoffPolicy:
    """Delay before retry ``n`` of a refused page: ``first · 2^n`` up to an hour,
    plus up to a tenth of ``first`` of jitter."""
    return backoffPolicy(initialDelay=first, maxDelay=max(first, PAGE_RETRY_MAX), factor=2.0,
                         jitter=lambda: jitter() * first / 10)


def build_pancake_service(
    credentials: PancakeCredentials,
    *,
    reactor: Any,
    status: UpstreamStatus,
    on_event: EventCallback,
    url: str = PANCAKE_URL,
    endpoint: IStreamClientEndpoint | None = None,
    backoff: BackoffPolicy | None = None,
    page_backoff: BackoffPolicy | None = None,
) -> UpstreamService:
    """
    The service holding one Pancake session for ``credentials``; start it
    with ``startService``, end it with ``stop``. ``on_event(topic, event,
    payload)`` receives every application event. ``backoff`` paces reconnects
    and channel rejoins, ``page_backoff`` the retries of a refused page.
    """
    backoff = backoff or upstream_backoff()
    headers = {"Cookie": credentials.cookie} if credentials.cookie else {}
    factory = PhoenixClientFactory(
        url,
        reactor=reactor,
        channels=lambda: pancake_channels(credentials),
        on_event=on_event,
        origin=PANCAKE_ORIGIN,
        headers=headers,
        read_refusal=pancake_refusal,
        rejoin_backoff=backoff,
        refused_rejoin_backoff=page_backoff or page_retry_backoff(),
    )
    return UpstreamService(
        provider="pancake",
        factory=factory,
        reactor=reactor,
        status=status,
        endpoint=endpoint,
        backoff=backoff,
    )
