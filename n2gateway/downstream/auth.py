"""Who a downstream client is and which rooms it may join.

Clients present an HS256 JWT signed with the gateway's secret: ``sub`` names the
user (the session joins ``user:<sub>``), ``rooms`` lists the other rooms it may join
(a trailing ``*`` matches a prefix), ``exp`` bounds its life: the session ends at
``exp`` unless the client refreshes it in band with a newer token for the same
``sub``. Without a secret the gateway is in development mode: a client names itself
with ``userId`` and may join any room.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import jwt

from n2gateway.session import name_problem

ALGORITHM = "HS256"


class AuthError(Exception):
    """The client could not be authenticated; the message is safe to send to it."""


@dataclass(frozen=True, slots=True)
class Identity:
    sub: str
    rooms: tuple[str, ...] = ()
    development: bool = False
    #: The token's ``exp`` (seconds since the epoch), None when it has none.
    expires: float | None = None

    @property
    def own_room(self) -> str:
        return f"user:{self.sub}"

    def may_join(self, room: str) -> bool:
        if self.development or room == self.own_room:
            return True
        return any(room.startswith(p[:-1]) if p.endswith("*") else room == p for p in self.rooms)


class Authenticator:
    def __init__(self, secret: str | None, now: Callable[[], float] = time.time) -> None:
        self._secret = secret
        #: The clock ``exp`` is checked against (the reactor's, in tests a fake one).
        self._now = now

    @property
    def development(self) -> bool:
        return self._secret is None

    def authenticate(self, token: str | None, user_id: str | None) -> Identity:
        if self._secret is None:
            if not user_id:
                raise AuthError("development mode: name yourself with userId")
            if (problem := name_problem(user_id)) is not None:
                raise AuthError(f"userId {problem}")
            return Identity(sub=user_id, development=True)
        if not token:
            raise AuthError("a token is required")
        try:
            claims = jwt.decode(token, self._secret, algorithms=[ALGORITHM],
                                options={"require": ["sub"], "verify_exp": False})
        except jwt.InvalidTokenError as e:
            raise AuthError(f"invalid token: {e}") from None
        expires = claims.get("exp")
        if expires is not None:
            if (not isinstance(expires, (int, float)) or isinstance(expires, bool)
                    or not math.isfinite(expires)):
                raise AuthError("invalid token: exp must be a number")
            if expires <= self._now():
                raise AuthError("token expired")
        if (problem := name_problem(claims["sub"])) is not None:
            raise AuthError(f"invalid token: sub {problem}")
        rooms = claims.get("rooms", [])
        if not isinstance(rooms, list) or not all(isinstance(r, str) for r in rooms):
            raise AuthError("invalid token: rooms must be a list of strings")
        return Identity(sub=claims["sub"], rooms=tuple(rooms), expires=expires)

    def refresh(self, current: Identity, token: object) -> Identity:
        """The identity a connected client continues with after sending ``token``:
        the same user, the new token's rooms and ``exp``."""
        if self._secret is None:
            raise AuthError("development mode: there is no token to refresh")
        if not isinstance(token, str) or not token:
            raise AuthError("refresh needs a token string")
        identity = self.authenticate(token, None)
        if identity.sub != current.sub:
            raise AuthError("a refresh cannot change sub")
        return identity


def issue_token(secret: str, sub: str, rooms: list[str] | None = None,
                ttl: float | None = None, now: float | None = None) -> str:
    """A downstream token, as an operator or a backend would mint one."""
    claims: dict = {"sub": sub}
    if rooms:
        claims["rooms"] = rooms
    if ttl is not None:
        claims["exp"] = int((now if now is not None else time.time()) + ttl)
    return jwt.encode(claims, secret, algorithm=ALGORITHM)
