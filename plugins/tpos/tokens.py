"""
New TPOS access tokens from TPOS's OAuth2 token endpoint, as the TPOS web app
gets them: the refresh-token grant when there is a refresh token, the password
grant otherwise or when the refresh token is refused.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Callable

from twisted.logger import Logger

from n2gateway.upstream.oauth2 import GrantRefused, TokenEndpoint, TokenGrant
from .session import TposCredentials

TOKEN_URL = "https://tomato.tpos.vn/token"
CLIENT_ID = "tmtWebApp"


def renewable(credentials: TposCredentials) -> bool:
    return bool(credentials.refresh_token or (credentials.username and credentials.password))


class TposTokens:
    log = Logger()

    def __init__(self, endpoint: TokenEndpoint, wall_clock: Callable[[], float] = time.time):
        self._endpoint = endpoint
        self._wall_clock = wall_clock

    async def renew(self, credentials: TposCredentials) -> TposCredentials:
        """``credentials`` with a new token, or ``GrantFailed`` / ``GrantRefused``."""
        client_id = credentials.client_id or CLIENT_ID
        if credentials.refresh_token:
            try:
                grant = await self._endpoint.grant({
                    "grant_type": "refresh_token", "refresh_token": credentials.refresh_token,
                    "client_id": client_id})
            except GrantRefused as e:
                if not (credentials.username and credentials.password):
                    raise
                self.log.info("tpos: refresh token refused ({why}); trying the password",
                              why=str(e))
            else:
                return self._granted(credentials, grant, grant.refresh_token
                                     or credentials.refresh_token)
        if not (credentials.username and credentials.password):
            raise GrantRefused("no refresh token or password to renew with")
        grant = await self._endpoint.grant({
            "grant_type": "password", "username": credentials.username,
            "password": credentials.password, "client_id": client_id})
        return self._granted(credentials, grant, grant.refresh_token)

    def _granted(self, credentials: TposCredentials, grant: TokenGrant,
                 refresh_token: str | None) -> TposCredentials:
        return replace(credentials, token=grant.access_token, refresh_token=refresh_token,
                       expires_at=self._wall_clock() + grant.expires_in)
