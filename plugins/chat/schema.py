"""The chat tables and their NOTIFY triggers, created at start-up when absent.

The plugin may be pointed at the database the seed's backends already use: tables
that exist are left alone, and a table whose triggers already NOTIFY
``chat_messages`` / ``chat_messages_read`` (the seed's own) gets none of ours, so
other listeners on those channels are not notified twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from n2gateway.db import Transaction

TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
# Any constant shared by every gateway: two starting together create things once.
SCHEMA_LOCK = 0x6E32_6368  # "n2ch"
NOTIFIES_INSERT = re.compile(r"['\"]chat_messages['\"]")
NOTIFIES_READ = re.compile(r"['\"]chat_messages_read['\"]")


def quote_table(name: str) -> str:
    """``name`` or ``schema.name`` as a quoted SQL identifier; ``ValueError`` if odd."""
    if not TABLE_NAME.match(name):
        raise ValueError(f"{name!r} is not a table name (letters, digits, _ and one optional schema.)")
    return ".".join(f'"{part}"' for part in name.split("."))


@dataclass(frozen=True)
class Tables:
    users: str = "users"
    messages: str = "chats"

    @property
    def users_sql(self) -> str:
        return quote_table(self.users)

    @property
    def messages_sql(self) -> str:
        return quote_table(self.messages)


async def ensure_schema(tx: Transaction, tables: Tables) -> list[str]:
    """Create what is missing; return what was created, for the log."""
    await tx.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
    created = []
    if not await _exists(tx, tables.users):
        await tx.execute(f"""
            CREATE TABLE {tables.users_sql} (
                user_id SERIAL PRIMARY KEY,
                full_name TEXT,
                avatar_url TEXT)""")
        created.append(f"table {tables.users}")
    if not await _exists(tx, tables.messages):
        # No foreign key to users: the seed's writers may insert a message before
        # (or without) its user row.
        await tx.execute(f"""
            CREATE TABLE {tables.messages_sql} (
                chat_id SERIAL PRIMARY KEY,
                user_id INTEGER NOT NULL,
                sender TEXT NOT NULL CHECK (sender IN ('student', 'teacher')),
                message TEXT NOT NULL,
                read_by_student BOOLEAN NOT NULL DEFAULT FALSE,
                read_by_teacher BOOLEAN NOT NULL DEFAULT FALSE,
                created_at TIMESTAMPTZ NOT NULL DEFAULT NOW())""")
        await tx.execute(f"CREATE INDEX ON {tables.messages_sql} (user_id)")
        created.append(f"table {tables.messages}")

    sources = [src for (src,) in await tx.query(
        "SELECT p.prosrc FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid"
        " WHERE t.tgrelid = %s::regclass AND NOT t.tgisinternal", (tables.messages_sql,))]
    if not any(NOTIFIES_INSERT.search(src) for src in sources):
        await tx.execute(
            f"CREATE TRIGGER n2_chat_inserted AFTER INSERT ON {tables.messages_sql}"
            " FOR EACH ROW EXECUTE FUNCTION n2_chat_notify_inserted()")
        created.append("insert trigger")
    if not any(NOTIFIES_READ.search(src) for src in sources):
        await tx.execute(
            f"CREATE TRIGGER n2_chat_read AFTER UPDATE OF read_by_student, read_by_teacher"
            f" ON {tables.messages_sql} FOR EACH ROW"
            " WHEN (OLD.read_by_student IS DISTINCT FROM NEW.read_by_student"
            " OR OLD.read_by_teacher IS DISTINCT FROM NEW.read_by_teacher)"
            " EXECUTE FUNCTION n2_chat_notify_read()")
        created.append("read trigger")
    return created


async def _exists(tx: Transaction, table: str) -> bool:
    rows = await tx.query("SELECT to_regclass(%s)", (quote_table(table),))
    return rows[0][0] is not None
