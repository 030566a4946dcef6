"""``GET /openapi.json``: the OpenAPI 3.1 description, made from the route registry.

Generated on each request from what every route declared (core and plugin routes
alike), so it cannot drift from what is served. OpenAPI 3.1 takes JSON Schema
2020-12 as it is, so the schemas the routes validate with are embedded unchanged.
It sits behind the admin token when one is set: it describes the admin routes.
"""

from __future__ import annotations

import re
from typing import Any

from n2gateway import __version__
from n2gateway.http.errors import ERROR_SCHEMA
from n2gateway.http.routes import JsonRequest, Route, Routes

_PATH_ARG = re.compile(r"<(?:[a-z]+:)?([A-Za-z_][A-Za-z0-9_]*)>")
_ERROR_REF = {"$ref": "#/components/schemas/Error"}


def openapi_path(klein_path: str) -> str:
    """``/api/x/<name>`` (Klein/werkzeug) as ``/api/x/{name}`` (OpenAPI)."""
    return _PATH_ARG.sub(r"{\1}", klein_path)


def _error(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": _ERROR_REF}}}


def _operation(route: Route) -> dict[str, Any]:
    schema = route.response if route.response is not None else {}
    responses: dict[str, Any] = {
        str(status): {"description": route.summary or "answer",
                      "content": {route.content_type: {"schema": schema}}}
        for status in route.statuses
    }
    operation: dict[str, Any] = {
        "operationId": f"{route.method.lower()} {route.path}",
        "summary": route.summary,
        "tags": list(route.tags),
        "responses": responses,
    }
    names = _PATH_ARG.findall(route.path)
    if names:
        operation["parameters"] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in names]
    if route.body is not None:
        operation["requestBody"] = {
            "required": True, "content": {"application/json": {"schema": route.body}}}
        responses.setdefault("400", _error("malformed JSON or a field that breaks the schema"))
        responses.setdefault("413", _error("request body too large"))
    if route.protected:
        operation["security"] = [{"adminToken": []}]
        responses.setdefault("401", _error("missing or wrong admin token"))
    responses["default"] = _error("any other error, in the one JSON error shape")
    return operation


def openapi_document(routes: Routes) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes.routes:
        paths.setdefault(openapi_path(route.path), {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {"title": "n2gateway", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR_SCHEMA},
            "securitySchemes": {"adminToken": {"type": "http", "scheme": "bearer"}},
        },
    }


OPENAPI_SCHEMA = {"type": "object", "required": ["openapi", "paths"]}


def add_openapi_route(routes: Routes) -> None:
    async def describe(request: JsonRequest) -> dict:
        return openapi_document(routes)

    routes.add("GET", "/openapi.json", describe, summary="This OpenAPI description",
               response=OPENAPI_SCHEMA, tags=("operations",),
               protected=True)
