"""TPOS events under their downstream names, payloads with Type/EventName explicit."""

import json

import pytest

from n2gateway_plugins.tpos.events import downstream_event

ORDER = {"Type": "SaleOnline_Order", "EventName": "created", "Data": {"Id": 1, "Code": "DH1"}}


@pytest.mark.parametrize("kind, event_name, expected", [
    ("SaleOnline_Order", "created", "tpos:new-order"),
    ("SaleOnline_Order", "updated", "tpos:order-update"),
    ("SaleOnline_Order", "deleted", "tpos:event"),
    ("FastSaleOrder", "created", "tpos:invoice-update"),
    ("FastSaleOrder", "updated", "tpos:invoice-update"),
    ("Product", "updated", "tpos:event"),
    ("Conversation", "chatomni.on-message", "tpos:event"),
])
def test_names_by_type_and_event_name(kind: str, event_name: str, expected: str) -> None:
    payload = {"Type": kind, "EventName": event_name, "Data": {"Id": 7}}
    assert downstream_event("on-events", payload) == (expected, payload)


def test_a_json_string_payload_is_relayed_as_the_object_it_encodes() -> None:
    assert downstream_event("on-events", json.dumps(ORDER)) == ("tpos:new-order", ORDER)


@pytest.mark.parametrize("payload, body", [
    ({"Message": "hi"}, {"Message": "hi", "Type": None, "EventName": None}),
    ("not json", {"Data": "not json", "Type": None, "EventName": None}),
    ("[1, 2]", {"Data": [1, 2], "Type": None, "EventName": None}),
    (None, {"Data": None, "Type": None, "EventName": None}),
    ({"Type": {"x": 1}, "EventName": ["created"]}, {"Type": {"x": 1}, "EventName": ["created"]}),
    ({"Type": "SaleOnline_Order"}, {"Type": "SaleOnline_Order", "EventName": None}),
])
def test_anything_else_is_a_tpos_event_with_type_and_event_name_explicit(payload, body) -> None:
    assert downstream_event("on-events", payload) == ("tpos:event", body)


def test_other_socket_events_keep_their_name() -> None:
    assert downstream_event("typing", {"user": 1}) == (
        "tpos:event", {"event": "typing", "payload": {"user": 1}})
