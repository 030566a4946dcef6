"""A wait between retries that a stop can cut short."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.task import deferLater


class Pause:
    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._waiting: defer.Deferred | None = None

    async def __call__(self, seconds: float) -> bool:
        """Wait; True when the time ran out, False when ``cancel`` cut it short."""
        self._waiting = deferLater(self._reactor, seconds)
        try:
            await self._waiting
            return True
        except defer.CancelledError:
            return False
        finally:
            self._waiting = None

    def cancel(self) -> None:
        if self._waiting is not None:
            self._waiting.cancel()
