"""TPOS's OAuth2 token endpoint (``https://tomato.tpos.vn/token``) as production answers:
form-encoded ``grant_type=password`` (with ``client_id=tmtWebApp``) or
``grant_type=refresh_token``, JWT access tokens of a fixed lifetime, a new refresh token
with each, and ``400 {"error": "invalid_grant"}`` for anything it does not know."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any
from urllib.parse import parse_qs

import jwt
from twisted.web.resource import Resource

SIGNING_KEY = "fake-tpos-signing-key-0123456789"


class FakeTokenEndpoint(Resource):
    isLeaf = True

    def __init__(self, username: str, password: str, lifetime: float) -> None:
        super().__init__()
        self._account = (username, password)
        self._lifetime = lifetime
        self.grants: list[str] = []
        self.access: list[str] = []
        self.refresh: list[str] = []
        self._numbers = itertools.count(1)

    def render_POST(self, request: Any) -> bytes:
        form = {k: v[0] for k, v in parse_qs(request.content.read().decode()).items()}
        kind = form.get("grant_type", "")
        self.grants.append(kind)
        request.setHeader("content-type", "application/json")
        known = (kind == "password" and (form.get("username"), form.get("password")) ==
                 self._account) or (kind == "refresh_token"
                                    and form.get("refresh_token") in self.refresh)
        if form.get("client_id") != "tmtWebApp" or not known:
            request.setResponseCode(400)
            return json.dumps({"error": "invalid_grant"}).encode()
        n = next(self._numbers)
        access = jwt.encode({"sub": self._account[0], "n": n,
                             "exp": time.time() + self._lifetime},
                            SIGNING_KEY, algorithm="HS256")
        refresh = f"tpos-renewal-refresh-{n:04d}-secret"
        self.access.append(access)
        self.refresh.append(refresh)
        return json.dumps({"access_token": access, "token_type": "bearer",
                           "expires_in": self._lifetime, "refresh_token": refresh}).encode()
