-- Read models: what the projections derive from the event store, for the API and the dashboard.
--
-- Nothing here is a source of truth. `keyguard projections rebuild` empties these tables and the
-- checkpoints and replays the whole store; so no constraint here may refuse a valid history
-- (emails and project key hashes are indexed, not unique: uniqueness is the services' rule).
-- Ids are text, as in the events table, so one set of queries serves both backends. On SQLite,
-- timestamps are RFC 3339 text in UTC (as sqlx writes them, so they sort), JSON is text and
-- booleans are 0/1.

-- The last store position each projection has applied, written in the same transaction as the
-- read-model change it belongs to.
CREATE TABLE IF NOT EXISTS projection_checkpoints (
    name       text        PRIMARY KEY,
    position   integer     NOT NULL,
    updated_at text        NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;

CREATE TABLE IF NOT EXISTS devices (
    id                 text        PRIMARY KEY,
    api_key_id         text        NOT NULL,
    key_id             text        NOT NULL,
    public_key         text        NOT NULL,
    label              text        NOT NULL,
    fingerprint        text        NOT NULL,
    user_agent         text,
    metadata           text        NOT NULL,
    enrolled_ip        text,
    enrollment_code_id text,
    status             text        NOT NULL,
    status_reason      text,
    enrolled_at        text        NOT NULL,
    updated_at         text        NOT NULL,
    last_seen_at       text       ,
    request_count      integer     NOT NULL DEFAULT 0,
    token_count        integer     NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX IF NOT EXISTS devices_api_key_key_id ON devices (api_key_id, key_id);
CREATE INDEX IF NOT EXISTS devices_status ON devices (status);

-- The sealed_* columns hold the provider secret's envelope ciphertext (never plaintext); only the
-- secrets service reads them.
CREATE TABLE IF NOT EXISTS api_keys (
    id                  text        PRIMARY KEY,
    name                text        NOT NULL,
    provider            text        NOT NULL,
    environment         text        NOT NULL,
    project_key_hash    text        NOT NULL,
    project_key_prefix  text        NOT NULL,
    previous_key_hash   text,
    previous_key_prefix text,
    grace_until         text       ,
    status              text        NOT NULL,
    revoked_reason      text,
    base_url            text,
    azure_deployment    text,
    azure_api_version   text,
    expires_at          text       ,
    description         text,
    sealed_data_key_id  text        NOT NULL,
    sealed_key_version  integer     NOT NULL,
    sealed_nonce        text        NOT NULL,
    sealed_ciphertext   text        NOT NULL,
    created_by          text        NOT NULL,
    created_at          text        NOT NULL,
    updated_at          text        NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS api_keys_project_key_hash ON api_keys (project_key_hash);
CREATE INDEX IF NOT EXISTS api_keys_previous_key_hash ON api_keys (previous_key_hash);

CREATE TABLE IF NOT EXISTS enrollment_codes (
    id           text        PRIMARY KEY,
    api_key_id   text        NOT NULL,
    code_hash    text        NOT NULL,
    expires_at   text        NOT NULL,
    max_uses     integer     NOT NULL,
    uses         integer     NOT NULL,
    auto_approve integer     NOT NULL,
    status       text        NOT NULL,
    description  text,
    created_by   text        NOT NULL,
    created_at   text        NOT NULL,
    updated_at   text        NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS enrollment_codes_api_key ON enrollment_codes (api_key_id);
CREATE INDEX IF NOT EXISTS enrollment_codes_hash ON enrollment_codes (code_hash);

-- password_hash is read only by the login path (`credentials_by_email`).
CREATE TABLE IF NOT EXISTS users (
    id              text        PRIMARY KEY,
    email           text        NOT NULL,
    name            text        NOT NULL,
    role            text        NOT NULL,
    disabled        integer     NOT NULL,
    disabled_reason text,
    password_hash   text        NOT NULL,
    created_at      text        NOT NULL,
    updated_at      text        NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS users_email ON users (email);

-- One row per policy scope that has settings: `global`, `api_key:<uuid>`, `device:<uuid>`.
CREATE TABLE IF NOT EXISTS policies (
    scope      text        PRIMARY KEY,
    kind       text        NOT NULL,
    target_id  text,
    settings   text        NOT NULL,
    updated_by text        NOT NULL,
    updated_at text        NOT NULL
) STRICT;

-- One row per event. Secrets in the payload (password hashes, sealed provider secrets) are
-- replaced by "<redacted>"; the event store keeps the original.
CREATE TABLE IF NOT EXISTS audit_log (
    position       integer     PRIMARY KEY,
    event_id       text        NOT NULL,
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    sequence       integer     NOT NULL,
    event_type     text        NOT NULL,
    actor_type     text,
    actor_id       text,
    ip             text,
    user_agent     text,
    request_id     text,
    outcome        text        NOT NULL,
    summary        text        NOT NULL,
    device_id      text,
    api_key_id     text,
    payload        text        NOT NULL,
    at             text        NOT NULL
) STRICT;
CREATE UNIQUE INDEX IF NOT EXISTS audit_log_event_id ON audit_log (event_id);
CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log (at);
CREATE INDEX IF NOT EXISTS audit_log_actor ON audit_log (actor_id);
CREATE INDEX IF NOT EXISTS audit_log_device ON audit_log (device_id);
CREATE INDEX IF NOT EXISTS audit_log_api_key ON audit_log (api_key_id);
CREATE INDEX IF NOT EXISTS audit_log_event_type ON audit_log (event_type);
