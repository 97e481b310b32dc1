-- Every append announces itself on the channel `keyguard_events` when its transaction commits
-- (PostgreSQL delivers notifications only then, and folds repeats within one transaction), with
-- the schema of the event table as the payload. Every node's outbox relay listens to it, so an
-- event committed through one node reaches the others within milliseconds; their polling stays
-- as the safety net for a notification missed while a listening connection was down.
CREATE OR REPLACE FUNCTION events_notify_committed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('keyguard_events', TG_TABLE_SCHEMA::text);
    RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS events_notify_committed ON events;
CREATE TRIGGER events_notify_committed
AFTER INSERT ON events
FOR EACH STATEMENT EXECUTE FUNCTION events_notify_committed();
