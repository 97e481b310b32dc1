//! Signed checkpoints: the heads of every chain (aggregate → last sequence, position and hash)
//! at one position of the store, with the count of events and chains, signed with Ed25519.
//!
//! The signing key is derived from the master key (see `signing`). Each checkpoint names the
//! master key its signature derives from; checkpoints signed before a master-key rotation still
//! verify after the previous key is dropped, through the registry of signing keys. Each
//! checkpoint also signs the digest of the one before it, so the sequence of checkpoints cannot be
//! rewritten either.
//!
//! A checkpoint is only recorded over a history that verifies, against its chains and the previous
//! checkpoint: signing a tampered store would bless the tampering.

use chrono::{SecondsFormat, Utc};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::canonical::ChainHash;
use super::scan::{Head, Problem, Scanner};
use super::signing::CheckpointKeys;
use crate::store::Database;

const STATEMENT_DOMAIN: &[u8] = b"keyguard-checkpoint-v1";
const HEADS_DOMAIN: &[u8] = b"keyguard-checkpoint-heads-v1";

/// A recorded checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    pub number: i64,
    pub created_at: String,
    /// The highest event position it covers.
    pub position: i64,
    pub events: i64,
    pub chains: i64,
    /// How far the events stored before the chain existed go.
    pub legacy_position: i64,
    pub heads_digest: String,
    /// The digest of the previous checkpoint's statement (zeros for the first).
    pub previous: String,
    pub key_id: String,
    pub signature: String,
}

impl Checkpoint {
    /// The exact bytes signed.
    fn statement(&self) -> Vec<u8> {
        let mut out = STATEMENT_DOMAIN.to_vec();
        let mut field = |bytes: &[u8]| {
            out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
            out.extend_from_slice(bytes);
        };
        field(&self.number.to_be_bytes());
        field(self.created_at.as_bytes());
        field(&self.position.to_be_bytes());
        field(&self.events.to_be_bytes());
        field(&self.chains.to_be_bytes());
        field(&self.legacy_position.to_be_bytes());
        field(self.heads_digest.as_bytes());
        field(self.previous.as_bytes());
        field(self.key_id.as_bytes());
        out
    }

    /// What the next checkpoint signs as its `previous`.
    fn digest(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.statement());
        hasher.update(self.signature.as_bytes());
        hex::encode(hasher.finalize())
    }
}

/// The running digest of a checkpoint's heads, in ordinal order.
struct HeadsDigest(Sha256);

impl HeadsDigest {
    fn new() -> Self {
        Self(Sha256::new_with_prefix(HEADS_DOMAIN))
    }

    fn add(&mut self, aggregate_type: &str, aggregate_id: &str, sequence: i64, position: i64, hash: &str) {
        for bytes in [aggregate_type.as_bytes(), aggregate_id.as_bytes()] {
            self.0.update((bytes.len() as u64).to_be_bytes());
            self.0.update(bytes);
        }
        self.0.update(sequence.to_be_bytes());
        self.0.update(position.to_be_bytes());
        self.0.update(hash.as_bytes());
    }

    fn finish(self) -> String {
        hex::encode(self.0.finalize())
    }
}

/// Why a checkpoint was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("the event history does not verify, so it was not signed: {}", .0.detail)]
    Tampered(Box<Problem>),
    #[error("another checkpoint was recorded at the same time; try again")]
    Concurrent,
    #[error("cannot record a checkpoint: {0}")]
    Database(#[from] sqlx::Error),
}

macro_rules! on_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            Database::Postgres($pool) => $body,
            Database::Sqlite($pool) => $body,
        }
    };
}

/// Where unhashed events stop being legitimate (see the 0008 migration).
pub(super) async fn legacy_position(db: &Database) -> Result<i64, sqlx::Error> {
    const SQL: &str = "SELECT COALESCE(MAX(legacy_position), 0) FROM event_chain";
    let (position,): (i64,) = on_pool!(db, pool => sqlx::query_as(SQL).fetch_one(pool).await?);
    Ok(position)
}

/// How many events the retention policy removed at or below `position`.
async fn pruned_events(db: &Database, position: i64) -> Result<i64, sqlx::Error> {
    crate::read_models::sql::fetch_i64(
        db,
        "SELECT CAST(COALESCE(SUM(last_sequence), 0) AS bigint) FROM audit_pruned_chains WHERE last_position <= $1",
        crate::read_models::sql::args![position],
    )
    .await
}

/// The most recent checkpoint, if any.
pub async fn latest(db: &Database) -> Result<Option<Checkpoint>, sqlx::Error> {
    const SQL: &str = "SELECT number, created_at, position, events, chains, legacy_position, heads_digest, \
                       previous, key_id, signature FROM audit_checkpoints ORDER BY number DESC LIMIT 1";
    on_pool!(db, pool => sqlx::query_as(SQL).fetch_optional(pool).await)
}

/// Verifies the whole history up to the current head and signs its chain heads.
pub async fn record(db: &Database, keys: &CheckpointKeys, page: i64) -> Result<Checkpoint, CheckpointError> {
    let (position,): (Option<i64>,) =
        on_pool!(db, pool => sqlx::query_as("SELECT MAX(global_seq) FROM events").fetch_one(pool).await?);
    let position = position.unwrap_or(0);
    let legacy_position = legacy_position(db).await?;
    keys.register(db).await?;
    let previous = latest(db).await?;
    let number = previous.as_ref().map_or(1, |p| p.number + 1);
    // The previous checkpoint must still hold: a chain shortened since then is consistent in
    // itself, and only the checkpoint knows where it ended.
    if let Some(previous) = &previous {
        let mut first: Option<Problem> = None;
        compare(db, keys, previous.clone(), legacy_position, page, &mut |p| {
            first.get_or_insert(p);
        })
        .await?;
        if let Some(problem) = first {
            return Err(CheckpointError::Tampered(Box::new(problem)));
        }
    }
    // Heads left by an attempt that did not finish.
    on_pool!(db, pool => sqlx::query("DELETE FROM audit_checkpoint_heads WHERE checkpoint = $1")
        .bind(number)
        .execute(pool)
        .await
        .map(drop)?);

    let mut scanner = Scanner::new(db, Some(position), page, legacy_position);
    let mut digest = HeadsDigest::new();
    let mut ordinal = 0i64;
    while let Some(heads) = scanner.step().await? {
        if scanner.tally.first_problem.is_some() {
            break;
        }
        ordinal = store_heads(db, number, ordinal, &heads, &mut digest).await?;
    }
    if let Some(problem) = scanner.tally.first_problem.take() {
        on_pool!(db, pool => sqlx::query("DELETE FROM audit_checkpoint_heads WHERE checkpoint = $1")
            .bind(number)
            .execute(pool)
            .await
            .map(drop)?);
        return Err(CheckpointError::Tampered(Box::new(problem)));
    }
    let mut checkpoint = Checkpoint {
        number,
        created_at: Utc::now().to_rfc3339_opts(SecondsFormat::AutoSi, true),
        position,
        // The events of usage batches removed by retention are covered through their heads.
        events: scanner.tally.events as i64 + pruned_events(db, position).await?,
        chains: ordinal,
        legacy_position,
        heads_digest: digest.finish(),
        previous: previous.as_ref().map_or_else(|| ChainHash::GENESIS.to_hex(), Checkpoint::digest),
        key_id: keys.key_id().to_owned(),
        signature: String::new(),
    };
    checkpoint.signature = keys.sign(&checkpoint.statement());
    const INSERT: &str = "INSERT INTO audit_checkpoints (number, created_at, position, events, chains, \
                          legacy_position, heads_digest, previous, key_id, signature) \
                          VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
    let inserted: Result<(), sqlx::Error> = on_pool!(db, pool => async {
        let mut tx = pool.begin().await?;
        sqlx::query(INSERT)
            .bind(checkpoint.number)
            .bind(&checkpoint.created_at)
            .bind(checkpoint.position)
            .bind(checkpoint.events)
            .bind(checkpoint.chains)
            .bind(checkpoint.legacy_position)
            .bind(&checkpoint.heads_digest)
            .bind(&checkpoint.previous)
            .bind(&checkpoint.key_id)
            .bind(&checkpoint.signature)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM audit_checkpoint_heads WHERE checkpoint <> $1")
            .bind(number)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }
    .await);
    match inserted {
        Ok(()) => Ok(checkpoint),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(CheckpointError::Concurrent),
        Err(e) => Err(e.into()),
    }
}

async fn store_heads(
    db: &Database,
    number: i64,
    mut ordinal: i64,
    heads: &[Head],
    digest: &mut HeadsDigest,
) -> Result<i64, CheckpointError> {
    const INSERT: &str = "INSERT INTO audit_checkpoint_heads (checkpoint, ordinal, aggregate_type, aggregate_id, \
                          sequence, position, hash) VALUES ($1, $2, $3, $4, $5, $6, $7)";
    if heads.is_empty() {
        return Ok(ordinal);
    }
    let result: Result<(), sqlx::Error> = on_pool!(db, pool => async {
        let mut tx = pool.begin().await?;
        for head in heads {
            ordinal += 1;
            let hash = head.hash.to_hex();
            digest.add(&head.aggregate_type, &head.aggregate_id, head.sequence, head.position, &hash);
            sqlx::query(INSERT)
                .bind(number)
                .bind(ordinal)
                .bind(&head.aggregate_type)
                .bind(&head.aggregate_id)
                .bind(head.sequence)
                .bind(head.position)
                .bind(&hash)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    }
    .await);
    match result {
        Ok(()) => Ok(ordinal),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(CheckpointError::Concurrent),
        Err(e) => Err(e.into()),
    }
}

/// One head of the latest checkpoint beside what the store holds now.
#[derive(sqlx::FromRow)]
struct HeadRow {
    ordinal: i64,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    position: i64,
    hash: String,
    /// The metadata of the event at the head's sequence, if it is still there.
    metadata: Option<String>,
    /// The aggregate's highest sequence now, if it has any event left.
    last_sequence: Option<i64>,
    /// The head the retention policy kept of it, if it removed the aggregate.
    pruned_sequence: Option<i64>,
    pruned_hash: Option<String>,
}

/// How the latest checkpoint compares with the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointStatus {
    #[serde(flatten)]
    pub checkpoint: Checkpoint,
    pub signature_valid: bool,
    /// Events stored after the checkpoint, which only the next checkpoint will cover.
    pub events_after: i64,
}

/// Compares the latest checkpoint with the store, reporting each discrepancy to `report`.
pub(super) async fn compare(
    db: &Database,
    keys: &CheckpointKeys,
    checkpoint: Checkpoint,
    legacy_position: i64,
    page: i64,
    report: &mut impl FnMut(Problem),
) -> Result<CheckpointStatus, sqlx::Error> {
    let checkpoint_problem = |detail: String| Problem {
        kind: super::scan::ProblemKind::Checkpoint,
        aggregate_type: None,
        aggregate_id: None,
        sequence: None,
        position: None,
        detail: format!("checkpoint {}: {detail}", checkpoint.number),
    };
    let signature =
        keys.trusted(db).await?.verify(&checkpoint.key_id, &checkpoint.statement(), &checkpoint.signature);
    if let Err(detail) = &signature {
        report(checkpoint_problem(detail.clone()));
    }
    if checkpoint.legacy_position != legacy_position {
        report(checkpoint_problem(format!(
            "it signed that unchained events end at position {}, the store now says {legacy_position}",
            checkpoint.legacy_position
        )));
    }

    let metadata_column = match db {
        Database::Postgres(_) => "e.metadata::text",
        Database::Sqlite(_) => "e.metadata",
    };
    let sql = format!(
        "SELECT h.ordinal, h.aggregate_type, h.aggregate_id, h.sequence, h.position, h.hash, \
         {metadata_column} AS metadata, \
         (SELECT MAX(m.sequence) FROM events m WHERE m.aggregate_type = h.aggregate_type \
          AND m.aggregate_id = h.aggregate_id) AS last_sequence, \
         p.last_sequence AS pruned_sequence, p.head_hash AS pruned_hash \
         FROM audit_checkpoint_heads h LEFT JOIN events e ON e.aggregate_type = h.aggregate_type \
         AND e.aggregate_id = h.aggregate_id AND e.sequence = h.sequence \
         LEFT JOIN audit_pruned_chains p ON p.aggregate_type = h.aggregate_type \
         AND p.aggregate_id = h.aggregate_id \
         WHERE h.checkpoint = $1 AND h.ordinal > $2 ORDER BY h.ordinal LIMIT $3"
    );
    let mut digest = HeadsDigest::new();
    let mut after = 0i64;
    let mut heads = 0i64;
    loop {
        let rows: Vec<HeadRow> = on_pool!(db, pool => sqlx::query_as(&sql)
            .bind(checkpoint.number)
            .bind(after)
            .bind(page)
            .fetch_all(pool)
            .await?);
        let Some(last) = rows.last() else { break };
        after = last.ordinal;
        for row in rows {
            heads += 1;
            digest.add(&row.aggregate_type, &row.aggregate_id, row.sequence, row.position, &row.hash);
            let problem = |kind, detail: String| Problem {
                kind,
                aggregate_type: Some(row.aggregate_type.clone()),
                aggregate_id: Some(row.aggregate_id.clone()),
                sequence: Some(row.sequence),
                position: Some(row.position),
                detail,
            };
            let Some(metadata) = &row.metadata else {
                if row.last_sequence.is_none()
                    && row.pruned_sequence == Some(row.sequence)
                    && row.pruned_hash.as_deref() == Some(row.hash.as_str())
                {
                    // Removed whole by the retention policy, which kept the head it signed.
                    continue;
                }
                let detail = match row.last_sequence {
                    Some(last) => format!(
                        "the checkpoint signed this aggregate up to sequence {}, the store now ends at {last}",
                        row.sequence
                    ),
                    None => "the checkpoint signed this aggregate, the store no longer has any of its events"
                        .to_owned(),
                };
                report(problem(super::scan::ProblemKind::Deleted, detail));
                continue;
            };
            let metadata: serde_json::Value = serde_json::from_str(metadata).unwrap_or_default();
            let now = match super::chain::stored_hash(&metadata) {
                Some(hash) => Some(hash),
                // An aggregate that ends before the chain existed: its head hash is computed.
                None => {
                    super::chain::previous_hash(db, &row.aggregate_type, &row.aggregate_id, row.sequence + 1)
                        .await
                        .ok()
                }
            };
            if now.map(ChainHash::to_hex).as_deref() != Some(row.hash.as_str()) {
                report(problem(
                    super::scan::ProblemKind::Modified,
                    "the event differs from the one the checkpoint signed (the chain was rewritten)"
                        .to_owned(),
                ));
            }
        }
    }
    if heads != checkpoint.chains || digest.finish() != checkpoint.heads_digest {
        report(checkpoint_problem("its list of chain heads was altered in the store".to_owned()));
    }

    // Events the retention policy removed since count as covered: their heads were checked above.
    const COUNT: &str = "SELECT COUNT(*), (SELECT COUNT(*) FROM events WHERE global_seq > $1), \
                         (SELECT CAST(COALESCE(SUM(last_sequence), 0) AS bigint) FROM audit_pruned_chains \
                          WHERE last_position <= $1) FROM events WHERE global_seq <= $1";
    let (present, events_after, pruned): (i64, i64, i64) =
        on_pool!(db, pool => sqlx::query_as(COUNT).bind(checkpoint.position).fetch_one(pool).await?);
    let covered = present + pruned;
    if covered > checkpoint.events {
        report(Problem {
            kind: super::scan::ProblemKind::Inserted,
            ..checkpoint_problem(format!(
                "{} more event(s) at or below position {} than it signed: events were inserted",
                covered - checkpoint.events,
                checkpoint.position
            ))
        });
    } else if covered < checkpoint.events {
        report(Problem {
            kind: super::scan::ProblemKind::Deleted,
            ..checkpoint_problem(format!(
                "{} event(s) at or below position {} that it signed are gone",
                checkpoint.events - covered,
                checkpoint.position
            ))
        });
    }
    Ok(CheckpointStatus { checkpoint, signature_valid: signature.is_ok(), events_after })
}
