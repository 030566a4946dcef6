"""Fixtures shared by every test: one real PostgreSQL per test session.

The server is the embedded one the gateway itself uses (pgserver); each test that
asks for ``database_url`` gets a database of its own on it, so tests never see each
other's rows; ``migrated_db`` is a pool on that database once the core migrations ran.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import pytest
import pytest_twisted

# Concurrent pytest runs share /tmp/pytest-of-<user> and prune each other's old
# directories, an embedded PostgreSQL's data directory among them: keep ours here.
_TEMPROOT = Path(__file__).resolve().parent.parent / ".pytest-tmp"
_TEMPROOT.mkdir(exist_ok=True)
os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", str(_TEMPROOT))
# The process that stops what the run left, should the run die before it can look.
WATCHER = pytest.StashKey()


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory):
    from n2gateway.db.embedded import import_pgserver

    pgserver = import_pgserver()

    server = pgserver.get_server(tmp_path_factory.mktemp("pg") / "pgdata", cleanup_mode="stop")
    yield server
    server.cleanup()


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def create_database(server_url: str) -> str:
    """Create an empty database on the server at ``server_url``; return its URL."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(server_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    return with_database(server_url, name)


@pytest.fixture
def database_url(pg_server) -> str:
    """A fresh, empty database on the session's server."""
    return create_database(pg_server.get_uri())


@pytest_twisted.async_yield_fixture
async def migrated_db(database_url):
    """A database pool on the test's database, the core migrations applied."""
    from twisted.internet import reactor

    from n2gateway.db import Database
    from tests.support.database import migrate

    db = Database(reactor)
    db.configure(database_url)
    await migrate(db)
    yield db
    db.close()


@pytest.fixture
def new_database(pg_server) -> Callable[[], str]:
    """Make more fresh databases on the session's server (for tests needing several)."""
    return lambda: create_database(pg_server.get_uri())


class RestartablePostgres:
    """A PostgreSQL of a test's own, to stop and start again (the session's must stay up).

    ``stop``/``start`` block for a second or two: call them with ``deferToThread``
    from a test running on the reactor.
    """

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self.server = None
        self.start()
        self.url = self.server.get_uri()

    def start(self) -> None:
        from n2gateway.db.embedded import import_pgserver

        pgserver = import_pgserver()

        self.server = pgserver.get_server(self.pgdata, cleanup_mode="stop")

    def stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.cleanup()

    @property
    def running(self) -> bool:
        return (self.pgdata / "postmaster.pid").exists()


@pytest.fixture
def restartable_pg(tmp_path) -> RestartablePostgres:
    pg = RestartablePostgres(tmp_path / "pgdata")
    yield pg
    pg.stop()


@pytest.fixture
def sql(database_url):
    """Run SQL synchronously on the test's database (for set-up and assertions)."""
    connection = psycopg2.connect(database_url)
    connection.autocommit = True

    def run(statement: str, params=None) -> list[tuple]:
        with connection.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall() if cur.description else []

    yield run
    connection.close()


@pytest.fixture
def artifacts_dir() -> Path:
    path = Path(__file__).parent / "artifacts"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture
def gateway_process(tmp_path):
    """Make ``GatewayProcess``es (see tests/support/gateway.py); all killed at teardown."""
    from tests.support.gateway import GatewayProcess

    started: list[GatewayProcess] = []

    def make(*args: str, **kwargs) -> GatewayProcess:
        gateway = GatewayProcess(kwargs.pop("tmp_path", tmp_path), *args, **kwargs)
        started.append(gateway)
        return gateway

    yield make
    for gateway in started:
        gateway.ensure_stopped()


@pytest.fixture
def gateway_factory(tmp_path, database_url):
    """Start in-process gateways on free ports against the test's database."""
    from twisted.internet import defer

    from tests.support.gateway_in_process import GatewayInProcess

    started: list[GatewayInProcess] = []

    async def start(**settings) -> GatewayInProcess:
        gw = GatewayInProcess(tmp_path, database_url, **settings)
        started.append(gw)
        return await gw.start()

    yield start
    for gw in started:
        if gw.gateway.running:
            pytest_twisted.blockon(defer.Deferred.fromCoroutine(gw.stop()))


def pytest_sessionstart(session) -> None:
    from tests.support.leftovers import watch

    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is not None:
        session.config.stash[WATCHER] = watch(factory.getbasetemp())


def pytest_sessionfinish(session, exitstatus) -> None:
    """Fail the run if it left a process behind (a server, a peer, a PostgreSQL)."""
    from tests.support.leftovers import close_watcher, describe, leftover_processes, stop

    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None:
        return
    close_watcher(session.config.stash[WATCHER])
    left = leftover_processes(factory.getbasetemp())
    if not left:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = ["the tests left these processes running (now stopped):",
             *(f"  {describe(p)}" for p in left)]
    if reporter is not None:
        reporter.write_line("\n".join(lines), red=True)
    stop(left)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
