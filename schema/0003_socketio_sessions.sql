-- Socket.IO connection state recovery: a client that comes back with its private
-- session id (pid) within the TTL gets its rooms back and every event it missed,
-- on whichever gateway it reaches, also after the one it left was killed.
-- since: the journal head when the session began, the replay start for a client
-- that never received an event (socket.io-client then has no offset to send).
CREATE TABLE n2_socketio_sessions (
    pid TEXT PRIMARY KEY,
    sub TEXT NOT NULL,
    rooms TEXT[] NOT NULL DEFAULT '{}',
    since BIGINT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX n2_socketio_sessions_expires_at ON n2_socketio_sessions (expires_at);
