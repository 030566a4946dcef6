"""Event traffic per source, for metrics and the status page.

A source is the prefix of an event's first room (``pancake`` for
``pancake:page:1``). Room names come from publishers, so the set of sources is
capped: past ``limit`` distinct prefixes, or for a prefix that does not look like
a name, events count under ``other`` and a metric label can never grow unbounded.
"""

from __future__ import annotations

import re

_SOURCE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
OTHER = "other"


class SourceTally:
    def __init__(self, limit: int = 32) -> None:
        self._limit = limit
        self._known: set[str] = set()
        self.published: dict[str, int] = {}
        self.delivered: dict[str, int] = {}
        #: Events the journal refused, by (source, reason).
        self.refused: dict[tuple[str, str], int] = {}

    def source(self, room: str) -> str:
        prefix = room.split(":", 1)[0]
        if prefix in self._known:
            return prefix
        if not _SOURCE.fullmatch(prefix) or len(self._known) >= self._limit:
            return OTHER
        self._known.add(prefix)
        return prefix

    def count(self, first_room: str, receivers: int) -> None:
        """One event dispatched to ``receivers`` sessions of this node."""
        source = self.source(first_room)
        self.published[source] = self.published.get(source, 0) + 1
        self.delivered[source] = self.delivered.get(source, 0) + receivers

    def refuse(self, first_room: str, reason: str) -> None:
        """One event refused for ``reason`` (a word from a fixed set)."""
        key = (self.source(first_room), reason)
        self.refused[key] = self.refused.get(key, 0) + 1
