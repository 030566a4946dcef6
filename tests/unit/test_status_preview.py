"""The recent-events preview of the status page never fails on what is in the journal."""

from __future__ import annotations

import pytest

from n2gateway.http.status_page import preview
from n2gateway.journal import Event


@pytest.mark.parametrize("depth", [65, 950, 100_000])
def test_a_payload_nested_past_the_bound_is_previewed_as_a_note(depth):
    # Stored before the journal had a depth bound (or written by hand).
    event = Event(7, ("r",), "deep", "[" * depth + "]" * depth)
    assert preview(event) == {"offset": "7", "rooms": ["r"], "event": "deep",
                              "payload": "[nested deeper than 64 levels: not shown]"}


def test_a_payload_within_the_bound_is_shown_redacted():
    event = Event(8, ("r",), "e", '{"a": [[{"token": "hunter2-do-not-show"}]]}')
    assert preview(event)["payload"] == '{"a":[[{"token":"[redacted]"}]]}'
