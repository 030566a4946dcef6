"""
Pancake events into the journal: every event to room ``pancake``, and to
``pancake:page:<id>`` for each page it names.
"""

from __future__ import annotations

import re
from typing import Any

from n2gateway.upstream.relay import EventRelay, Publish

ROOM = "pancake"
PAGE_ROOM_PREFIX = "pancake:page:"
# Page and user ids as Pancake writes them: digits for Facebook pages, prefixed
# words (igo_..., tl_...) for other platforms, UUIDs for users. They become room
# names and topics, so nothing else gets through.
ID_PATTERN = r"^[A-Za-z0-9_.-]{1,100}$"
_ID = re.compile(ID_PATTERN)
#: Topics of the form pages:<pageId> name their page (one channel joined per page).
PAGE_TOPIC_PREFIX = "pages:"

def _page_id(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value)
    return text if _ID.fullmatch(text) else None


def rooms_for(topic: str, payload: Any) -> list[str]:
    """``pancake``, then the page room of every page id the event names, in order."""
    named = []
    if isinstance(payload, dict):
        named.append(payload.get("page_id"))
        for key in ("conversation", "message"):
            inner = payload.get(key)
            if isinstance(inner, dict):
                named.append(inner.get("page_id"))
    if topic.startswith(PAGE_TOPIC_PREFIX):
        named.append(topic[len(PAGE_TOPIC_PREFIX):])
    pages = dict.fromkeys(p for p in map(_page_id, named) if p is not None)
    return [ROOM, *(PAGE_ROOM_PREFIX + page for page in pages)]


class PancakeRelay(EventRelay):
    """The session's event callback: publishes each event under its upstream name."""

    def __init__(self, publish: Publish) -> None:
        super().__init__("pancake", publish)

    def __call__(self, topic: str, event: str, payload: Any) -> None:
        self.publish(rooms_for(topic, payload), event, payload)
