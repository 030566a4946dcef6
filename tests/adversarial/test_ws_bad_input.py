"""Bad input over the WebSocket endpoints of a real gateway process: frames nested
30,000 levels deep, offsets of thousands of digits, user ids with NUL or a lone
surrogate, empty, expired and expiring tokens, and a plain HTTP GET of /ws. Each is
an error frame, a refusal or a close with a reason, never a traceback; the sender
alone is affected."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest_twisted

from n2gateway.downstream.auth import issue_token
from n2gateway.downstream.close_codes import CLOSE_UNAUTHORIZED
from tests.adversarial.ws_gateway import SOCKETIO, gateway, still_serves  # noqa: F401
from tests.support.gateway import WITHOUT_SOURCES, GatewayProcess
from tests.support.rawws import RawWebSocket, frame

SECRET = "adversarial-secret-of-32-bytes-or-more"


def assert_no_traceback(gateway: GatewayProcess) -> None:
    log = gateway.log_text()
    assert "Traceback" not in log and "internal error" not in log, log[-3000:]


@pytest_twisted.ensureDeferred
async def test_malformed_ws_frames_and_names_get_clear_answers(gateway) -> None:
    client = RawWebSocket(gateway.port, "/ws?userId=u")
    assert json.loads(client.texts(1)[0])["type"] == "welcome"
    for payload, says in [
        (b"[" * 30_000 + b"]" * 30_000, "nested too deeply"),
        (b'{"type":"subscribe","room":"r","offset":"' + b"9" * 4400 + b'"}', "19 digits"),
        (b'{"type":"subscribe","room":"r","offset":' + b"9" * 4400 + b"}", "malformed JSON"),
        (b'{"type":"subscribe","room":"a\\u0000b"}', "control characters"),
        (b'{"type":"unsubscribe","room":"\\udc00"}', "lone surrogates"),
    ]:
        client.send(frame(1, payload))
        answer = json.loads(client.texts(1)[0])
        assert answer["type"] == "error" and says in answer["message"], (payload[:50], answer)
    client.send_json({"type": "subscribe", "room": "fine"})
    assert json.loads(client.texts(1)[0]) == {"type": "subscribed", "room": "fine"}
    client.close()

    nul = RawWebSocket(gateway.port, "/ws?userId=a%00b")
    assert "userId must not contain" in json.loads(nul.texts(1)[0])["message"]
    assert nul.read_to_close()[0] == CLOSE_UNAUTHORIZED
    surrogate = RawWebSocket(gateway.port, SOCKETIO)
    surrogate.texts(1)  # Engine.IO open
    surrogate.send(frame(1, b'40{"userId":"\\ud800"}'))
    refusal = surrogate.texts(1)[0]
    assert refusal.startswith("44") and "userId must not contain" in refusal

    try:
        urllib.request.urlopen(gateway.url + "/ws", timeout=5)
        raise AssertionError("GET /ws without Upgrade answered 2xx")
    except urllib.error.HTTPError as e:
        assert e.code == 426 and e.headers["Content-Type"] == "application/json"
        assert json.loads(e.read())["error"] == "upgrade_required"
    still_serves(gateway)
    assert_no_traceback(gateway)


def test_the_upgrade_answers_of_both_endpoints_say_the_same_server(gateway) -> None:
    """The handshake's ``Server`` header once showed the repr of an object of ours on
    /socket.io/ (a name Autobahn reads from its factory)."""
    servers = set()
    for path in ("/ws?userId=u", SOCKETIO):
        client = RawWebSocket(gateway.port, path)
        servers.add(client.headers["server"])
        client.close()
    assert len(servers) == 1 and " at 0x" not in servers.pop()


@pytest_twisted.ensureDeferred
async def test_bad_and_expiring_tokens_end_with_4001(tmp_path, database_url) -> None:
    secured = GatewayProcess(tmp_path, *WITHOUT_SOURCES, "--jwt-secret", SECRET,
                             database_url=database_url).start()
    try:
        await secured.wait_ready()
        for token, says in [(issue_token(SECRET, "u", ttl=-5), "token expired"),
                            (issue_token(SECRET, ""), "sub must be a non-empty string"),
                            (issue_token(SECRET, "a\x00b"), "sub must not contain")]:
            refused = RawWebSocket(secured.port, f"/ws?token={token}")
            assert says in json.loads(refused.texts(1)[0])["message"]
            assert refused.read_to_close()[0] == CLOSE_UNAUTHORIZED
        expiring = RawWebSocket(secured.port, "/ws?token=" + issue_token(SECRET, "u", ttl=2))
        assert json.loads(expiring.texts(1)[0])["type"] == "welcome"
        assert expiring.read_to_close() == (CLOSE_UNAUTHORIZED, "token expired")
        assert_no_traceback(secured)
    finally:
        secured.ensure_stopped()
