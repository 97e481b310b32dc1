//! The event store and read-model database: PostgreSQL in production, a SQLite file by default.
//!
//! Everything above this module works through [`Database`] and [`EventRepository`] and never asks
//! which backend it runs on; the choice is configuration only (`KEYGUARD_DATABASE_URL`).

mod event_repository;

use std::str::FromStr;
use std::time::Duration;

use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, CqrsFramework, Query};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

pub use event_repository::EventRepository;

use std::path::PathBuf;

static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// How long to wait for a connection before telling the caller the database is unreachable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a released PostgreSQL connection may take to show it is in step with its server.
const RELEASE_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Decides whether a released connection may go back to the pool. A future dropped in the middle
/// of a PostgreSQL exchange (a cancelled request, an aborted task) can leave the connection
/// waiting for an answer its server does not owe; the pool's own check would then wait forever
/// and hold the connection. A bounded round trip finds such a connection, which is closed instead.
async fn in_step(conn: &mut sqlx::PgConnection) -> Result<bool, sqlx::Error> {
    use sqlx::Connection as _;
    match tokio::time::timeout(RELEASE_CHECK_TIMEOUT, conn.ping()).await {
        Ok(Ok(())) => Ok(true),
        Ok(Err(e)) => Err(e),
        Err(_) => {
            tracing::warn!("a released database connection is out of step with its server; closing it");
            Ok(false)
        }
    }
}

/// Where events and read models live.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseConfig {
    /// `postgres://` or `postgresql://` URL (production, clusters).
    Postgres { url: String },
    /// A SQLite file (the embedded default; no service needed).
    Sqlite { path: PathBuf },
}

impl std::fmt::Debug for DatabaseConfig {
    // A Postgres URL may hold a password: show only what identifies the target.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Postgres { url } => write!(f, "Postgres({})", redact_url(url)),
            Self::Sqlite { path } => write!(f, "Sqlite({})", path.display()),
        }
    }
}

impl DatabaseConfig {
    /// What the logs may say about the database without leaking credentials.
    pub fn describe(&self) -> String {
        format!("{self:?}")
    }
}

/// Hides the password of a database URL, for logs and error messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***@{}", &url[..scheme_end], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// A failure to reach or prepare the database, phrased for an operator.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the database {target}: {source}")]
    Connect { target: String, source: sqlx::Error },
    #[error("cannot create the data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error("cannot apply the database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("the database does not answer: {0}")]
    Unavailable(#[from] sqlx::Error),
}

/// A connection pool to whichever database the configuration chose.
#[derive(Clone, Debug)]
pub enum Database {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// The name of each SQLite connection's worker thread (with its number), by which the server
/// finds them to schedule them as bookkeeping.
pub const SQLITE_THREAD_NAME: &str = "keyguard-sqlite";

/// One event of a batch appended with [`Database::append_batch`].
#[derive(Debug, Clone)]
pub struct BatchEvent {
    pub event_type: String,
    pub event_version: String,
    /// The payload, already serialized to JSON text.
    pub payload_json: String,
}

/// The cqrs-es framework for one aggregate, on our event store.
pub type Cqrs<A> = CqrsFramework<A, PersistedEventStore<EventRepository, A>>;

impl Database {
    /// Opens a pool. Connections are made lazily, but one is tried here so that a wrong URL or a
    /// stopped server is reported at start-up rather than on the first request.
    pub async fn connect(config: &DatabaseConfig, max_connections: u32) -> Result<Self, StoreError> {
        let target = config.describe();
        let connect_error = |source| StoreError::Connect { target: target.clone(), source };
        match config {
            DatabaseConfig::Postgres { url } => {
                let options = PgConnectOptions::from_str(url).map_err(connect_error)?;
                Self::connect_postgres(options, max_connections).await.map_err(connect_error)
            }
            DatabaseConfig::Sqlite { path } => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .map_err(|source| StoreError::DataDir { path: dir.display().to_string(), source })?;
                }
                let options = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    // WAL lets readers run beside the single writer; FULL makes each committed
                    // event durable before the command returns, as an audit trail requires.
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(10))
                    .thread_name(|n| format!("{SQLITE_THREAD_NAME}-{n}"));
                let pool = SqlitePoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_with(options)
                    .await
                    .map_err(connect_error)?;
                Ok(Self::Sqlite(pool))
            }
        }
    }

    /// Opens a PostgreSQL pool with explicit options (tests use this to pin a schema).
    pub async fn connect_postgres(
        options: PgConnectOptions,
        max_connections: u32,
    ) -> Result<Self, sqlx::Error> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_release(|conn, _| Box::pin(in_step(conn)))
            .connect_with(options)
            .await?;
        Ok(Self::Postgres(pool))
    }

    /// Applies the migrations of this backend that have not run yet. Safe to call on every start.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Self::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await?,
            Self::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await?,
        }
        Ok(())
    }

    /// A pool of one connection to the same PostgreSQL database, for a task that holds its
    /// connection for good (a `LISTEN`er): aborting such a task never costs the main pool a
    /// connection.
    pub async fn dedicated_postgres(pool: &PgPool) -> Result<PgPool, sqlx::Error> {
        PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_release(|conn, _| Box::pin(in_step(conn)))
            .connect_with(pool.connect_options().as_ref().clone())
            .await
    }

    /// Checks that the database answers a query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Self::Postgres(pool) => {
                sqlx::query("SELECT 1").execute(pool).await?;
            }
            Self::Sqlite(pool) => {
                sqlx::query("SELECT 1").execute(pool).await?;
            }
        }
        Ok(())
    }

    /// Which backend this is, for logs and health reports.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgres",
            Self::Sqlite(_) => "sqlite",
        }
    }

    pub fn event_repository(&self) -> EventRepository {
        EventRepository::new(self.clone())
    }

    /// A cqrs-es framework for aggregate `A` on this store, dispatching to `queries` after each commit.
    pub fn cqrs<A: Aggregate>(&self, queries: Vec<Box<dyn Query<A>>>, services: A::Services) -> Cqrs<A> {
        let store = PersistedEventStore::new_event_store(self.event_repository());
        CqrsFramework::new(store, queries, services)
    }

    /// Appends events that no aggregate decides (audit records, usage batches) as one new
    /// aggregate instance with sequences 1..=n, atomically. Same columns as cqrs-es writes; the
    /// store fills `global_seq`, `event_id`, `tx_id` and `recorded_at`, so these events flow to
    /// projections, the outbox and the audit trail like any other. Each event is linked into the
    /// new aggregate's hash chain (`crate::integrity::chain`), so a batch is chained like any
    /// aggregate, from genesis.
    pub async fn append_batch(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        events: &[BatchEvent],
        metadata_json: &str,
    ) -> Result<(), sqlx::Error> {
        let mut tx = crate::read_models::sql::Tx::begin(self).await?;
        tx.append_batch(aggregate_type, aggregate_id, events, metadata_json).await?;
        tx.commit().await
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        match self {
            Self::Postgres(pool) => pool.close().await,
            Self::Sqlite(pool) => pool.close().await,
        }
    }
}

impl crate::read_models::sql::Tx {
    /// Appends `events` as a new aggregate (sequences from 1, linked from genesis) within this
    /// transaction. Same columns as cqrs-es writes; the store fills `global_seq`, `tx_id` and
    /// `recorded_at`.
    ///
    /// The events' ids are time-ordered (UUID version 7: a millisecond timestamp and 74 random
    /// bits, still unique across stores). Random ones land all over the unique indexes on
    /// `event_id`, here and in the audit log, so that each event of a batch dirtied index pages of
    /// its own.
    pub(crate) async fn append_batch(
        &mut self,
        aggregate_type: &str,
        aggregate_id: &str,
        events: &[BatchEvent],
        metadata_json: &str,
    ) -> Result<(), sqlx::Error> {
        use crate::read_models::sql::args;
        let linked = link_batch(aggregate_type, aggregate_id, events, metadata_json)
            .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        let rows = (1i64..).zip(events).zip(linked).map(|((sequence, event), metadata)| {
            args![
                aggregate_type,
                aggregate_id,
                sequence,
                event.event_type.as_str(),
                event.event_version.as_str(),
                event.payload_json.as_str(),
                metadata,
                uuid::Uuid::now_v7(),
            ]
        });
        // PostgreSQL's columns are `json` and `uuid`: the text parameters need the casts there.
        let row = match self {
            Self::Postgres(_) => "($, $, $, $, $, $::json, $::json, $::uuid)",
            Self::Sqlite(_) => "($, $, $, $, $, $, $, $)",
        };
        let head = "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
                    payload, metadata, event_id) VALUES";
        // One statement for many events; the store numbers them in the order given.
        self.insert_rows(head, row, "", rows.collect()).await?;
        Ok(())
    }
}

/// The metadata of each event of a new batch aggregate, linked from genesis.
fn link_batch(
    aggregate_type: &str,
    aggregate_id: &str,
    events: &[BatchEvent],
    metadata_json: &str,
) -> Result<Vec<String>, serde_json::Error> {
    let metadata: serde_json::Map<String, serde_json::Value> = serde_json::from_str(metadata_json)?;
    let mut prev = crate::integrity::ChainHash::GENESIS;
    let mut linked = Vec::with_capacity(events.len());
    for (sequence, event) in (1u64..).zip(events) {
        let payload: serde_json::Value = serde_json::from_str(&event.payload_json)?;
        let mut metadata = metadata.clone();
        prev = crate::integrity::chain::link(
            prev,
            aggregate_type,
            aggregate_id,
            sequence,
            &event.event_type,
            &event.event_version,
            &payload,
            &mut metadata,
        );
        linked.push(serde_json::to_string(&metadata)?);
    }
    Ok(linked)
}
