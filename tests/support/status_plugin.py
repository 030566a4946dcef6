"""A tiny provider plugin for the status-page test: a status hook and a switch.

``POST /api/test-provider/connect`` turns it connected, as an upstream session
coming up would.
"""

from __future__ import annotations

from n2gateway.hookspecs import hookimpl

state = {"connected": False, "needsLogin": False, "reconnectAttempts": 3, "lastError": None}


@hookimpl
def n2gateway_status(context):
    return dict(state)


@hookimpl
def n2gateway_routes(context, routes):
    async def connect(request) -> dict:
        state.update(connected=True, reconnectAttempts=0)
        return dict(state)

    routes.add("POST", "/api/test-provider/connect", connect, summary="Test: connect",
               response={"type": "object"}, tags=("test",))
