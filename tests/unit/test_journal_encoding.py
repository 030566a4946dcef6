"""What PostgreSQL cannot store is refused at append time, alone.

Appends travel in batches: an event the database rejects would fail every other
publisher's event in its batch, so such an event must be refused before it joins one.
"""

import pytest

import json

from n2gateway.journal import MAX_PAYLOAD, JsonText, encode_append
from n2gateway.storable import Unstorable


@pytest.mark.parametrize("rooms, event", [
    (["a\x00b"], "x"),   # text columns cannot hold NUL
    (["room"], "e\x00"),
    (["\ud800"], "x"),   # a lone surrogate is not encodable as UTF-8
    (["room"], "\udfff"),
])
def test_unstorable_names_are_refused(rooms, event) -> None:
    with pytest.raises(ValueError):
        encode_append(rooms, event, None)


def test_unstorable_payload_text_is_refused() -> None:
    with pytest.raises(ValueError):
        encode_append(["room"], "x", {"text": "\ud800"})


@pytest.mark.parametrize("payload, reason, words", [
    # PostgreSQL cannot turn \u0000 into text, even inside a json column.
    ({"text": "bad\x00char"}, "nul", "NUL"),
    ({"a\x00": 1}, "nul", "NUL"),
    ([["x\x00"]], "nul", "NUL"),
    (float("nan"), "number", "NaN"),
    ({"n": float("inf")}, "number", "Infinity"),
    ([json.loads("-1e400")], "number", "1e400"),  # Python reads it as -infinity
    (json.loads("[" * 65 + "]" * 65), "depth", "deeper than 64"),
    ({"a": json.loads('{"b":' * 64 + "1" + "}" * 64)}, "depth", "deeper than 64"),
])
def test_what_postgresql_refuses_is_refused_naming_the_problem(payload, reason, words) -> None:
    with pytest.raises(Unstorable, match=words) as caught:
        encode_append(["room"], "x", payload)
    assert caught.value.reason == reason


def test_the_depth_bound_is_inclusive() -> None:
    deepest = json.loads("[" * 64 + "]" * 64)
    assert json.loads(encode_append(["room"], "x", deepest))["payload"] == deepest


@pytest.mark.parametrize("text", ['{"t": "a\\u0000b"}', "[" * 65 + "]" * 65])
def test_json_text_is_checked_too(text) -> None:
    with pytest.raises(Unstorable):
        encode_append(["room"], "x", JsonText(text))


def test_an_escaped_backslash_before_u0000_is_no_nul() -> None:
    text = '{"path": "C:\\\\u0000"}'  # the characters \u0000, not a NUL
    assert encode_append(["room"], "x", JsonText(text)).endswith(text + "}")


def test_json_text_is_spliced_in_as_it_is() -> None:
    text = '{"message": "xin chào", "n": [1, 2.50, null]}'
    encoded = encode_append(["user:1", "staff"], "message:new", JsonText(text))
    assert encoded.endswith(',"payload":' + text + "}")
    assert json.loads(encoded) == {"rooms": ["user:1", "staff"], "event": "message:new",
                                   "payload": json.loads(text)}


def test_json_text_counts_against_the_size_limit() -> None:
    with pytest.raises(ValueError, match="bytes"):
        encode_append(["room"], "x", JsonText('"' + "z" * MAX_PAYLOAD + '"'))
