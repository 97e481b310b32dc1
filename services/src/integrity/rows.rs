//! Events as the chain reads them back: the stored text, parsed only when it is hashed.

use serde_json::Value;

use super::canonical::EventContent;
use super::chain::LinkError;
use crate::read_models::sql::{self, args};
use crate::store::Database;

/// The columns as text on either backend (PostgreSQL's JSON columns need the cast).
fn columns(db: &Database) -> &'static str {
    match db {
        Database::Postgres(_) => PG_COLUMNS,
        Database::Sqlite(_) => COLUMNS,
    }
}

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
        let columns = columns(db);
        let sql = format!(
            "SELECT {columns} FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = $3"
        );
        sql::fetch_optional(db, &sql, args![aggregate_type, aggregate_id, sequence]).await
    }

    /// The aggregate's events below `sequence`, in order.
    pub async fn read_before(
        db: &Database,
        aggregate_type: &str,
        aggregate_id: &str,
        sequence: i64,
    ) -> Result<Vec<Self>, sqlx::Error> {
        let columns = columns(db);
        let sql = format!(
            "SELECT {columns} FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence < $3 \
             ORDER BY sequence"
        );
        sql::fetch_all(db, &sql, args![aggregate_type, aggregate_id, sequence]).await
    }

    /// Every event of one aggregate type, in store order (for the few, small ones).
    pub async fn read_all_of_type(db: &Database, aggregate_type: &str) -> Result<Vec<Self>, sqlx::Error> {
        let columns = columns(db);
        let sql = format!("SELECT {columns} FROM events WHERE aggregate_type = $1 ORDER BY global_seq");
        sql::fetch_all(db, &sql, args![aggregate_type]).await
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
        let columns = columns(db);
        let sql = format!(
            "SELECT {columns} FROM events WHERE {keyset} AND {bound} \
             ORDER BY aggregate_type, aggregate_id, sequence LIMIT $5"
        );
        sql::fetch_all(db, &sql, args![after_type, after_id, after_seq, up_to.unwrap_or(0), limit]).await
    }
}
