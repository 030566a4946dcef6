"""The control routes every upstream provider has: start, stop and status (SPEC §5).

A provider plugin gives its path prefix, the JSON Schema of its start body, a
function turning a valid body into credentials, and the status fields of its own.
Every route works on every gateway sharing the database: start and stop change
the stored row, which the gateway holding the provider follows, and status names
that gateway (``owner``).
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from n2gateway.credentials import CredentialsRefused
from n2gateway.db import DatabaseUnavailable
from n2gateway.http.errors import HttpError
from n2gateway.http.routes import JsonRequest, Routes
from n2gateway.storable import unstorable_text
from n2gateway.upstream.provider import Provider

START_ANSWER = {
    "type": "object",
    "required": ["success", "credentialsSaved", "message"],
    "properties": {"success": {"type": "boolean"}, "credentialsSaved": {"type": "boolean"},
                   "message": {"type": "string"}},
}
STOP_ANSWER = {
    "type": "object",
    "required": ["success", "message"],
    "properties": {"success": {"type": "boolean"}, "message": {"type": "string"}},
}
_NULLABLE_STRING = {"type": ["string", "null"]}
# What every provider's status has (ProviderStatus.as_json, and owner).
STATUS_PROPERTIES = {
    "connected": {"type": "boolean"},
    "held": {"type": "boolean"},
    "hasToken": {"type": "boolean"},
    "reconnectAttempts": {"type": "integer"},
    "needsLogin": {"type": "boolean"},
    "since": {"type": "string", "format": "date-time"},
    "lastError": _NULLABLE_STRING,
    "owner": _NULLABLE_STRING,
    # The token's expiry (a JWT's exp, or what the token endpoint said), if known.
    "tokenExpiresAt": {"type": ["string", "null"], "format": "date-time"},
    "tokenExpired": {"type": "boolean"},
    "tokenExpiresSoon": {"type": "boolean"},
}


def status_schema(own: dict[str, Any]) -> dict[str, Any]:
    """The status answer's schema: the common fields plus the provider's ``own``."""
    properties = {**STATUS_PROPERTIES, **own}
    return {"type": "object", "required": sorted(properties), "properties": properties}


def add_provider_routes(
    routes: Routes,
    provider: Provider[Any],
    *,
    owner: Callable[[], Awaitable[str | None]],
    prefix: str,
    start_body: dict[str, Any],
    credentials_from_body: Callable[[Any], Any],
    status_properties: dict[str, Any],
) -> None:
    name = provider.client_type
    tags = (name,)

    async def start(request: JsonRequest) -> dict[str, Any]:
        # What the schema let through but a text column refuses (a third party's
        # schema may have no patterns at all): the field is named, its value never.
        problem = unstorable_text(request.body)
        if problem is not None:
            field, what = problem
            raise HttpError(400, f"{f'field {field!r}' if field else 'the body'} {what}",
                            field=field or None)
        credentials = credentials_from_body(request.body)
        try:
            here = await provider.start(credentials)
        except DatabaseUnavailable as e:
            raise HttpError(503, f"credentials not saved, nothing changed: {e}") from None
        except CredentialsRefused as e:
            # The gateway's set-up, not the request (a plugin that did not add its
            # client type to the table's check): a 500 that names the constraint.
            raise HttpError(500, f"credentials not saved, nothing changed: {e}") from None
        where = "" if here else " (through the gateway that holds it)"
        return {"success": True, "credentialsSaved": True,
                "message": f"credentials saved; connecting to {name}{where}"}

    async def stop(request: JsonRequest) -> dict[str, Any]:
        try:
            await provider.stop()
        except DatabaseUnavailable as e:
            raise HttpError(503, f"not stopped, nothing changed: {e}") from None
        return {"success": True, "message": f"{name} stopped; it will not reconnect at start-up"}

    async def status(request: JsonRequest) -> dict[str, Any]:
        return {**provider.status().as_json(), "owner": await owner()}

    routes.add("POST", f"{prefix}/start", start, body=start_body, response=START_ANSWER,
               summary=f"Save {name} credentials and (re)connect at once", tags=tags)
    routes.add("POST", f"{prefix}/stop", stop, response=STOP_ANSWER,
               summary=f"Disconnect {name} and deactivate its stored credentials", tags=tags)
    routes.add("GET", f"{prefix}/status", status, response=status_schema(status_properties),
               summary=f"State of the {name} session (never the token)", tags=tags)
