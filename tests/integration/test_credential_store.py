"""
The credential store on a real PostgreSQL: the seed's upsert, deactivation, and
Fernet encryption at rest that still reads the rows written in plaintext.
"""

from __future__ import annotations

import traceback

import psycopg2
import pytest
import pytest_twisted
from cryptography.fernet import Fernet
from twisted.logger import capturedLogs, formatEvent

from n2gateway.credentials import (
    CHANGED_CHANNEL,
    CredentialsChanged,
    CredentialsRefused,
    CredentialStore,
)
from tests.support.database import heard
from tests.support.waiting import eventually

TOKEN = "TOKEN-store-4242"
COOKIE = "sid=COOKIE-store-4343"
KEY = Fernet.generate_key().decode()


@pytest_twisted.ensureDeferred
async def test_save_upserts_and_reactivates(migrated_db, sql) -> None:
    store = CredentialStore(migrated_db)
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
async def test_load_active_skips_inactive_rows(migrated_db) -> None:
    store = CredentialStore(migrated_db)
    await store.save("pancake", TOKEN, user_id="42", page_ids=["101"])
    await store.save("tpos", "T2", room="tomato.tpos.vn")
    await store.deactivate("pancake")
    assert [(r.client_type, r.room) for r in await store.load_active()] == [
        ("tpos", "tomato.tpos.vn")]
    assert (await store.load("pancake")).is_active is False
    assert await store.load("nobody") is None


@pytest_twisted.ensureDeferred
async def test_with_a_key_secrets_are_encrypted_at_rest(migrated_db, sql) -> None:
    store = CredentialStore(migrated_db, KEY)
    await store.save("pancake", TOKEN, user_id="42", page_ids=["101"], cookie=COOKIE)
    [(token, cookie)] = sql("SELECT token, cookie FROM realtime_credentials")
    assert token.startswith("fernet:") and cookie.startswith("fernet:")
    assert TOKEN not in token and COOKIE not in cookie
    row = await store.load("pancake")
    assert (row.token, row.cookie) == (TOKEN, COOKIE)


@pytest_twisted.ensureDeferred
async def test_plaintext_rows_still_work_with_a_key(migrated_db, sql) -> None:
    # As the original system wrote them: plaintext, numeric page ids.
    sql("INSERT INTO realtime_credentials (client_type, token, user_id, page_ids, cookie)"
        " VALUES ('pancake', %s, '42', '[101, 102]', %s)", (TOKEN, COOKIE))
    store = CredentialStore(migrated_db, KEY)
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
async def test_an_undecryptable_row_is_logged_and_skipped(migrated_db, reader_key, why) -> None:
    await CredentialStore(migrated_db, KEY).save("pancake", TOKEN, user_id="42", page_ids=["1"],
                                        cookie=COOKIE)
    await CredentialStore(migrated_db).save("tpos", "T2", room="r")
    store = CredentialStore(migrated_db, reader_key)
    with capturedLogs() as events:
        assert [r.client_type for r in await store.load_active()] == ["tpos"]
        assert await store.load("pancake") is None
    text = "\n".join(formatEvent(e) for e in events)
    assert text.count(f"stored pancake credentials skipped: {why}") == 2
    assert TOKEN not in text and COOKIE not in text


@pytest_twisted.ensureDeferred
async def test_every_change_is_announced_with_the_node_that_made_it(migrated_db, database_url) -> None:
    listening = psycopg2.connect(database_url)
    listening.autocommit = True
    listening.cursor().execute(f"LISTEN {CHANGED_CHANNEL}")
    try:
        store = CredentialStore(migrated_db, KEY, node="node-a")
        await store.save("pancake", TOKEN, user_id="42", page_ids=["101"], cookie=COOKIE)
        await store.deactivate("pancake")
        await store.deactivate("nobody")  # no row changed: nothing to announce
        await eventually(lambda: len(heard(listening)) >= 2, 5, "two NOTIFYs")
        await store.save("tpos", "T2", room="r")  # a later change, to show none came between
        await eventually(lambda: len(heard(listening)) >= 3, 5, "the third NOTIFY")
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


@pytest_twisted.ensureDeferred
async def test_extra_fields_are_sealed_and_a_renewed_token_only_updates_an_active_row(
        migrated_db, sql) -> None:
    password, refresh = "PASSWORD-store-4545-long", "REFRESH-store-4646-long"
    extra = {"username": "USERNAME-store-4949", "password": password, "refreshToken": refresh}
    store = CredentialStore(migrated_db, KEY)
    await store.save("tpos", "", room="r", extra=extra)
    [(token, stored)] = sql("SELECT token, extra FROM realtime_credentials")
    assert stored.startswith("fernet:") and password not in stored and "USERNAME-store" not in stored
    assert (await store.load("tpos")).extra == extra

    renewed = {**extra, "refreshToken": "REFRESH-store-4747-long", "expiresAt": 1.9e9}
    assert await store.save_renewed("tpos", TOKEN, renewed)
    row = await store.load("tpos")
    assert (row.token, row.extra, row.is_active) == (TOKEN, renewed, True)
    assert sql("SELECT token FROM realtime_credentials")[0][0].startswith("fernet:")

    await store.deactivate("tpos")  # a stop wins over a renewal that finishes after it
    assert not await store.save_renewed("tpos", "TOKEN-store-4848-late", renewed)
    assert (await store.load("tpos")).token == TOKEN

    # A row the seed's backends write has no extra; one saved without extra clears it.
    sql("INSERT INTO realtime_credentials (client_type, token) VALUES ('pancake', 'TOKEN-store-5050-seed')")
    assert (await store.load("pancake")).extra == {}
    await store.save("tpos", "TOKEN-store-5151-plain", room="r")
    assert sql("SELECT extra FROM realtime_credentials WHERE client_type = 'tpos'") == [(None,)]


@pytest_twisted.ensureDeferred
async def test_a_row_the_database_refuses_is_an_error_without_its_values(migrated_db) -> None:
    # A client type whose plugin did not extend the table's check: PostgreSQL's
    # message would quote the failing row, token and cookie included, in logs.
    store = CredentialStore(migrated_db)
    with pytest.raises(CredentialsRefused) as caught:
        await store.save("unknown-kind", TOKEN, cookie=COOKIE)
    shown = "".join(traceback.format_exception(caught.value))
    assert "realtime_credentials_client_type_check" in str(caught.value)
    assert TOKEN not in shown and COOKIE not in shown
