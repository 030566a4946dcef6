"""Fixtures shared by every test: one real PostgreSQL per test session.

The server is the embedded one the gateway itself uses (pgserver); each test that
asks for ``database_url`` gets a database of its own on it, so tests never see each
other's rows.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
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


@pytest.fixture
def database_url(pg_server) -> str:
    """A fresh, empty database on the session's server."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(pg_server.get_uri())
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    return with_database(pg_server.get_uri(), name)


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
