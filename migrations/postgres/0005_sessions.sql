-- Dashboard sessions (services::auth::sessions): one row per refresh token ever issued.
--
-- Tokens of one login form a family. Refreshing marks the presented token used and issues the next
-- one in the family; presenting a used token again means it was copied, so the whole family is
-- revoked. Rows are kept until they expire, which is what lets a reuse be recognised.
CREATE TABLE IF NOT EXISTS refresh_tokens (
    jti        uuid        PRIMARY KEY,
    family_id  uuid        NOT NULL,
    user_id    uuid        NOT NULL,
    issued_at  timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    revoked_at timestamptz
);

CREATE INDEX IF NOT EXISTS refresh_tokens_by_family ON refresh_tokens (family_id);
CREATE INDEX IF NOT EXISTS refresh_tokens_by_user ON refresh_tokens (user_id);
CREATE INDEX IF NOT EXISTS refresh_tokens_by_expiry ON refresh_tokens (expires_at);
