"""
TPOS's realtime socket: which namespace to connect, with what, and where.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted.internet.interfaces import IStreamClientEndpoint

from .backoff import BackoffPolicy
from .service import UpstreamService
from .socketio_client import EventCallback, NamespaceSpec, SocketIOClientFactory, socketio_url
from .status import UpstreamStatus

TPOS_URL = "wss://rt-2.tpos.app/socket.io/"
TPOS_ORIGIN = "https://tomato.tpos.vn"
TPOS_NAMESPACE = "/chatomni"
DEFAULT_ROOM = "tomato.tpos.vn"


@dataclass(frozen=True)
class TposCredentials:
    token: str = field(repr=False)
    room: str = DEFAULT_ROOM


def tpos_namespace(credentials: TposCredentials) -> NamespaceSpec:
    """The namespace the TPOS web app connects, and the room it joins there."""
    token, room = credentials.token, credentials.room
    return NamespaceSpec(
        name=TPOS_NAMESPACE,
        auth={"token": token, "room": room},
        after_connect=(("join", {"room": room, "token": token}),),
    )


def build_tpos_service(
    credentials: TposCredentials,
    *,
    reactor: Any,
    status: UpstreamStatus,
    on_event: EventCallback,
    url: str = TPOS_URL,
    endpoint: IStreamClientEndpoint | None = None,
    backoff: BackoffPolicy | None = None,
) -> UpstreamService:
    """
    The service holding one TPOS session for C{credentials}; start it with
    C{startService}, end it with C{stop}. C{on_event(name, payload)}
    receives every event of the namespace.
    """
    factory = SocketIOClientFactory(
        socketio_url(url, {"room": credentials.room}),
        reactor=reactor,
        namespace=tpos_namespace(credentials),
        on_event=on_event,
        origin=TPOS_ORIGIN,
        headers={"Authorization": f"Bearer {credentials.token}"},
    )
    return UpstreamService(
        provider="tpos",
        factory=factory,
        reactor=reactor,
        status=status,
        endpoint=endpoint,
        backoff=backoff,
    )
