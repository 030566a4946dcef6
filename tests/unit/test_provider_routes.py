"""The start route every provider shares, in memory: what it answers when the
credentials cannot be saved."""

from __future__ import annotations

import pytest
import pytest_twisted
from treq.testing import StubTreq

from n2gateway.credentials import CredentialsRefused
from n2gateway.db import DatabaseUnavailable
from n2gateway.http.provider_routes import add_provider_routes
from n2gateway.http.routes import Routes
from tests.unit.test_routes import call

TOKEN = "demo-token-never-echoed-9f2c"
CONSTRAINT = ('the database refused the row: new row for relation "realtime_credentials"'
              ' violates check constraint "realtime_credentials_client_type_check"')


class Refusing:
    """A provider whose credentials the database will not take."""

    client_type = "demo"

    def __init__(self, error: Exception) -> None:
        self._error = error

    async def start(self, credentials) -> bool:
        raise self._error


def stub_for(provider: Refusing) -> StubTreq:
    routes = Routes(admin_token=None)
    add_provider_routes(
        routes, provider, owner=lambda: None, prefix="/api/realtime/demo",
        start_body={"type": "object", "properties": {"token": {"type": "string"}}},
        credentials_from_body=lambda body: body, status_properties={})
    return StubTreq(routes.app.resource())


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("error, code, message", [
    # A client type whose plugin did not add it to the table's check: the operator
    # must be told which constraint, or every start is a bare "internal error".
    (CredentialsRefused(CONSTRAINT), 500,
     f"credentials not saved, nothing changed: {CONSTRAINT}"),
    (DatabaseUnavailable("timed out"), 503, "credentials not saved, nothing changed: timed out"),
])
async def test_credentials_the_database_does_not_take_are_a_clear_error(error, code, message):
    status, body, _ = await call(stub_for(Refusing(error)), "POST", "/api/realtime/demo/start",
                                 {"token": TOKEN})
    assert (status, body["message"]) == (code, message)
    assert TOKEN not in str(body)
