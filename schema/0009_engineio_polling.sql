-- Engine.IO HTTP long-polling sessions, kept here rather than in one gateway's memory
-- so that any gateway on this database answers any request of any session: no sticky
-- sessions at the load balancer.
-- delivered: the journal offset delivered through; the events after it in the session's
--   rooms are its queue (the journal holds them, not memory).
-- poller, poll_until: the GET in progress (one at a time) and how long its claim holds
--   if the gateway holding it dies.
-- expires_at: the next sign of life is due by then; pong_due: a ping awaits its pong.
--   Times are seconds since the epoch on the gateways' clocks (kept by NTP), so that
--   the gateway's injected clock drives them in tests.
-- pid, sub, grants, development, token_exp: the connected Socket.IO session and its
--   identity (token_exp: its token's exp, when the session ends); a session whose
--   namespace is not connected within connect_by is closed.
-- UNLOGGED: every GET writes here twice, and a WAL flush for each would cost more than
-- the GET. After a crash of PostgreSQL itself the tables come back empty: clients get
-- "unknown_session", open a new session and recover (n2_socketio_sessions is logged).
CREATE UNLOGGED TABLE n2_engineio_sessions (
    sid TEXT PRIMARY KEY,
    state TEXT NOT NULL DEFAULT 'polling' CHECK (state IN ('polling', 'upgrading', 'upgraded')),
    pid TEXT,
    sub TEXT,
    grants TEXT[] NOT NULL DEFAULT '{}',
    development BOOLEAN NOT NULL DEFAULT FALSE,
    token_exp DOUBLE PRECISION,
    rooms TEXT[] NOT NULL DEFAULT '{}',
    delivered BIGINT NOT NULL DEFAULT 0,
    poller TEXT,
    poll_until DOUBLE PRECISION,
    ping_at DOUBLE PRECISION NOT NULL,
    pong_due DOUBLE PRECISION,
    expires_at DOUBLE PRECISION NOT NULL,
    connect_by DOUBLE PRECISION NOT NULL
);
-- No index but the key: every GET rewrites expires_at, and an index on it would make
-- each of those updates write index entries (no HOT update); the sweeper's scan of
-- one row per live session every few seconds is cheap.

-- Control packets (the CONNECT answer, acks, errors) waiting for the session's next
-- GET, in the order they were produced, whichever gateway produced them.
CREATE UNLOGGED TABLE n2_engineio_packets (
    seq BIGSERIAL PRIMARY KEY,
    sid TEXT NOT NULL REFERENCES n2_engineio_sessions (sid) ON DELETE CASCADE,
    frame TEXT NOT NULL
);
CREATE INDEX n2_engineio_packets_sid ON n2_engineio_packets (sid, seq);
