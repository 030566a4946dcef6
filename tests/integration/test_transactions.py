"""``Database.transaction`` on a real PostgreSQL: its round trips, and what a failure leaves."""

from __future__ import annotations

import pytest
import pytest_twisted

from n2gateway.db import DatabaseError, DatabaseUnavailable, SerializationConflict


@pytest_twisted.ensureDeferred
async def test_begin_travels_with_the_first_statement(notes_db, sql, round_trips):
    async def work(tx):
        await tx.execute("INSERT INTO notes VALUES (1)")
        return await tx.query("SELECT COUNT(*) FROM notes")

    assert await notes_db.transaction(work) == [(1,)]
    assert round_trips == ["BEGIN; INSERT INTO notes VALUES (1)", "SELECT COUNT(*) FROM notes", "COMMIT"]
    assert sql("SELECT n FROM notes") == [(1,)]

    async def nothing(tx):
        return "done"

    round_trips.clear()
    assert await notes_db.transaction(nothing) == "done"
    assert round_trips == []


@pytest_twisted.ensureDeferred
async def test_commit_with_the_last_statements_and_a_look_after_it(notes_db, sql, round_trips):
    async def work(tx):
        await tx.execute("INSERT INTO notes VALUES (1)")
        return await tx.commit("INSERT INTO notes VALUES (%(n)s)", {"n": 2},
                               then="SELECT COUNT(*) FROM notes")

    assert await notes_db.transaction(work) == [(2,)]
    assert len(round_trips) == 2
    assert sql("SELECT n FROM notes ORDER BY n") == [(1,), (2,)]

    async def without_a_look(tx):
        return await tx.commit("INSERT INTO notes VALUES (%(n)s)", {"n": 3})

    round_trips.clear()
    assert await notes_db.transaction(without_a_look) == []
    assert len(round_trips) == 1 and sql("SELECT COUNT(*) FROM notes") == [(3,)]

    async def fails_before_commit(tx):
        await tx.execute("INSERT INTO notes VALUES (4)")
        await tx.commit("INSERT INTO notes VALUES ('not a number')", None, then="SELECT 1")

    with pytest.raises(DatabaseError, match="^InvalidTextRepresentation 22P02$"):
        await notes_db.transaction(fails_before_commit)
    assert sql("SELECT n FROM notes ORDER BY n") == [(1,), (2,), (3,)]


@pytest_twisted.ensureDeferred
async def test_work_that_fails_leaves_nothing_and_a_clean_connection(notes_db, sql):
    async def raises(tx):
        await tx.execute("INSERT INTO notes VALUES (1)")
        raise RuntimeError("the caller's own check failed")

    async def bad_sql(tx):
        await tx.execute("INSERT INTO notes VALUES (2)")
        await tx.execute("INSERT INTO notes VALUES ('not a number')")

    with pytest.raises(RuntimeError):
        await notes_db.transaction(raises)
    with pytest.raises(DatabaseError, match="^InvalidTextRepresentation 22P02$"):
        await notes_db.transaction(bad_sql)

    async def works(tx):
        await tx.execute("INSERT INTO notes VALUES (3)")

    await notes_db.transaction(works)
    # Committed on its own: the pool's one connection was not left inside a transaction.
    assert sql("SELECT n FROM notes") == [(3,)]


@pytest_twisted.ensureDeferred
async def test_a_connection_that_cannot_roll_back_is_not_reused(notes_db, sql):
    async def killed(tx):
        (pid,), = await tx.query("SELECT pg_backend_pid()")
        sql("SELECT pg_terminate_backend(%s)", (pid,))
        raise RuntimeError("failed after its connection died")

    with pytest.raises((RuntimeError, DatabaseUnavailable)):
        await notes_db.transaction(killed)

    async def one(tx):
        return await tx.query("SELECT 1")

    assert await notes_db.transaction(one) == [(1,)]


@pytest_twisted.ensureDeferred
async def test_a_transaction_a_concurrent_one_beat_is_a_conflict_not_a_lost_database(notes_db, sql):
    sql("INSERT INTO notes VALUES (1)")

    async def loses_the_race(tx):
        await tx.query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ; SELECT n FROM notes")
        sql("UPDATE notes SET n = 2")  # another backend commits meanwhile
        await tx.execute("UPDATE notes SET n = 3")

    with pytest.raises(SerializationConflict):
        await notes_db.transaction(loses_the_race)

    async def again(tx):
        await tx.execute("UPDATE notes SET n = n + 10")

    await notes_db.transaction(again)  # on the same connection: it was not dropped as dead
    assert sql("SELECT n FROM notes") == [(12,)]
