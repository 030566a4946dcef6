"""HTTP errors as JSON: ``{"error": <code word>, "message": <one line>}``."""

from __future__ import annotations

from typing import Any


#: The shape of every error answer, declared in the OpenAPI description.
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string"},
        "message": {"type": "string"},
        "field": {"type": ["string", "null"]},
    },
}


class HttpError(Exception):
    """Raise from a route handler to answer ``status`` with a JSON error body."""

    def __init__(self, status: int, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        return {"error": ERROR_WORDS.get(self.status, "error"), "message": self.message,
                **self.details}


ERROR_WORDS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    426: "upgrade_required",
    500: "internal_error",
    503: "unavailable",
}


def bad_request(message: str, **details: Any) -> HttpError:
    return HttpError(400, message, **details)
