-- The event store: the tables sqlite-es reads and writes, plus what KeyGuard adds around them.
--
-- sqlite-es inserts (aggregate_type, aggregate_id, sequence, event_type, event_version, payload,
-- metadata) and recognises a concurrent append by the primary-key violation, so the primary key
-- stays (aggregate_type, aggregate_id, sequence). The store-wide order comes from a trigger
-- instead: SQLite runs one writer at a time, so numbering at insert is numbering in commit order
-- and no reader can ever see a gap fill in later.
CREATE TABLE IF NOT EXISTS events (
    aggregate_type text                           NOT NULL,
    aggregate_id   text                           NOT NULL,
    sequence       integer CHECK (sequence >= 0)  NOT NULL,
    event_type     text                           NOT NULL,
    event_version  text                           NOT NULL,
    payload        text                           NOT NULL,
    metadata       text                           NOT NULL,
    global_seq     integer,
    recorded_at    text                           NOT NULL
                   DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
) STRICT;

CREATE UNIQUE INDEX IF NOT EXISTS events_global_seq ON events (global_seq);

CREATE TRIGGER IF NOT EXISTS events_number_globally
AFTER INSERT ON events
FOR EACH ROW WHEN NEW.global_seq IS NULL
BEGIN
    UPDATE events
       SET global_seq = (SELECT COALESCE(MAX(global_seq), 0) + 1 FROM events)
     WHERE rowid = NEW.rowid;
END;

CREATE TABLE IF NOT EXISTS snapshots (
    aggregate_type   text                                  NOT NULL,
    aggregate_id     text                                  NOT NULL,
    last_sequence    integer CHECK (last_sequence >= 0)    NOT NULL,
    current_snapshot integer CHECK (current_snapshot >= 0) NOT NULL,
    payload          text                                  NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
) STRICT;
