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
        self.published: dict[str, int] = {}
        self.delivered: dict[str, int] = {}

    def source(self, room: str) -> str:
        prefix = room.split(":", 1)[0]
        if prefix in self.published:
            return prefix
        if not _SOURCE.fullmatch(prefix) or len(self.published) >= self._limit:
            return OTHER
        return prefix

    def count(self, first_room: str, receivers: int) -> None:
        """One event dispatched to ``receivers`` sessions of this node."""
        source = self.source(first_room)
        self.published[source] = self.published.get(source, 0) + 1
        self.delivered[source] = self.delivered.get(source, 0) + receivers
