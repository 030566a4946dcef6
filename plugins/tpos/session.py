"""
TPOS's realtime socket: which namespace to connect, with what, and where.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from twisted.internet.interfaces import IStreamClientEndpoint

from n2gateway.upstream.backoff import BackoffPolicy
from n2gateway.upstream.service import UpstreamService
from n2gateway.upstream.socketio_client import EventCallback, NamespaceSpec, SocketIOClientFactory, socketio_url
from n2gateway.upstream.status import UpstreamStatus

TPOS_URL = "wss://rt-2.tpos.app/socket.io/"
TPOS_ORIGIN = "https://tomato.tpos.vn"
TPOS_NAMESPACE = "/chatomni"
DEFAULT_ROOM = "tomato.tpos.vn"


@dataclass(frozen=True)
class TposCredentials:
    """A token for ``room``, and what gets the next one (all secrets but the room,
    the client id and the expiry)."""

    token: str = field(repr=False)
    room: str = DEFAULT_ROOM
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    client_id: str | None = None
    #: When ``token`` expires (seconds since the epoch), if known.
    expires_at: float | None = None


def tpos_namespace(credentials: TposCredentials) -> NamespaceSpec:
    """The namespace the TPOS web app connects, and the room it joins there."""
    token, room = credentials.token, credentials.room
    return NamespaceSpec(
        name=TPOS_NAMESPACE,
        auth={"token": token, "room": room},
        after_connect=(("join", {"room": room, "token": token}),),
    )


def tpos_headers(credentials: TposCredentials) -> dict[str, str]:
    return {"Authorization": f"Bearer {credentials.token}"}


class TposSession(UpstreamService):
    """A TPOS session whose token can be replaced for its next connect."""

    def __init__(self, *, factory: SocketIOClientFactory, **kwargs: Any) -> None:
        super().__init__(provider="tpos", factory=factory, **kwargs)
        self._factory = factory

    def use_credentials(self, credentials: TposCredentials) -> None:
        """Connect with ``credentials`` from the next connection on; the live one stays."""
        self._factory.namespace = tpos_namespace(credentials)
        self._factory.headers = tpos_headers(credentials)


def build_tpos_service(
    credentials: TposCredentials,
    *,
    reactor: Any,
    status: UpstreamStatus,
    on_event: EventCallback,
    url: str = TPOS_URL,
    endpoint: IStreamClientEndpoint | None = None,
    backoff: BackoffPolicy | None = None,
    token_refused: Callable[[], bool] = lambda: False,
) -> TposSession:
    """
    The service holding one TPOS session for ``credentials``; start it with
    ``startService``, end it with ``stop``. ``on_event(name, payload)``
    receives every event of the namespace; ``token_refused`` is asked when
    TPOS refuses the token (see :class:`SocketIOClientFactory`).
    """
    factory = SocketIOClientFactory(
        socketio_url(url, {"room": credentials.room}),
        reactor=reactor,
        namespace=tpos_namespace(credentials),
        on_event=on_event,
        origin=TPOS_ORIGIN,
        headers=tpos_headers(credentials),
        token_refused=token_refused,
    )
    return TposSession(
        factory=factory,
        reactor=reactor,
        status=status,
        endpoint=endpoint,
        backoff=backoff,
    )
