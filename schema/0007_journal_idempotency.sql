-- A publisher that retries (its first attempt timed out: was it stored?) names its
-- event with a key; an append whose key is already in the journal stores nothing
-- and answers the offset of the first. Keys live in the journal's rows, so they
-- are kept exactly as long as the events they name (retention trims both).
ALTER TABLE n2_journal ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX n2_journal_idempotency_key ON n2_journal (idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- A keyed event travels in a batch of its own (the gateway sends it so): under the
-- append lock, looking the key up and inserting cannot race another append.
CREATE OR REPLACE FUNCTION n2_journal_append(batch JSON) RETURNS SETOF BIGINT
LANGUAGE plpgsql AS $$
DECLARE
    key TEXT := CASE WHEN json_array_length(batch) = 1 THEN batch -> 0 ->> 'key' END;
    known BIGINT;
BEGIN
    PERFORM pg_advisory_xact_lock(1848599407);
    IF key IS NOT NULL THEN
        SELECT seq INTO known FROM n2_journal WHERE idempotency_key = key;
        IF FOUND THEN
            RETURN NEXT known;
            RETURN;
        END IF;
    END IF;
    RETURN QUERY
        INSERT INTO n2_journal (rooms, event, payload, idempotency_key)
        SELECT ARRAY(SELECT json_array_elements_text(e -> 'rooms')), e ->> 'event',
               e -> 'payload', e ->> 'key'
        FROM json_array_elements(batch) WITH ORDINALITY AS t(e, i)
        ORDER BY i
        RETURNING seq;
END
$$;
