"""A token bucket: how often a client may ask for something that costs the gateway
a write (a WebSocket ping costs a pong)."""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime


class Allowance:
    """``burst`` at once, then ``rate`` per second."""

    def __init__(self, clock: IReactorTime, rate: float, burst: int) -> None:
        self._clock = clock
        self._rate = rate
        self._burst = burst
        self._tokens = float(burst)
        self._at = clock.seconds()

    def take(self) -> bool:
        now = self._clock.seconds()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
