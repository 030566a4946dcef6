"""Who a downstream client is and which rooms it may join.

Clients present an HS256 JWT signed with the gateway's secret: ``sub`` names the
user (the session joins ``user:<sub>``), ``rooms`` lists the other rooms it may join
(a trailing ``*`` matches a prefix), ``exp`` bounds its life. Without a secret the
gateway is in development mode: a client names itself with ``userId`` and may join
any room.
"""

from __future__ import annotations

from dataclasses import dataclass

import jwt

ALGORITHM = "HS256"


class AuthError(Exception):
    """The client could not be authenticated; the message is safe to send to it."""


@dataclass(frozen=True)
class Identity:
    sub: str
    rooms: tuple[str, ...] = ()
    development: bool = False

    @property
    def own_room(self) -> str:
        return f"user:{self.sub}"

    def may_join(self, room: str) -> bool:
        if self.development or room == self.own_room:
            return True
        return any(room.startswith(p[:-1]) if p.endswith("*") else room == p for p in self.rooms)


class Authenticator:
    def __init__(self, secret: str | None) -> None:
        self._secret = secret

    @property
    def development(self) -> bool:
        return self._secret is None

    def authenticate(self, token: str | None, user_id: str | None) -> Identity:
        if self._secret is None:
            if not user_id:
                raise AuthError("development mode: name yourself with userId")
            return Identity(sub=str(user_id), development=True)
        if not token:
            raise AuthError("a token is required")
        try:
            claims = jwt.decode(token, self._secret, algorithms=[ALGORITHM],
                                options={"require": ["sub"]})
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.InvalidTokenError as e:
            raise AuthError(f"invalid token: {e}") from None
        rooms = claims.get("rooms", [])
        if not isinstance(rooms, list) or not all(isinstance(r, str) for r in rooms):
            raise AuthError("invalid token: rooms must be a list of strings")
        return Identity(sub=str(claims["sub"]), rooms=tuple(rooms))


def issue_token(secret: str, sub: str, rooms: list[str] | None = None,
                ttl: float | None = None, now: float | None = None) -> str:
    """A downstream token, as an operator or a backend would mint one."""
    import time

    claims: dict = {"sub": sub}
    if rooms:
        claims["rooms"] = rooms
    if ttl is not None:
        claims["exp"] = int((now if now is not None else time.time()) + ttl)
    return jwt.encode(claims, secret, algorithm=ALGORITHM)
