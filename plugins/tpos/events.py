"""
TPOS events under their downstream names (SPEC §9).

``on-events`` carries an order, an invoice, a product, a chat message...:
its ``Type`` and ``EventName`` choose the name, and stay in the payload as
explicit keys even when TPOS sent the payload as a JSON string. Any other
socket event becomes ``tpos:event`` with its own name beside its payload.
"""

from __future__ import annotations

import json
from typing import Any

ON_EVENTS = "on-events"
NEW_ORDER = "tpos:new-order"
ORDER_UPDATE = "tpos:order-update"
INVOICE_UPDATE = "tpos:invoice-update"
OTHER = "tpos:event"

_BY_TYPE_AND_NAME = {
    ("SaleOnline_Order", "created"): NEW_ORDER,
    ("SaleOnline_Order", "updated"): ORDER_UPDATE,
}
_BY_TYPE = {"FastSaleOrder": INVOICE_UPDATE}


def downstream_event(name: str, payload: Any) -> tuple[str, Any]:
    """The downstream name and payload of upstream event ``name``."""
    if name != ON_EVENTS:
        return OTHER, {"event": name, "payload": payload}
    body = _decoded(payload)
    if not isinstance(body, dict):
        body = {"Data": body}
    body = {**body, "Type": body.get("Type"), "EventName": body.get("EventName")}
    return _name_for(body["Type"], body["EventName"]), body


def _name_for(kind: Any, event_name: Any) -> str:
    if not isinstance(kind, str):
        return OTHER
    if isinstance(event_name, str) and (kind, event_name) in _BY_TYPE_AND_NAME:
        return _BY_TYPE_AND_NAME[kind, event_name]
    return _BY_TYPE.get(kind, OTHER)

def _decoded(payload: Any) -> Any:
    """A JSON-string payload as the value it encodes; anything else as it is."""
    if not isinstance(payload, str):
        return payload
    try:
        return json.loads(payload)
    except (ValueError, RecursionError):
        return payload  # a plain message: relayed as it came
