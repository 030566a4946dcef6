"""The embedded PostgreSQL handle, with the blocking pgserver calls faked out."""

from __future__ import annotations

import pytest
from twisted.internet import defer
from twisted.python.failure import Failure

from n2gateway.db.embedded import EmbeddedPostgres


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
