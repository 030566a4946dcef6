"""
The TPOS provider: stored credentials in, one Socket.IO session out; with a
username and password (or a refresh token) it renews its tokens itself.
"""

from __future__ import annotations

import re
from typing import Any

from n2gateway.credentials import StoredCredentials
from n2gateway.upstream.provider import BadCredentials, Provider
from n2gateway.upstream.service import UpstreamService
from n2gateway.upstream.status import UpstreamStatus
from n2gateway.upstream.token_expiry import jwt_expiry
from .session import DEFAULT_ROOM, TposCredentials, TposSession, build_tpos_service

from .tokens import TposTokens, renewable

CLIENT_TYPE = "tpos"
# TPOS rooms are the shop's host name (tomato.tpos.vn); a room becomes part of
# the upstream URL and of a downstream room name, so nothing else gets through.
ROOM_PATTERN = r"^[A-Za-z0-9_.-]{1,100}$"
_ROOM = re.compile(ROOM_PATTERN)
# TposCredentials fields kept in the row's ``extra`` (the seed has no columns for them).
_EXTRA = {"username": "username", "password": "password", "refreshToken": "refresh_token",
          "clientId": "client_id"}


class TposProvider(Provider[TposCredentials]):
    client_type = CLIENT_TYPE

    def __init__(self, *args: Any, tokens: TposTokens, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tokens = tokens

    def credentials_from_row(self, row: StoredCredentials) -> TposCredentials:
        extra = row.extra
        fields = {attr: extra[key] for key, attr in _EXTRA.items()
                  if isinstance(extra.get(key), str) and extra[key]}
        expires = extra.get("expiresAt")
        credentials = TposCredentials(
            row.token or "", row.room or DEFAULT_ROOM, **fields,
            expires_at=float(expires) if isinstance(expires, (int, float)) else None)
        if not (credentials.token or renewable(credentials)):
            raise BadCredentials("no token")
        if not _ROOM.fullmatch(credentials.room):
            raise BadCredentials("room is not a TPOS room name")
        return credentials

    def row_for(self, credentials: TposCredentials) -> dict[str, Any]:
        extra = {key: getattr(credentials, attr) for key, attr in _EXTRA.items()
                 if getattr(credentials, attr)}
        if credentials.expires_at is not None:
            extra["expiresAt"] = credentials.expires_at
        return {"token": credentials.token, "room": credentials.room, "extra": extra or None}

    def build_session(self, credentials: TposCredentials,
                      status: UpstreamStatus) -> UpstreamService:
        room = credentials.room
        return build_tpos_service(
            credentials, reactor=self.reactor, status=status,
            on_event=lambda name, payload: self.on_event(room, name, payload),
            url=self.url, endpoint=self.endpoint, backoff=self.backoff,
            token_refused=self.token_refused)

    def token_expires_at(self, credentials: TposCredentials) -> float | None:
        if credentials.expires_at is not None:
            return credentials.expires_at
        return jwt_expiry(credentials.token)

    def renews(self, credentials: TposCredentials) -> bool:
        return renewable(credentials)

    async def renew(self, credentials: TposCredentials) -> TposCredentials:
        return await self._tokens.renew(credentials)

    def use_renewed(self, session: UpstreamService, credentials: TposCredentials) -> None:
        assert isinstance(session, TposSession)
        session.use_credentials(credentials)

    def describe(self, credentials: TposCredentials | None) -> dict[str, Any]:
        return {"room": credentials.room if credentials else None, **self.renewal_status()}
