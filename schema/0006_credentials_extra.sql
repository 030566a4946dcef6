-- What a provider keeps beside the seed's columns (TPOS: username, password,
-- refresh token, client id, token expiry), as one JSON object sealed like the
-- token. An added column, so the seed's columns and the original backends that
-- write them keep working; their rows simply have none.
ALTER TABLE realtime_credentials ADD COLUMN IF NOT EXISTS extra TEXT;
