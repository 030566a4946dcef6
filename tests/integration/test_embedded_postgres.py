"""The gateway's embedded PostgreSQL (pgserver) for real: it stops when the gateway
does, even after an earlier gateway on the same data directory was SIGKILLed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psutil
import pytest_twisted
from twisted.internet import defer, reactor

from n2gateway.db.embedded import EmbeddedPostgres, import_pgserver


def postmaster_running(pgdata) -> bool:
    pid_file = pgdata / "postmaster.pid"
    return pid_file.exists() and psutil.pid_exists(int(pid_file.read_text().split()[0]))


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


async def start_and_stop_again(data_dir) -> EmbeddedPostgres:
    """A later gateway on ``data_dir``: its start gets a running server; then it stops."""
    again = EmbeddedPostgres(reactor, data_dir)
    try:
        await defer.Deferred.fromCoroutine(again.start())
        assert postmaster_running(again.pgdata)
    finally:
        await defer.Deferred.fromCoroutine(again.stop())
    return again


@pytest_twisted.ensureDeferred
async def test_a_stale_pid_of_a_killed_gateway_never_keeps_the_server_alive(tmp_path):
    pg = EmbeddedPostgres(reactor, tmp_path)
    await defer.Deferred.fromCoroutine(pg.start())
    await defer.Deferred.fromCoroutine(pg.stop())
    # A gateway SIGKILLed while using the server left its pid behind.
    (pg.pgdata / ".handle_pids.json").write_text(json.dumps([dead_pid()]))
    again = await start_and_stop_again(tmp_path)
    assert not postmaster_running(again.pgdata)
    assert json.loads((again.pgdata / ".handle_pids.json").read_text()) == []


@pytest_twisted.ensureDeferred
async def test_a_data_dir_too_deep_for_a_socket_path_starts_again_after_a_clean_stop(tmp_path):
    # A Unix socket's path holds about 100 bytes, so this server's socket lives in a
    # directory of its own, which a gateway run as root shares with the server's user.
    deep = tmp_path / ("d" * 100)
    pg = EmbeddedPostgres(reactor, deep)
    dsn = await defer.Deferred.fromCoroutine(pg.start())
    socket_dir = parse_qs(urlsplit(dsn).query)["host"][0]
    assert socket_dir != str(pg.pgdata)
    import_pgserver()  # as any other gateway or `n2gateway dsn` on the machine does
    await defer.Deferred.fromCoroutine(pg.stop())
    # The server could remove its socket's lock file: none is left to refuse the next start.
    assert not list(Path(socket_dir).glob(".s.PGSQL.*"))
    await start_and_stop_again(deep)


@pytest_twisted.ensureDeferred
async def test_a_killed_postmaster_is_restarted_and_health_and_publishing_recover(
        gateway_process):
    import signal
    import urllib.request

    from tests.support.gateway import WITHOUT_SOURCES
    from tests.support.waiting import eventually

    gateway = gateway_process(*WITHOUT_SOURCES).start()
    await gateway.wait_healthy(90)
    pgdata = gateway.data_dir / "pgdata"
    postmaster = psutil.Process(int((pgdata / "postmaster.pid").read_text().split()[0]))
    postmaster.send_signal(signal.SIGKILL)
    log = await gateway.wait_for_log("embedded PostgreSQL restarted", timeout=60)
    assert "embedded PostgreSQL is not running; restarting it" in log
    await gateway.wait_healthy(30)
    assert postmaster_running(pgdata)

    def publish() -> int:
        request = urllib.request.Request(
            gateway.url + "/api/publish", method="POST",
            data=b'{"rooms": ["r"], "event": "after-restart"}',
            headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=15) as answer:
                return answer.status
        except OSError:
            return 0

    # The pool drops its dead connections on first use.
    await eventually(lambda: publish() == 200, 60, "a publish after the restart", 0.2)
    assert await gateway.terminate() == 0
    assert not postmaster_running(pgdata)
