"""
What ``/api/realtime/start`` accepts and ``/api/realtime/status`` answers.
"""

from __future__ import annotations

from typing import Any

from .session import PancakeCredentials

from .relay import ID_PATTERN

# Control characters in a cookie would split the upstream request's headers.
_PRINTABLE = "^[^\\u0000-\\u001f\\u007f]*$"

START_BODY = {
    "type": "object",
    "required": ["token", "userId", "pageIds"],
    "additionalProperties": False,
    "properties": {
        "token": {"type": "string", "minLength": 1, "maxLength": 4096, "pattern": _PRINTABLE},
        "userId": {"type": "string", "maxLength": 50, "pattern": ID_PATTERN},
        "pageIds": {"type": "array", "minItems": 1, "maxItems": 1000,
                    "items": {"type": "string", "pattern": ID_PATTERN}},
        "cookie": {"type": ["string", "null"], "maxLength": 8192, "pattern": _PRINTABLE},
    },
}

STATUS_PROPERTIES = {
    "userId": {"type": ["string", "null"]},
    "pageCount": {"type": "integer"},
    "pageIds": {"type": "array", "items": {"type": "string"}},
    "pages": {"type": "object", "additionalProperties": {
        "type": "object", "required": ["joined", "error", "since"],
        "properties": {"joined": {"type": "boolean"}, "error": {"type": ["string", "null"]},
                       "since": {"type": ["string", "null"]}}}},
}


def credentials_from_body(body: dict[str, Any]) -> PancakeCredentials:
    """Credentials from a start body that passed :data:`START_BODY`."""
    return PancakeCredentials(
        token=body["token"],
        user_id=body["userId"],
        page_ids=tuple(dict.fromkeys(body["pageIds"])),
        cookie=body.get("cookie") or None,
    )
