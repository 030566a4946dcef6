-- The append lock gets a name of its own: a source may now append with a statement
-- of its own (an INSERT ... SELECT that builds the events in the database, see
-- journal.copy_into), and it must take the same lock, first, in the same transaction.
-- The key is the one n2_journal_append takes (0007).
CREATE FUNCTION n2_journal_lock() RETURNS VOID
LANGUAGE sql AS $$
    SELECT pg_advisory_xact_lock(1848599407);
$$;
