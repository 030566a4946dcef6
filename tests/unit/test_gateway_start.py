"""The gateway waits for its database with growing delays, on a fake clock."""

from __future__ import annotations

import json

import psycopg2
import pytest
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher

from n2gateway.config import build_settings
from n2gateway.db import DatabaseUnavailable
from n2gateway.db.errors import describe_error
from n2gateway.gateway import Gateway, retry_delay
from n2gateway.plugins import load_plugins

PASSWORD = "pw-Kx93-never-logged"
URL = f"postgresql://gw:{PASSWORD}@127.0.0.1:1/n2"


@pytest.fixture
def log_lines():
    lines: list[str] = []

    def observe(event):
        lines.append(formatEvent(event) + " " + repr(event))

    globalLogPublisher.addObserver(observe)
    yield lines
    globalLogPublisher.removeObserver(observe)


def real_refusal() -> str:
    """What libpq really says for this URL (nothing listens on port 1)."""
    try:
        psycopg2.connect(URL, connect_timeout=2)
    except psycopg2.OperationalError as e:
        return describe_error(e)
    raise AssertionError("something answers on port 1")


class FlakyDatabase:
    """Stands in for ``Database.ping``: unreachable ``failures`` times, then up."""

    def __init__(self, failures: int, reason: str) -> None:
        self.failures, self.reason, self.pings = failures, reason, 0

    async def ping(self, timeout: float = 2.0) -> None:
        self.pings += 1
        if self.pings <= self.failures:
            raise DatabaseUnavailable(self.reason)


@pytest.mark.parametrize("message, kept", [
    ('connection to server at "db", port 5432 failed: FATAL:  password authentication'
     ' failed for user "n2"', 'password authentication failed for user "n2"'),
    ("could not connect: postgresql://n2:s3cret-pw@db/n2 refused", "postgresql://n2:[redacted]@db/n2"),
    ("bad options: host=db password=s3cret-pw user=n2", "password=[redacted] user=n2"),
    ("bad options: password='s3cret pw' user=n2", "password=[redacted] user=n2"),
])
def test_database_errors_keep_their_reason_and_lose_any_password(message, kept):
    described = describe_error(psycopg2.OperationalError(message + "\nDETAIL: more"))
    assert kept in described
    assert "s3cret" not in described and "DETAIL" not in described


def test_retry_delays_grow_and_are_capped():
    delays = [retry_delay(n) for n in range(8)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]


def test_the_gateway_retries_with_growing_delays_and_says_why(tmp_path, log_lines):
    clock = Clock()
    settings = build_settings({"database-url": URL, "data-dir": str(tmp_path)}, {}, clock)
    gateway = Gateway(settings, load_plugins(), clock)
    reason = real_refusal()
    flaky = FlakyDatabase(failures=6, reason=reason)
    gateway.db.ping = flaky.ping
    migrated = []

    async def migrations(db, folders):
        migrated.append(folders)
        return []

    import n2gateway.gateway as module
    original, module.apply_migrations = module.apply_migrations, migrations
    try:
        gateway.startService()
        waits = []
        while flaky.pings <= flaky.failures:
            (call,) = clock.getDelayedCalls()
            waits.append(call.getTime() - clock.seconds())
            database = gateway.operations.database
            assert database.state == "starting" and database.error == reason
            clock.advance(waits[-1])
    finally:
        module.apply_migrations = original

    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0]
    assert gateway.operations.database.state == "up"
    assert gateway.operations.database.error is None
    assert len(migrated) == 1 and migrated[0][0].namespace == "core"
    retries = [line for line in log_lines if "database unreachable" in line]
    assert len(retries) == 6
    assert all(reason in line for line in retries)
    assert [f"retrying in {w:.1f} s" in line for line, w in zip(retries, waits)] == [True] * 6
    assert any("gateway ready" in line for line in log_lines)
    assert not [line for line in log_lines if PASSWORD in line]

    gateway.stopService()
    assert clock.getDelayedCalls() == []


def test_a_database_lost_during_migrations_is_waited_for(tmp_path, log_lines, monkeypatch):
    clock = Clock()
    settings = build_settings({"database-url": URL, "data-dir": str(tmp_path)}, {}, clock)
    gateway = Gateway(settings, load_plugins(), clock)
    flaky = FlakyDatabase(failures=0, reason="")
    gateway.db.ping = flaky.ping
    runs = []

    async def migrations(db, folders):
        runs.append(len(runs))
        if len(runs) == 1:
            flaky.failures = flaky.pings + 1  # the next ping fails too
            raise DatabaseUnavailable("server closed the connection unexpectedly")
        return []

    import n2gateway.gateway as module
    monkeypatch.setattr(module, "apply_migrations", migrations)
    gateway.startService()
    assert runs == [0] and gateway.operations.database.state == "starting"
    assert not gateway.operations.ready
    clock.advance(0.5)
    assert runs == [0, 1] and gateway.operations.ready
    assert any("database lost during migrations" in line for line in log_lines)
    assert not [line for line in log_lines if "start-up failed" in line]
    gateway.stopService()
    assert clock.getDelayedCalls() == []


def test_stopping_while_waiting_for_the_database_cancels_the_wait(tmp_path, log_lines):
    clock = Clock()
    settings = build_settings({"database-url": URL, "data-dir": str(tmp_path)}, {}, clock)
    gateway = Gateway(settings, load_plugins(), clock)
    gateway.db.ping = FlakyDatabase(failures=100, reason="connection refused").ping
    gateway.startService()
    clock.advance(0.5)
    clock.advance(1.0)
    assert len(clock.getDelayedCalls()) == 1
    stopped = gateway.stopService()
    assert stopped.called
    assert clock.getDelayedCalls() == []
    assert not [line for line in log_lines if "start-up failed" in line or "Traceback" in line]


class InFlight(Exception):
    """What txpostgres raises from ``cancel()`` on a query in progress."""


def test_a_stop_during_migrations_waits_for_them_and_starts_nothing(tmp_path, log_lines,
                                                                    monkeypatch):
    """SIGTERM while migrations run: txpostgres cannot cancel a query in progress (its
    canceller raises), so the stop must let the migration finish, then start nothing."""
    clock = Clock()
    settings = build_settings({"database-url": URL, "data-dir": str(tmp_path)}, {}, clock)
    gateway = Gateway(settings, load_plugins(), clock)
    gateway.db.ping = FlakyDatabase(failures=0, reason="").ping

    def cannot_cancel(d):
        raise InFlight()

    migrating = defer.Deferred(cannot_cancel)

    async def migrations(db, folders):
        await migrating
        return []

    monkeypatch.setattr("n2gateway.gateway.apply_migrations", migrations)
    gateway.startService()
    stopped = gateway.stopService()
    assert not stopped.called  # the migration is still running
    migrating.callback(None)
    assert stopped.called
    assert gateway.core_services.parent is None and gateway.plugin_services.parent is None
    assert not [line for line in log_lines if "start-up failed" in line or "Traceback" in line]
    assert not [line for line in log_lines if "gateway ready" in line]
    assert clock.getDelayedCalls() == []


def test_health_is_not_ok_until_start_up_is_over(tmp_path, monkeypatch):
    """A load balancer must not send clients to a gateway still migrating (no hub yet)."""
    from treq.testing import StubTreq

    clock = Clock()
    settings = build_settings({"database-url": URL, "data-dir": str(tmp_path)}, {}, clock)
    gateway = Gateway(settings, load_plugins(), clock)
    gateway.db.ping = FlakyDatabase(failures=0, reason="").ping

    async def no_owners():
        return {}

    gateway.leadership.owners = no_owners  # owners() needs a real connection
    migrating = defer.Deferred()

    async def migrations(db, folders):
        await migrating
        return []

    monkeypatch.setattr("n2gateway.gateway.apply_migrations", migrations)
    stub = StubTreq(gateway.routes.app.resource())

    def health() -> tuple[int, dict]:
        response = stub.get("http://gw.test/health").result
        return response.code, json.loads(stub.content(response).result)

    gateway.startService()
    code, answer = health()
    assert (code, answer["status"]) == (503, "degraded")
    assert answer["database"]["state"] == "up"  # the database is fine; we are not ready
    migrating.callback(None)
    code, answer = health()
    assert (code, answer["status"]) == (200, "ok")
    gateway.stopService()


def test_the_recovery_ttl_reaches_the_socketio_sessions(tmp_path):
    clock = Clock()
    settings = build_settings({"database-url": URL, "data-dir": str(tmp_path),
                               "recovery-ttl": "5m"}, {}, clock)
    sessions = Gateway(settings, load_plugins(), clock).endpoints["socket.io"].socketio.sessions
    assert sessions.ttl == 300.0
