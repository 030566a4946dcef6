"""Ordered SQL migrations, each applied exactly once, in a transaction.

A migration is a file ``NNNN_name.sql`` in a folder contributed by the core
(``schema/``) or by a plugin. Each file runs in its own transaction that first takes
a transaction-level advisory lock and re-checks ``schema_migrations``, so gateways
starting together against one database apply every file exactly once, in order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from twisted.logger import Logger

from n2gateway.db.errors import DatabaseError
from n2gateway.db.pool import Database, Transaction

log = Logger()

#: The core's own migrations, applied before any plugin's: the folder schema/,
#: installed as the package n2gateway.schema (on the file system, so a Path).
CORE_SCHEMA = Path(str(resources.files("n2gateway.schema")))
MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# Any constant shared by every gateway; it names the migrations lock in pg_locks.
MIGRATIONS_LOCK = 0x6E32_6D69  # "n2mi"


class MigrationError(Exception):
    pass


@dataclass(frozen=True)
class MigrationFolder:
    """A folder of migrations owned by ``namespace`` (``core`` or a plugin name)."""

    namespace: str
    path: Path

    def migrations(self) -> list[Path]:
        files = sorted(p for p in self.path.iterdir() if p.suffix == ".sql")
        for f in files:
            if not MIGRATION_NAME.match(f.name):
                raise MigrationError(f"{self.namespace}: migration {f.name} is not NNNN_name.sql")
        numbers = [f.name[:4] for f in files]
        if len(set(numbers)) != len(numbers):
            raise MigrationError(f"{self.namespace}: two migrations share a number")
        return files


CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (namespace, name)
)"""


async def apply_migrations(db: Database, folders: list[MigrationFolder]) -> list[str]:
    """Apply every pending migration; return the ``namespace/name`` of those applied here."""

    async def create(tx: Transaction) -> None:
        await tx.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATIONS_LOCK,))
        await tx.execute(CREATE_TABLE)

    await db.transaction(create)
    applied: list[str] = []
    for folder in folders:
        for path in folder.migrations():
            try:
                done = await db.transaction(_applier(folder.namespace, path))
            except DatabaseError as e:
                # A migration is the project's own SQL, so PostgreSQL's message quotes
                # no one's data: it is the reason an operator needs.
                raise MigrationError(f"{folder.namespace}/{path.name} failed: {e}"
                                     + (f": {e.primary}" if e.primary else "")) from None
            if done:
                applied.append(f"{folder.namespace}/{path.name}")
                log.info("applied migration {namespace}/{name}",
                         namespace=folder.namespace, name=path.name)
    return applied


def _applier(namespace: str, path: Path):
    async def apply(tx: Transaction) -> bool:
        await tx.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATIONS_LOCK,))
        done = await tx.query(
            "SELECT 1 FROM schema_migrations WHERE namespace = %s AND name = %s",
            (namespace, path.name))
        if done:
            return False
        # Run without parameters, so psycopg2 leaves any "%" in the file alone.
        await tx.execute(path.read_text(encoding="utf-8"))
        await tx.execute(
            "INSERT INTO schema_migrations (namespace, name) VALUES (%s, %s)",
            (namespace, path.name))
        return True

    return apply
