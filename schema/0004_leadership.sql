-- Who last owned each source and whether it let go cleanly. A node that takes a
-- source's advisory lock starts it at once when the last owner released it (or
-- nobody ever held it), and waits out the grace period only after an owner that
-- vanished: it may still be running the source for a few seconds.
CREATE TABLE n2_leadership (
    source TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    released BOOLEAN NOT NULL,
    since TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
