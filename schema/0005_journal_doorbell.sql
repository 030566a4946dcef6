-- The doorbell leaves the append's transaction. PostgreSQL makes the commits of
-- all transactions that NOTIFY wait for one another (one lock, held from
-- pre-commit until the commit is durable), so an append that rang inside its own
-- durable commit held up every other notifying writer on the server, the chat
-- backends' inserts among them, for the length of its WAL flush. The gateway rings
-- after the commit instead (n2_journal_ring), in a transaction that does not wait
-- for the flush: a doorbell is only a hint, and a lost one costs a poll interval.
CREATE OR REPLACE FUNCTION n2_journal_append(batch JSON) RETURNS SETOF BIGINT
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(1848599407);
    RETURN QUERY
        INSERT INTO n2_journal (rooms, event, payload)
        SELECT ARRAY(SELECT json_array_elements_text(e -> 'rooms')), e ->> 'event', e -> 'payload'
        FROM json_array_elements(batch) WITH ORDINALITY AS t(e, i)
        ORDER BY i
        RETURNING seq;
END
$$;

-- The payload names the ringing node, which has woken its own hub already.
CREATE FUNCTION n2_journal_ring(node TEXT) RETURNS VOID
LANGUAGE sql AS $$
    SELECT set_config('synchronous_commit', 'off', true);
    SELECT pg_notify('n2_journal', node);
$$;
