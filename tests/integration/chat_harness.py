"""The chat sync running in-process on a real PostgreSQL, with writers of its own."""

from __future__ import annotations

import json

import psycopg2
from twisted.internet import reactor
from twisted.logger import globalLogPublisher

from n2gateway.db import Database
from n2gateway.db.listen import Listener
from n2gateway.db.migrations import MigrationFolder
from n2gateway.journal import PostgresJournal
from n2gateway_plugins.chat import MIGRATIONS
from n2gateway_plugins.chat.schema import Tables
from n2gateway_plugins.chat.store import ChatStore
from n2gateway_plugins.chat.sync import ChatSync
from tests.support.database import migrate
from tests.support.waiting import eventually, sleep


def writer(database_url: str, autocommit: bool = True):
    """A backend writing to the chat tables (the app's, or the dashboard's)."""
    connection = psycopg2.connect(database_url)
    connection.autocommit = autocommit
    return connection


class ChatHarness:
    def __init__(self, database_url: str, tables: Tables = Tables(), grace: float = 10.0) -> None:
        self.database_url = database_url
        self.db = Database(reactor)
        self.db.configure(database_url)
        self.listener = Listener(self.db, reactor)
        self.store = ChatStore(self.db, PostgresJournal(self.db, reactor), tables, grace=grace)
        self.sync = ChatSync(reactor, self.listener, self.store)
        self.reader = writer(database_url)
        self.log: list[str] = []

    def _observe(self, event) -> None:
        from twisted.logger import formatEvent
        self.log.append(formatEvent(event))

    async def start(self) -> "ChatHarness":
        globalLogPublisher.addObserver(self._observe)
        await migrate(self.db, MigrationFolder("chat", MIGRATIONS))
        self.listener.startService()
        self.sync.startService()
        await self.until(lambda: self.sync.low is not None, "the first catch-up")
        return self

    async def stop(self) -> None:
        await self.sync.stopService()
        await self.listener.stopService()
        self.db.close()
        self.reader.close()
        globalLogPublisher.removeObserver(self._observe)

    def journal(self, event: str | None = None) -> list[tuple[list[str], str, object]]:
        with self.reader.cursor() as cur:
            cur.execute("SELECT rooms, event, payload FROM n2_journal ORDER BY seq")
            rows = cur.fetchall()
        return [(rooms, name, payload) for rooms, name, payload in rows
                if event is None or name == event]

    def messages(self) -> list[int]:
        return [payload["chat_id"] for _, _, payload in self.journal("message:new")]

    async def until(self, condition, what: str, timeout: float = 20.0) -> None:
        """:func:`eventually`, failing with what the journal holds by then."""
        await eventually(condition, timeout, lambda: (
            f"{what}; journal: {json.dumps(self.journal(), default=str)[:2000]}"))

    async def settle(self, seconds: float = 0.3) -> None:
        """Let anything still in flight arrive (for asserting that nothing more does)."""
        await sleep(seconds)
