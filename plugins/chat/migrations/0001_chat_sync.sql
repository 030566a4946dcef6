-- The chat sync's own state. The users/chats tables and their triggers are not here:
-- their names are settings, so the plugin creates them (when absent) at start-up.

-- Per messages table: every chat id <= low has been relayed or will never appear.
CREATE TABLE n2_chat_cursor (
    messages_table TEXT PRIMARY KEY,
    low BIGINT NOT NULL
);

-- Ids above low already relayed, with the snapshot they were seen in: a gap below
-- one of them is given up only once every transaction that could still commit it
-- has ended (see plugins/chat/store.py).
CREATE TABLE n2_chat_relayed (
    messages_table TEXT NOT NULL,
    chat_id BIGINT NOT NULL,
    seen_xmax XID8 NOT NULL,
    relayed_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    PRIMARY KEY (messages_table, chat_id)
);

-- The payloads carry no message text: NOTIFY payloads are limited to 8000 bytes and
-- an oversized one would fail the writer's INSERT. The gateway reads the row itself.
CREATE FUNCTION n2_chat_notify_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('chat_messages', json_build_object(
        'chat_id', NEW.chat_id, 'user_id', NEW.user_id, 'sender', NEW.sender,
        'created_at', NEW.created_at)::text);
    RETURN NULL;
END
$$;

CREATE FUNCTION n2_chat_notify_read() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('chat_messages_read', json_build_object(
        'chat_id', NEW.chat_id, 'user_id', NEW.user_id,
        'read_by_student', NEW.read_by_student, 'read_by_teacher', NEW.read_by_teacher)::text);
    RETURN NULL;
END
$$;
