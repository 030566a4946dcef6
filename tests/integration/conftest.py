import pytest
import pytest_twisted

from tests.integration.chat_harness import ChatHarness


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
