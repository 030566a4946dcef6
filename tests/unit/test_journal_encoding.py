"""What PostgreSQL cannot store is refused at append time, alone.

Appends travel in batches: an event the database rejects would fail every other
publisher's event in its batch, so such an event must be refused before it joins one.
"""

import pytest

import json

from n2gateway.journal import MAX_PAYLOAD, JsonText, encode_append


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


def test_nul_inside_a_payload_is_kept() -> None:
    # The payload column is json (not jsonb): the \u0000 escape is stored as written.
    assert "\\u0000" in encode_append(["room"], "x", {"text": "\x00"})


def test_json_text_is_spliced_in_as_it_is() -> None:
    text = '{"message": "xin chào", "n": [1, 2.50, null]}'
    encoded = encode_append(["user:1", "staff"], "message:new", JsonText(text))
    assert encoded.endswith(',"payload":' + text + "}")
    assert json.loads(encoded) == {"rooms": ["user:1", "staff"], "event": "message:new",
                                   "payload": json.loads(text)}


def test_json_text_counts_against_the_size_limit() -> None:
    with pytest.raises(ValueError, match="bytes"):
        encode_append(["room"], "x", JsonText('"' + "z" * MAX_PAYLOAD + '"'))
