-- Tamper evidence for the event history (see services/src/integrity/).
--
-- Every event written from now on carries `prev_hash` and `hash` in its metadata. Events already
-- stored have none; `legacy_position` remembers how far they go, so that an unhashed event above
-- it can only be one that did not come through the store.
CREATE TABLE IF NOT EXISTS event_chain (
    legacy_position bigint NOT NULL
);
INSERT INTO event_chain (legacy_position)
SELECT COALESCE(MAX(global_seq), 0) FROM events WHERE NOT EXISTS (SELECT 1 FROM event_chain);

-- Signed checkpoints: the heads of every chain at one moment, signed with a key derived from the
-- master key. A table rather than events of the store: a checkpoint is a statement *about* the
-- history, and its heads list grows with the number of aggregates.
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    number          bigint PRIMARY KEY,
    created_at      text   NOT NULL,
    position        bigint NOT NULL,
    events          bigint NOT NULL,
    chains          bigint NOT NULL,
    legacy_position bigint NOT NULL,
    heads_digest    text   NOT NULL,
    previous        text   NOT NULL,
    key_id          text   NOT NULL,
    signature       text   NOT NULL
);

-- The heads the latest checkpoint signed, in the order its digest covers them; those of earlier
-- checkpoints are dropped when a new one is recorded (their digests stay signed).
CREATE TABLE IF NOT EXISTS audit_checkpoint_heads (
    checkpoint     bigint NOT NULL,
    ordinal        bigint NOT NULL,
    aggregate_type text   NOT NULL,
    aggregate_id   text   NOT NULL,
    sequence       bigint NOT NULL,
    position       bigint NOT NULL,
    hash           text   NOT NULL,
    PRIMARY KEY (checkpoint, ordinal)
);
