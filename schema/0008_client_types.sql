-- A plugin adds its client type to realtime_credentials with
--   SELECT n2_add_client_type('zalo');
-- in a migration of its own. Replacing the check constraint by hand (see 0001) drops
-- whatever another plugin had added; this keeps every type already allowed, and the
-- constraint keeps the seed's shape and name.
CREATE OR REPLACE FUNCTION n2_add_client_type(new_type text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    allowed text[];
BEGIN
    IF new_type !~ '^[a-z0-9_]{1,20}$' THEN
        RAISE EXCEPTION 'a client type is 1 to 20 characters of a-z, 0-9 and _';
    END IF;
    SELECT array_agg(m[1]) INTO allowed
      FROM pg_constraint c,
           regexp_matches(pg_get_constraintdef(c.oid), '''([^'']+)''', 'g') AS m
     WHERE c.conrelid = 'realtime_credentials'::regclass
       AND c.conname = 'realtime_credentials_client_type_check';
    IF new_type = ANY(coalesce(allowed, '{}')) THEN
        RETURN;
    END IF;
    allowed := array_append(coalesce(allowed, '{}'), new_type);
    EXECUTE 'ALTER TABLE realtime_credentials'
         || ' DROP CONSTRAINT IF EXISTS realtime_credentials_client_type_check,'
         || ' ADD CONSTRAINT realtime_credentials_client_type_check CHECK (client_type IN ('
         || (SELECT string_agg(quote_literal(t), ', ') FROM unnest(allowed) AS t) || '))';
END $$;
