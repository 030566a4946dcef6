"""
What C{/api/realtime/tpos/start} accepts and C{/api/realtime/tpos/status} answers.
"""

from __future__ import annotations

from typing import Any

from n2gateway.upstream.tpos import DEFAULT_ROOM, TposCredentials

from .provider import ROOM_PATTERN

# Control characters in the token would split the upstream request's headers.
_PRINTABLE = "^[^\\u0000-\\u001f\\u007f]*$"

START_BODY = {
    "type": "object",
    "required": ["token"],
    "additionalProperties": False,
    "properties": {
        "token": {"type": "string", "minLength": 1, "maxLength": 4096, "pattern": _PRINTABLE},
        "room": {"type": "string", "pattern": ROOM_PATTERN},
    },
}

STATUS_PROPERTIES = {"room": {"type": ["string", "null"]}}


def credentials_from_body(body: dict[str, Any]) -> TposCredentials:
    """Credentials from a start body that passed L{START_BODY}."""
    return TposCredentials(token=body["token"], room=body.get("room", DEFAULT_ROOM))
