"""The OpenAPI description: in step with the route registry, and true of a real gateway.

Schemathesis generates requests for every described operation (core and plugin
routes alike) against a gateway subprocess and checks each answer against the
description: no 5xx, every status and body as declared.
"""

from __future__ import annotations

from pathlib import Path

import pytest_twisted
import schemathesis
from hypothesis import HealthCheck, given, settings
from twisted.internet import reactor

from n2gateway.config import Settings
from n2gateway.gateway import Gateway
from n2gateway.http.openapi import openapi_document, openapi_path
from n2gateway.plugins import load_plugins
from tests.conftest import create_database
from tests.support.gateway import GatewayProcess

ADMIN = "openapi-admin-token"
# Upstream plugins started by a generated request must not reach the internet.
NOWHERE = {"N2GATEWAY_PANCAKE_URL": "ws://127.0.0.1:9/socket/websocket",
           "N2GATEWAY_TPOS_URL": "ws://127.0.0.1:9/socket.io/"}


def test_every_route_is_described_with_its_schemas(tmp_path: Path) -> None:
    gateway = Gateway(Settings(data_dir=tmp_path), load_plugins(), reactor)
    document = openapi_document(gateway.routes)
    assert document["openapi"].startswith("3.1")
    assert len(gateway.routes.routes) >= 8
    for route in gateway.routes.routes:
        assert route.response is not None, f"{route.method} {route.path} declares no response"
        operation = document["paths"][openapi_path(route.path)][route.method.lower()]
        answer = operation["responses"]["200"]["content"][route.content_type]["schema"]
        assert answer == route.response
        assert operation["responses"]["default"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"}
        if route.body is not None:
            assert operation["requestBody"]["content"]["application/json"]["schema"] == route.body
        assert ("security" in operation) == route.protected


def test_klein_path_arguments_become_openapi_parameters() -> None:
    assert openapi_path("/api/x/<name>/y/<int:n>") == "/api/x/{name}/y/{n}"


@pytest_twisted.async_yield_fixture(scope="module")
async def running_gateway(pg_server, tmp_path_factory):
    gateway = GatewayProcess(tmp_path_factory.mktemp("openapi"), "--admin-token", ADMIN,
                             env=NOWHERE, database_url=create_database(pg_server.get_uri())).start()
    try:
        await gateway.wait_ready()
        yield gateway
    finally:
        gateway.ensure_stopped()


def test_gateway_answers_as_described(running_gateway) -> None:
    auth = {"Authorization": f"Bearer {ADMIN}"}
    schema = schemathesis.openapi.from_url(running_gateway.url + "/openapi.json", headers=auth)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8

    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def answers_as_described(case) -> None:
            case.call_and_validate(base_url=running_gateway.url, headers=auth)

        try:
            answers_as_described()
        except Exception as e:
            raise AssertionError(f"{operation.label}: {e}") from e
