"""
TPOS events into the journal, in rooms ``tpos`` and ``tpos:<shop room>``.
"""

from __future__ import annotations

from typing import Any

from n2gateway.upstream.relay import EventRelay, Publish

from .events import downstream_event

ROOM = "tpos"


def rooms_for(shop_room: str) -> list[str]:
    return [ROOM, f"{ROOM}:{shop_room}"]


class TposRelay(EventRelay):
    """The provider's event callback: publishes each event under its downstream name."""

    def __init__(self, publish: Publish) -> None:
        super().__init__("tpos", publish)

    def __call__(self, shop_room: str, name: str, payload: Any) -> None:
        self.publish(rooms_for(shop_room), *downstream_event(name, payload))
