"""
What ``/api/realtime/tpos/start`` accepts and ``/api/realtime/tpos/status`` answers.
"""

from __future__ import annotations

from typing import Any

from .session import DEFAULT_ROOM, TposCredentials

from .provider import ROOM_PATTERN

# Control characters would split the upstream request's headers or the token form.
_PRINTABLE = "^[^\\u0000-\\u001f\\u007f]*$"


def _secret(max_length: int) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": max_length, "pattern": _PRINTABLE}


START_BODY = {
    "type": "object",
    "additionalProperties": False,
    # A token, a refresh token, or a username with its password (any of them together).
    "anyOf": [{"required": ["token"]}, {"required": ["refreshToken"]},
              {"required": ["username", "password"]}],
    "dependentRequired": {"username": ["password"], "password": ["username"]},
    "properties": {
        "token": _secret(4096),
        "refreshToken": _secret(4096),
        "username": _secret(256),
        "password": _secret(1024),
        "clientId": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,100}$"},
        "room": {"type": "string", "pattern": ROOM_PATTERN},
    },
}

_RENEWAL = {"type": ["object", "null"], "properties": {
    "at": {"type": "string", "format": "date-time"}, "outcome": {"type": "string"}}}
STATUS_PROPERTIES = {"room": {"type": ["string", "null"]}, "renewals": {"type": "integer"},
                     "lastRenewal": _RENEWAL}


def credentials_from_body(body: dict[str, Any]) -> TposCredentials:
    """Credentials from a start body that passed :data:`START_BODY`."""
    return TposCredentials(
        token=body.get("token", ""), room=body.get("room", DEFAULT_ROOM),
        username=body.get("username"), password=body.get("password"),
        refresh_token=body.get("refreshToken"), client_id=body.get("clientId"))
