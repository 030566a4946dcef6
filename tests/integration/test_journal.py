"""The journal on real PostgreSQL: batched appends, a doorbell outside the durable
commit, big payloads, appends inside a caller's transaction, and retention."""

from __future__ import annotations

import psycopg2
import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from n2gateway.journal import (APPEND, RING, Event, JournalFull, JsonText, PostgresJournal,
                               RetentionService, encode_append, is_full_page)
from tests.support.database import heard
from tests.support.waiting import eventually, sleep


@pytest.fixture
def journal(migrated_db):
    return PostgresJournal(migrated_db, reactor, node="node-a")


def count_queries(journal: PostgresJournal) -> list[str]:
    statements: list[str] = []
    query = journal._db.query

    async def counting(sql, params=None):
        statements.append(sql)
        return await query(sql, params)

    journal._db.query = counting
    return statements


@pytest_twisted.ensureDeferred
async def test_appends_of_one_reactor_turn_are_one_statement_with_consecutive_offsets(journal):
    statements = count_queries(journal)
    offsets = await defer.gatherResults(
        [journal.append([f"user:{n}"], "e", {"n": n}) for n in range(200)])
    assert [s for s in statements if s != RING] == [APPEND]
    assert offsets == list(range(offsets[0], offsets[0] + 200))
    events = await journal.read_after(0)
    assert [(e.rooms, e.name, e.payload) for e in events] == [
        ((f"user:{n}",), "e", {"n": n}) for n in range(200)]


@pytest_twisted.ensureDeferred
async def test_appends_arriving_while_a_batch_is_in_flight_form_the_next_batch(journal):
    statements = count_queries(journal)
    first = journal.append(["r"], "e", 1)
    await eventually(lambda: statements)  # the first batch is on its way
    rest = [journal.append(["r"], "e", n) for n in range(2, 50)]
    offsets = await defer.gatherResults([first, *rest])
    assert offsets == list(range(1, 50))
    assert statements.count(APPEND) == 2


@pytest_twisted.ensureDeferred
async def test_pages_stop_at_a_byte_budget_and_a_huge_event_is_a_page_of_its_own(journal):
    sizes = [300, 300, 300, 300, 5000, 10]
    offsets = await defer.gatherResults(
        [journal.append(["big"], "e", "é" * (n - 2)) for n in sizes])  # n chars of JSON
    pages = []
    after = 0
    while True:
        page = await journal.replay(["big"], after, offsets[-1], max_bytes=1000)
        if not page:
            break
        pages.append(page)
        after = page[-1].offset
    # Bytes, not characters: "é" is 2 bytes, so two 300-character events pass 1,000.
    assert [[e.offset for e in page] for page in pages] == [
        offsets[0:2], offsets[2:4], offsets[4:5], offsets[5:6]]
    assert [is_full_page(page, max_bytes=1000) for page in pages] == [True, True, True, False]
    assert [e.offset for e in await journal.read_after(0, max_bytes=1000)] == offsets[0:2]


@pytest_twisted.ensureDeferred
async def test_each_event_keeps_its_rooms_name_payload_and_time(journal, sql):
    payload = {"text": "xin chào", "nested": [1, {"a": None}], "big": "z" * 20_000}
    offset = await journal.append(["user:1", "staff", "user:1"], "message:new", payload)
    [event] = await journal.read_after(offset - 1)
    assert event.rooms == ("user:1", "staff")
    assert event.name == "message:new"
    assert event.payload == payload
    [(age,)] = sql("SELECT EXTRACT(EPOCH FROM NOW() - created_at) FROM n2_journal WHERE seq = %s",
                   (offset,))
    assert 0 <= age < 60


@pytest_twisted.ensureDeferred
async def test_the_doorbell_rings_after_the_commit_naming_the_node_not_the_payload(
        journal, database_url, sql):
    listener = psycopg2.connect(database_url)
    listener.autocommit = True
    listener.cursor().execute("LISTEN n2_journal")

    try:
        # The durable append rings nothing itself: a NOTIFY in its transaction would
        # make every notifying writer on the server wait for its WAL flush.
        sql(APPEND, {"batch": '[{"rooms": ["r"], "event": "e", "payload": 1}]'})
        woken = []
        journal.on_appended = woken.append
        offset = await journal.append(["r"], "e", {"secret": "x" * 9000})
        # This gateway's hub, at once, with the event as stored.
        assert woken == [[Event(offset, ("r",), "e", '{"secret":"' + "x" * 9000 + '"}')]]
        [notify] = await eventually(lambda: heard(listener), 5, "a NOTIFY")
        assert (notify.channel, notify.payload) == ("n2_journal", "node-a")
    finally:
        listener.close()


@pytest_twisted.ensureDeferred
async def test_rings_while_a_doorbell_is_in_flight_send_one_more(journal):
    statements = count_queries(journal)
    woken = []
    journal.on_appended = woken.append
    for _ in range(5):
        journal.ring()
    await eventually(lambda: len(statements) == 2, 5, "the second doorbell")
    await sleep(0.2)  # and no third one
    assert statements == [RING, RING] and len(woken) == 5


@pytest.mark.parametrize("rooms, event, payload, message", [
    ([], "e", None, "rooms"),
    ("user:1", "e", None, "rooms"),
    (["r", ""], "e", None, "rooms"),
    (["r"], "", None, "event"),
    (["r"], "e", {"x": object()}, "JSON"),
])
def test_malformed_appends_are_refused_before_they_reach_the_database(
        journal, rooms, event, payload, message):
    with pytest.raises(ValueError, match=message):
        journal.append(rooms, event, payload)
    assert journal.pending == 0


@pytest_twisted.ensureDeferred
async def test_while_the_database_is_away_waiting_appends_are_bounded_then_all_land(
        journal, sql):
    bounded = PostgresJournal(journal._db, reactor, max_pending=3)
    sql("SELECT pg_advisory_lock(1848599407)")  # appends block, as if the database hung
    waiting = [bounded.append(["r"], "e", n) for n in range(3)]
    with pytest.raises(JournalFull):
        bounded.append(["r"], "e", 3)
    sql("SELECT pg_advisory_unlock(1848599407)")
    assert await defer.gatherResults(waiting) == [1, 2, 3]
    assert await bounded.append(["r"], "e", 4) == 4


@pytest_twisted.ensureDeferred
async def test_append_in_a_transaction_is_visible_only_after_commit(journal):
    async def work(tx):
        offsets = await journal.append_in(tx, [(["r"], "a", 1), (["r"], "b", 2)])
        assert await journal.read_after(0) == []  # not committed yet
        return offsets

    offsets = await journal._db.transaction(work)
    assert [e.offset for e in await journal.read_after(0)] == offsets

    async def failing(tx):
        await journal.append_in(tx, [(["r"], "c", 3)])
        raise RuntimeError("the source's own write failed")

    with pytest.raises(RuntimeError):
        await journal._db.transaction(failing)
    assert [e.name for e in await journal.read_after(0)] == ["a", "b"]


@pytest_twisted.ensureDeferred
async def test_commit_with_appends_and_commits_the_sources_own_write_in_one_round_trip(
        journal, sql, round_trips):
    sql("CREATE TABLE progress (n INTEGER)")
    events = [encode_append(["r"], "a", 1), encode_append(["r"], "b", 2)]

    async def work(tx):
        await tx.execute("SELECT 1")
        del round_trips[:]
        return await journal.commit_with(tx, events, "INSERT INTO progress VALUES (%(n)s)",
                                         {"n": 7}, then="SELECT COUNT(*) FROM progress")

    assert await journal._db.transaction(work) == [(1,)]
    assert len(round_trips) == 1
    assert [(e.name, e.payload_json) for e in await journal.read_after(0)] == [
        ("a", "1"), ("b", "2")]

    async def nothing_to_append(tx):
        await journal.commit_with(tx, [], "INSERT INTO progress VALUES (%(n)s)", {"n": 8})

    await journal._db.transaction(nothing_to_append)
    assert sql("SELECT n FROM progress ORDER BY n") == [(7,), (8,)]
    assert len(await journal.read_after(0)) == 2


@pytest_twisted.ensureDeferred
async def test_retention_by_row_count_and_by_age_moves_the_horizon(journal, sql):
    await defer.gatherResults([journal.append(["r"], "e", n) for n in range(10)])
    assert await journal.trim(max_age=3600, max_rows=6) == 4
    assert [e.offset for e in await journal.read_after(0)] == list(range(5, 11))
    sql("UPDATE n2_journal SET created_at = NOW() - INTERVAL '2 hours' WHERE seq <= 7")
    assert await journal.trim(max_age=3600, max_rows=100) == 7
    assert await journal.horizon() == 7
    assert await journal.head() == 10
    sql("DELETE FROM n2_journal")
    assert await journal.head() == 7  # an empty journal still remembers where it was
    assert await journal.trim(max_age=3600, max_rows=6) == 7  # never moves back


@pytest_twisted.ensureDeferred
async def test_the_retention_service_trims_periodically(journal, sql):
    service = RetentionService(journal, reactor, max_age=3600, max_rows=3, interval=0.2)
    service.startService()
    try:
        await defer.gatherResults([journal.append(["r"], "e", n) for n in range(5)])
        await eventually(lambda: sql("SELECT trimmed_through FROM n2_journal_horizon")[0][0] == 2,
                         5, "the first trim")
        await defer.gatherResults([journal.append(["r"], "e", n) for n in range(5)])
        await eventually(lambda: sql("SELECT trimmed_through FROM n2_journal_horizon")[0][0] == 7,
                         5, "a later trim")
        assert sql("SELECT COUNT(*) FROM n2_journal") == [(3,)]
    finally:
        service.stopService()


@pytest_twisted.ensureDeferred
async def test_the_row_bound_holds_after_every_commit_not_only_at_the_next_tick(journal, sql):
    """--retention-rows 5 used to keep 12 events for up to a minute: the timer trimmed."""
    service = RetentionService(journal, reactor, max_age=3600, max_rows=5, interval=3600)
    journal.on_appended = service.appended
    service.startService()
    try:
        for n in range(12):
            await journal.append(["r"], "e", n)
        await eventually(lambda: sql("SELECT COUNT(*) FROM n2_journal") == [(5,)], 5,
                         "the row bound after the appends")
        assert [e.offset for e in await journal.read_after(0)] == list(range(8, 13))
        assert await journal.horizon() == 7
    finally:
        service.stopService()


@pytest_twisted.ensureDeferred
async def test_commits_within_the_row_bound_send_no_statement_to_check_it(journal, sql):
    service = RetentionService(journal, reactor, max_age=3600, max_rows=10, interval=3600)
    journal.on_appended = service.appended
    service.startService()
    try:
        # The start-up trim tells the service where the horizon is.
        await eventually(lambda: service._horizon is not None, 5, "the start-up trim")
        statements = count_queries(journal)
        for n in range(10):
            await journal.append(["r"], "e", n)
        assert [s for s in statements if s not in (APPEND, RING)] == []
        sql("UPDATE n2_journal_horizon SET trimmed_through = 3")  # another gateway trimmed
        for n in range(10, 15):  # past the bound counted from the old horizon
            await journal.append(["r"], "e", n)
        await eventually(lambda: sql("SELECT COUNT(*) FROM n2_journal") == [(10,)], 5,
                         "the row bound past it")
        assert await journal.horizon() == 5
    finally:
        service.stopService()


@pytest_twisted.ensureDeferred
async def test_the_hub_is_handed_each_commit_as_stored_but_not_a_repeated_key(journal, sql):
    handed = []
    journal.on_appended = handed.append
    payloads = [{"text": "é \\ \" \u2028", "n": 1.5}, JsonText('{"a" : [1, 2]}'), None]
    offsets = await defer.gatherResults([journal.append(["r", "s", "r"], "e", p) for p in payloads])
    first = await journal.append(["r"], "keyed", 1, key="k" * 16)
    again = await journal.append(["r"], "keyed", 2, key="k" * 16)
    assert again == first
    stored = [Event(*row) for row in sql(
        "SELECT seq, rooms, event, payload::text FROM n2_journal ORDER BY seq")]
    # The reader's view of the rows, exactly: the hub sends them without reading them back.
    assert handed[0] == [Event(s.offset, tuple(s.rooms), s.name, s.payload_json)
                         for s in stored if s.offset in offsets]
    # A keyed append may answer an older event: the hub reads instead of being handed it.
    assert handed[1:] == [[], []]
