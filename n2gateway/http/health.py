"""``GET /health``: 200 ``ok`` once started and while the database answers, 503
``degraded`` otherwise (``ready`` is false until migrations and services are up).

It asks the database each time (``SELECT 1`` with a short timeout) rather than
trusting a flag, so it turns back to ``ok`` as soon as the database is back.
"""

from __future__ import annotations

from n2gateway import __version__
from n2gateway.http.routes import JsonRequest, Routes
from n2gateway.http.operations import Operations

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


def add_health_route(routes: Routes, ops: Operations) -> None:
    async def health(request: JsonRequest) -> tuple[int, dict]:
        await ops.database.check()
        # Until start-up is over the hub and the plugins are not running yet.
        up = ops.database.up and ops.ready
        return (200 if up else 503), {
            "status": "ok" if up else "degraded",
            "ready": ops.ready,
            "version": __version__,
            "database": ops.database.as_json(),
            "node": await ops.node_status() if up else ops.leadership.status(),
            "plugins": ops.plugin_status(),
        }

    routes.add("GET", "/health", health, summary="Liveness and database state",
               response=HEALTH_SCHEMA, tags=("operations",), statuses=(200, 503))
