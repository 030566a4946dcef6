"""The embedded PostgreSQL handle, with the blocking pgserver calls faked out."""

from __future__ import annotations

import tempfile

import pytest
from twisted.internet import defer
from twisted.logger import capturedLogs, formatEvent
from twisted.python.failure import Failure

from n2gateway.db.embedded import EmbeddedPostgres, import_pgserver


class FakeServer:
    def __init__(self) -> None:
        self.cleaned = 0

    def get_uri(self) -> str:
        return "postgresql://postgres:@/postgres?host=/tmp/pgdata"

    def cleanup(self) -> None:
        self.cleaned += 1


class HeldThreadPool:
    """Runs nothing until the test says the "thread" has finished."""

    def __init__(self) -> None:
        self.pending = []

    def callInThreadWithCallback(self, on_result, f, *args, **kwargs):
        self.pending.append((on_result, f, args, kwargs))

    def finish_all(self) -> None:
        while self.pending:
            on_result, f, args, kwargs = self.pending.pop(0)
            on_result(True, f(*args, **kwargs))


class FakeReactor:
    def __init__(self) -> None:
        self.pool = HeldThreadPool()

    def getThreadPool(self):
        return self.pool

    def callFromThread(self, f, *args, **kwargs):
        f(*args, **kwargs)


@pytest.fixture
def embedded(tmp_path, monkeypatch):
    reactor = FakeReactor()
    server = FakeServer()
    embedded = EmbeddedPostgres(reactor, tmp_path)
    monkeypatch.setattr(embedded, "_get_server", lambda: server)
    return reactor, server, embedded


def test_start_returns_the_servers_uri_and_stop_cleans_up(embedded):
    reactor, server, pg = embedded
    started = defer.Deferred.fromCoroutine(pg.start())
    reactor.pool.finish_all()
    assert started.result == server.get_uri()
    stopped = defer.Deferred.fromCoroutine(pg.stop())
    reactor.pool.finish_all()
    assert stopped.called and server.cleaned == 1


def test_start_logs_the_url_a_newcomer_gives_psql(embedded):
    reactor, server, pg = embedded
    with capturedLogs() as events:
        started = defer.Deferred.fromCoroutine(pg.start())
        reactor.pool.finish_all()
    assert started.result
    assert f"embedded PostgreSQL ready at {server.get_uri()}" in [formatEvent(e) for e in events]


def test_a_start_cancelled_midway_still_stops_the_server_it_started(embedded):
    """SIGTERM during initdb: the thread goes on and starts PostgreSQL; stop must wait
    for it and stop that server, or it is left running with nobody to stop it."""
    reactor, server, pg = embedded
    started = defer.Deferred.fromCoroutine(pg.start())
    started.cancel()
    started.addErrback(lambda f: f.trap(defer.CancelledError))
    stopped = defer.Deferred.fromCoroutine(pg.stop())
    assert not stopped.called  # still waiting for the thread
    reactor.pool.finish_all()  # the thread finishes: PostgreSQL is up
    reactor.pool.finish_all()  # the cleanup thread
    assert stopped.called and server.cleaned == 1


def test_a_start_cancelled_after_the_thread_finished_still_stops(embedded):
    reactor, server, pg = embedded
    started = defer.Deferred.fromCoroutine(pg.start())
    started.cancel()
    started.addErrback(lambda f: f.trap(defer.CancelledError))
    reactor.pool.finish_all()
    stopped = defer.Deferred.fromCoroutine(pg.stop())
    reactor.pool.finish_all()
    assert stopped.called and server.cleaned == 1


def test_stop_without_start_does_nothing(embedded):
    reactor, server, pg = embedded
    assert defer.Deferred.fromCoroutine(pg.stop()).called
    assert server.cleaned == 0


def test_a_failed_start_fails_start_and_stop_is_quiet(embedded, monkeypatch):
    reactor, server, pg = embedded

    def broken():
        raise RuntimeError("initdb failed")

    monkeypatch.setattr(pg, "_get_server", broken)
    reactor.pool.callInThreadWithCallback = (
        lambda on_result, f, *a, **k: on_result(False, Failure(RuntimeError("initdb failed"))))
    started = defer.Deferred.fromCoroutine(pg.start())
    assert isinstance(started.result.value, RuntimeError)
    started.addErrback(lambda f: None)
    assert defer.Deferred.fromCoroutine(pg.stop()).called
    assert server.cleaned == 0


class DyingServer:
    """An embedded server whose postmaster the test kills; restarts fail ``failures``
    times first (the old server's backends still hold its shared memory)."""

    def __init__(self, failures: int = 0) -> None:
        self.alive = True
        self.failures = failures
        self.attempts = 0

    def postmaster_alive(self) -> bool:
        return self.alive

    async def restart(self) -> str:
        self.attempts += 1
        if self.failures:
            self.failures -= 1
            raise RuntimeError("pg_ctl: could not start server")
        self.alive = True
        return "postgresql://postgres:@/postgres?host=/tmp/again"


def test_a_dead_postmaster_is_restarted_with_growing_delays_and_logged():
    from twisted.internet.task import Clock
    from twisted.logger import capturedLogs, formatEvent

    from n2gateway.db.embedded import EmbeddedKeeper

    clock, server, dsns = Clock(), DyingServer(failures=2), []
    keeper = EmbeddedKeeper(server, clock, dsns.append, interval=2.0)
    with capturedLogs() as logs:
        keeper.startService()
        clock.advance(2.0)
        assert server.attempts == 0  # alive: nothing to do
        server.alive = False
        clock.advance(2.0)
        assert server.attempts == 1
        clock.advance(0.5)  # first retry after 0.5 s, the second after 1 s
        assert server.attempts == 2
        clock.advance(0.9)
        assert server.attempts == 2
        clock.advance(0.1)
    assert (server.attempts, dsns, keeper.restarts) == (3, [
        "postgresql://postgres:@/postgres?host=/tmp/again"], 1)
    lines = [formatEvent(e) for e in logs]
    assert lines[0] == "embedded PostgreSQL is not running; restarting it (attempt 1)"
    assert "embedded PostgreSQL restart failed (RuntimeError); next attempt in 0.5 s" in lines
    assert lines[-1] == "embedded PostgreSQL restarted"
    assert keeper.stopService().called
    assert clock.getDelayedCalls() == []


def test_stopping_during_the_wait_between_attempts_ends_the_restarts():
    from twisted.internet.task import Clock

    from n2gateway.db.embedded import EmbeddedKeeper

    clock, server = Clock(), DyingServer(failures=100)
    keeper = EmbeddedKeeper(server, clock, lambda dsn: None, interval=2.0)
    keeper.startService()
    server.alive = False
    clock.advance(2.0)
    assert server.attempts == 1
    assert keeper.stopService().called
    clock.advance(60)
    assert server.attempts == 1 and clock.getDelayedCalls() == []


def test_a_socket_directory_name_taken_by_someone_else_is_refused(tmp_path, monkeypatch):
    # Run as root (as here), the server's sockets go to a fixed name in the temporary
    # directory: one that is not our own directory would let its owner pose as the server.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "n2gateway-pgserver-sockets").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(PermissionError, match="n2gateway-pgserver-sockets is not a directory"):
        import_pgserver()
