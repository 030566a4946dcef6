"""Chat sync against a real PostgreSQL, written to by two independent backends.

What reaches the journal is what every client receives, in that order.
"""

from __future__ import annotations

import pytest_twisted
from twisted.internet.threads import deferToThread

from n2gateway.journal import RING
from n2gateway.storable import MAX_DEPTH
from tests.integration.chat_harness import ChatHarness, writer


def add_user(sql, user_id, name):
    sql("INSERT INTO users (user_id, full_name, avatar_url) VALUES (%s, %s, %s)",
        (user_id, name, f"https://img.example/{user_id}.png"))


@pytest_twisted.ensureDeferred
async def test_two_backends_see_each_others_messages_in_the_right_rooms(chat, sql, insert,
                                                                         database_url):
    add_user(sql, 7, "Lan")
    app, dashboard = writer(database_url), writer(database_url)
    student = insert(7, "student", "Em chào thầy", via=app)
    teacher = insert(7, "teacher", "Chào em", via=dashboard)
    await chat.until(lambda: len(chat.messages()) == 2, "both messages")

    news = chat.journal("message:new")
    assert [rooms for rooms, _, _ in news] == [["user:7", "staff"], ["user:7"]]
    first = news[0][2]
    assert first["chat_id"] == student and first["message"] == "Em chào thầy"
    assert first["sender"] == "student" and first["user_id"] == 7
    assert first["users"] == {"user_id": 7, "full_name": "Lan",
                              "avatar_url": "https://img.example/7.png"}
    assert {"read_by_student", "read_by_teacher", "created_at"} <= set(first)
    assert news[1][2]["chat_id"] == teacher
    # users:updated follows, for staff only, and nothing ever goes to everyone.
    assert chat.journal()[-1][:2] == (["staff"], "users:updated")

    with dashboard.cursor() as cur:
        cur.execute("UPDATE chats SET read_by_teacher = TRUE WHERE chat_id = %s", (student,))
    await chat.until(lambda: chat.journal("message:read"), "message:read")
    assert chat.journal("message:read") == [
        (["user:7"], "message:read",
         {"messageId": student, "read_by_student": False, "read_by_teacher": True})]
    assert chat.journal()[-1][:2] == (["staff"], "users:updated")

    # An update that leaves the read flags alone is not a read.
    with app.cursor() as cur:
        cur.execute("UPDATE chats SET message = 'sửa' WHERE chat_id = %s", (student,))
    await chat.settle()
    assert len(chat.journal("message:read")) == 1
    assert chat.sync.relayed == 2


@pytest_twisted.ensureDeferred
async def test_a_burst_of_a_thousand_inserts_is_relayed_in_order_by_one_query(chat, database_url):
    app = writer(database_url, autocommit=False)
    syncs_before = chat.sync.syncs
    with app.cursor() as cur:
        cur.execute("INSERT INTO chats (user_id, sender, message)"
                    " SELECT i % 10, 'student', 'm' || i FROM generate_series(1, 1000) AS i")
    app.commit()
    await chat.until(lambda: len(chat.messages()) == 1000, "1000 messages")

    assert chat.messages() == sorted(chat.messages())
    assert len(set(chat.messages())) == 1000
    # One doorbell per row, but a handful of syncs (one fetch each), not a thousand.
    assert chat.sync.syncs - syncs_before <= 3
    assert chat.sync.waiting == 0


@pytest_twisted.ensureDeferred
async def test_a_sync_is_two_round_trips_however_many_rows_it_relays(chat, database_url,
                                                                       round_trips):
    app = writer(database_url, autocommit=False)
    with app.cursor() as cur:
        cur.execute("INSERT INTO chats (user_id, sender, message)"
                    " SELECT i % 10, 'student', 'm' || i FROM generate_series(1, 300) AS i")
    syncs_before = chat.sync.syncs
    round_trips.clear()
    app.commit()
    await chat.until(lambda: len(chat.messages()) == 300, "300 messages")
    await chat.settle()
    # Lock and read; append, record, move the cursor and COMMIT (keepalives aside).
    # The doorbell follows, outside the transaction, at most one per sync.
    syncs = chat.sync.syncs - syncs_before
    doorbells = [s for s in round_trips if s == RING]
    assert len([s for s in round_trips if s != RING]) == 2 * syncs
    assert 1 <= len(doorbells) <= syncs


@pytest_twisted.ensureDeferred
async def test_a_row_that_commits_after_a_later_id_is_not_skipped(chat, database_url):
    slow, fast = writer(database_url, autocommit=False), writer(database_url, autocommit=False)
    with slow.cursor() as cur:
        cur.execute("INSERT INTO chats (user_id, sender, message) VALUES (1, 'student', 'slow')"
                    " RETURNING chat_id")
        slow_id = cur.fetchone()[0]
    with fast.cursor() as cur:
        cur.execute("INSERT INTO chats (user_id, sender, message) VALUES (2, 'student', 'fast')"
                    " RETURNING chat_id")
        fast_id = cur.fetchone()[0]
    assert slow_id < fast_id
    fast.commit()
    await chat.until(lambda: chat.messages() == [fast_id], "the later id")
    assert chat.sync.low < slow_id  # the gap is held open while its writer may commit

    slow.commit()
    await chat.until(lambda: chat.messages() == [fast_id, slow_id], "the earlier id, late")
    # The journal row is visible once the sync's transaction commits, a moment before
    # the sync takes in its result: the cursor is checked once it has.
    await chat.until(lambda: (chat.sync.low, chat.sync.waiting) == (fast_id, 0),
                     "the cursor past both ids")


@pytest_twisted.ensureDeferred
async def test_a_rolled_back_id_stops_holding_the_cursor_after_the_grace(database_url, insert):
    chat = await ChatHarness(database_url, grace=0.5).start()
    try:
        aborted = writer(database_url, autocommit=False)
        with aborted.cursor() as cur:
            cur.execute("INSERT INTO chats (user_id, sender, message) VALUES (1, 'student', 'x')")
        later = insert(1, "student", "kept")
        aborted.rollback()
        await chat.until(lambda: chat.messages() == [later], "the committed message")
        # No doorbell needed: the sync looks again once the grace is over.
        await chat.until(lambda: chat.sync.low == later and chat.sync.waiting == 0,
                         "the cursor to pass the rolled-back id", timeout=10)
    finally:
        await chat.stop()


@pytest_twisted.ensureDeferred
async def test_nothing_is_lost_when_the_listen_connection_is_killed(chat, sql, insert):
    insert(1, "student", "before")
    await chat.until(lambda: len(chat.messages()) == 1, "the first message")
    killed = sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                 " WHERE query LIKE 'LISTEN%%' AND pid <> pg_backend_pid()")
    assert killed
    # Written while the gateway has no LISTEN connection: no NOTIFY reaches it.
    during = [insert(1, "student", f"during {i}") for i in range(5)]
    await chat.until(lambda: chat.listener.reconnects == 1 and chat.listener.connected,
                     "the listener to reconnect")
    after = insert(1, "teacher", "after")
    await chat.until(lambda: len(chat.messages()) == 7, "every message")
    assert chat.messages()[1:] == [*during, after]
    # The catch-up after recovery tells staff to refresh (reads may have been missed).
    assert (["staff"], "users:updated", None) in chat.journal()


@pytest_twisted.ensureDeferred
async def test_read_flags_changed_while_not_listening_announce_one_refresh(database_url, sql):
    chat = await ChatHarness(database_url).start()
    sql("INSERT INTO chats (user_id, sender, message) VALUES (3, 'student', 'hi')")
    await chat.until(lambda: len(chat.messages()) == 1, "the message")
    await chat.stop()

    sql("UPDATE chats SET read_by_teacher = TRUE")  # while the gateway is down
    before = len(sql("SELECT 1 FROM n2_journal"))
    chat = await ChatHarness(database_url).start()
    try:
        await chat.settle()
        assert chat.journal()[before:] == [(["staff"], "users:updated", None)]
        assert len(chat.messages()) == 1  # exactly once across the restart
    finally:
        await chat.stop()


@pytest_twisted.ensureDeferred
async def test_bad_notify_payloads_are_logged_and_skipped(chat, sql, insert):
    sql("NOTIFY chat_messages, 'garbage'")
    sql("""NOTIFY chat_messages_read, '{"user_id": 1}'""")
    sql("""NOTIFY chat_messages, '{"chat_id": 999999}'""")  # a row deleted before the fetch
    first = insert(4, "teacher", "still relayed")
    await chat.until(lambda: chat.messages() == [first], "the message after the garbage")
    await chat.until(lambda: any("999999 was deleted" in line for line in chat.log),
                     "the deleted row to be logged")
    assert any("skipped a NOTIFY on chat_messages (not JSON)" in line for line in chat.log)
    assert any("skipped a NOTIFY on chat_messages_read (no integer chat_id)" in line
               for line in chat.log)
    assert chat.listener.connected and chat.listener.reconnects == 0


@pytest_twisted.ensureDeferred
async def test_a_message_too_large_for_the_journal_is_logged_and_the_rest_relayed(chat, insert):
    before = insert(5, "student", "before")
    huge = insert(5, "student", "x" * (1024 * 1024 + 1))  # its event would be over 1 MiB
    after = insert(5, "teacher", "after")
    await chat.until(lambda: chat.messages() == [before, after], "the messages around it")
    await chat.until(lambda: chat.sync.low == after, "the cursor to move past it")
    assert chat.sync.unrelayable == 1
    assert any(f"chat message {huge} cannot be relayed (event over 1048576 bytes)" in line
               for line in chat.log)
    later = insert(5, "student", "later")  # the sync goes on as usual
    await chat.until(lambda: chat.messages() == [before, after, later], "a later message")


@pytest_twisted.ensureDeferred
async def test_a_row_nested_too_deep_for_the_journal_is_logged_and_the_rest_relayed(
        chat, sql, insert):
    # The application's own jsonb column: the row's payload nests one level deeper.
    # In a thread, as every statement that may wait for a lock a sync holds: the
    # sync commits (and lets go) only while the reactor runs.
    await deferToThread(sql, "ALTER TABLE chats ADD COLUMN meta jsonb")

    def with_meta(levels):
        [(chat_id,)] = sql("INSERT INTO chats (user_id, sender, message, meta)"
                           " VALUES (6, 'student', 'meta', %s::jsonb) RETURNING chat_id",
                           ("[" * levels + "]" * levels,))
        return chat_id

    brackets = insert(6, "student", "[{" * (2 * MAX_DEPTH))  # only its text looks deep
    deepest = with_meta(MAX_DEPTH - 1)
    too_deep = with_meta(MAX_DEPTH)
    after = insert(6, "teacher", "after")
    await chat.until(lambda: chat.sync.low == after, "the cursor to move past it")
    assert chat.messages() == [brackets, deepest, after]
    assert chat.sync.unrelayable == 1
    assert any(f"chat message {too_deep} cannot be relayed "
               f"(payload is nested deeper than {MAX_DEPTH} levels)" in line for line in chat.log)


@pytest_twisted.ensureDeferred
async def test_a_sync_reads_nothing_of_the_table_below_its_cursor(chat, sql):
    # A table of years of messages: every sync (one per NOTIFY, at worst) must start at
    # the cursor. A join that filtered the table by it would cost 55 ms a sync at
    # 100,000 rows, against 0.24 ms.
    add_user(sql, 1, "Lan")
    sql("INSERT INTO chats (user_id, sender, message)"
        " SELECT 1, 'teacher', 'm' || g FROM generate_series(1, 5000) g")
    sql("ANALYZE chats")  # as autovacuum would have: the planner knows the table's size
    [(top,)] = sql("SELECT max(chat_id) FROM chats")
    await chat.until(lambda: chat.sync.low == top, "the sync to catch up")

    # In a thread: the sync that follows a full batch may still hold the cursor row.
    statement = chat.store._lock_and_fetch.split("REPEATABLE READ;")[1]
    [([plan],)] = await deferToThread(sql, "EXPLAIN (ANALYZE, FORMAT JSON) " + statement,
                                      {"table": "chats", "batch": 1000})
    nodes, scanned = [plan["Plan"]], []
    while nodes:
        node = nodes.pop()
        nodes += node.get("Plans", [])
        if node.get("Relation Name") == "chats":
            scanned.append(node["Actual Rows"] * node["Actual Loops"])
    assert scanned == [0]


@pytest_twisted.ensureDeferred
async def test_a_message_whose_user_is_missing_has_a_users_object_of_nulls(chat, insert):
    insert(404, "student", "who am I")
    await chat.until(lambda: chat.messages(), "the message")
    assert chat.journal("message:new")[0][2]["users"] == {
        "user_id": None, "full_name": None, "avatar_url": None}


SEED_TRIGGERS = """
CREATE TABLE users (user_id SERIAL PRIMARY KEY, full_name VARCHAR(255), avatar_url TEXT);
CREATE TABLE chats (
    chat_id SERIAL PRIMARY KEY,
    user_id INTEGER REFERENCES users(user_id),
    sender VARCHAR(20) NOT NULL,
    message TEXT NOT NULL,
    read_by_student BOOLEAN DEFAULT FALSE,
    read_by_teacher BOOLEAN DEFAULT FALSE,
    created_at TIMESTAMP DEFAULT NOW()
);
CREATE OR REPLACE FUNCTION notify_new_chat_message() RETURNS TRIGGER AS $$
BEGIN
  PERFORM pg_notify('chat_messages', json_build_object(
    'chat_id', NEW.chat_id, 'user_id', NEW.user_id, 'sender', NEW.sender,
    'message', NEW.message, 'created_at', NEW.created_at)::text);
  RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER chat_message_insert_trigger AFTER INSERT ON chats
  FOR EACH ROW EXECUTE FUNCTION notify_new_chat_message();
CREATE OR REPLACE FUNCTION notify_chat_message_read() RETURNS TRIGGER AS $$
BEGIN
  IF OLD.read_by_student IS DISTINCT FROM NEW.read_by_student
     OR OLD.read_by_teacher IS DISTINCT FROM NEW.read_by_teacher THEN
    PERFORM pg_notify('chat_messages_read', json_build_object(
      'chat_id', NEW.chat_id, 'user_id', NEW.user_id,
      'read_by_student', NEW.read_by_student, 'read_by_teacher', NEW.read_by_teacher)::text);
  END IF;
  RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER chat_message_read_trigger AFTER UPDATE ON chats
  FOR EACH ROW EXECUTE FUNCTION notify_chat_message_read();
INSERT INTO users (full_name) VALUES ('Old student');
INSERT INTO chats (user_id, sender, message) VALUES (1, 'student', 'history');
"""


@pytest_twisted.ensureDeferred
async def test_a_database_with_the_seeds_own_triggers_works_unchanged(database_url, sql):
    sql(SEED_TRIGGERS)
    chat = await ChatHarness(database_url).start()
    try:
        triggers = sql("SELECT tgname FROM pg_trigger WHERE tgrelid = 'chats'::regclass"
                       " AND NOT tgisinternal ORDER BY tgname")
        assert triggers == [("chat_message_insert_trigger",), ("chat_message_read_trigger",)]
        new = sql("INSERT INTO chats (user_id, sender, message) VALUES (1, 'student', 'new')"
                  " RETURNING chat_id")[0][0]
        await chat.until(lambda: chat.messages() == [new], "the new message (not history)")
        assert chat.journal("message:new")[0][2]["users"]["full_name"] == "Old student"
        sql("UPDATE chats SET read_by_teacher = TRUE WHERE chat_id = %s", (new,))
        await chat.until(lambda: chat.journal("message:read"), "message:read")
        assert chat.journal("message:read")[0][2] == {
            "messageId": new, "read_by_student": False, "read_by_teacher": True}
    finally:
        await chat.stop()


@pytest_twisted.ensureDeferred
async def test_configured_table_names(database_url, sql):
    from n2gateway_plugins.chat.schema import Tables

    chat = ChatHarness(database_url, Tables(users="members", messages="lms.messages"))
    sql("CREATE SCHEMA lms")
    await chat.start()
    try:
        sql("INSERT INTO members (full_name) VALUES ('Hoa')")
        sql("INSERT INTO lms.messages (user_id, sender, message) VALUES (1, 'teacher', 'x')")
        await chat.until(lambda: chat.messages(), "the message")
        assert chat.journal("message:new")[0][2]["users"]["full_name"] == "Hoa"
        assert not sql("SELECT to_regclass('chats')")[0][0]
    finally:
        await chat.stop()
