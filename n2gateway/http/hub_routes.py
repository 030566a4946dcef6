"""Core control routes of the downstream hub: publish an event, read the hub's state."""

from __future__ import annotations

from typing import Any

from n2gateway.http.errors import HttpError
from n2gateway.http.routes import JsonRequest, Routes
from n2gateway.journal import JournalFull

NO_NUL = "^[^\\x00]*$"  # PostgreSQL text cannot hold NUL
PUBLISH_BODY = {
    "type": "object",
    "required": ["rooms", "event"],
    "additionalProperties": False,
    "properties": {
        "rooms": {"type": "array", "minItems": 1, "maxItems": 100,
                  "items": {"type": "string", "minLength": 1, "maxLength": 200,
                            "pattern": NO_NUL}},
        "event": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": NO_NUL},
        "payload": {},
    },
}
PUBLISH_ANSWER = {"type": "object", "required": ["offset"],
                  "properties": {"offset": {"type": "string"}}}


HUB_STATUS = {
    "type": "object",
    "required": ["ready", "head", "connections", "rooms", "protocols", "topRooms"],
    "properties": {
        "ready": {"type": "boolean"},
        "head": {"type": "string"},
        "connections": {"type": "integer"},
        "rooms": {"type": "integer"},
        "delivered": {"type": "integer"},
        "replayed": {"type": "integer"},
        "pendingAppends": {"type": "integer"},
        "topRooms": {"type": "array", "items": {
            "type": "object", "required": ["room", "connections"],
            "properties": {"room": {"type": "string"}, "connections": {"type": "integer"}}}},
        "retention": {"type": "object"},
        "protocols": {"type": "object", "additionalProperties": {"type": "integer"}},
    },
}


def add_hub_routes(routes: Routes, gateway: Any) -> None:
    async def publish(request: JsonRequest) -> dict:
        body = request.body
        try:
            offset = await gateway.journal.append(body["rooms"], body["event"], body.get("payload"))
        except ValueError as e:
            raise HttpError(400, str(e)) from None
        except JournalFull as e:
            raise HttpError(503, str(e)) from None
        return {"offset": str(offset)}

    async def status(request: JsonRequest) -> dict:
        settings = gateway.settings
        return {**gateway.hub.status(),
                "node": await gateway.node_status(),
                "retention": {"seconds": settings.retention, "rows": settings.retention_rows},
                "protocols": gateway.connections_by_protocol(),
                # Clients closed as too slow to follow (4008), by endpoint.
                "slowClosed": {name: endpoint.slow_closed
                               for name, endpoint in gateway.endpoints.items()}}

    routes.add("POST", "/api/publish", publish, summary="Publish an event to rooms",
               body=PUBLISH_BODY, response=PUBLISH_ANSWER, tags=("hub",))
    routes.add("GET", "/api/hub/status", status, summary="Connections, rooms, journal head",
               response=HUB_STATUS, tags=("hub",))
