"""A test's own database as the gateway leaves it after start-up (``conftest.migrated_db``
is the fixture), and what a LISTENing connection of the test's heard."""

from __future__ import annotations

import select

from n2gateway.db import Database
from n2gateway.db.migrations import CORE_SCHEMA, MigrationFolder, apply_migrations


async def migrate(db: Database, *plugins: MigrationFolder) -> None:
    """Apply the core migrations, then ``plugins``' own, as the gateway does at start-up."""
    await apply_migrations(db, [MigrationFolder("core", CORE_SCHEMA), *plugins])


def heard(listening) -> list:
    """The NOTIFYs that a LISTENing psycopg2 connection has received so far, read
    without blocking (poll it with ``eventually``)."""
    if select.select([listening], [], [], 0)[0]:
        listening.poll()
    return listening.notifies
