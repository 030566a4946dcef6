import pytest
import pytest_twisted

from txpostgres import txpostgres

from tests.integration.chat_harness import ChatHarness


@pytest.fixture
def round_trips(monkeypatch) -> list[str]:
    """Every statement the gateway's connections send, one entry per round trip; not
    the LISTEN connection's keepalives, which come on the real clock's own pace."""
    from n2gateway.db.listen import KEEPALIVE

    statements: list[str] = []
    execute = txpostgres.Cursor.execute

    def counting(self, query, params=None):
        if query != KEEPALIVE:
            statements.append(query)
        return execute(self, query, params)

    monkeypatch.setattr(txpostgres.Cursor, "execute", counting)
    return statements


@pytest.fixture
def notes_db(database_url, sql):
    """A pool of one connection (a broken one would be reused, the next caller gets the
    same) on a database with a table ``notes (n INTEGER)``."""
    from twisted.internet import reactor

    from n2gateway.db import Database

    sql("CREATE TABLE notes (n INTEGER)")
    database = Database(reactor, size=1)
    database.configure(database_url)
    yield database
    database.close()


@pytest_twisted.async_yield_fixture
async def chat(database_url):
    harness = await ChatHarness(database_url).start()
    yield harness
    await harness.stop()


@pytest.fixture
def insert(database_url):
    """insert(user_id, sender, message, via=connection) -> chat_id"""
    from tests.integration.chat_harness import writer

    default = writer(database_url)

    def run(user_id, sender, message, via=None):
        with (via or default).cursor() as cur:
            cur.execute("INSERT INTO chats (user_id, sender, message) VALUES (%s, %s, %s)"
                        " RETURNING chat_id", (user_id, sender, message))
            return cur.fetchone()[0]

    yield run
    default.close()
