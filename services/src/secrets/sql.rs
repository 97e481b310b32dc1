//! Runs one piece of sqlx code on whichever backend the store uses.
//!
//! The secrets and session tables are plain SQL that both PostgreSQL and SQLite understand (`$1`
//! placeholders work on both); only the binding of UUIDs differs (a native `uuid` there, text
//! here), so the code is written once and expanded per backend.

/// `on_backend!(db, pool, uuid => body)`: expands `body` once per backend with `pool` bound to the
/// backend's pool and `uuid(u)` converting a `Uuid` into what that backend's column takes. Read
/// UUIDs back with `CAST(col AS text)`, which both backends accept, and [`parse_uuid`].
macro_rules! on_backend {
    ($db:expr, $pool:ident, $uuid:ident => $body:expr) => {
        match $db {
            $crate::store::Database::Postgres($pool) => {
                #[allow(dead_code)]
                fn $uuid(u: ::uuid::Uuid) -> ::uuid::Uuid {
                    u
                }
                $body
            }
            $crate::store::Database::Sqlite($pool) => {
                #[allow(dead_code)]
                fn $uuid(u: ::uuid::Uuid) -> String {
                    u.hyphenated().to_string()
                }
                $body
            }
        }
    };
}
pub(crate) use on_backend;

/// Parses a UUID read back as text; a malformed one means the row was written by something else.
pub(crate) fn parse_uuid(text: &str) -> Result<uuid::Uuid, sqlx::Error> {
    uuid::Uuid::parse_str(text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

/// Timestamps are stored to the whole second: SQLite keeps them as RFC 3339 text, and a fixed
/// width keeps text comparison equal to time comparison (JWT times are whole seconds anyway).
pub(crate) fn whole_seconds(t: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}
