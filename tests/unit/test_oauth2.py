"""
The OAuth2 token endpoint client over Twisted's HTTP client, against an
in-memory twisted.web resource: what it sends, and every bad answer a short
reason that quotes neither the body nor the form.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

import pytest
from treq.testing import RequestTraversalAgent
from twisted.internet.defer import CancelledError, Deferred
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from n2gateway.upstream.oauth2 import GrantFailed, GrantRefused, TokenEndpoint, TokenGrant

PASSWORD = "oauth2-test-password-5678"
ACCESS = "oauth2-test-access-token-9999"
FORM = {"grant_type": "password", "username": "oauth2-test-shop-user", "password": PASSWORD,
        "client_id": "tmtWebApp"}


class TokenResource(Resource):
    isLeaf = True

    def __init__(self, code: int, body: bytes, content_type: str = "application/json") -> None:
        super().__init__()
        self.code, self.body, self.content_type = code, body, content_type
        self.requests: list[Any] = []

    def render_POST(self, request: Any) -> bytes:
        self.requests.append((request.getHeader("content-type"),
                              parse_qs(request.content.read().decode())))
        request.setResponseCode(self.code)
        request.setHeader("content-type", self.content_type)
        return self.body


def grant(resource: Resource) -> Deferred:
    agent = RequestTraversalAgent(resource)
    endpoint = TokenEndpoint("http://tpos.test/token", None, agent=agent)
    result = Deferred.fromCoroutine(endpoint.grant(FORM))
    agent.flush()
    return result


def outcome(resource: Resource) -> Any:
    result = grant(resource)
    assert result.called
    failures: list[Any] = []
    result.addErrback(failures.append)
    return failures[0].value if failures else result.result


def test_a_form_encoded_post_gets_the_token_its_lifetime_and_refresh_token() -> None:
    resource = TokenResource(200, json.dumps({
        "access_token": ACCESS, "token_type": "bearer", "expires_in": 3599,
        "refresh_token": "oauth2-test-refresh-token-1111"}).encode())
    assert outcome(resource) == TokenGrant(ACCESS, 3599.0, "oauth2-test-refresh-token-1111")
    [(content_type, form)] = resource.requests
    assert content_type == "application/x-www-form-urlencoded"
    assert form == {key: [value] for key, value in FORM.items()}
    without = TokenResource(200, json.dumps({"access_token": ACCESS, "expires_in": "60"}).encode())
    assert outcome(without) == TokenGrant(ACCESS, 60.0, None)


def test_an_oauth2_error_is_a_refusal_with_its_code_only() -> None:
    refused = outcome(TokenResource(400, json.dumps({
        "error": "invalid_grant", "error_description": f"bad password {PASSWORD}"}).encode()))
    assert isinstance(refused, GrantRefused) and str(refused) == "invalid_grant"
    odd = outcome(TokenResource(401, json.dumps({"error": f"no <b>{PASSWORD}</b>"}).encode()))
    assert isinstance(odd, GrantRefused) and str(odd) == "refused (HTTP 401)"


BIG = json.dumps({"access_token": ACCESS, "expires_in": 60, "pad": "x" * (1024 * 1024)})


@pytest.mark.parametrize("code, body, content_type, reason", [
    (500, b'{"error": "server_error"}', "application/json", "HTTP 500"),
    (502, b"<html><body>Bad gateway</body></html>", "text/html",
     "HTTP 502, answer is not a JSON object"),
    (200, b"<!DOCTYPE html><html>login page</html>", "text/html",
     "HTTP 200, answer is not a JSON object"),
    (200, b"\xff\xfe garbage", "application/octet-stream", "HTTP 200, answer is not a JSON object"),
    (200, b"[1, 2]", "application/json", "HTTP 200, answer is not a JSON object"),
    (200, b'{"token_type": "bearer"}', "application/json", "answer has no access_token"),
    (200, json.dumps({"access_token": "a\r\nX-Evil: 1", "expires_in": 60}).encode(),
     "application/json", "answer has no access_token"),
    (200, json.dumps({"access_token": ACCESS, "expires_in": -5}).encode(), "application/json",
     "answer has no valid expires_in"),
    (200, BIG.encode(), "application/json", "answer over 1 MiB"),
])
def test_bad_answers_fail_with_a_short_reason(code: int, body: bytes, content_type: str,
                                              reason: str) -> None:
    failed = outcome(TokenResource(code, body, content_type))
    assert type(failed) is GrantFailed and str(failed) == reason
    assert ACCESS not in str(failed) and PASSWORD not in str(failed)


def test_an_unreachable_endpoint_fails_with_the_kind_of_error() -> None:
    class Unreachable:
        def request(self, *args: Any) -> Deferred:
            from twisted.internet.error import ConnectionRefusedError
            failed: Deferred = Deferred()
            failed.errback(ConnectionRefusedError(f"refused {PASSWORD}"))
            return failed

    result = Deferred.fromCoroutine(
        TokenEndpoint("http://tpos.test/token", None, agent=Unreachable()).grant(FORM))
    failures: list[Any] = []
    result.addErrback(failures.append)
    assert str(failures[0].value) == "token endpoint unreachable: ConnectionRefusedError"


@pytest.mark.parametrize("begun", [b"", b'{"access_token": "half'])
def test_an_endpoint_that_never_finishes_its_answer_can_be_cancelled(begun: bytes) -> None:
    class Hanging(Resource):
        isLeaf = True

        def render_POST(self, request: Any) -> Any:
            if begun:
                request.write(begun)
            return NOT_DONE_YET

    result = grant(Hanging())
    assert not result.called
    result.cancel()  # what TokenRenewal's timeout does: cancelled, not "failed"
    failures: list[Any] = []
    result.addErrback(failures.append)
    assert failures and failures[0].check(CancelledError)
