//! Backup and restore of the event store: every event exactly as stored (ids, positions,
//! sequences, payload and metadata byte for byte, the time the store accepted it), read in
//! pages so that a store of any size exports in bounded memory, and re-appended into an empty
//! store from which the projections rebuild the very same read models.
//!
//! The events hold credential material in the form the aggregates need to replay: sealed
//! (encrypted) provider secrets and password hashes. A backup therefore carries it too, with the
//! data keys that seal the provider secrets (`data_keys`, themselves wrapped by the master key),
//! so a restored server opens the secrets with the same master key and nothing else. Nothing here
//! ever decrypts a secret.
//!
//! A whole NDJSON export ends with the store's records that are not events, one per line, tagged
//! by `record`: the data keys, the signing keys' registry and the heads of the usage batches the
//! retention policy removed, so that the restored history verifies as the original did.
//!
//! Metadata is copied verbatim, entries the domain does not know included (the hash chain's
//! `prev_hash` and `hash`), so whatever the store recorded survives the round trip.

use std::io::{BufRead, Write};

use chrono::{DateTime, SecondsFormat, Timelike as _, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sqlx::{Postgres, Sqlite};
use uuid::Uuid;

use crate::store::Database;

/// Events read from the store per page by default.
pub const DEFAULT_PAGE_SIZE: i64 = 1000;
/// Events per `INSERT` statement on import (10 bind values each, under both backends' limits).
const INSERT_ROWS: usize = 200;

/// One event as the store holds it: the line format of an NDJSON backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportedEvent {
    /// The store-wide position (`global_seq`), kept on restore.
    pub position: i64,
    pub event_id: Uuid,
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// The event's number within its aggregate, from 1.
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    /// The serialized domain event, as stored (secrets sealed or hashed, never in clear).
    pub payload: Box<RawValue>,
    /// The event's metadata, as stored.
    pub metadata: Box<RawValue>,
    /// When the store accepted the event.
    pub recorded_at: DateTime<Utc>,
}

/// A row of the store that is not an event, as a whole backup carries it after the events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum StoreRecord {
    DataKey(DataKeyRecord),
    SigningKey(crate::integrity::signing::RegisteredKey),
    PrunedChain(crate::integrity::retention::PrunedChain),
}

/// One data key as `data_keys` holds it: wrapped by a master key, or destroyed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataKeyRecord {
    pub id: Uuid,
    pub version: i32,
    pub master_key_id: String,
    /// Standard base64; `None` once destroyed.
    pub wrapped_key: Option<String>,
    pub wrap_nonce: Option<String>,
    pub created_at: DateTime<Utc>,
    pub rewrapped_at: Option<DateTime<Utc>>,
    pub destroyed_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct DataKeyRow {
    id: String,
    version: i32,
    master_key_id: String,
    wrapped_key: Option<Vec<u8>>,
    wrap_nonce: Option<Vec<u8>>,
    created_at: DateTime<Utc>,
    rewrapped_at: Option<DateTime<Utc>>,
    destroyed_at: Option<DateTime<Utc>>,
}

impl DataKeyRow {
    fn into_record(self) -> Result<DataKeyRecord, BackupError> {
        use base64::Engine as _;
        let base64 =
            |bytes: Option<Vec<u8>>| bytes.map(|b| base64::engine::general_purpose::STANDARD.encode(b));
        Ok(DataKeyRecord {
            id: Uuid::parse_str(&self.id)
                .map_err(|e| BackupError::Database(sqlx::Error::Decode(Box::new(e))))?,
            version: self.version,
            master_key_id: self.master_key_id,
            wrapped_key: base64(self.wrapped_key),
            wrap_nonce: base64(self.wrap_nonce),
            created_at: self.created_at,
            rewrapped_at: self.rewrapped_at,
            destroyed_at: self.destroyed_at,
        })
    }
}

/// Which events to export: `recorded_at` in `[since, until)`. A filtered export is for reading;
/// only a whole one restores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportFilter {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("cannot read or write the event store: {0}")]
    Database(#[from] sqlx::Error),
    #[error("cannot write the export: {0}")]
    Write(#[source] std::io::Error),
    #[error("the event at position {position} has a malformed {field}: {reason}")]
    Malformed { position: i64, field: &'static str, reason: String },
    #[error(
        "the event store already holds {events} event(s); a backup is restored into an empty store only \
         (create a new database, or point KEYGUARD_DATABASE_URL / KEYGUARD_DATA_DIR at an empty one)"
    )]
    StoreNotEmpty { events: i64 },
    #[error("line {line} of the backup is not an exported event: {reason}")]
    BadRecord { line: usize, reason: String },
    #[error(
        "the backup is out of order: its event {record} (position {position}) does not follow position {previous}"
    )]
    OutOfOrder { record: usize, position: i64, previous: i64 },
    #[error(
        "the backup is incomplete: {aggregate_type} {aggregate_id} starts at or skips to sequence {sequence}; \
         only a whole export (no --since/--until) can be restored"
    )]
    Incomplete { aggregate_type: String, aggregate_id: String, sequence: i64 },
}

/// A read-only walk over the events in position order, one page per round trip, inside one
/// transaction so that the export is a consistent snapshot of the store.
pub struct EventPages {
    tx: ReadTx,
    filter: ExportFilter,
    page_size: i64,
    after: i64,
    done: bool,
}

enum ReadTx {
    Postgres(sqlx::Transaction<'static, Postgres>),
    Sqlite(sqlx::Transaction<'static, Sqlite>),
}

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
}

impl Row {
    fn into_event(self) -> Result<ExportedEvent, BackupError> {
        let position = self.global_seq;
        let malformed = |field, reason: String| BackupError::Malformed { position, field, reason };
        Ok(ExportedEvent {
            position,
            event_id: Uuid::parse_str(&self.event_id).map_err(|e| malformed("event_id", e.to_string()))?,
            aggregate_type: self.aggregate_type,
            aggregate_id: self.aggregate_id,
            sequence: self.sequence,
            event_type: self.event_type,
            event_version: self.event_version,
            payload: RawValue::from_string(self.payload).map_err(|e| malformed("payload", e.to_string()))?,
            metadata: RawValue::from_string(self.metadata)
                .map_err(|e| malformed("metadata", e.to_string()))?,
            recorded_at: self.recorded_at,
        })
    }
}

impl EventPages {
    /// Starts a walk of at most `page_size` events per page.
    pub async fn open(db: &Database, filter: ExportFilter, page_size: i64) -> Result<Self, BackupError> {
        let tx = match db {
            Database::Postgres(pool) => {
                ReadTx::Postgres(pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").await?)
            }
            // SQLite's deferred transaction reads one snapshot from its first statement on (WAL).
            Database::Sqlite(pool) => ReadTx::Sqlite(pool.begin().await?),
        };
        Ok(Self { tx, filter, page_size: page_size.max(1), after: 0, done: false })
    }

    /// The next page, oldest first; `None` once every event was returned.
    pub async fn next_page(&mut self) -> Result<Option<Vec<ExportedEvent>>, BackupError> {
        if self.done {
            return Ok(None);
        }
        let mut sql = String::new();
        let columns = match self.tx {
            ReadTx::Postgres(_) => {
                "global_seq, event_id::text AS event_id, aggregate_type, aggregate_id, sequence, event_type, \
                 event_version, payload::text AS payload, metadata::text AS metadata, recorded_at"
            }
            ReadTx::Sqlite(_) => {
                "global_seq, event_id, aggregate_type, aggregate_id, sequence, event_type, event_version, \
                 payload, metadata, recorded_at"
            }
        };
        sql.push_str(&format!("SELECT {columns} FROM events WHERE global_seq > $1"));
        let mut next = 2;
        if self.filter.since.is_some() {
            sql.push_str(&format!(" AND recorded_at >= ${next}"));
            next += 1;
        }
        if self.filter.until.is_some() {
            sql.push_str(&format!(" AND recorded_at < ${next}"));
            next += 1;
        }
        sql.push_str(&format!(" ORDER BY global_seq LIMIT ${next}"));
        let rows: Vec<Row> = match &mut self.tx {
            ReadTx::Postgres(tx) => {
                let mut query = sqlx::query_as(&sql).bind(self.after);
                for bound in [self.filter.since, self.filter.until].into_iter().flatten() {
                    query = query.bind(bound);
                }
                query.bind(self.page_size).fetch_all(&mut **tx).await?
            }
            ReadTx::Sqlite(tx) => {
                let mut query = sqlx::query_as(&sql).bind(self.after);
                for bound in [self.filter.since, self.filter.until].into_iter().flatten() {
                    // recorded_at is RFC 3339 text there, which the store writes with milliseconds:
                    // the bounds compare as text of the same shape.
                    query = query.bind(bound.to_rfc3339_opts(SecondsFormat::Millis, true));
                }
                query.bind(self.page_size).fetch_all(&mut **tx).await?
            }
        };
        if (rows.len() as i64) < self.page_size {
            self.done = true;
        }
        if rows.is_empty() {
            return Ok(None);
        }
        self.after = rows.last().map_or(self.after, |r| r.global_seq);
        rows.into_iter().map(Row::into_event).collect::<Result<Vec<_>, _>>().map(Some)
    }
}

impl EventPages {
    /// The store's records that are not events, read in the same snapshot as the events.
    pub async fn store_records(&mut self) -> Result<Vec<StoreRecord>, BackupError> {
        const DATA_KEYS: &str = "SELECT CAST(id AS text) AS id, version, master_key_id, wrapped_key, wrap_nonce, \
                                 created_at, rewrapped_at, destroyed_at FROM data_keys ORDER BY id, version";
        const SIGNING_KEYS: &str = "SELECT key_id, public_key, endorses, signature, created_at \
                                    FROM audit_signing_keys ORDER BY key_id";
        const PRUNED: &str = "SELECT aggregate_type, aggregate_id, last_sequence, first_position, last_position, \
                              head_hash, pruned_by FROM audit_pruned_chains ORDER BY pruned_by, aggregate_id";
        macro_rules! read {
            ($tx:expr) => {{
                let data_keys: Vec<DataKeyRow> = sqlx::query_as(DATA_KEYS).fetch_all(&mut **$tx).await?;
                let signing = sqlx::query_as(SIGNING_KEYS).fetch_all(&mut **$tx).await?;
                let pruned = sqlx::query_as(PRUNED).fetch_all(&mut **$tx).await?;
                (data_keys, signing, pruned)
            }};
        }
        let (data_keys, signing, pruned): (Vec<DataKeyRow>, Vec<_>, Vec<_>) = match &mut self.tx {
            ReadTx::Postgres(tx) => read!(tx),
            ReadTx::Sqlite(tx) => read!(tx),
        };
        let mut records = Vec::new();
        for row in data_keys {
            records.push(StoreRecord::DataKey(row.into_record()?));
        }
        records.extend(signing.into_iter().map(StoreRecord::SigningKey));
        records.extend(pruned.into_iter().map(StoreRecord::PrunedChain));
        Ok(records)
    }
}

/// The file formats of an export. NDJSON is the restore format; CSV and JSON are for reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Ndjson,
    Csv,
    Json,
}

/// The CSV columns, in order; `payload` and `metadata` hold their JSON text.
pub const CSV_COLUMNS: [&str; 10] = [
    "position",
    "event_id",
    "recorded_at",
    "aggregate_type",
    "aggregate_id",
    "sequence",
    "event_type",
    "event_version",
    "payload",
    "metadata",
];

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExportSummary {
    pub events: u64,
    /// How many pages were read from the store.
    pub pages: u64,
    /// The position of the last event written (0 if none).
    pub last_position: i64,
    /// The records that are not events (data keys, signing keys, pruned heads): a whole NDJSON
    /// export only.
    pub store_records: u64,
}

/// Writes the events matching `filter` to `out` in `format`, one page at a time: memory holds
/// one page, whatever the size of the store.
pub async fn export(
    db: &Database,
    filter: ExportFilter,
    format: ExportFormat,
    page_size: i64,
    out: &mut impl Write,
) -> Result<ExportSummary, BackupError> {
    let write = BackupError::Write;
    let mut pages = EventPages::open(db, filter, page_size).await?;
    let mut summary = ExportSummary::default();
    match format {
        ExportFormat::Csv => out.write_all(&csv_record(&CSV_COLUMNS.map(String::from))?),
        ExportFormat::Json => out.write_all(b"["),
        ExportFormat::Ndjson => Ok(()),
    }
    .map_err(write)?;
    while let Some(page) = pages.next_page().await? {
        summary.pages += 1;
        let mut buffer = Vec::new();
        for event in &page {
            match format {
                ExportFormat::Ndjson => {
                    serde_json::to_writer(&mut buffer, event).map_err(|e| write(e.into()))?;
                    buffer.push(b'\n');
                }
                ExportFormat::Json => {
                    buffer.extend_from_slice(if summary.events == 0 { b"\n" } else { b",\n" });
                    serde_json::to_writer(&mut buffer, event).map_err(|e| write(e.into()))?;
                }
                ExportFormat::Csv => buffer.extend(csv_record(&csv_fields(event))?),
            }
            summary.events += 1;
            summary.last_position = event.position;
        }
        out.write_all(&buffer).map_err(write)?;
    }
    if format == ExportFormat::Ndjson && filter == ExportFilter::default() {
        let mut buffer = Vec::new();
        for record in pages.store_records().await? {
            serde_json::to_writer(&mut buffer, &record).map_err(|e| write(e.into()))?;
            buffer.push(b'\n');
            summary.store_records += 1;
        }
        out.write_all(&buffer).map_err(write)?;
    }
    if format == ExportFormat::Json {
        out.write_all(b"\n]\n").map_err(write)?;
    }
    out.flush().map_err(write)?;
    Ok(summary)
}

fn csv_fields(event: &ExportedEvent) -> [String; 10] {
    [
        event.position.to_string(),
        event.event_id.to_string(),
        event.recorded_at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        event.aggregate_type.clone(),
        event.aggregate_id.clone(),
        event.sequence.to_string(),
        event.event_type.clone(),
        event.event_version.clone(),
        event.payload.get().to_owned(),
        event.metadata.get().to_owned(),
    ]
}

/// One CSV record, quoted as needed.
fn csv_record(fields: &[String]) -> Result<Vec<u8>, BackupError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(fields).map_err(|e| BackupError::Write(e.into()))?;
    writer.into_inner().map_err(|e| BackupError::Write(e.into_error()))
}

/// What an import restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImportSummary {
    pub events: u64,
    /// The position of the last event restored (0 for an empty backup).
    pub last_position: i64,
    /// The position of the last restored event that carries no hash-chain link (0 if every one
    /// does): events written before the chain existed, which the restored store then treats as
    /// its own history from before the chain.
    pub unchained_up_to: i64,
    /// Data keys, signing keys and pruned heads restored.
    pub store_records: u64,
}

/// Whether an event's metadata carries its hash-chain link.
fn is_chained(metadata: &RawValue) -> bool {
    #[derive(serde::Deserialize)]
    struct Link {
        hash: Option<serde::de::IgnoredAny>,
    }
    serde_json::from_str::<Link>(metadata.get()).is_ok_and(|link| link.hash.is_some())
}

enum WriteTx {
    Postgres(sqlx::Transaction<'static, Postgres>),
    Sqlite(sqlx::Transaction<'static, Sqlite>),
}

/// Re-appends every event of an NDJSON backup into `db`, with its original position, id,
/// sequence, payload, metadata and time, in one transaction: either the whole backup is in the
/// store afterwards, or nothing is. Refuses a store that already holds events. The read models
/// are not touched; rebuild them afterwards (`Projections::rebuild`).
///
/// Reads the backup as a stream of JSON values, so memory holds one batch of rows whatever its
/// size.
pub async fn import(db: &Database, backup: impl BufRead) -> Result<ImportSummary, BackupError> {
    let mut tx = match db {
        Database::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            // No append may slip in between the emptiness check and the commit.
            sqlx::query("LOCK TABLE events IN EXCLUSIVE MODE").execute(&mut *tx).await?;
            WriteTx::Postgres(tx)
        }
        // IMMEDIATE takes SQLite's write lock now rather than at the first insert.
        Database::Sqlite(pool) => WriteTx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
    };
    const COUNT: &str = "SELECT COUNT(*) FROM events";
    let (events,): (i64,) = match &mut tx {
        WriteTx::Postgres(tx) => sqlx::query_as(COUNT).fetch_one(&mut **tx).await?,
        WriteTx::Sqlite(tx) => sqlx::query_as(COUNT).fetch_one(&mut **tx).await?,
    };
    if events > 0 {
        return Err(BackupError::StoreNotEmpty { events });
    }

    let mut summary = ImportSummary::default();
    let mut batch = Vec::with_capacity(INSERT_ROWS);
    #[derive(Deserialize)]
    struct Tag {
        record: Option<serde::de::IgnoredAny>,
    }
    let lines = serde_json::Deserializer::from_reader(backup).into_iter::<Box<RawValue>>();
    for (index, line) in lines.enumerate() {
        let bad =
            |line: usize| move |e: serde_json::Error| BackupError::BadRecord { line, reason: e.to_string() };
        let raw = line.map_err(|e| BackupError::BadRecord { line: e.line(), reason: e.to_string() })?;
        if serde_json::from_str::<Tag>(raw.get()).map_err(bad(index + 1))?.record.is_some() {
            let record: StoreRecord = serde_json::from_str(raw.get()).map_err(bad(index + 1))?;
            insert_record(&mut tx, record).await?;
            summary.store_records += 1;
            continue;
        }
        let event: ExportedEvent = serde_json::from_str(raw.get()).map_err(bad(index + 1))?;
        if event.position <= summary.last_position {
            return Err(BackupError::OutOfOrder {
                record: index + 1,
                position: event.position,
                previous: summary.last_position,
            });
        }
        if event.sequence < 1 {
            return Err(BackupError::Incomplete {
                aggregate_type: event.aggregate_type,
                aggregate_id: event.aggregate_id,
                sequence: event.sequence,
            });
        }
        summary.last_position = event.position;
        if !is_chained(&event.metadata) {
            summary.unchained_up_to = event.position;
        }
        summary.events += 1;
        batch.push(event);
        if batch.len() == INSERT_ROWS {
            insert(&mut tx, &batch).await?;
            batch.clear();
        }
    }
    insert(&mut tx, &batch).await?;
    check_complete(&mut tx).await?;
    // A backup of a store older than the chain holds unhashed events; restored, they are that
    // store's history from before the chain, not events slipped in around it.
    const LEGACY: &str = "UPDATE event_chain SET legacy_position = $1 WHERE legacy_position < $1";
    match &mut tx {
        WriteTx::Postgres(tx) => {
            sqlx::query(LEGACY).bind(summary.unchained_up_to).execute(&mut **tx).await?;
        }
        WriteTx::Sqlite(tx) => {
            sqlx::query(LEGACY).bind(summary.unchained_up_to).execute(&mut **tx).await?;
        }
    }
    match tx {
        WriteTx::Postgres(mut tx) => {
            // New appends continue after the restored positions.
            if summary.last_position > 0 {
                sqlx::query("SELECT setval(pg_get_serial_sequence('events', 'global_seq'), $1)")
                    .bind(summary.last_position)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        }
        WriteTx::Sqlite(tx) => tx.commit().await?,
    }
    Ok(summary)
}

async fn insert(tx: &mut WriteTx, events: &[ExportedEvent]) -> Result<(), BackupError> {
    if events.is_empty() {
        return Ok(());
    }
    const COLUMNS: &str = "(global_seq, event_id, aggregate_type, aggregate_id, sequence, event_type, \
                           event_version, payload, metadata, recorded_at)";
    let rows = |cast: [&str; 3]| {
        (0..events.len())
            .map(|row| {
                let n = row * 10;
                format!(
                    "(${}, ${}{}, ${}, ${}, ${}, ${}, ${}, ${}{}, ${}{}, ${})",
                    n + 1,
                    n + 2,
                    cast[0],
                    n + 3,
                    n + 4,
                    n + 5,
                    n + 6,
                    n + 7,
                    n + 8,
                    cast[1],
                    n + 9,
                    cast[2],
                    n + 10
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    match tx {
        WriteTx::Postgres(tx) => {
            // global_seq is an identity column: restoring its values needs the override.
            let sql = format!(
                "INSERT INTO events {COLUMNS} OVERRIDING SYSTEM VALUE VALUES {}",
                rows(["::uuid", "::json", "::json"])
            );
            let mut query = sqlx::query(&sql);
            for e in events {
                query = query
                    .bind(e.position)
                    .bind(e.event_id.to_string())
                    .bind(&e.aggregate_type)
                    .bind(&e.aggregate_id)
                    .bind(e.sequence)
                    .bind(&e.event_type)
                    .bind(&e.event_version)
                    .bind(e.payload.get())
                    .bind(e.metadata.get())
                    .bind(e.recorded_at);
            }
            query.execute(&mut **tx).await?;
        }
        WriteTx::Sqlite(tx) => {
            let sql = format!("INSERT INTO events {COLUMNS} VALUES {}", rows(["", "", ""]));
            let mut query = sqlx::query(&sql);
            for e in events {
                query = query
                    .bind(e.position)
                    .bind(e.event_id.to_string())
                    .bind(&e.aggregate_type)
                    .bind(&e.aggregate_id)
                    .bind(e.sequence)
                    .bind(&e.event_type)
                    .bind(&e.event_version)
                    .bind(e.payload.get())
                    .bind(e.metadata.get())
                    .bind(sqlite_time(e.recorded_at));
            }
            query.execute(&mut **tx).await?;
        }
    }
    Ok(())
}

async fn insert_record(tx: &mut WriteTx, record: StoreRecord) -> Result<(), BackupError> {
    use base64::Engine as _;
    let unbase64 = |text: Option<String>| -> Result<Option<Vec<u8>>, BackupError> {
        text.map(|t| base64::engine::general_purpose::STANDARD.decode(t))
            .transpose()
            .map_err(|e| BackupError::BadRecord { line: 0, reason: format!("a data key is not base64: {e}") })
    };
    macro_rules! run {
        ($tx:expr, $id:expr) => {{
            match record {
                StoreRecord::DataKey(key) => {
                    sqlx::query(
                        "INSERT INTO data_keys (id, version, master_key_id, wrapped_key, wrap_nonce, created_at, \
                         rewrapped_at, destroyed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    )
                    .bind($id(key.id))
                    .bind(key.version)
                    .bind(&key.master_key_id)
                    .bind(unbase64(key.wrapped_key)?)
                    .bind(unbase64(key.wrap_nonce)?)
                    .bind(key.created_at)
                    .bind(key.rewrapped_at)
                    .bind(key.destroyed_at)
                    .execute(&mut **$tx)
                    .await?;
                }
                StoreRecord::SigningKey(key) => {
                    sqlx::query(
                        "INSERT INTO audit_signing_keys (key_id, public_key, endorses, signature, created_at) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key_id) DO NOTHING",
                    )
                    .bind(&key.key_id)
                    .bind(&key.public_key)
                    .bind(&key.endorses)
                    .bind(&key.signature)
                    .bind(&key.created_at)
                    .execute(&mut **$tx)
                    .await?;
                }
                StoreRecord::PrunedChain(p) => {
                    sqlx::query(
                        "INSERT INTO audit_pruned_chains (aggregate_type, aggregate_id, last_sequence, \
                         first_position, last_position, head_hash, pruned_by) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(&p.aggregate_type)
                    .bind(&p.aggregate_id)
                    .bind(p.last_sequence)
                    .bind(p.first_position)
                    .bind(p.last_position)
                    .bind(&p.head_hash)
                    .bind(&p.pruned_by)
                    .execute(&mut **$tx)
                    .await?;
                }
            }
        }};
    }
    match tx {
        WriteTx::Postgres(tx) => run!(tx, |id: Uuid| id),
        WriteTx::Sqlite(tx) => run!(tx, |id: Uuid| id.hyphenated().to_string()),
    }
    Ok(())
}

/// Every aggregate's history must run 1, 2, 3… without a gap, as the aggregates replay it: a
/// backup cut by `--since`/`--until` is refused rather than restored half.
async fn check_complete(tx: &mut WriteTx) -> Result<(), BackupError> {
    const GAP: &str = "SELECT e.aggregate_type, e.aggregate_id, e.sequence FROM events e \
                       WHERE e.sequence > 1 AND NOT EXISTS (SELECT 1 FROM events p \
                       WHERE p.aggregate_type = e.aggregate_type AND p.aggregate_id = e.aggregate_id \
                       AND p.sequence = e.sequence - 1) LIMIT 1";
    let gap: Option<(String, String, i64)> = match tx {
        WriteTx::Postgres(tx) => sqlx::query_as(GAP).fetch_optional(&mut **tx).await?,
        WriteTx::Sqlite(tx) => sqlx::query_as(GAP).fetch_optional(&mut **tx).await?,
    };
    match gap {
        Some((aggregate_type, aggregate_id, sequence)) => {
            Err(BackupError::Incomplete { aggregate_type, aggregate_id, sequence })
        }
        None => Ok(()),
    }
}

/// The text SQLite's events table holds for an instant: the store's own format (milliseconds)
/// when that loses nothing, more digits otherwise.
fn sqlite_time(at: DateTime<Utc>) -> String {
    let format =
        if at.nanosecond().is_multiple_of(1_000_000) { SecondsFormat::Millis } else { SecondsFormat::AutoSi };
    at.to_rfc3339_opts(format, true)
}
