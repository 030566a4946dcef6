"""
The official Phoenix JS client against the fake Pancake server: proves the
fake speaks real Phoenix Channels v2.
"""

import json
import os
from pathlib import Path

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue

from tests.fakes.pancake import PACKAGE_EXPIRED, FakePancake
from tests.support.node import node as find_node

HERE = Path(__file__).parent
TOKEN = "interop-token"
REJECTED = "revoked-token"
EXPIRED_PAGE = "777"


@pytest_twisted.ensureDeferred
async def test_official_phoenix_client_joins_receives_and_is_refused() -> None:
    node = find_node("phoenix")
    fake = FakePancake(reactor)
    port = fake.listen()
    fake.reject_token(REJECTED)
    fake.expire_page(EXPIRED_PAGE)
    try:
        running = getProcessOutputAndValue(
            node,
            [str(HERE / "phoenix_join.mjs"), f"ws://127.0.0.1:{port}/socket", TOKEN, REJECTED,
             EXPIRED_PAGE],
            env=dict(os.environ),
            path=str(HERE),
            reactor=reactor,
        )
        await fake.wait_joined(1)
        fake.push("users:1", "pages:new_message", {"message": {"id": "m1", "message": "xin chào"}})
        out, err, code = await running
    finally:
        await fake.close()

    assert code == 0, err.decode()
    seen = json.loads(out.decode().strip().splitlines()[-1])
    assert seen == {
        "joined": {},
        "event": {"message": {"id": "m1", "message": "xin chào"}},
        "heartbeatReply": True,
        "rejected": {"reason": "unauthorized"},
        "expired": PACKAGE_EXPIRED["response"],
        "multipleRefused": PACKAGE_EXPIRED["response"],  # one expired page refuses them all
    }
    request = fake.sessions[0]
    assert request.params["vsn"] == ["2.0.0"]
    join = next(f for f in fake.frames if f[3] == "phx_join" and f[2] == "users:1")
    assert join[0] == join[1] and isinstance(join[0], str)
    assert join[4] == {"accessToken": TOKEN, "userId": "1", "platform": "web"}
    beat = next(f for f in fake.frames if f[3] == "heartbeat")
    assert beat[0] is None and beat[2] == "phoenix" and beat[4] == {}
