-- The durable event log every downstream delivery is read from.
-- seq is the offset clients resume from.
CREATE TABLE n2_journal (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rooms TEXT[] NOT NULL,
    event TEXT NOT NULL,
    payload JSON NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE INDEX n2_journal_created_at ON n2_journal (created_at);
CREATE INDEX n2_journal_rooms ON n2_journal USING GIN (rooms);

-- Everything at or below trimmed_through has been removed by retention: a client
-- resuming from below it is told about the gap instead of silently missing events.
CREATE TABLE n2_journal_horizon (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    trimmed_through BIGINT NOT NULL DEFAULT 0
);
INSERT INTO n2_journal_horizon DEFAULT VALUES;

-- Appends a batch [{rooms, event, payload}, ...] and rings the doorbell, in one
-- round trip. The advisory lock makes appends (from every gateway) commit one at a
-- time, so offsets become visible in the order they were assigned: a reader that
-- has seen offset N has seen everything below N, and "read after my last offset"
-- never skips an event that commits late.
CREATE FUNCTION n2_journal_append(batch JSON) RETURNS SETOF BIGINT
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(1848599407);
    RETURN QUERY
        INSERT INTO n2_journal (rooms, event, payload)
        SELECT ARRAY(SELECT json_array_elements_text(e -> 'rooms')), e ->> 'event', e -> 'payload'
        FROM json_array_elements(batch) WITH ORDINALITY AS t(e, i)
        ORDER BY i
        RETURNING seq;
    -- The doorbell carries no payload: readers fetch from the table.
    PERFORM pg_notify('n2_journal', '');
END
$$;
