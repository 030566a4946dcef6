"""
Which rooms a Pancake event goes to, and that a failed publish is only logged.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import capturedLogs

from n2gateway_plugins.pancake.relay import PancakeRelay, rooms_for


@pytest.mark.parametrize("topic, payload, rooms", [
    ("users:42", {"page_id": "101"}, ["pancake", "pancake:page:101"]),
    ("pages:101", {"conversation": {"id": "101_9", "page_id": "101"}},
     ["pancake", "pancake:page:101"]),
    ("pages:101", {"message": {"page_id": 101}}, ["pancake", "pancake:page:101"]),
    ("pages:101", {"conversation": {"page_id": "101"}, "message": {"page_id": "102"}},
     ["pancake", "pancake:page:101", "pancake:page:102"]),
    ("pages:igo_77", {"page_id": "igo_77"}, ["pancake", "pancake:page:igo_77"]),
    ("users:42", {"online": True}, ["pancake"]),
    ("users:42", ["not", "an", "object"], ["pancake"]),
    # Not ids: nothing a client could mistake for another room.
    ("users:42", {"page_id": True, "message": {"page_id": "1 2"},
                  "conversation": {"page_id": "../x"}}, ["pancake"]),
    ("users:42", {"page_id": {"id": 1}, "conversation": "101"}, ["pancake"]),
])
def test_rooms(topic: str, payload: Any, rooms: list[str]) -> None:
    assert rooms_for(topic, payload) == rooms


def test_every_event_is_published_under_its_upstream_name() -> None:
    published = []
    relay = PancakeRelay(lambda *args: succeed(published.append(args)))
    relay("pages:7", "pages:update_conversation", {"conversation": {"page_id": "7"}})
    relay("users:42", "order:tags_updated", {"tags": []})
    assert published == [
        (["pancake", "pancake:page:7"], "pages:update_conversation",
         {"conversation": {"page_id": "7"}}),
        (["pancake"], "order:tags_updated", {"tags": []})]


@pytest.mark.parametrize("outcome", [
    lambda: fail(RuntimeError("journal unavailable")),
    lambda: (_ for _ in ()).throw(ValueError("payload is not JSON-serializable")),
])
def test_a_failed_publish_is_logged_and_the_next_one_still_goes(outcome: Any) -> None:
    calls: list[str] = []

    def publish(rooms: list[str], event: str, payload: Any) -> Deferred:
        calls.append(event)
        return outcome() if event == "first" else succeed(1)

    relay = PancakeRelay(publish)
    with capturedLogs() as events:
        relay("users:42", "first", {})
        relay("users:42", "second", {})
    assert calls == ["first", "second"]
    # Logged once, naming the event (a refused event without a traceback).
    assert [e["event"] for e in events if e.get("event")] == ["first"]
