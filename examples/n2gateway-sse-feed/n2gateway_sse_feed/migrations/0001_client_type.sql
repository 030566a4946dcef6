-- The feed's row in realtime_credentials needs its client type allowed; the core's
-- function keeps the types other plugins added.
SELECT n2_add_client_type('feed');
