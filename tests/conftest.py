"""Fixtures shared by every test: one real PostgreSQL per test session.

The server is the embedded one the gateway itself uses (pgserver); each test that
asks for ``database_url`` gets a database of its own on it, so tests never see each
other's rows.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import pytest

# Concurrent pytest runs share /tmp/pytest-of-<user> and prune each other's old
# directories, an embedded PostgreSQL's data directory among them: keep ours here.
_TEMPROOT = Path(__file__).resolve().parent.parent / ".pytest-tmp"
_TEMPROOT.mkdir(exist_ok=True)
os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", str(_TEMPROOT))


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory):
    import pgserver

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
        import pgserver

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
