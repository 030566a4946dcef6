"""
What an upstream session reports about itself to the status API.
"""

import time
from datetime import datetime, timezone
from typing import Callable


class UpstreamStatus:
    """
    Live state of one upstream session, safe to show to an operator: errors
    are kept as an exception class name or a short fixed reason, never as a
    message that could quote a token or a cookie.
    """

    def __init__(self, wall_clock: Callable[[], float] = time.time) -> None:
        self._wall_clock = wall_clock
        self.connected = False
        self.since = wall_clock()
        self.reconnect_attempts = 0
        self.last_error: str | None = None
        self.needs_login = False

    def _changed(self) -> None:
        self.since = self._wall_clock()

    def session_established(self) -> None:
        self.connected = True
        self.reconnect_attempts = 0
        self._changed()

    def disconnected(self, error: str | None = None) -> None:
        if error is not None:
            self.last_error = error
        if self.connected:
            self.connected = False
            self._changed()

    def count_attempt(self) -> int:
        """Count one more reconnect attempt and return the new total."""
        self.reconnect_attempts += 1
        return self.reconnect_attempts

    def error(self, reason: str) -> None:
        self.last_error = reason

    def login_needed(self, reason: str) -> None:
        self.needs_login = True
        self.connected = False
        self.last_error = reason
        self._changed()

    def as_dict(self) -> dict[str, object]:
        return {
            "connected": self.connected,
            "since": datetime.fromtimestamp(self.since, timezone.utc).isoformat(),
            "reconnectAttempts": self.reconnect_attempts,
            "lastError": self.last_error,
            "needsLogin": self.needs_login,
        }
