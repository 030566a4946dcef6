-- Stored upstream credentials, exactly as the original system kept them (seed 000),
-- so an existing database works unchanged. The check constraint is named so that a
-- plugin adding a client type can replace it in a migration of its own:
--   ALTER TABLE realtime_credentials
--     DROP CONSTRAINT realtime_credentials_client_type_check,
--     ADD CONSTRAINT realtime_credentials_client_type_check
--       CHECK (client_type IN ('pancake', 'tpos', 'zalo'));
CREATE TABLE IF NOT EXISTS realtime_credentials (
    id SERIAL PRIMARY KEY,
    client_type VARCHAR(20) NOT NULL UNIQUE
        CONSTRAINT realtime_credentials_client_type_check
        CHECK (client_type IN ('pancake', 'tpos')),
    token TEXT NOT NULL,
    user_id VARCHAR(50),
    page_ids TEXT,
    cookie TEXT,
    room VARCHAR(100),
    is_active BOOLEAN DEFAULT TRUE,
    updated_at TIMESTAMP DEFAULT NOW()
);

CREATE UNIQUE INDEX IF NOT EXISTS idx_realtime_credentials_type
ON realtime_credentials(client_type);
