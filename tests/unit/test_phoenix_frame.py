import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from n2gateway.codecs.phoenix import (
    InvalidFrame,
    PhoenixMessage,
    decode_frame,
    encode_frame,
    reply_status,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)
refs = st.none() | st.text()
names = st.text(min_size=1)


def test_heartbeat_on_the_wire() -> None:
    frame = encode_frame(PhoenixMessage(None, "7", "phoenix", "heartbeat", {}))
    assert frame == b'[null,"7","phoenix","heartbeat",{}]'


@given(refs, refs, names, names, json_values)
def test_round_trip(join_ref, ref, topic, event, payload) -> None:
    message = PhoenixMessage(join_ref, ref, topic, event, payload)
    assert decode_frame(encode_frame(message)) == message


@pytest.mark.parametrize(
    "data, why",
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[" * 100_000, "not JSON"),
        (b'{"topic": "users:1"}', "not a 5-element array"),
        (b'[null, null, "users:1", "x"]', "not a 5-element array"),
        (b'[1, "1", "users:1", "x", {}]', "ref is neither a string nor null"),
        (b'[null, null, "", "x", {}]', "topic is not a non-empty string"),
        (b'[null, null, "users:1", 5, {}]', "event is not a non-empty string"),
    ],
)
def test_invalid_frames(data: bytes, why: str) -> None:
    with pytest.raises(InvalidFrame) as raised:
        decode_frame(data)
    assert str(raised.value) == why


def test_invalid_frame_messages_never_quote_the_frame() -> None:
    with pytest.raises(InvalidFrame) as raised:
        decode_frame(json.dumps(["secret-token"]).encode())
    assert "secret-token" not in str(raised.value)


def test_reply_status() -> None:
    assert reply_status({"status": "ok", "response": {"a": 1}}) == ("ok", {"a": 1})
    with pytest.raises(InvalidFrame):
        reply_status({"response": {}})
    with pytest.raises(InvalidFrame):
        reply_status(["ok"])
