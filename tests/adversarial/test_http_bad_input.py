"""The audit's bad HTTP input, replayed against a real gateway process: every answer
is a 4xx JSON error affecting only its sender, and the gateway stays healthy (``/health``
200, normal publishes stored, memory bounded)."""

from __future__ import annotations

import pytest

from tests.conftest import create_database
from tests.support.hardened import (ADMIN, BEARER, assert_healthy, publish, rss_mib, send,
                                    start_gateway)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, pg_server):
    gateway = start_gateway(tmp_path_factory.mktemp("bad-input"),
                            create_database(pg_server.get_uri()))
    yield gateway
    gateway.ensure_stopped()


def event(payload: bytes) -> bytes:
    return b'{"rooms": ["r"], "event": "e", "payload": ' + payload + b"}"


UNSTORABLE = {
    "NaN": (event(b"NaN"), "NaN"),
    "Infinity": (event(b"[1, Infinity]"), "Infinity"),
    "-Infinity": (event(b'{"n": -Infinity}'), "Infinity"),
    "1e400": (event(b"1e400"), "1e400"),
    "NUL in a string": (event(b'"bad\\u0000char"'), "NUL"),
    "NUL in a key": (event(b'{"k\\u0000": 1}'), "NUL"),
    "NUL in the event": (b'{"rooms": ["r"], "event": "e\\u0000"}', "event"),
    "lone surrogate": (event(b'"\\ud800"'), "surrogate"),
    "payload 65 deep": (event(b"[" * 65 + b"]" * 65), "deeper than 64"),
    "body 100k deep": (b"[" * 100_000 + b"]" * 100_000, "deeper than 72"),
    "not JSON": (b"{rooms: r}", "malformed JSON"),
    "no rooms": (b'{"event": "e"}', "missing field 'rooms'"),
    "over 1 MiB": (event(b'"' + b"x" * (1024 * 1024) + b'"'), "over"),
}


@pytest.mark.parametrize("name", UNSTORABLE)
def test_a_bad_publish_is_a_4xx_naming_the_problem_and_nothing_else_is_hurt(gateway, name):
    raw, says = UNSTORABLE[name]
    status, answer, _ = publish(gateway, raw)
    assert status in (400, 413) and says in answer["message"], answer
    assert_healthy(gateway)


@pytest.mark.parametrize("headers, status", [
    ({"Authorization": b"Bearer \xff\xfe\xfd"}, 401),
    ({"Authorization": "Bearer "}, 401),
    ({"Authorization": f"Bearer {ADMIN}", "Idempotency-Key": "has space"}, 400),
    ({"Authorization": f"Bearer {ADMIN}", "Idempotency-Key": b"\xff"}, 400),
])
def test_bad_headers_are_a_4xx_json(gateway, headers, status):
    assert publish(gateway, event(b"1"), headers)[0] == status
    assert send(gateway, "GET", "/api/hub/status", headers={
        k: v for k, v in headers.items() if k == "Authorization"})[0] in (status, 200)
    assert_healthy(gateway)


@pytest.mark.parametrize("length", [b"abc", b"-1", b"1, 2", b"99999999999999999999999"])
def test_a_bad_content_length_is_a_json_400(gateway, length):
    import socket

    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(b"POST /api/publish HTTP/1.1\r\nHost: gw\r\nContent-Length: " + length
                     + b"\r\n\r\n{}")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 4") and b"application/json" in head, answer
    assert b'"error"' in body
    assert_healthy(gateway)


def test_a_doubled_slash_and_an_unknown_route_answer_json(gateway):
    status, answer, headers = send(gateway, "GET", "/api//hub/status", headers=BEARER)
    assert status == 308 and headers["location"] == "/api/hub/status"
    assert send(gateway, "GET", "/api/nope", headers=BEARER)[0] == 404


def test_the_recent_events_survive_the_replay_and_memory_stays_bounded(gateway):
    before = rss_mib(gateway)
    for _ in range(3):
        for raw, _ in UNSTORABLE.values():
            publish(gateway, raw)
    status, recent, _ = send(gateway, "GET", "/api/hub/recent?limit=50", headers=BEARER)
    assert status == 200 and {e["event"] for e in recent["events"]} == {"still-fine"}
    assert rss_mib(gateway) - before < 64
    assert_healthy(gateway)
