-- The events table as an outbox: a stable id per event and the relay's checkpoint.
--
-- event_id  a random UUID (version 4) per event, the `Nats-Msg-Id` under which JetStream
--           de-duplicates a re-published event; random so that two databases publishing into one
--           NATS never share an id. SQLite cannot add a column with a non-constant default, so a
--           trigger fills it, like global_seq. SQLite runs one writer at a time, so positions are
--           already handed out in commit order and no append lock is needed.
ALTER TABLE events ADD COLUMN event_id text;

UPDATE events
   SET event_id = lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4'
                        || substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (random() & 3), 1)
                        || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))
 WHERE event_id IS NULL;

CREATE UNIQUE INDEX IF NOT EXISTS events_event_id ON events (event_id);

CREATE TRIGGER IF NOT EXISTS events_identify
AFTER INSERT ON events
FOR EACH ROW WHEN NEW.event_id IS NULL
BEGIN
    UPDATE events
       SET event_id = lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4'
                            || substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (random() & 3), 1)
                            || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))
     WHERE rowid = NEW.rowid;
END;

-- How far each relay has published: advanced only after the broker acknowledged every event up
-- to `position`, so a crash between commit and publish delays an event but never loses it.
CREATE TABLE IF NOT EXISTS outbox_checkpoints (
    relay      text    PRIMARY KEY,
    position   integer NOT NULL,
    updated_at text    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;
