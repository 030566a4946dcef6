"""
What an upstream session reports about itself to the status API.
"""

import dataclasses
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

# An upstream's refusal reason goes to the status only if it looks like a code.
_SAFE_REASON = re.compile(r"[A-Za-z0-9_ .:-]{1,40}")
# What stands in the status and the logs for a part of a reason that quotes a secret.
WITHHELD = "[withheld: it quoted a credential]"
# Reasons are cut into words at these; a word this long that is part of a secret
# is taken for a quote of it (shorter ones say too little to matter).
_WORD_SEPARATORS = re.compile(r"[\s:,;=()\[\]{}\"'<>]+")
_MIN_QUOTED = 8


def secrets_of(credentials: Any) -> tuple[str, ...]:
    """The secret values of a credentials dataclass: by house rule, the fields
    hidden from its repr (tokens, cookies, passwords)."""
    values = (getattr(credentials, f.name) for f in dataclasses.fields(credentials) if not f.repr)
    return tuple(v for v in values if isinstance(v, str) and v)


def _is_quote(text: str, secrets: Iterable[str]) -> bool:
    return any(text in secret or secret in text for secret in secrets)


def withhold_secrets(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret, and every word of it that is a piece of one, withheld."""
    secrets = [s for s in secrets if s]
    for secret in secrets:
        text = text.replace(secret, WITHHELD)
    quoted = {word for word in _WORD_SEPARATORS.split(text)
              if len(word) >= _MIN_QUOTED and _is_quote(word, secrets)}
    for word in sorted(quoted, key=len, reverse=True):
        text = text.replace(word, WITHHELD)
    return text


def safe_reason(reason: object, fallback: str) -> str:
    """
    ``reason`` if it is a short code-like string, else ``fallback``. A short
    token passes this test: :class:`UpstreamStatus` withholds quotes of its
    session's secrets from whatever it keeps (see :func:`withhold_secrets`).
    """
    return reason if isinstance(reason, str) and _SAFE_REASON.fullmatch(reason) else fallback


def iso(timestamp: float | None) -> str | None:
    """A Unix time as ISO 8601 in UTC, as every status answer shows times."""
    return None if timestamp is None else datetime.fromtimestamp(
        timestamp, timezone.utc).isoformat()


@dataclass
class ChannelStatus:
    """One channel of a session (a Pancake page): joined or not, and why not."""

    joined: bool
    error: str | None
    since: float

    def as_dict(self) -> dict[str, object]:
        return {"joined": self.joined, "error": self.error, "since": iso(self.since)}


class UpstreamStatus:
    """
    Live state of one upstream session, safe to show to an operator: errors
    are kept as an exception class name or a short fixed reason, never as a
    message that could quote a token or a cookie; and whatever quotes one of
    the session's ``secrets`` anyway (an upstream echoing a token in its
    refusal) is withheld before it is kept.
    """

    def __init__(self, wall_clock: Callable[[], float] = time.time,
                 secrets: Iterable[str] = ()) -> None:
        self._wall_clock = wall_clock
        self._secrets = tuple(secrets)
        self.connected = False
        self.since = wall_clock()
        self.reconnect_attempts = 0
        self.last_error: str | None = None
        self.needs_login = False
        #: Per-channel state, by topic, for sessions whose channels fail alone.
        self.channels: dict[str, ChannelStatus] = {}

    def _changed(self) -> None:
        self.since = self._wall_clock()

    def know_secrets(self, secrets: Iterable[str]) -> None:
        """Withhold these too (a renewed token): the older ones may still be echoed.
        Each renewal passes the username, password and refresh token again: they are
        kept once, or a session of months would withhold a longer list every day."""
        self._secrets = tuple(dict.fromkeys((*self._secrets, *secrets)))

    def shown(self, reason: str) -> str:
        """``reason`` as it may be shown or logged: quotes of a secret withheld."""
        return withhold_secrets(reason, self._secrets)

    def session_established(self) -> None:
        self.connected = True
        self.reconnect_attempts = 0
        self.last_error = None  # the trouble before this session is over
        self._changed()

    def disconnected(self, error: str | None = None) -> None:
        if error is not None:
            self.last_error = self.shown(error)
        if self.connected:
            self.connected = False
            self._changed()
        for topic, channel in self.channels.items():
            self.channel(topic, False, channel.error)

    def channel(self, topic: str, joined: bool, error: str | None) -> None:
        """Record the state of channel ``topic``; ``since`` moves when ``joined`` changes."""
        error = None if error is None else self.shown(error)
        known = self.channels.get(topic)
        if known is None or known.joined != joined:
            self.channels[topic] = ChannelStatus(joined, error, self._wall_clock())
        else:
            known.error = error

    def count_attempt(self) -> int:
        """Count one more reconnect attempt and return the new total."""
        self.reconnect_attempts += 1
        return self.reconnect_attempts

    def error(self, reason: str) -> None:
        self.last_error = self.shown(reason)

    def login_needed(self, reason: str) -> None:
        self.needs_login = True
        self.connected = False
        self.last_error = self.shown(reason)
        self._changed()

    def as_dict(self) -> dict[str, object]:
        return {
            "connected": self.connected,
            "since": iso(self.since),
            "reconnectAttempts": self.reconnect_attempts,
            "lastError": self.last_error,
            "needsLogin": self.needs_login,
        }
