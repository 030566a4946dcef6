"""The ``n2gateway`` operator command, run as an operator would (a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
    done = run("token", "--sub", "42", "--rooms", "staff,pancake:page:*", "--ttl", "1h",
               env={"N2GATEWAY_JWT_SECRET": SECRET})
    assert done.returncode == 0, done.stderr
    identity = Authenticator(SECRET).authenticate(done.stdout.strip(), None)
    assert identity.sub == "42" and identity.rooms == ("staff", "pancake:page:*")
    assert identity.may_join("pancake:page:7") and not identity.may_join("other")


def test_token_help_shows_a_room_pattern_that_matches_real_rooms() -> None:
    done = run("token", "--help")
    assert done.returncode == 0
    assert "--rooms staff,pancake:page:*" in done.stdout


@pytest.mark.parametrize("args", [("--version",), ("token", "--version"), ("check", "--version")])
def test_version_is_the_gateways_not_twisteds(args) -> None:
    from n2gateway import __version__

    done = run(*args)
    assert (done.returncode, done.stdout.split(" (")[0]) == (0, f"n2gateway {__version__}")


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


def test_check_starts_the_embedded_database_and_says_ok(tmp_path) -> None:
    done = run("check", "--data-dir", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == [
        "configuration: ok", f"database: ok (embedded PostgreSQL in {tmp_path / 'pgdata'})"]
    # ... and stopped it again: nothing is left running in the data dir.
    assert not (tmp_path / "pgdata" / "postmaster.pid").exists()


def test_check_says_unreachable_when_the_embedded_database_cannot_start(tmp_path) -> None:
    (tmp_path / "pgdata").mkdir()
    (tmp_path / "pgdata" / "PG_VERSION").write_text("not a cluster\n")
    done = run("check", "--data-dir", str(tmp_path))
    assert done.returncode == 1
    assert done.stdout.splitlines()[1].startswith(
        f"database: unreachable (embedded PostgreSQL in {tmp_path / 'pgdata'}): ")


def test_dsn_prints_database_url_when_set(tmp_path) -> None:
    url = "postgresql://app@db.internal:5433/n2"
    done = run("dsn", "--data-dir", str(tmp_path), env={"DATABASE_URL": url})
    assert (done.returncode, done.stdout) == (0, url + "\n")


def test_dsn_without_a_running_embedded_server_is_one_line_on_stderr(tmp_path) -> None:
    done = run("dsn", "--data-dir", str(tmp_path))
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (f"n2gateway: no embedded PostgreSQL is running in "
                           f"{tmp_path / 'pgdata'} (start the gateway first)\n")


def test_psql_connects_with_the_dsn_of_the_running_embedded_server(pg_server) -> None:
    data_dir = Path(pg_server.pgdata).parent
    clean = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    done = subprocess.run(
        f'psql "$({CLI} dsn --data-dir {data_dir})" -XAtc "SELECT 6 * 7"', shell=True,
        env=clean, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, "42\n"), done.stderr


def test_no_runtime_dir_warning_without_a_login_session(tmp_path) -> None:
    """No XDG_RUNTIME_DIR (a container, a service): pgserver's platformdirs used to warn
    at every start."""
    clean = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    done = subprocess.run([str(CLI), "dsn", "--data-dir", str(tmp_path)], env=clean,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "XDG_RUNTIME_DIR" not in done.stderr and "Warning" not in done.stderr


def test_no_runtime_dir_warning_when_the_runtime_dir_is_not_private(tmp_path) -> None:
    """An XDG_RUNTIME_DIR that others may read (0755, as a parent ``mkdir`` leaves it):
    platformdirs refuses it with a warning on every command; pgserver's lock then goes
    to our own private directory, silently."""
    shared = tmp_path / "runtime"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    done = run("dsn", "--data-dir", str(tmp_path), env={"XDG_RUNTIME_DIR": str(shared)})
    assert done.returncode == 1
    assert done.stderr == (f"n2gateway: no embedded PostgreSQL is running in "
                           f"{tmp_path / 'pgdata'} (start the gateway first)\n")


def test_check_uses_a_running_embedded_database_and_leaves_it_running(pg_server) -> None:
    data_dir = Path(pg_server.pgdata).parent
    done = run("check", "--data-dir", str(data_dir))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[1] == f"database: ok (embedded PostgreSQL in {data_dir / 'pgdata'})"
    assert (Path(pg_server.pgdata) / "postmaster.pid").exists()
    ran = subprocess.run(["psql", pg_server.get_uri(), "-XAtc", "SELECT 1"],
                         capture_output=True, text=True, timeout=30)
    assert ran.stdout == "1\n", ran.stderr
