//! The event log reader: committed events after a position, in position order, never past an
//! event that may still appear.
//!
//! On SQLite one writer runs at a time and numbers its rows as it inserts them, so position
//! order is commit order. On PostgreSQL appends take a lock that orders them by commit (see
//! `migrations/postgres/0003_outbox.sql`), and the reader also stops at the first row whose
//! transaction is not below the oldest one still in flight (`pg_snapshot_xmin`): a row is only
//! handed out once nothing that started before it can still commit.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{EventLogError, StoredEvent};
use crate::store::Database;

const COLUMNS: &str = "global_seq, event_id, aggregate_type, aggregate_id, sequence, event_type, \
                       event_version, payload, metadata, recorded_at";

const PG_COLUMNS: &str = "global_seq, event_id::text AS event_id, aggregate_type, aggregate_id, sequence, \
                          event_type, event_version, payload::text AS payload, metadata::text AS metadata, \
                          recorded_at, tx_id < pg_snapshot_xmin(pg_current_snapshot()) AS safe";

#[derive(sqlx::FromRow)]
struct Row {
    global_seq: i64,
    event_id: String,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: String,
    metadata: String,
    recorded_at: DateTime<Utc>,
    /// PostgreSQL only: whether every transaction that could precede this row has ended.
    #[sqlx(default)]
    safe: Option<bool>,
}

impl Row {
    fn is_safe(&self) -> bool {
        self.safe.unwrap_or(true)
    }

    fn into_event(self) -> Result<StoredEvent, EventLogError> {
        let position = self.global_seq;
        let malformed = |reason: String| EventLogError::Malformed { position, reason };
        let payload = serde_json::from_str(&self.payload).map_err(|e| malformed(format!("payload: {e}")))?;
        // cqrs-es writes string values; anything else (hand-written rows) is kept as its JSON text.
        let raw: HashMap<String, serde_json::Value> =
            serde_json::from_str(&self.metadata).map_err(|e| malformed(format!("metadata: {e}")))?;
        let metadata = raw
            .into_iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => (k, s),
                other => (k, other.to_string()),
            })
            .collect();
        Ok(StoredEvent {
            position,
            event_id: Uuid::parse_str(&self.event_id).map_err(|e| malformed(format!("event_id: {e}")))?,
            aggregate_type: self.aggregate_type,
            aggregate_id: self.aggregate_id,
            sequence: self.sequence,
            event_type: self.event_type,
            event_version: self.event_version,
            payload,
            metadata,
            recorded_at: self.recorded_at,
        })
    }
}

/// Reads committed events from the store.
#[derive(Clone, Debug)]
pub struct EventLog {
    db: Database,
}

impl EventLog {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Up to `limit` events with a position above `position`, in position order. Returns fewer
    /// (even none) while an earlier transaction is still in flight; call again later.
    pub async fn read_after(&self, position: i64, limit: i64) -> Result<Vec<StoredEvent>, EventLogError> {
        let rows: Vec<Row> = match &self.db {
            Database::Postgres(pool) => {
                let sql = format!(
                    "SELECT {PG_COLUMNS} FROM events WHERE global_seq > $1 ORDER BY global_seq LIMIT $2"
                );
                sqlx::query_as(&sql).bind(position).bind(limit).fetch_all(pool).await?
            }
            Database::Sqlite(pool) => {
                let sql = format!(
                    "SELECT {COLUMNS} FROM events WHERE global_seq > $1 ORDER BY global_seq LIMIT $2"
                );
                sqlx::query_as(&sql).bind(position).bind(limit).fetch_all(pool).await?
            }
        };
        rows.into_iter().take_while(Row::is_safe).map(Row::into_event).collect()
    }

    /// The highest position committed so far (0 for an empty store). Events up to it may not all
    /// be readable yet on PostgreSQL (see [`EventLog::read_after`]); they will be shortly.
    pub async fn head(&self) -> Result<i64, EventLogError> {
        const SQL: &str = "SELECT MAX(global_seq) FROM events";
        let head: (Option<i64>,) = match &self.db {
            Database::Postgres(pool) => sqlx::query_as(SQL).fetch_one(pool).await?,
            Database::Sqlite(pool) => sqlx::query_as(SQL).fetch_one(pool).await?,
        };
        Ok(head.0.unwrap_or(0))
    }

    /// The whole history of one aggregate, in its own order (e.g. `GET /devices/:id/events`).
    pub async fn read_aggregate(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<Vec<StoredEvent>, EventLogError> {
        let rows: Vec<Row> = match &self.db {
            Database::Postgres(pool) => {
                let sql = format!(
                    "SELECT {PG_COLUMNS} FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 \
                     ORDER BY sequence"
                );
                sqlx::query_as(&sql).bind(aggregate_type).bind(aggregate_id).fetch_all(pool).await?
            }
            Database::Sqlite(pool) => {
                let sql = format!(
                    "SELECT {COLUMNS} FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 \
                     ORDER BY sequence"
                );
                sqlx::query_as(&sql).bind(aggregate_type).bind(aggregate_id).fetch_all(pool).await?
            }
        };
        // Committed is enough here: one aggregate's history has no gaps to fill in later.
        rows.into_iter().map(Row::into_event).collect()
    }
}
