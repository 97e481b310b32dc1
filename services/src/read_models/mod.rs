//! Queries over the read models the projections maintain: filters, paging and single lookups for
//! the REST API, the dashboard and the proxy's caches. Nothing here writes.

pub mod api_keys;
pub mod audit;
pub mod devices;
pub mod enrollment_codes;
pub mod policies;
pub(crate) mod sql;
pub mod traffic;
pub mod users;

use serde::Serialize;

use sql::AnyRow;

/// A page of results and where it sits in the whole.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// How many rows match the filter, across all pages.
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

/// Which page to return. `limit` is clamped to `1..=MAX_LIMIT` and `offset` to `0..`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: i64,
    pub offset: i64,
}

impl PageRequest {
    pub const DEFAULT_LIMIT: i64 = 50;
    pub const MAX_LIMIT: i64 = 500;

    pub fn new(limit: i64, offset: i64) -> Self {
        Self { limit: limit.clamp(1, Self::MAX_LIMIT), offset: offset.max(0) }
    }

    fn clamped(self) -> Self {
        Self::new(self.limit, self.offset)
    }
}

impl Default for PageRequest {
    fn default() -> Self {
        Self { limit: Self::DEFAULT_LIMIT, offset: 0 }
    }
}

/// A read-model query failed; the cause is for the logs, not for API clients.
#[derive(Debug, thiserror::Error)]
pub enum ReadModelError {
    #[error("read model query failed: {0}")]
    Database(#[from] sqlx::Error),
    #[error("read model row {id} is corrupt: {reason}")]
    Corrupt { id: String, reason: String },
}

/// Runs `SELECT {columns} FROM {table}{where} ORDER BY {order} LIMIT OFFSET` and its count.
async fn page<T: AnyRow>(
    db: &crate::store::Database,
    columns: &str,
    table: &str,
    filter: sql::Where,
    order: &str,
    page: PageRequest,
) -> Result<Page<T>, ReadModelError> {
    let page = page.clamped();
    let where_sql = filter.sql();
    let total =
        sql::fetch_i64(db, &format!("SELECT COUNT(*) FROM {table}{where_sql}"), filter.args.clone()).await?;
    let mut args = filter.args;
    let n = args.len();
    args.push(page.limit.into());
    args.push(page.offset.into());
    let items = sql::fetch_all(
        db,
        &format!(
            "SELECT {columns} FROM {table}{where_sql} ORDER BY {order} LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        ),
        args,
    )
    .await?;
    Ok(Page { items, total, limit: page.limit, offset: page.offset })
}
