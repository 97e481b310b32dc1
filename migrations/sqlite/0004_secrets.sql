-- Data keys of the envelope encryption (services::secrets::envelope).
--
-- One data key per provider credential. The key itself is stored only wrapped (AES-256-GCM) by a
-- master key, named by master_key_id, so rotating the master key rewrites these rows and never the
-- events that hold the sealed secrets. Destroying a data key erases the wrapped key: every secret
-- sealed under it becomes unreadable for good, which is what revoking a credential means.
CREATE TABLE IF NOT EXISTS data_keys (
    id            text    NOT NULL,
    version       integer NOT NULL CHECK (version >= 1),
    master_key_id text    NOT NULL,
    wrapped_key   blob,
    wrap_nonce    blob,
    created_at    text    NOT NULL,
    rewrapped_at  text,
    destroyed_at  text,
    PRIMARY KEY (id, version),
    CHECK ((destroyed_at IS NULL) = (wrapped_key IS NOT NULL AND wrap_nonce IS NOT NULL))
) STRICT;

CREATE INDEX IF NOT EXISTS data_keys_live_by_master_key
    ON data_keys (master_key_id) WHERE destroyed_at IS NULL;
