"""
The base of a provider's event callback: publishes into the journal and logs
a failure there instead of raising it into the upstream session.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Sequence

from twisted.internet.defer import maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

Publish = Callable[[Sequence[str], str, Any], Awaitable[int]]


class EventRelay:
    log = Logger()

    def __init__(self, provider: str, publish: Publish) -> None:
        self._provider = provider
        self._publish = publish

    def publish(self, rooms: Sequence[str], event: str, payload: Any) -> None:
        d = maybeDeferred(self._publish, rooms, event, payload)
        d.addErrback(self._failed, event)

    def _failed(self, failure: Failure, event: str) -> None:
        if failure.check(ValueError):
            # An event the journal cannot store (counted in n2gateway_events_refused):
            # the reason names the problem, never the payload.
            self.log.warn("{provider}: {event} not published: {reason}",
                          provider=self._provider, event=event, reason=str(failure.value))
            return
        self.log.failure("{provider}: {event} not published", failure,
                         provider=self._provider, event=event)
