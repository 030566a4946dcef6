"""Migrations against a real PostgreSQL: order, once only, concurrency, plugins."""

from __future__ import annotations

from pathlib import Path

import psycopg2
import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from n2gateway.db import Database
from n2gateway.db.migrations import CORE_SCHEMA, MigrationError, MigrationFolder, apply_migrations
from n2gateway.hookspecs import hookimpl
from n2gateway.plugins import load_plugins, migration_folders
from tests.support.gateway import SOURCE_PLUGINS

# Seed 000, verbatim: the table the original system created by hand.
SEED_SQL = """
CREATE TABLE IF NOT EXISTS realtime_credentials (
    id SERIAL PRIMARY KEY,
    client_type VARCHAR(20) NOT NULL UNIQUE CHECK (client_type IN ('pancake', 'tpos')),
    token TEXT NOT NULL,
    user_id VARCHAR(50),
    page_ids TEXT,
    cookie TEXT,
    room VARCHAR(100),
    is_active BOOLEAN DEFAULT TRUE,
    updated_at TIMESTAMP DEFAULT NOW()
);

CREATE UNIQUE INDEX IF NOT EXISTS idx_realtime_credentials_type
ON realtime_credentials(client_type);
"""

ADD_ZALO = """
ALTER TABLE realtime_credentials
  DROP CONSTRAINT realtime_credentials_client_type_check,
  ADD CONSTRAINT realtime_credentials_client_type_check
    CHECK (client_type IN ('pancake', 'tpos', 'zalo'));
"""


@pytest.fixture
def db(database_url):
    database = Database(reactor)
    database.configure(database_url)
    yield database
    database.close()


def folder(tmp_path: Path, name: str, files: dict[str, str]) -> MigrationFolder:
    path = tmp_path / name
    path.mkdir()
    # Written in reverse, so directory order is not what makes them run in order.
    for filename, text in reversed(list(files.items())):
        (path / filename).write_text(text)
    return MigrationFolder(name, path)


STEPS = {
    "0001_log.sql": "CREATE TABLE step_log (n SERIAL PRIMARY KEY, step TEXT NOT NULL);"
                    "INSERT INTO step_log (step) VALUES ('0001');",
    "0002_second.sql": "INSERT INTO step_log (step) VALUES ('0002');",
    "0010_tenth.sql": "INSERT INTO step_log (step) VALUES ('0010 at 100%');",
}


@pytest_twisted.ensureDeferred
async def test_migrations_apply_in_order_once_and_are_recorded(db, sql, tmp_path):
    steps = folder(tmp_path, "steps", STEPS)
    applied = await apply_migrations(db, [steps])
    assert applied == ["steps/0001_log.sql", "steps/0002_second.sql", "steps/0010_tenth.sql"]
    assert sql("SELECT step FROM step_log ORDER BY n") == [
        ("0001",), ("0002",), ("0010 at 100%",)]
    assert sql("SELECT namespace, name FROM schema_migrations ORDER BY name") == [
        ("steps", name) for name in STEPS]

    assert await apply_migrations(db, [steps]) == []
    assert sql("SELECT count(*) FROM step_log") == [(3,)]

    (steps.path / "0011_later.sql").write_text("INSERT INTO step_log (step) VALUES ('0011');")
    assert await apply_migrations(db, [steps]) == ["steps/0011_later.sql"]
    assert sql("SELECT count(*) FROM schema_migrations") == [(4,)]


@pytest_twisted.ensureDeferred
async def test_a_failing_migration_rolls_back_and_stops_the_rest(db, sql, tmp_path):
    steps = folder(tmp_path, "steps", {
        "0001_ok.sql": "CREATE TABLE good (x INT);",
        "0002_bad.sql": "CREATE TABLE half (x INT); SELECT no_such_function();",
        "0003_never.sql": "CREATE TABLE never (x INT);",
    })
    # The operator is told which file failed and PostgreSQL's reason (a migration is
    # the project's own SQL: its message quotes no one's data).
    with pytest.raises(MigrationError, match=r"^steps/0002_bad\.sql failed: UndefinedFunction"
                       r" 42883: function no_such_function\(\) does not exist$"):
        await apply_migrations(db, [steps])
    assert sql("SELECT name FROM schema_migrations") == [("0001_ok.sql",)]
    assert sql("SELECT to_regclass('half'), to_regclass('never')") == [(None, None)]


def test_badly_named_or_duplicate_migrations_are_refused(tmp_path):
    with pytest.raises(MigrationError, match="not NNNN_name.sql"):
        folder(tmp_path, "a", {"1_short.sql": ""}).migrations()
    with pytest.raises(MigrationError, match="share a number"):
        folder(tmp_path, "b", {"0001_one.sql": "", "0001_two.sql": ""}).migrations()


@pytest_twisted.ensureDeferred
async def test_two_gateways_migrating_at_once_apply_each_file_once(database_url, sql, tmp_path):
    steps = folder(tmp_path, "steps", {
        # Not idempotent: a second run of any file would fail or add a row.
        "0001_create.sql": "CREATE TABLE once (n SERIAL PRIMARY KEY, step TEXT UNIQUE);"
                          "INSERT INTO once (step) VALUES ('0001');",
        "0002_slow.sql": "SELECT pg_sleep(0.2); INSERT INTO once (step) VALUES ('0002');",
        "0003_more.sql": "INSERT INTO once (step) VALUES ('0003');",
    })
    folders = [MigrationFolder("core", CORE_SCHEMA), steps]
    pools = [Database(reactor), Database(reactor)]
    for pool in pools:
        pool.configure(database_url)
    try:
        results = await defer.gatherResults(
            [defer.Deferred.fromCoroutine(apply_migrations(pool, folders)) for pool in pools],
            consumeErrors=True)
    finally:
        for pool in pools:
            pool.close()
    everything = sorted(results[0] + results[1])
    assert len(everything) == len(set(everything))
    assert set(everything) == {f"core/{p.name}" for p in CORE_SCHEMA.glob("*.sql")} | {
        "steps/0001_create.sql", "steps/0002_slow.sql", "steps/0003_more.sql"}
    assert sql("SELECT step FROM once ORDER BY n") == [("0001",), ("0002",), ("0003",)]


class ZaloPlugin:
    """A plugin adding a client type to realtime_credentials with its own migration."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @hookimpl
    def n2gateway_migrations(self, register):
        register(self.path)


@pytest_twisted.ensureDeferred
async def test_a_plugins_migrations_run_under_its_name_after_the_core(db, sql, tmp_path):
    plugin_dir = tmp_path / "zalo_migrations"
    plugin_dir.mkdir()
    (plugin_dir / "0001_client_type.sql").write_text("SELECT n2_add_client_type('zalo');")
    pm = load_plugins(disabled=SOURCE_PLUGINS)
    pm.register(ZaloPlugin(plugin_dir), name="zalo")
    applied = await apply_migrations(db, migration_folders(pm))
    core = sorted(f"core/{p.name}" for p in CORE_SCHEMA.glob("*.sql"))
    assert applied == core + ["zalo/0001_client_type.sql"]
    assert ("zalo", "0001_client_type.sql") in sql("SELECT namespace, name FROM schema_migrations")

    # The extended constraint is in force: a zalo row is accepted, nonsense is not.
    sql("INSERT INTO realtime_credentials (client_type, token) VALUES ('zalo', 't')")
    with pytest.raises(psycopg2.errors.CheckViolation):
        sql("INSERT INTO realtime_credentials (client_type, token) VALUES ('fax', 't')")


@pytest_twisted.ensureDeferred
async def test_two_plugins_adding_client_types_keep_each_others(db, sql, tmp_path):
    pm = load_plugins(disabled=SOURCE_PLUGINS)
    for name in ("zalo", "shopee"):
        pm.register(ZaloPlugin(folder(tmp_path, name, {
            "0001_client_type.sql": f"SELECT n2_add_client_type('{name}');"}).path), name=name)
    await apply_migrations(db, migration_folders(pm))
    for client_type in ("pancake", "tpos", "zalo", "shopee"):
        sql("INSERT INTO realtime_credentials (client_type, token) VALUES (%s, 't')",
            (client_type,))
    with pytest.raises(psycopg2.errors.CheckViolation):
        sql("INSERT INTO realtime_credentials (client_type, token) VALUES ('fax', 't')")
    # Adding a type twice changes nothing; a malformed one is refused.
    sql("SELECT n2_add_client_type('zalo')")
    with pytest.raises(psycopg2.errors.RaiseException):
        sql("SELECT n2_add_client_type('bad type''; --')")
    assert sql("SELECT count(*) FROM pg_constraint WHERE conrelid ="
               " 'realtime_credentials'::regclass AND contype = 'c'") == [(1,)]


def describe_table(sql, table: str) -> dict:
    return {
        "columns": sql(
            "SELECT column_name, data_type, character_maximum_length, is_nullable, column_default"
            " FROM information_schema.columns WHERE table_name = %s ORDER BY ordinal_position",
            (table,)),
        "constraints": sorted(sql(
            "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = %s::regclass", (table,))),
        "indexes": sorted(sql(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", (table,))),
    }


@pytest_twisted.ensureDeferred
async def test_realtime_credentials_is_exactly_the_seeds_table(migrated_db, sql, new_database):
    seeded = psycopg2.connect(new_database())
    seeded.autocommit = True

    def seed_sql(statement, params=None):
        with seeded.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall() if cur.description else []

    try:
        seed_sql(SEED_SQL)
        ours, seeds = (describe_table(q, "realtime_credentials") for q in (sql, seed_sql))
        # The seed's columns unchanged, and after them only the added ones, all nullable
        # without a default, so the seed's statements and backends write rows as before.
        added = ours["columns"][len(seeds["columns"]):]
        assert ours["columns"][:len(seeds["columns"])] == seeds["columns"]
        assert added == [("extra", "text", None, "YES", None)]
        assert {**ours, "columns": seeds["columns"]} == seeds
    finally:
        seeded.close()

    # The seed's own statement still runs against our table: an existing database works.
    sql(SEED_SQL)
    # The upsert of SPEC section 4 works on it.
    upsert = ("INSERT INTO realtime_credentials (client_type, token, user_id, page_ids)"
              " VALUES ('pancake', %s, '42', '[\"1\"]') ON CONFLICT (client_type) DO UPDATE"
              " SET token = EXCLUDED.token, is_active = TRUE, updated_at = NOW()")
    sql(upsert, ("first",))
    sql("UPDATE realtime_credentials SET is_active = FALSE")
    sql(upsert, ("second",))
    assert sql("SELECT client_type, token, is_active FROM realtime_credentials") == [
        ("pancake", "second", True)]
    with pytest.raises(psycopg2.errors.CheckViolation):
        sql("INSERT INTO realtime_credentials (client_type, token) VALUES ('zalo', 't')")


@pytest_twisted.ensureDeferred
async def test_a_later_migration_replaces_the_client_type_check(db, sql, tmp_path):
    extra = folder(tmp_path, "core_later", {"0001_zalo.sql": ADD_ZALO})
    await apply_migrations(db, [MigrationFolder("core", CORE_SCHEMA), extra])
    sql("INSERT INTO realtime_credentials (client_type, token) VALUES ('zalo', 't')")
    assert sql("SELECT count(*) FROM pg_constraint WHERE conrelid ="
               " 'realtime_credentials'::regclass AND contype = 'c'") == [(1,)]
