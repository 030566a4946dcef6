"""A real gateway process with every secret set, for the adversarial tests: what they
throw at it, and the checks that it is still healthy afterwards."""

from __future__ import annotations

import http.client
import json

import pytest_twisted
from twisted.internet import defer

from tests.support.gateway import WITHOUT_SOURCES, GatewayProcess, rss_kib

ADMIN = "adversarial-admin-token-0123"
JWT_SECRET = "adversarial-jwt-secret-0123456789"
BEARER = {"Authorization": f"Bearer {ADMIN}"}


def start_gateway(tmp_path, database_url: str) -> GatewayProcess:
    gateway = GatewayProcess(tmp_path, *WITHOUT_SOURCES, "--admin-token", ADMIN,
                             "--jwt-secret", JWT_SECRET, database_url=database_url).start()
    pytest_twisted.blockon(defer.Deferred.fromCoroutine(gateway.wait_healthy(60)))
    return gateway


def send(gateway: GatewayProcess, method: str, path: str, body: bytes | None = None,
         headers: dict | None = None) -> tuple[int, dict, dict]:
    """One request on a fresh connection, headers sent as given (bytes allowed);
    returns the status, the JSON answer (it must be JSON) and the headers."""
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=20)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        answer = connection.getresponse()
        content = answer.read()
        headers_in = {k.lower(): v for k, v in answer.getheaders()}
        assert headers_in.get("content-type") == "application/json", (answer.status, content)
        return answer.status, json.loads(content), headers_in
    finally:
        connection.close()


def publish(gateway: GatewayProcess, raw: bytes, headers: dict | None = None):
    return send(gateway, "POST", "/api/publish", raw,
                {**BEARER, "Content-Type": "application/json", **(headers or {})})


def assert_healthy(gateway: GatewayProcess) -> None:
    """``/health`` is 200 and a normal publish is stored."""
    assert gateway.process.poll() is None, gateway.log_text()
    status, health, _ = send(gateway, "GET", "/health")
    assert (status, health["status"]) == (200, "ok"), health
    status, answer, _ = publish(gateway, b'{"rooms": ["ok"], "event": "still-fine"}')
    assert status == 200 and int(answer["offset"]) > 0, answer


def rss_mib(gateway: GatewayProcess) -> float:
    return rss_kib(gateway.process.pid) / 1024


def client_token(sub: str, rooms: list[str]) -> str:
    import time

    import jwt

    return jwt.encode({"sub": sub, "rooms": rooms, "exp": int(time.time()) + 3600},
                      JWT_SECRET, algorithm="HS256")
