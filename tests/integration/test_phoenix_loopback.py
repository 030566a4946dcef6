"""
The Pancake service against the fake server over real loopback sockets, on the real
reactor: real TCP and real reconnect delays make this an integration test, though it
needs no PostgreSQL (tests/unit/test_phoenix_protocol.py covers the same protocol in
memory on a fake clock).
"""

from typing import Any

import pytest_twisted
from twisted.internet import reactor
from twisted.logger import capturedLogs, formatEvent

from n2gateway_plugins.pancake.session import PancakeCredentials, build_pancake_service
from n2gateway.upstream.service import UpstreamService
from n2gateway.upstream.status import UpstreamStatus
from tests.fakes.pancake import FakePancake
from tests.support.waiting import eventually, sleep

TOKEN = "TOKEN-loopback-1"


def pancake(fake: FakePancake, status: UpstreamStatus, events: list, **kwargs: Any) -> UpstreamService:
    return build_pancake_service(
        PancakeCredentials(TOKEN, "1", ("101",), "sid=abc"),
        reactor=reactor,
        status=status,
        on_event=lambda *event: events.append(event),
        url=fake.url(),
        **kwargs,
    )


@pytest_twisted.ensureDeferred
async def test_joins_and_relays_pushed_events() -> None:
    fake = FakePancake(reactor)
    fake.listen()
    status, events = UpstreamStatus(), []
    service = pancake(fake, status, events)
    service.startService()
    try:
        await fake.wait_joined(2)
        await eventually(lambda: status.connected)
        assert fake.joined_topics == {"users:1", "pages:101"}
        assert fake.sessions[0].headers["cookie"] == "sid=abc"
        fake.push("users:1", "pages:new_message", {"message": {"id": "m1"}})
        await eventually(lambda: len(events) == 1)
        assert events == [("users:1", "pages:new_message", {"message": {"id": "m1"}})]
    finally:
        await service.stop()
        await fake.close()


@pytest_twisted.ensureDeferred
async def test_reconnects_with_growing_delays_after_a_drop() -> None:
    fake = FakePancake(reactor)
    port = fake.listen()
    status, events = UpstreamStatus(), []
    asked: list[int] = []

    def quick_backoff(attempt: int) -> float:
        asked.append(attempt)
        return 0.05 * 2**attempt

    service = pancake(fake, status, events, backoff=quick_backoff)
    service.startService()
    try:
        await fake.wait_joined(2)
        await fake.close()  # drops the session and refuses new ones
        await eventually(lambda: status.reconnect_attempts >= 4)
        assert not status.connected
        assert status.last_error == "ConnectionRefusedError"
        fake.listen(port)
        await fake.wait_joined(4)
        await eventually(lambda: status.connected)
        assert status.reconnect_attempts == 0
        assert asked[:4] == [0, 1, 2, 3]
    finally:
        await service.stop()
        await fake.close()


@pytest_twisted.ensureDeferred
async def test_refused_token_needs_login_after_a_single_session() -> None:
    fake = FakePancake(reactor)
    fake.listen()
    fake.reject_token(TOKEN)
    status, events = UpstreamStatus(), []
    service = pancake(fake, status, events, backoff=lambda attempt: 0.01)
    service.startService()
    try:
        await eventually(lambda: status.needs_login)
        await eventually(lambda: not fake.open_sessions)
        await sleep(0.3)  # ample time for a retry that must not come
        assert len(fake.sessions) == 1
        assert status.as_dict()["lastError"] == "join refused: unauthorized"
    finally:
        await service.stop()
        await fake.close()


@pytest_twisted.ensureDeferred
async def test_a_new_service_replaces_the_old_session() -> None:
    fake = FakePancake(reactor)
    fake.listen()
    events: list = []
    old = pancake(fake, UpstreamStatus(), events)
    old.startService()
    try:
        await fake.wait_joined(2)
        await old.stop()
        new = pancake(fake, UpstreamStatus(), events)
        new.startService()
        await fake.wait_joined(4)
        assert fake.peak_concurrent[TOKEN] == 1
        await new.stop()
    finally:
        await fake.close()


@pytest_twisted.ensureDeferred
async def test_each_retry_is_one_line_naming_the_provider_why_and_when() -> None:
    fake = FakePancake(reactor)
    port = fake.listen()
    status: UpstreamStatus = UpstreamStatus()
    service = pancake(fake, status, [], backoff=lambda attempt: 0.05)
    with capturedLogs() as logged:
        service.startService()
        try:
            await fake.wait_joined(2)
            await eventually(lambda: status.connected)
            fake.drop_all()
            await fake.wait_joined(4)
            await eventually(lambda: status.connected)
            await fake.close()  # drops the session and refuses new ones
            await eventually(lambda: status.reconnect_attempts >= 2)
            fake.listen(port)
            await fake.wait_joined(6)
        finally:
            await service.stop()
            await fake.close()
    lines = [formatEvent(e) for e in logged]
    assert [line for line in lines
            if "Scheduling retry" in line or "PhoenixClientFactory" in line] == []
    retries = [line for line in lines if "reconnecting in" in line]
    lost = "pancake: upstream down (ConnectionLost); reconnecting in 0.1 s, attempt 1"
    assert retries[:2] == [lost, lost]
    assert retries[2:] == [
        f"pancake: upstream down (ConnectionRefusedError); reconnecting in 0.1 s, attempt {n}"
        for n in range(2, len(retries))]
    assert len(retries) >= 3
