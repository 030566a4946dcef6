"""
The credential store on a real PostgreSQL: the seed's upsert, deactivation, and
Fernet encryption at rest that still reads the rows written in plaintext.
"""

from __future__ import annotations

import select
import time

import psycopg2
import pytest
import pytest_twisted
from cryptography.fernet import Fernet
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.logger import capturedLogs, formatEvent

from n2gateway.credentials import CHANGED_CHANNEL, CredentialsChanged, CredentialStore
from n2gateway.db import Database
from n2gateway.db.migrations import MigrationFolder, apply_migrations
from n2gateway.db.migrations import CORE_SCHEMA

TOKEN = "TOKEN-store-4242"
COOKIE = "sid=COOKIE-store-4343"
KEY = Fernet.generate_key().decode()


@pytest.fixture
def db(database_url):
    database = Database(reactor)
    database.configure(database_url)
    pytest_twisted.blockon(Deferred.fromCoroutine(
        apply_migrations(database, [MigrationFolder("core", CORE_SCHEMA)])))
    yield database
    database.close()


@pytest_twisted.ensureDeferred
async def test_save_upserts_and_reactivates(db, sql) -> None:
    store = CredentialStore(db)
    await store.save("pancake", "T1", user_id="42", page_ids=["101"], cookie="c1")
    await store.deactivate("pancake")
    assert sql("SELECT is_active FROM realtime_credentials") == [(False,)]
    await store.save("pancake", TOKEN, user_id="43", page_ids=["101", "102"])
    assert sql("SELECT client_type, token, user_id, page_ids, cookie, is_active"
               " FROM realtime_credentials") == [
        ("pancake", TOKEN, "43", '["101", "102"]', None, True)]
    row = await store.load("pancake")
    assert (row.token, row.user_id, row.page_ids, row.cookie, row.is_active) == (
        TOKEN, "43", ["101", "102"], None, True)
    assert TOKEN not in repr(row)


@pytest_twisted.ensureDeferred
async def test_load_active_skips_inactive_rows(db) -> None:
    store = CredentialStore(db)
    await store.save("pancake", TOKEN, user_id="42", page_ids=["101"])
    await store.save("tpos", "T2", room="tomato.tpos.vn")
    await store.deactivate("pancake")
    assert [(r.client_type, r.room) for r in await store.load_active()] == [
        ("tpos", "tomato.tpos.vn")]
    assert (await store.load("pancake")).is_active is False
    assert await store.load("nobody") is None


@pytest_twisted.ensureDeferred
async def test_with_a_key_secrets_are_encrypted_at_rest(db, sql) -> None:
    store = CredentialStore(db, KEY)
    await store.save("pancake", TOKEN, user_id="42", page_ids=["101"], cookie=COOKIE)
    [(token, cookie)] = sql("SELECT token, cookie FROM realtime_credentials")
    assert token.startswith("fernet:") and cookie.startswith("fernet:")
    assert TOKEN not in token and COOKIE not in cookie
    row = await store.load("pancake")
    assert (row.token, row.cookie) == (TOKEN, COOKIE)


@pytest_twisted.ensureDeferred
async def test_plaintext_rows_still_work_with_a_key(db, sql) -> None:
    # As the original system wrote them: plaintext, numeric page ids.
    sql("INSERT INTO realtime_credentials (client_type, token, user_id, page_ids, cookie)"
        " VALUES ('pancake', %s, '42', '[101, 102]', %s)", (TOKEN, COOKIE))
    store = CredentialStore(db, KEY)
    [row] = await store.load_active()
    assert (row.token, row.cookie, row.page_ids) == (TOKEN, COOKIE, [101, 102])
    # Saved again, it is encrypted.
    await store.save("pancake", row.token, user_id="42", page_ids=["101"], cookie=row.cookie)
    assert sql("SELECT token FROM realtime_credentials")[0][0].startswith("fernet:")


@pytest.mark.parametrize("reader_key, why", [
    (None, "encrypted, and no --credentials-key is set"),
    (Fernet.generate_key().decode(), "encrypted with another --credentials-key, or damaged"),
])
@pytest_twisted.ensureDeferred
async def test_an_undecryptable_row_is_logged_and_skipped(db, reader_key, why) -> None:
    await CredentialStore(db, KEY).save("pancake", TOKEN, user_id="42", page_ids=["1"],
                                        cookie=COOKIE)
    await CredentialStore(db).save("tpos", "T2", room="r")
    store = CredentialStore(db, reader_key)
    with capturedLogs() as events:
        assert [r.client_type for r in await store.load_active()] == ["tpos"]
        assert await store.load("pancake") is None
    text = "\n".join(formatEvent(e) for e in events)
    assert text.count(f"stored pancake credentials skipped: {why}") == 2
    assert TOKEN not in text and COOKIE not in text


@pytest_twisted.ensureDeferred
async def test_every_change_is_announced_with_the_node_that_made_it(db, database_url) -> None:
    listening = psycopg2.connect(database_url)
    listening.autocommit = True
    listening.cursor().execute(f"LISTEN {CHANGED_CHANNEL}")
    try:
        store = CredentialStore(db, KEY, node="node-a")
        await store.save("pancake", TOKEN, user_id="42", page_ids=["101"], cookie=COOKIE)
        await store.deactivate("pancake")
        await store.deactivate("nobody")  # no row changed: nothing to announce
        deadline = time.monotonic() + 5
        while len(listening.notifies) < 2 and time.monotonic() < deadline:
            select.select([listening], [], [], 0.1)
            listening.poll()
        await store.save("tpos", "T2", room="r")  # a later change, to show none came between
        select.select([listening], [], [], 5)
        listening.poll()
        payloads = [n.payload for n in listening.notifies]
        assert [CredentialsChanged.parse(p) for p in payloads] == [
            CredentialsChanged("pancake", "node-a"), CredentialsChanged("pancake", "node-a"),
            CredentialsChanged("tpos", "node-a")]
        assert not any(TOKEN in p or COOKIE in p for p in payloads)
    finally:
        listening.close()


@pytest.mark.parametrize("payload", ["", "not json", "[]", '{"node": "a"}', '{"client_type": 7}'])
def test_a_foreign_notify_is_not_taken_for_a_change(payload) -> None:
    assert CredentialsChanged.parse(payload) is None
