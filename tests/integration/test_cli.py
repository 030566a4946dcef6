"""The ``n2gateway`` operator command, run as an operator would (a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from n2gateway.downstream.auth import Authenticator
from tests.support.gateway import ROOT

CLI = Path(sys.executable).with_name("n2gateway")
SECRET = "cli-test-secret-that-is-long-enough-for-hs256"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("N2GATEWAY_") and k != "DATABASE_URL"}
    return subprocess.run([str(CLI), *args], cwd=ROOT, env={**clean, **(env or {})},
                          capture_output=True, text=True, timeout=60)


def test_token_is_signed_with_the_configured_secret() -> None:
    done = run("token", "--sub", "42", "--rooms", "staff,page:*", "--ttl", "1h",
               env={"N2GATEWAY_JWT_SECRET": SECRET})
    assert done.returncode == 0, done.stderr
    identity = Authenticator(SECRET).authenticate(done.stdout.strip(), None)
    assert identity.sub == "42" and identity.rooms == ("staff", "page:*")
    assert identity.may_join("page:7") and not identity.may_join("other")


def test_token_without_a_secret_is_one_clear_line() -> None:
    done = run("token", "--sub", "42")
    assert done.returncode == 1
    assert done.stdout == "n2gateway: no --jwt-secret (or N2GATEWAY_JWT_SECRET) to sign with\n"


def test_migrate_applies_core_migrations_once(database_url, sql, tmp_path) -> None:
    first = run("migrate", "--data-dir", str(tmp_path), "--database-url", database_url)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "core/0002_journal.sql" in first.stdout
    assert sql("SELECT count(*) FROM n2_journal") == [(0,)]
    again = run("migrate", "--data-dir", str(tmp_path), env={"DATABASE_URL": database_url})
    assert again.stdout == "migrations: applied 0, the database was up to date\n"


def test_check_reports_configuration_and_database(database_url, tmp_path) -> None:
    ok = run("check", "--data-dir", str(tmp_path), env={"DATABASE_URL": database_url})
    assert ok.returncode == 0
    assert ok.stdout.splitlines()[0] == "configuration: ok"
    assert ok.stdout.splitlines()[1].startswith("database: ok (PostgreSQL at ")

    down = run("check", "--data-dir", str(tmp_path),
               "--database-url", "postgresql://app:hunter2@127.0.0.1:1/n2")
    assert down.returncode == 1
    assert down.stdout.splitlines()[1].startswith(
        "database: unreachable (PostgreSQL at 127.0.0.1:1/n2): ")
    assert "hunter2" not in down.stdout + down.stderr

    bad = run("check", "--data-dir", str(tmp_path), "--retention", "soon")
    assert (bad.returncode, bad.stdout) == (
        1, "configuration: --retention: expected a duration like 90s, 30m or 24h\n")
