"""The route registry in memory (StubTreq): admin token, JSON errors, validation."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import pytest_twisted
from treq.testing import StubTreq

from n2gateway.http.errors import HttpError
from n2gateway.http.health import add_health_route
from n2gateway.http.routes import Routes
from n2gateway.http.operations import DatabaseProbe

ADMIN = "adm-7f3a9c"
SECRET_VALUE = "tok-Zq81-not-for-logs"

START_SCHEMA = {
    "type": "object",
    "required": ["token", "userId", "pageIds"],
    "additionalProperties": False,
    "properties": {
        "token": {"type": "string", "minLength": 1},
        "userId": {"type": "string", "pattern": "^[0-9]+$"},
        "pageIds": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "room": {"enum": ["tomato.tpos.vn", "other.tpos.vn"]},
        "cookie": {"type": "string", "maxLength": 8},
    },
}


def make_routes(admin_token: str | None = ADMIN) -> Routes:
    routes = Routes(admin_token=admin_token)
    async def node_status():
        return {"node": "n1", "owns": [], "owners": {}}

    database = DatabaseProbe(SimpleNamespace(configured=False), "external")
    database.reached()
    operations = SimpleNamespace(
        database=database, ready=True, plugin_status=lambda: {}, node_status=node_status,
        leadership=SimpleNamespace(status=lambda: {"node": "n1", "owns": []}))

    add_health_route(routes, operations)

    async def start(request):
        return {"success": True, "pages": len(request.body["pageIds"])}

    async def status(request):
        return {"connected": False, "verbose": request.query("verbose")}

    async def conflict(request):
        raise HttpError(409, "already running", provider="demo")

    async def broken(request):
        raise RuntimeError(f"boom with {SECRET_VALUE}")

    routes.add("POST", "/api/demo/start", start, body=START_SCHEMA)
    routes.add("GET", "/api/demo/status", status)
    routes.add("POST", "/api/demo/conflict", conflict)
    routes.add("GET", "/open/broken", broken)
    return routes


async def call(stub: StubTreq, method: str, path: str, body=None, headers=None):
    data = body if isinstance(body, bytes | None) else json.dumps(body).encode()
    response = await stub.request(method, "http://gw.test" + path, data=data,
                                  headers=headers or {})
    content = await response.content()
    assert response.headers.getRawHeaders("content-type") == ["application/json"], content
    return response.code, json.loads(content), response


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


GOOD_BODY = {"token": SECRET_VALUE, "userId": "42", "pageIds": ["1", "2"]}


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("headers", [
    None, bearer("wrong"), {"Authorization": f"Basic {ADMIN}"}, {"Authorization": ADMIN},
    {"Authorization": "Bearer"}, bearer(ADMIN + "x"),
    {b"Authorization": b"Bearer \xff\xfe" + ADMIN.encode()}])
async def test_api_routes_need_the_admin_token(headers):
    stub = StubTreq(make_routes().app.resource())
    for method, path, body in (("GET", "/api/demo/status", None),
                               ("POST", "/api/demo/start", GOOD_BODY)):
        code, answer, _ = await call(stub, method, path, body, headers)
        assert code == 401
        assert answer["error"] == "unauthorized"
        assert "Bearer" in answer["message"] and ADMIN not in answer["message"]


@pytest_twisted.ensureDeferred
async def test_the_admin_token_opens_api_routes():
    stub = StubTreq(make_routes().app.resource())
    code, answer, _ = await call(stub, "POST", "/api/demo/start", GOOD_BODY, bearer(ADMIN))
    assert (code, answer) == (200, {"success": True, "pages": 2})
    code, answer, _ = await call(stub, "GET", "/api/demo/status?verbose=1", None,
                                 {"authorization": f"bearer {ADMIN}"})
    assert (code, answer) == (200, {"connected": False, "verbose": "1"})


@pytest_twisted.ensureDeferred
async def test_health_stays_open_with_an_admin_token():
    stub = StubTreq(make_routes().app.resource())
    code, answer, _ = await call(stub, "GET", "/health")
    assert code == 200 and answer["status"] == "ok"


@pytest_twisted.ensureDeferred
async def test_without_an_admin_token_api_routes_are_open():
    stub = StubTreq(make_routes(admin_token=None).app.resource())
    code, answer, _ = await call(stub, "GET", "/api/demo/status")
    assert code == 200 and answer["connected"] is False


@pytest_twisted.ensureDeferred
async def test_unknown_path_is_a_json_404():
    stub = StubTreq(make_routes().app.resource())
    code, answer, _ = await call(stub, "GET", "/no/such/thing")
    assert (code, answer["error"]) == (404, "not_found")


@pytest_twisted.ensureDeferred
async def test_wrong_method_is_a_json_405_naming_the_allowed_one():
    stub = StubTreq(make_routes().app.resource())
    code, answer, response = await call(stub, "DELETE", "/health")
    assert (code, answer["error"]) == (405, "method_not_allowed")
    assert "GET" in answer["message"]
    assert "GET" in response.headers.getRawHeaders("allow")[0]


@pytest_twisted.ensureDeferred
async def test_a_handler_error_is_a_json_answer_with_its_details():
    stub = StubTreq(make_routes(admin_token=None).app.resource())
    code, answer, _ = await call(stub, "POST", "/api/demo/conflict")
    assert code == 409
    assert answer == {"error": "conflict", "message": "already running", "provider": "demo"}


@pytest_twisted.ensureDeferred
async def test_a_crashing_handler_is_a_json_500_without_the_exception_text():
    stub = StubTreq(make_routes().app.resource())
    code, answer, _ = await call(stub, "GET", "/open/broken")
    assert (code, answer["error"]) == (500, "internal_error")
    assert SECRET_VALUE not in json.dumps(answer) and "Traceback" not in json.dumps(answer)


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("raw, says", [
    (b'{"token": "abc", ', "malformed JSON"),
    (b"\xff\xfe{}", "malformed JSON"),
    (b"", "a JSON body is required"),
    (b"   ", "a JSON body is required"),
    (b"[" * 100_000 + b"]" * 100_000, "JSON nested deeper than 72 levels"),
    (b'{"token": ' + b"[" * 73 + b"]" * 73 + b"}", "JSON nested deeper than 72 levels"),
])
async def test_a_malformed_body_is_a_400(raw, says):
    stub = StubTreq(make_routes().app.resource())
    code, answer, _ = await call(stub, "POST", "/api/demo/start", raw, bearer(ADMIN))
    assert (code, answer["error"]) == (400, "bad_request")
    assert answer["message"].startswith(says)


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("body, message, field", [
    ({"userId": "42", "pageIds": ["1"]}, "missing field 'token'", "token"),
    ({**GOOD_BODY, "token": 12345987}, "field 'token' must be a string", "token"),
    ({**GOOD_BODY, "token": ""}, "field 'token' must not be empty", "token"),
    ({**GOOD_BODY, "pageIds": ["1", 99999731]}, "field 'pageIds.1' must be a string", "pageIds.1"),
    ({**GOOD_BODY, "pageIds": []}, "field 'pageIds' must not be empty", "pageIds"),
    ({**GOOD_BODY, "userId": "abc-77771"}, "field 'userId' has an invalid format", "userId"),
    ({**GOOD_BODY, "room": "evil-room-88812"}, "field 'room' must be one of", "room"),
    ({**GOOD_BODY, "cookie": "c-4471" * 8}, "field 'cookie' must be at most 8 long", "cookie"),
    ({**GOOD_BODY, "extra": "value-55121"}, "unknown field 'extra'", "extra"),
    (["not", "an", "object"], "the body must be an object", None),
])
async def test_schema_errors_name_the_field_never_the_value(body, message, field):
    stub = StubTreq(make_routes().app.resource())
    code, answer, _ = await call(stub, "POST", "/api/demo/start", body, bearer(ADMIN))
    assert code == 400
    assert answer["message"].startswith(message)
    assert answer.get("field") == field
    # Whatever the offending value was, the answer does not quote it (nor the token).
    text = json.dumps(answer)
    for value in (SECRET_VALUE, "12345987", "99999731", "abc-77771", "evil-room-88812",
                  "c-4471", "value-55121"):
        assert value not in text


@pytest_twisted.ensureDeferred
async def test_answers_forbid_sniffing_and_framing_and_pages_carry_a_policy():
    from n2gateway.http.routes import RawAnswer

    routes = make_routes()

    async def page(request):
        return RawAnswer(b"<!doctype html><p>hi</p>", "text/html; charset=utf-8")

    routes.add("GET", "/page", page, content_type="text/html")
    stub = StubTreq(routes.app.resource())
    _, _, answer = await call(stub, "GET", "/health")
    html = await stub.get("http://gw.test/page")
    for response in (answer, html):
        assert response.headers.getRawHeaders("x-content-type-options") == ["nosniff"]
        assert response.headers.getRawHeaders("x-frame-options") == ["DENY"]
    policy = html.headers.getRawHeaders("content-security-policy")[0]
    assert "frame-ancestors 'none'" in policy and "default-src 'self'" in policy
    assert answer.headers.getRawHeaders("content-security-policy") is None
