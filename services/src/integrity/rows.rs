//! Events as the chain reads them back: the stored text, parsed only when it is hashed.

use serde_json::Value;

use super::canonical::EventContent;
use super::chain::LinkError;
use crate::store::Database;

const COLUMNS: &str =
    "aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, global_seq";
const PG_COLUMNS: &str = "aggregate_type, aggregate_id, sequence, event_type, event_version, \
                          payload::text AS payload, metadata::text AS metadata, global_seq";

/// One stored event, unparsed.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventRow {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: String,
    pub metadata: String,
    /// The store-wide position; `None` only for a row inserted by hand without one (SQLite).
    pub global_seq: Option<i64>,
}

impl EventRow {
    pub fn values(&self) -> Result<(Value, Value), String> {
        let payload = serde_json::from_str(&self.payload).map_err(|e| format!("payload is not JSON: {e}"))?;
        Ok((payload, self.metadata()?))
    }

    pub fn metadata(&self) -> Result<Value, String> {
        serde_json::from_str(&self.metadata).map_err(|e| format!("metadata is not JSON: {e}"))
    }

    pub fn content<'a>(&'a self, payload: &'a Value, metadata: &'a Value) -> EventContent<'a> {
        EventContent {
            aggregate_type: &self.aggregate_type,
            aggregate_id: &self.aggregate_id,
            sequence: u64::try_from(self.sequence).unwrap_or_default(),
            event_type: &self.event_type,
            event_version: &self.event_version,
            payload,
            metadata,
        }
    }

    pub fn malformed(&self, reason: String) -> LinkError {
        LinkError::Malformed {
            aggregate_type: self.aggregate_type.clone(),
            aggregate_id: self.aggregate_id.clone(),
            sequence: self.sequence,
            reason,
        }
    }

    pub async fn read_one(
        db: &Database,
        aggregate_type: &str,
        aggregate_id: &str,
        sequence: i64,
    ) -> Result<Option<Self>, sqlx::Error> {
        const WHERE: &str = "FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = $3";
        match db {
            Database::Postgres(pool) => {
                sqlx::query_as(&format!("SELECT {PG_COLUMNS} {WHERE}"))
                    .bind(aggregate_type)
                    .bind(aggregate_id)
                    .bind(sequence)
                    .fetch_optional(pool)
                    .await
            }
            Database::Sqlite(pool) => {
                sqlx::query_as(&format!("SELECT {COLUMNS} {WHERE}"))
                    .bind(aggregate_type)
                    .bind(aggregate_id)
                    .bind(sequence)
                    .fetch_optional(pool)
                    .await
            }
        }
    }

    /// The aggregate's events below `sequence`, in order.
    pub async fn read_before(
        db: &Database,
        aggregate_type: &str,
        aggregate_id: &str,
        sequence: i64,
    ) -> Result<Vec<Self>, sqlx::Error> {
        const WHERE: &str = "FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence < $3 \
                             ORDER BY sequence";
        match db {
            Database::Postgres(pool) => {
                sqlx::query_as(&format!("SELECT {PG_COLUMNS} {WHERE}"))
                    .bind(aggregate_type)
                    .bind(aggregate_id)
                    .bind(sequence)
                    .fetch_all(pool)
                    .await
            }
            Database::Sqlite(pool) => {
                sqlx::query_as(&format!("SELECT {COLUMNS} {WHERE}"))
                    .bind(aggregate_type)
                    .bind(aggregate_id)
                    .bind(sequence)
                    .fetch_all(pool)
                    .await
            }
        }
    }

    /// Up to `limit` events after `after` (aggregate type, id, sequence) in that order, at or
    /// below position `up_to` when given. The order is the primary key's, so each page is an
    /// index range scan however large the store.
    pub async fn read_page(
        db: &Database,
        after: Option<(&str, &str, i64)>,
        up_to: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Self>, sqlx::Error> {
        let (after_type, after_id, after_seq) = after.unwrap_or(("", "", -1));
        let keyset = if after.is_some() {
            "(aggregate_type, aggregate_id, sequence) > ($1, $2, $3)"
        } else {
            "$1 = $1 AND $2 = $2 AND $3 = $3"
        };
        let bound = if up_to.is_some() { "global_seq <= $4" } else { "$4 = $4" };
        let tail = format!(
            "FROM events WHERE {keyset} AND {bound} ORDER BY aggregate_type, aggregate_id, sequence LIMIT $5"
        );
        let up_to = up_to.unwrap_or(0);
        match db {
            Database::Postgres(pool) => {
                sqlx::query_as(&format!("SELECT {PG_COLUMNS} {tail}"))
                    .bind(after_type)
                    .bind(after_id)
                    .bind(after_seq)
                    .bind(up_to)
                    .bind(limit)
                    .fetch_all(pool)
                    .await
            }
            Database::Sqlite(pool) => {
                sqlx::query_as(&format!("SELECT {COLUMNS} {tail}"))
                    .bind(after_type)
                    .bind(after_id)
                    .bind(after_seq)
                    .bind(up_to)
                    .bind(limit)
                    .fetch_all(pool)
                    .await
            }
        }
    }
}
