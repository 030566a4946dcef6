"""
Keeping a provider's token fresh: a reusable piece a provider opts into when it
can get tokens by itself (TPOS from its OAuth2 endpoint).

A renewal runs before the token expires (its remaining life less ``margin``,
and at most half of it, so that a short token is not renewed at its last
second), and at once when the upstream refuses the token. One at a time,
bounded by ``timeout``; a failed one is retried with backoff; a refused one
(the endpoint says no to the credentials themselves) stops here and tells the
provider, which then needs a person to log in again.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Generic, TypeVar

from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from .backoff import BackoffPolicy, upstream_backoff
from .oauth2 import GrantFailed, GrantRefused
from .status import iso

C = TypeVar("C")

DEFAULT_MARGIN = 300.0
DEFAULT_TIMEOUT = 30.0
# However short-lived the tokens an endpoint hands out, no more than one renewal a second.
MIN_INTERVAL = 1.0


class TokenRenewal(Generic[C]):
    """
    Renews the credentials of one session. ``renew(credentials)`` returns new
    credentials or raises :class:`GrantFailed` / :class:`GrantRefused`;
    ``expires_at(credentials)`` is their expiry (None: unknown, renewed only
    when refused); ``renewed(credentials)`` and ``refused(reason)`` report.
    """

    log = Logger()

    def __init__(
        self,
        credentials: C,
        *,
        provider: str,
        clock: Any,
        wall_clock: Callable[[], float],
        renew: Callable[[C], Awaitable[C]],
        expires_at: Callable[[C], float | None],
        renewed: Callable[[C], None],
        refused: Callable[[str], None],
        margin: float = DEFAULT_MARGIN,
        timeout: float = DEFAULT_TIMEOUT,
        backoff: BackoffPolicy | None = None,
    ) -> None:
        self.credentials = credentials
        self.renewals = 0
        self.last: dict[str, Any] | None = None
        self._provider = provider
        self._clock = clock
        self._wall_clock = wall_clock
        self._renew = renew
        self._expires_at = expires_at
        self._renewed = renewed
        self._refused = refused
        self._margin = margin
        self._timeout = timeout
        self._backoff = backoff or upstream_backoff()
        self._failures = 0
        self._due: IDelayedCall | None = None
        self._busy = False
        self._stopped = False
        self._inflight: Deferred[Any] | None = None
        # The upstream refused the current credentials and a renewal (now or
        # after a failure's backoff) is to replace them.
        self._refusal_pending = False
        # The credentials such a renewal brought: refused too, they need a
        # person, not another renewal.
        self._after_refusal: C | None = None

    def status(self) -> dict[str, Any]:
        return {"renewals": self.renewals, "lastRenewal": self.last}

    def schedule(self) -> None:
        """Renew before the current credentials expire (if their expiry is known)."""
        expires = self._expires_at(self.credentials)
        if expires is None:
            return
        remaining = expires - self._wall_clock()
        self._later(max(MIN_INTERVAL, remaining - self._margin, remaining / 2), "before expiry")

    def renew_now(self, why: str) -> None:
        """Renew at once, unless a renewal is already under way."""
        if self._busy or self._stopped:
            return
        self._cancel_due()
        self._busy = True
        running = Deferred.fromCoroutine(self._run(why))
        self._inflight = None if running.called else running

    def upstream_refused(self) -> bool:
        """
        The upstream refused the current token: True if a renewal is (now) on
        its way to bring another, False if this token came from such a renewal.
        """
        if self._busy or self._refusal_pending:
            return True
        if self._after_refusal is not None and self._after_refusal is self.credentials:
            return False
        self._refusal_pending = True
        self.renew_now("the upstream refused the token")
        return True

    def stop(self) -> None:
        self._stopped = True
        self._cancel_due()
        self._busy = False
        inflight, self._inflight = self._inflight, None
        if inflight is not None:
            inflight.cancel()

    # Internals.

    def _later(self, delay: float, why: str) -> None:
        self._cancel_due()
        self._due = self._clock.callLater(delay, self._fire, why)

    def _fire(self, why: str) -> None:
        self._due = None
        self.renew_now(why)

    def _cancel_due(self) -> None:
        due, self._due = self._due, None
        if due is not None and due.active():
            due.cancel()

    async def _run(self, why: str) -> None:
        attempt = Deferred.fromCoroutine(self._renew(self.credentials))
        attempt.addTimeout(self._timeout, self._clock)
        try:
            new = await attempt
        except CancelledError:
            return  # stopped
        except Exception as e:
            if not self._stopped:
                self._failed(why, e)
            return
        if self._stopped:
            return
        self._done()
        self._failures = 0
        self.renewals += 1
        self.credentials = new
        if self._refusal_pending:
            self._refusal_pending, self._after_refusal = False, new
        self._outcome("renewed")
        self.log.info("{provider}: token renewed ({why})", provider=self._provider, why=why)
        self._renewed(new)
        self.schedule()

    def _failed(self, why: str, error: Exception) -> None:
        if isinstance(error, GrantRefused):
            self._done()
            self._refusal_pending = False
            self._outcome(f"refused: {error}")
            self.log.warn("{provider}: token renewal refused ({why}); a new login is needed",
                          provider=self._provider, why=str(error))
            self._refused(str(error))
        elif isinstance(error, (GrantFailed, TimeoutError)):
            self._retry(why, "timeout" if isinstance(error, TimeoutError) else str(error))
        else:  # a bug in the provider's renew: its kind, never its text
            self._retry(why, type(error).__name__)

    def _done(self) -> None:
        self._busy, self._inflight = False, None

    def _retry(self, why: str, reason: str) -> None:
        self._done()
        delay = self._backoff(self._failures)
        self._failures += 1
        self._outcome(f"failed: {reason}")
        self.log.warn("{provider}: token renewal failed ({reason}); retrying in {delay:.0f} s",
                      provider=self._provider, reason=reason, delay=delay)
        self._later(delay, why)

    def _outcome(self, outcome: str) -> None:
        self.last = {"at": iso(self._wall_clock()), "outcome": outcome}
