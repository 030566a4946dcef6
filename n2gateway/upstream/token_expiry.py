"""
Expiry in sight: when an upstream token that nobody can renew by machine (a
Pancake JWT lives about 90 days) runs out, the feed stops. Its ``exp`` is read,
unverified (the gateway has no key to verify it with, and only wants the
date), shown in the status, exported as a metric and warned about in the log
once a day while less than the warning period remains.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import jwt
from twisted.logger import Logger

from n2gateway.scheduling import Periodic

from .status import iso

DEFAULT_WARNING = 7 * 86400.0
CHECK_EVERY = 3600.0
WARN_EVERY = 86400.0


def jwt_expiry(token: str | None) -> float | None:
    """The ``exp`` of ``token`` if it is a JWT that has one, else None."""
    if not token:
        return None
    try:
        claims = jwt.decode(token, options={"verify_signature": False, "verify_exp": False})
    except (jwt.InvalidTokenError, ValueError, TypeError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, (int, float)) and not isinstance(exp, bool) else None


@dataclass(frozen=True)
class TokenExpiry:
    """When a provider's token expires (``expires_at`` None: nobody knows) and whether
    that is past or near."""

    expires_at: float | None
    expired: bool
    expires_soon: bool

    def as_json(self) -> dict[str, Any]:
        return {"tokenExpiresAt": iso(self.expires_at), "tokenExpired": self.expired,
                "tokenExpiresSoon": self.expires_soon}


def expiry_status(expires_at: float | None, now: float, warning: float,
                  renewable: bool) -> TokenExpiry:
    """The expiry of a token expiring at ``expires_at``: a token the gateway renews
    itself does not count as expiring soon (renewing it is its job), only as expired
    when renewal could not keep up."""
    expired = expires_at is not None and expires_at <= now
    soon = (expires_at is not None and not expired and not renewable
            and expires_at - now < warning)
    return TokenExpiry(expires_at, expired, soon)


class ExpiryWarning:
    """
    Checks every hour and warns at most once a day while ``expires_at()``
    is within ``warning()`` seconds (or past). Started with the session, stopped
    with it.
    """

    log = Logger()

    def __init__(self, provider: str, clock: Any, wall_clock: Callable[[], float],
                 expires_at: Callable[[], float | None], warning: Callable[[], float]) -> None:
        self._provider = provider
        self._wall_clock = wall_clock
        self._expires_at = expires_at
        self._warning = warning
        self._warned_at: float | None = None
        self._loop = Periodic(CHECK_EVERY, self.check, clock, what="token expiry check", now=True)

    def start(self) -> None:
        self._loop.startService()

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stopService()

    def check(self) -> None:
        expires, now = self._expires_at(), self._wall_clock()
        if expires is None or expires - now >= self._warning():
            return
        if self._warned_at is not None and now - self._warned_at < WARN_EVERY:
            return
        self._warned_at = now
        if expires <= now:
            self.log.warn("{provider}: the token expired at {expires}; the upstream will refuse "
                          "it: log in again and start with a new one",
                          provider=self._provider, expires=iso(expires))
        else:
            self.log.warn("{provider}: the token expires at {expires} (in {days:.1f} days); "
                          "log in again and start with a new one before then",
                          provider=self._provider, expires=iso(expires),
                          days=(expires - now) / 86400)
