"""The rule that compares README answers with real ones (tests/support/readme.py): it
must refuse what differs, or the README examples' test could not fail."""

from __future__ import annotations

import pytest

from tests.support.readme import body_mismatches, curl_examples, mismatches

STATUS = '{"connected": true, "userId": "...", "pageIds": [...], "node": {...}, "since": "2026-01-01T00:00:00+00:00"}'
REAL = {"connected": True, "userId": "77", "pageIds": ["1", "2"], "node": {"a": 1},
        "since": "2026-12-01T22:03:21.711852+00:00"}


def test_placeholders_match_anything_of_their_kind():
    assert mismatches(STATUS, REAL) == []
    assert mismatches('{"offset": "<n>"}', {"offset": "42"}) == []


@pytest.mark.parametrize("actual, says", [
    ({**REAL, "connected": False}, "answer.connected: README shows True, got False"),
    ({**REAL, "connected": 1}, "answer.connected: README shows True, got 1"),
    ({**REAL, "pageIds": "1,2"}, "answer.pageIds: README shows [...], got '1,2'"),
    ({**REAL, "node": []}, "answer.node: README shows {...}, got []"),
    ({**REAL, "since": "yesterday"}, "answer.since: README shows '2026-01-01T00:00:00+00:00', got 'yesterday'"),
    ({**REAL, "extra": 1}, "answer.extra: in the answer, not shown in the README"),
    ({k: v for k, v in REAL.items() if k != "userId"}, "answer.userId: shown in the README, missing from the answer"),
])
def test_what_differs_is_named(actual, says):
    assert mismatches(STATUS, actual) == [says]


def test_dots_among_the_keys_allow_more_keys_but_not_fewer():
    shown = '{"type":"message:new","payload":{"chat_id":1,...,"users":{"user_id":1}},"offset":"2"}'
    real = {"type": "message:new", "payload": {"chat_id": 1, "message": "hi", "users": {"user_id": 1}},
            "offset": "2"}
    assert mismatches(shown, real) == []
    del real["payload"]["users"]
    assert mismatches(shown, real) == ["answer.payload.users: shown in the README, missing from the answer"]


def test_an_answer_that_is_not_json_is_the_readmes_fault():
    with pytest.raises(AssertionError, match="not JSON"):
        mismatches('{"offset": 4', {"offset": 4})


def test_curl_commands_go_on_over_backslashes_and_open_quotes_and_take_a_status():
    text = """# x
```sh
curl -X POST http://localhost:8080/a \\
  -d '{"token": "<t>",
       "pageIds": ["1"]}'
# → 400 {"error": "bad_request",
#    "field": "token"}
curl http://localhost:8080/b
```
"""
    first, second = curl_examples(text)
    assert first.command.count("\n") == 2 and first.command.endswith("""["1"]}'""")
    assert (first.status, first.answer) == (400, '{"error": "bad_request", "field": "token"}')
    assert (second.command, second.status, second.answer, second.line) == (
        "curl http://localhost:8080/b", None, None, 8)


def test_a_body_shown_as_text_matches_as_text_with_wildcards():
    shown = '0{"sid":"<sid>","upgrades":["websocket"],...}'
    assert body_mismatches(shown, '0{"sid":"a1b2","upgrades":["websocket"],"pingInterval":25000}') == []
    assert body_mismatches(shown, '0{"sid":"a1b2","upgrades":[]}') != []
    assert body_mismatches('{"ok": true}', "<html>") == ["answer: README shows JSON, got '<html>'"]
