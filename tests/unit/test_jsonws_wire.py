"""The plain JSON WebSocket's wire encoding (SPEC §9) and offset parsing."""

from __future__ import annotations

import json

import pytest
from autobahn.twisted.websocket import WebSocketServerFactory

from n2gateway.codecs.jsonws import ProtocolError, parse_offset
from n2gateway.downstream.jsonws import JsonWire
from n2gateway.journal import Event


@pytest.fixture
def wire():
    return JsonWire(WebSocketServerFactory())


@pytest.mark.parametrize("payload_json", [
    '{"a":1,"b":[true,null]}', '"text"', "null", "3.5", '"tiếng Việt \\u2028 \\"quoted\\""',
])
def test_an_event_becomes_the_spec_frame_with_its_payload_spliced_unchanged(wire, payload_json):
    frame = wire.prepare(Event(17, ("user:1", "staff"), "message:new", payload_json), "staff")
    decoded = json.loads(frame.payload.decode("utf-8"))
    assert decoded == {"type": "message:new", "room": "staff",
                       "payload": json.loads(payload_json), "offset": "17"}
    assert not frame.binary


def test_names_and_rooms_that_need_escaping_stay_valid_json(wire):
    frame = wire.prepare(Event(1, ('r"\\',), 'ev"\n', "{}"), 'r"\\')
    assert json.loads(frame.payload) == {"type": 'ev"\n', "room": 'r"\\', "payload": {},
                                         "offset": "1"}


def test_the_frame_is_a_ready_unmasked_websocket_text_frame(wire):
    frame = wire.prepare(Event(2, ("r",), "e", "{}"), "r")
    assert frame.payloadHybi[0] == 0x81  # FIN + text
    assert frame.payloadHybi[1] & 0x80 == 0  # a server never masks
    assert frame.payloadHybi.endswith(frame.payload)


def test_the_wire_names_the_room_and_its_protocol(wire):
    assert wire.names_room is True
    assert wire.protocol_name == "ws"


@pytest.mark.parametrize("value, expected", [
    (None, None), ("0", 0), ("12345678901234", 12345678901234), (7, 7),
])
def test_offsets_are_digit_strings(value, expected):
    assert parse_offset(value) == expected


@pytest.mark.parametrize("value", ["", "-1", -1, "1.5", "abc", "１２", " 1", True, 1.0, [1], {}])
def test_anything_else_is_refused(value):
    with pytest.raises(ProtocolError, match="offset"):
        parse_offset(value)
