-- The checkpoint signing keys ever used, so that checkpoints (and retention runs) signed under a
-- master key stay verifiable after that key is dropped from the configuration.
--
-- Each row is one key's public half. A key registers itself the first time it signs, endorsing
-- the public keys of the master keys configured before it (and those they endorsed): the list is
-- signed by the new key, so the configured key vouches for every older key it trusts and a row
-- added by hand vouches for nothing.
CREATE TABLE IF NOT EXISTS audit_signing_keys (
    key_id     text PRIMARY KEY,
    public_key text NOT NULL,
    endorses   text NOT NULL,
    signature  text NOT NULL,
    created_at text NOT NULL
) STRICT;

-- Usage batches removed by the retention policy. Their events are gone; what the chain needs of
-- them stays: the head each batch ended on, which the signed retention event covers by a digest
-- of these rows.
CREATE TABLE IF NOT EXISTS audit_pruned_chains (
    aggregate_type text   NOT NULL,
    aggregate_id   text   NOT NULL,
    last_sequence  integer NOT NULL,
    first_position integer NOT NULL,
    last_position  integer NOT NULL,
    head_hash      text   NOT NULL,
    -- The retention event (its aggregate id) that removed the batch.
    pruned_by      text   NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id)
) STRICT;
CREATE INDEX IF NOT EXISTS audit_pruned_chains_by_run ON audit_pruned_chains (pruned_by);
