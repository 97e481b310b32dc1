//! Running one SQL text on either backend: typed bind values, a transaction over both, and
//! `fetch` helpers, so that projections and queries are written once where the dialects agree.
//!
//! Both backends accept `$1`-style placeholders (SQLite reads `$NNN` as the NNN-th parameter), so
//! the same text runs on both as long as it sticks to the common subset of SQL.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::types::Json;
use sqlx::{Arguments as _, FromRow, Postgres, Sqlite};
use uuid::Uuid;

use crate::store::Database;

/// One bind value. Ids travel as text (the read models store them as text on both backends),
/// timestamps as `DateTime<Utc>` (timestamptz on PostgreSQL, sortable RFC 3339 text on SQLite),
/// JSON as jsonb or text.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Text(Option<String>),
    Int(Option<i64>),
    Bool(bool),
    Time(Option<DateTime<Utc>>),
    Json(Value),
}

impl Arg {
    fn add_pg(self, args: &mut PgArguments) -> Result<(), sqlx::error::BoxDynError> {
        match self {
            Arg::Text(v) => args.add(v),
            Arg::Int(v) => args.add(v),
            Arg::Bool(v) => args.add(v),
            Arg::Time(v) => args.add(v),
            Arg::Json(v) => args.add(Json(v)),
        }
    }

    fn add_sqlite(self, args: &mut SqliteArguments<'_>) -> Result<(), sqlx::error::BoxDynError> {
        match self {
            Arg::Text(v) => args.add(v),
            Arg::Int(v) => args.add(v),
            Arg::Bool(v) => args.add(v),
            Arg::Time(v) => args.add(v),
            Arg::Json(v) => args.add(Json(v)),
        }
    }
}

macro_rules! arg_from {
    ($($t:ty => |$v:ident| $e:expr),* $(,)?) => {
        $(impl From<$t> for Arg {
            fn from($v: $t) -> Self {
                $e
            }
        })*
    };
}

arg_from! {
    String => |v| Arg::Text(Some(v)),
    &str => |v| Arg::Text(Some(v.to_owned())),
    &String => |v| Arg::Text(Some(v.clone())),
    Option<String> => |v| Arg::Text(v),
    Option<&str> => |v| Arg::Text(v.map(str::to_owned)),
    Uuid => |v| Arg::Text(Some(v.to_string())),
    Option<Uuid> => |v| Arg::Text(v.map(|v| v.to_string())),
    i64 => |v| Arg::Int(Some(v)),
    Option<i64> => |v| Arg::Int(v),
    u32 => |v| Arg::Int(Some(i64::from(v))),
    bool => |v| Arg::Bool(v),
    DateTime<Utc> => |v| Arg::Time(Some(v)),
    Option<DateTime<Utc>> => |v| Arg::Time(v),
    Value => |v| Arg::Json(v),
}

/// `args![a, b, c]`: a `Vec<Arg>` from values of any supported type.
macro_rules! args {
    ($($e:expr),* $(,)?) => {
        vec![$($crate::read_models::sql::Arg::from($e)),*]
    };
}
pub(crate) use args;

fn pg_args(args: Vec<Arg>) -> Result<PgArguments, sqlx::Error> {
    let mut out = PgArguments::default();
    for arg in args {
        arg.add_pg(&mut out).map_err(sqlx::Error::Encode)?;
    }
    Ok(out)
}

fn sqlite_args(args: Vec<Arg>) -> Result<SqliteArguments<'static>, sqlx::Error> {
    let mut out = SqliteArguments::default();
    for arg in args {
        arg.add_sqlite(&mut out).map_err(sqlx::Error::Encode)?;
    }
    Ok(out)
}

/// The row counts of multi-row inserts, largest first; any count is a sum of them.
const ROWS_PER_STATEMENT: [usize; 4] = [64, 16, 4, 1];

/// `head (row), (row), … tail` for `rows` rows, each `$` of `row` numbered in order (`$1`, `$2`,
/// … on PostgreSQL, `?` on SQLite).
fn multi_row_sql(head: &str, row: &str, tail: &str, rows: usize, numbered: bool) -> String {
    let mut sql = String::with_capacity(head.len() + tail.len() + rows * (row.len() + 16));
    sql.push_str(head);
    let mut n = 0;
    for i in 0..rows {
        sql.push_str(if i == 0 { " " } else { ", " });
        for part in row.split_inclusive('$') {
            match part.strip_suffix('$') {
                Some(before) if numbered => {
                    n += 1;
                    sql.push_str(before);
                    sql.push('$');
                    sql.push_str(&n.to_string());
                }
                Some(before) => {
                    sql.push_str(before);
                    sql.push('?');
                }
                None => sql.push_str(part),
            }
        }
    }
    if !tail.is_empty() {
        sql.push(' ');
        sql.push_str(tail);
    }
    sql
}

/// A transaction on whichever backend the database is.
pub(crate) enum Tx {
    Postgres(sqlx::Transaction<'static, Postgres>),
    Sqlite(sqlx::Transaction<'static, Sqlite>),
}

impl Tx {
    pub(crate) async fn begin(db: &Database) -> Result<Self, sqlx::Error> {
        Ok(match db {
            Database::Postgres(pool) => Tx::Postgres(pool.begin().await?),
            Database::Sqlite(pool) => Tx::Sqlite(pool.begin().await?),
        })
    }

    /// Runs one statement and returns the number of rows it changed.
    pub(crate) async fn execute(&mut self, sql: &str, args: Vec<Arg>) -> Result<u64, sqlx::Error> {
        Ok(match self {
            Tx::Postgres(tx) => {
                sqlx::query_with(sql, pg_args(args)?).execute(&mut **tx).await?.rows_affected()
            }
            Tx::Sqlite(tx) => {
                sqlx::query_with(sql, sqlite_args(args)?).execute(&mut **tx).await?.rows_affected()
            }
        })
    }

    /// Inserts `rows` with a few multi-row statements: `head` is the statement up to `VALUES`,
    /// `row` one row's values with `$` where each bind value goes (`($, $::json)`), `tail` what
    /// follows the rows (`ON CONFLICT …`, or empty). Rows keep their order. Returns the number of
    /// rows changed.
    ///
    /// Statements hold [`ROWS_PER_STATEMENT`] rows (the rest in smaller steps of the same sizes), so
    /// that only a handful of texts exist per insert and each is prepared once per connection.
    /// SQLite gets anonymous `?` placeholders: it looks numbered ones up by name, one by one.
    pub(crate) async fn insert_rows(
        &mut self,
        head: &str,
        row: &str,
        tail: &str,
        rows: Vec<Vec<Arg>>,
    ) -> Result<u64, sqlx::Error> {
        let mut changed = 0;
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            let remaining = rows.len();
            let size = ROWS_PER_STATEMENT.into_iter().find(|size| *size <= remaining).unwrap_or(1);
            let chunk: Vec<Vec<Arg>> = rows.by_ref().take(size).collect();
            let sql = multi_row_sql(head, row, tail, size, matches!(self, Tx::Postgres(_)));
            let args = chunk.into_iter().flatten().collect();
            changed += match self {
                Tx::Postgres(tx) => {
                    sqlx::query_with(&sql, pg_args(args)?).execute(&mut **tx).await?.rows_affected()
                }
                Tx::Sqlite(tx) => {
                    sqlx::query_with(&sql, sqlite_args(args)?).execute(&mut **tx).await?.rows_affected()
                }
            };
        }
        Ok(changed)
    }

    /// Rolls back now. Dropping a transaction rolls it back too, but on PostgreSQL only once the
    /// pool has taken the connection back (in a task of its own), and its row locks stay taken
    /// until then: a retry at once could wait on them.
    pub(crate) async fn rollback(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Postgres(tx) => tx.rollback().await,
            Tx::Sqlite(tx) => tx.rollback().await,
        }
    }

    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Postgres(tx) => tx.commit().await,
            Tx::Sqlite(tx) => tx.commit().await,
        }
    }
}

/// Rows that decode the same on both backends.
pub(crate) trait AnyRow:
    for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin
{
}
impl<T> AnyRow for T where T: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin {}

pub(crate) async fn fetch_all<T: AnyRow>(
    db: &Database,
    sql: &str,
    args: Vec<Arg>,
) -> Result<Vec<T>, sqlx::Error> {
    match db {
        Database::Postgres(pool) => sqlx::query_as_with(sql, pg_args(args)?).fetch_all(pool).await,
        Database::Sqlite(pool) => sqlx::query_as_with(sql, sqlite_args(args)?).fetch_all(pool).await,
    }
}

pub(crate) async fn fetch_optional<T: AnyRow>(
    db: &Database,
    sql: &str,
    args: Vec<Arg>,
) -> Result<Option<T>, sqlx::Error> {
    match db {
        Database::Postgres(pool) => sqlx::query_as_with(sql, pg_args(args)?).fetch_optional(pool).await,
        Database::Sqlite(pool) => sqlx::query_as_with(sql, sqlite_args(args)?).fetch_optional(pool).await,
    }
}

/// The first column of the first row, as an integer (`COUNT(*)`, `MAX(...)`; NULL reads as 0).
pub(crate) async fn fetch_i64(db: &Database, sql: &str, args: Vec<Arg>) -> Result<i64, sqlx::Error> {
    let value: (Option<i64>,) = match db {
        Database::Postgres(pool) => sqlx::query_as_with(sql, pg_args(args)?).fetch_one(pool).await?,
        Database::Sqlite(pool) => sqlx::query_as_with(sql, sqlite_args(args)?).fetch_one(pool).await?,
    };
    Ok(value.0.unwrap_or(0))
}

/// Runs one statement outside any explicit transaction.
pub(crate) async fn execute(db: &Database, sql: &str, args: Vec<Arg>) -> Result<u64, sqlx::Error> {
    Ok(match db {
        Database::Postgres(pool) => {
            sqlx::query_with(sql, pg_args(args)?).execute(pool).await?.rows_affected()
        }
        Database::Sqlite(pool) => {
            sqlx::query_with(sql, sqlite_args(args)?).execute(pool).await?.rows_affected()
        }
    })
}

/// A `WHERE` clause assembled from optional filters, numbering its placeholders as it goes.
#[derive(Debug, Default)]
pub(crate) struct Where {
    clauses: Vec<String>,
    pub(crate) args: Vec<Arg>,
}

impl Where {
    /// The placeholder for the next bind value.
    pub(crate) fn bind(&mut self, value: impl Into<Arg>) -> String {
        self.args.push(value.into());
        format!("${}", self.args.len())
    }

    /// Adds a condition; `$` in `clause` is replaced by the placeholder of `value`.
    pub(crate) fn and(&mut self, clause: &str, value: impl Into<Arg>) {
        let placeholder = self.bind(value);
        self.clauses.push(clause.replace('$', &placeholder));
    }

    /// Adds a condition whose placeholders the caller took with [`Where::bind`].
    pub(crate) fn raw(&mut self, clause: String) {
        self.clauses.push(clause);
    }

    /// Case-insensitive substring search over several text columns. `%` and `_` in the needle
    /// match themselves.
    pub(crate) fn search(&mut self, columns: &[&str], needle: &str) {
        let escaped = needle.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        let placeholder = self.bind(format!("%{escaped}%"));
        let any = columns
            .iter()
            .map(|c| format!("lower({c}) LIKE {placeholder} ESCAPE '\\'"))
            .collect::<Vec<_>>()
            .join(" OR ");
        self.clauses.push(format!("({any})"));
    }

    pub(crate) fn sql(&self) -> String {
        if self.clauses.is_empty() { String::new() } else { format!(" WHERE {}", self.clauses.join(" AND ")) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_row_statements_number_their_values_in_order() {
        assert_eq!(
            multi_row_sql("INSERT INTO t (a, b) VALUES", "($, $::json)", "ON CONFLICT DO NOTHING", 2, true),
            "INSERT INTO t (a, b) VALUES ($1, $2::json), ($3, $4::json) ON CONFLICT DO NOTHING"
        );
        assert_eq!(
            multi_row_sql("INSERT INTO t (a, b) VALUES", "($, $)", "", 2, false),
            "INSERT INTO t (a, b) VALUES (?, ?), (?, ?)"
        );
    }
}
