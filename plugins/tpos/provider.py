"""
The TPOS provider: stored credentials in, one Socket.IO session out.
"""

from __future__ import annotations

import re
from typing import Any

from n2gateway.credentials import StoredCredentials
from n2gateway.upstream.provider import BadCredentials, Provider
from n2gateway.upstream.service import UpstreamService
from n2gateway.upstream.status import UpstreamStatus
from n2gateway.upstream.tpos import DEFAULT_ROOM, TposCredentials, build_tpos_service

CLIENT_TYPE = "tpos"
# TPOS rooms are the shop's host name (tomato.tpos.vn); a room becomes part of
# the upstream URL and of a downstream room name, so nothing else gets through.
ROOM_PATTERN = r"^[A-Za-z0-9_.-]{1,100}$"
_ROOM = re.compile(ROOM_PATTERN)


class TposProvider(Provider[TposCredentials]):
    client_type = CLIENT_TYPE

    def credentials_from_row(self, row: StoredCredentials) -> TposCredentials:
        if not row.token:
            raise BadCredentials("no token")
        room = row.room or DEFAULT_ROOM
        if not _ROOM.fullmatch(room):
            raise BadCredentials("room is not a TPOS room name")
        return TposCredentials(row.token, room)

    def row_for(self, credentials: TposCredentials) -> dict[str, Any]:
        return {"token": credentials.token, "room": credentials.room}

    def build_session(self, credentials: TposCredentials,
                      status: UpstreamStatus) -> UpstreamService:
        room = credentials.room
        return build_tpos_service(
            credentials, reactor=self.reactor, status=status,
            on_event=lambda name, payload: self.on_event(room, name, payload),
            url=self.url, endpoint=self.endpoint, backoff=self.backoff)

    def describe(self, credentials: TposCredentials | None) -> dict[str, Any]:
        return {"room": credentials.room if credentials else None}
