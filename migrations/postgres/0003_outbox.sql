-- The events table as an outbox: a stable id per event, appends in commit order, and the relay's
-- checkpoint.
--
-- event_id  a random UUID per event, the `Nats-Msg-Id` under which JetStream de-duplicates a
--           re-published event. Random rather than derived from the position, so that two
--           databases publishing into one NATS never share an id.
ALTER TABLE events ADD COLUMN IF NOT EXISTS event_id uuid NOT NULL DEFAULT gen_random_uuid();
CREATE UNIQUE INDEX IF NOT EXISTS events_event_id ON events (event_id);

-- global_seq is taken at insert, and a transaction that appends several events takes several
-- values while it runs: without more, a reader could see positions 3 and 5 of one transaction
-- committed while 4, of a later transaction that started before 5 was taken, is still in flight
-- (the xmin rule alone cannot catch this: 3 and 5's transaction is older than 4's). Appends
-- therefore take a transaction-scoped lock, keyed by this table, before their first row is
-- numbered and hold it until they end, so positions are handed out in commit order. The lock
-- covers only the append transaction (a few milliseconds); readers never take it.
CREATE OR REPLACE FUNCTION events_append_in_commit_order() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(TG_RELID::bigint);
    RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS events_append_in_commit_order ON events;
CREATE TRIGGER events_append_in_commit_order
BEFORE INSERT ON events
FOR EACH STATEMENT EXECUTE FUNCTION events_append_in_commit_order();

-- How far each relay has published: advanced only after the broker acknowledged every event up
-- to `position`, so a crash between commit and publish delays an event but never loses it.
CREATE TABLE IF NOT EXISTS outbox_checkpoints (
    relay      text        PRIMARY KEY,
    position   bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
