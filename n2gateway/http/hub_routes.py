"""Core control routes of the downstream hub: publish an event, read the hub's state."""

from __future__ import annotations

import re

from twisted.internet import defer

from n2gateway.http.errors import HttpError
from n2gateway.http.routes import JsonRequest, Routes
from n2gateway.journal import JournalFull, Withdrawn
from n2gateway.http.operations import Operations

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


#: A publish not durable within this many seconds answers 503 (see ``publish``).
PUBLISH_DEADLINE = 10.0
_KEY = re.compile(rb"[\x21-\x7e]{1,200}")


def idempotency_key(request: JsonRequest) -> str | None:
    raw = request.raw.getHeader(b"idempotency-key")
    if raw is None:
        return None
    if not _KEY.fullmatch(raw):
        raise HttpError(400, "Idempotency-Key must be 1 to 200 printable ASCII characters "
                        "without spaces")
    return raw.decode("ascii")


def add_hub_routes(routes: Routes, ops: Operations) -> None:
    async def publish(request: JsonRequest) -> dict:
        """Stored, or a clear 503 within ``PUBLISH_DEADLINE``: an append not yet sent to
        the database is withdrawn (never stored later); one already sent may still be
        stored, and a retry with the same Idempotency-Key answers its offset then."""
        body = request.body
        key = idempotency_key(request)
        try:
            appended = ops.journal.append(body["rooms"], body["event"],
                                          body.get("payload"), key=key)
        except ValueError as e:
            raise HttpError(400, str(e)) from None
        except JournalFull as e:
            raise HttpError(503, str(e)) from None
        appended.addTimeout(PUBLISH_DEADLINE, ops.reactor)
        try:
            offset = await appended
        except ValueError as e:
            raise HttpError(400, str(e)) from None
        except Withdrawn:
            raise HttpError(503, f"not stored within {PUBLISH_DEADLINE:g} s (the database is "
                            "unavailable); it will not be stored: retry later") from None
        except defer.TimeoutError:
            raise HttpError(503, f"not confirmed within {PUBLISH_DEADLINE:g} s (the database "
                            "is slow or unavailable); it may still be stored: retry with the "
                            "same Idempotency-Key to store it once") from None
        return {"offset": str(offset)}

    async def status(request: JsonRequest) -> dict:
        settings = ops.settings
        return {**ops.hub.status(),
                "node": await ops.node_status(),
                "retention": {"seconds": settings.retention, "rows": settings.retention_rows},
                "protocols": ops.connections_by_protocol(),
                "slowClosed": ops.slow_closed()}

    routes.add("POST", "/api/publish", publish, summary="Publish an event to rooms (an "
               "Idempotency-Key header makes a retry store it once)",
               body=PUBLISH_BODY, response=PUBLISH_ANSWER, tags=("hub",))
    routes.add("GET", "/api/hub/status", status, summary="Connections, rooms, journal head",
               response=HUB_STATUS, tags=("hub",))
