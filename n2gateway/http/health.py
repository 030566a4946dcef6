"""``GET /health``: 200 ``ok`` once started and while the database answers, 503
``degraded`` otherwise (``ready`` is false until migrations and services are up).

It asks the database each time (``SELECT 1`` with a short timeout) rather than
trusting a flag, so it turns back to ``ok`` as soon as the database is back.
"""

from __future__ import annotations

from typing import Any

from n2gateway import __version__
from n2gateway.db import DatabaseUnavailable
from n2gateway.http.routes import JsonRequest, Routes

HEALTH_SCHEMA = {
    "type": "object",
    "required": ["status", "database"],
    "properties": {
        "status": {"enum": ["ok", "degraded"]},
        "ready": {"type": "boolean"},
        "version": {"type": "string"},
        "database": {"type": "object"},
        "node": {"type": "object"},
        "plugins": {"type": "object"},
    },
}


def add_health_route(routes: Routes, gateway: Any) -> None:
    async def health(request: JsonRequest) -> tuple[int, dict]:
        database: dict[str, Any] = {"kind": gateway.settings.database_kind}
        if gateway.db.configured:
            try:
                await gateway.db.ping()
                gateway.database_state, gateway.database_error = "up", None
            except DatabaseUnavailable as e:
                gateway.database_state, gateway.database_error = "down", str(e)
        database["state"] = gateway.database_state
        if gateway.database_error:
            database["error"] = gateway.database_error
        # Until start-up is over the hub and the plugins are not running yet.
        up = gateway.database_state == "up" and gateway.ready
        return (200 if up else 503), {
            "status": "ok" if up else "degraded",
            "ready": gateway.ready,
            "version": __version__,
            "database": database,
            "node": await gateway.node_status() if up else gateway.leadership.status(),
            "plugins": gateway.plugin_status(),
        }

    routes.add("GET", "/health", health, summary="Liveness and database state",
               response=HEALTH_SCHEMA, tags=("operations",))
