-- The event store: the tables postgres-es reads and writes, plus what KeyGuard adds around them.
--
-- postgres-es inserts (aggregate_type, aggregate_id, sequence, event_type, event_version, payload,
-- metadata); the other columns take their defaults:
--   global_seq  a store-wide order for the outbox relay and projections. Identity values are
--               taken when a row is inserted, not when its transaction commits, so a smaller value
--               can become visible after a larger one: readers must not go past the oldest
--               transaction still in flight, which is what tx_id is for.
--   tx_id       the inserting transaction; a reader only trusts rows with
--               tx_id < pg_snapshot_xmin(pg_current_snapshot()), below which every transaction
--               has finished, so no earlier row can still appear.
--   recorded_at when the store accepted the event.
CREATE TABLE IF NOT EXISTS events (
    aggregate_type text                          NOT NULL,
    aggregate_id   text                          NOT NULL,
    sequence       bigint CHECK (sequence >= 0)  NOT NULL,
    event_type     text                          NOT NULL,
    event_version  text                          NOT NULL,
    payload        json                          NOT NULL,
    metadata       json                          NOT NULL,
    global_seq     bigint GENERATED ALWAYS AS IDENTITY,
    tx_id          xid8                          NOT NULL DEFAULT pg_current_xact_id(),
    recorded_at    timestamptz                   NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

CREATE UNIQUE INDEX IF NOT EXISTS events_global_seq ON events (global_seq);

-- Snapshots, for aggregates with long histories.
CREATE TABLE IF NOT EXISTS snapshots (
    aggregate_type   text                                 NOT NULL,
    aggregate_id     text                                 NOT NULL,
    last_sequence    bigint CHECK (last_sequence >= 0)    NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload          json                                 NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
);
