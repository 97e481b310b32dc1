//! The retention policy for usage events: whole usage batches older than the retention period are
//! removed from the store, without breaking the history's tamper evidence.
//!
//! Only `usage_batch` aggregates are ever removed (the proxy's `RequestCompleted` records and the
//! `UsageRecordsDropped` notices written among them); security and administration events are
//! never touched. For each run, in one transaction:
//! - every candidate batch's chain is checked first: a batch that does not verify is kept, as
//!   evidence, and reported;
//! - each removed batch leaves a row in `audit_pruned_chains`: the head its chain ended on (last
//!   sequence, positions, hash), which is what the checkpoints signed of it;
//! - a `UsageRetentionApplied` event (its own aggregate, `usage_retention`) records the run: the
//!   cutoff, how many batches, events and requests, the digest of the pruned rows, the totals the
//!   usage counters keep of them (see `projections::retained`), and a signature over all of it by
//!   the checkpoint signing key, so that nobody without the master key can pass a deletion off as
//!   retention;
//! - the removed records leave the audit log, and their totals leave the counters (the retention
//!   event's projection adds them back).
//!
//! Verification then accepts a checkpoint head whose events are gone if a pruned row holds the
//! same head, and checks every retention event's signature and digest against the pruned rows.

use chrono::{DateTime, Duration as TimeDelta, SecondsFormat, Utc};
use domain::metadata::{Actor, EventMetadata};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use super::canonical::canonical_json;
use super::rows::EventRow;
use super::scan::{Problem, ProblemKind, Scanner};
use super::signing::{CheckpointKeys, TrustedKeys};
use crate::projections::retained::UsageTotals;
use crate::read_models::sql::{self, Tx, args};
use crate::store::{BatchEvent, Database};
use crate::usage::{REQUEST_COMPLETED, USAGE_BATCH_TYPE, USAGE_RECORDS_DROPPED};

/// The aggregate type of a retention run: a fresh UUID per run, one event.
pub const USAGE_RETENTION_TYPE: &str = "usage_retention";
/// The event that records a run.
pub const USAGE_RETENTION_APPLIED: &str = "UsageRetentionApplied";
const STATEMENT_DOMAIN: &[u8] = b"keyguard-usage-retention-v1";
const PRUNED_DOMAIN: &[u8] = b"keyguard-pruned-chains-v1";
/// Batches removed per run (one transaction); a run is repeated until nothing is left.
pub const BATCHES_PER_RUN: i64 = 500;
/// The read models that must have applied a batch before it may be removed.
const COUNTING_PROJECTIONS: [&str; 4] = ["devices", "api_keys", "traffic", "audit_log"];

/// What one retention run removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionRun {
    /// The retention event's aggregate id (`None` when there was nothing to remove).
    pub run_id: Option<Uuid>,
    pub cutoff: String,
    pub batches: u64,
    pub events: u64,
    pub requests: u64,
    /// Batches kept because their chain does not verify (tampering evidence), with the problem.
    pub kept: Vec<Problem>,
}

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error("the retention period must be at least one day")]
    Period,
    #[error("cannot apply the retention policy: {0}")]
    Database(#[from] sqlx::Error),
}

#[derive(Debug, sqlx::FromRow)]
struct Candidate {
    aggregate_id: String,
    events: i64,
    first_position: i64,
}

/// One removed batch as `audit_pruned_chains` keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct PrunedChain {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub last_sequence: i64,
    pub first_position: i64,
    pub last_position: i64,
    pub head_hash: String,
    pub pruned_by: String,
}

fn pruned_digest<'a>(rows: impl IntoIterator<Item = &'a PrunedChain>) -> (u64, String) {
    let mut hasher = Sha256::new_with_prefix(PRUNED_DOMAIN);
    let mut count = 0;
    for row in rows {
        count += 1;
        for text in [&row.aggregate_type, &row.aggregate_id, &row.head_hash] {
            hasher.update((text.len() as u64).to_be_bytes());
            hasher.update(text.as_bytes());
        }
        for number in [row.last_sequence, row.first_position, row.last_position] {
            hasher.update(number.to_be_bytes());
        }
    }
    (count, hex::encode(hasher.finalize()))
}

/// What the signature covers: the run's id and its payload without the signature.
fn statement(run_id: &str, payload: &Value) -> Vec<u8> {
    let mut unsigned = payload.clone();
    if let Some(object) = unsigned.as_object_mut() {
        object.remove("signature");
    }
    let mut out = STATEMENT_DOMAIN.to_vec();
    out.extend_from_slice(&(run_id.len() as u64).to_be_bytes());
    out.extend_from_slice(run_id.as_bytes());
    out.extend_from_slice(&canonical_json(&unsigned));
    out
}

/// Removes up to [`BATCHES_PER_RUN`] usage batches whose every event was stored before
/// `now - days`, looking at batches that start after position `after`. Also returns where the
/// batches it looked at start, at most: call again from there until it returns `None`.
pub(super) async fn run_once(
    db: &Database,
    keys: &CheckpointKeys,
    days: u32,
    now: DateTime<Utc>,
    legacy_position: i64,
    after: i64,
) -> Result<(RetentionRun, Option<i64>), RetentionError> {
    if days == 0 {
        return Err(RetentionError::Period);
    }
    let cutoff = now - TimeDelta::days(i64::from(days));
    let mut run = RetentionRun {
        cutoff: cutoff.to_rfc3339_opts(SecondsFormat::Millis, true),
        ..RetentionRun::default()
    };
    let applied = projected_up_to(db).await?;
    // recorded_at is timestamptz on PostgreSQL and RFC 3339 text with milliseconds on SQLite.
    let cutoff_arg = match db {
        Database::Postgres(_) => sql::Arg::from(cutoff),
        Database::Sqlite(_) => sql::Arg::from(run.cutoff.clone()),
    };
    let candidates: Vec<Candidate> = sql::fetch_all(
        db,
        "SELECT aggregate_id, COUNT(*) AS events, MIN(global_seq) AS first_position FROM events \
         WHERE aggregate_type = $1 GROUP BY aggregate_id \
         HAVING MAX(recorded_at) < $2 AND MAX(global_seq) <= $3 AND MIN(global_seq) > $4 \
         ORDER BY MIN(global_seq) LIMIT $5",
        vec![USAGE_BATCH_TYPE.into(), cutoff_arg, applied.into(), after.into(), BATCHES_PER_RUN.into()],
    )
    .await?;
    let Some(next) = candidates.iter().map(|c| c.first_position).max() else {
        return Ok((run, None));
    };

    keys.register(db).await?;
    let run_id = Uuid::new_v4();
    let mut pruned = Vec::with_capacity(candidates.len());
    let mut totals = UsageTotals::default();
    let mut dropped = 0u64;
    for candidate in &candidates {
        let rows = EventRow::read_before(db, USAGE_BATCH_TYPE, &candidate.aggregate_id, i64::MAX).await?;
        let mut scanner = Scanner::new(db, None, 1, legacy_position);
        let head = match scanner.check_aggregate(rows.clone()) {
            None => continue,
            Some(Err(problem)) => {
                tracing::error!(?problem, "a usage batch does not verify; kept as evidence");
                run.kept.push(problem);
                continue;
            }
            Some(Ok(head)) => head,
        };
        for row in &rows {
            let Ok((payload, _)) = row.values() else { continue };
            match row.event_type.as_str() {
                REQUEST_COMPLETED => run.requests += u64::from(totals.add(&row.event_type, &payload)),
                USAGE_RECORDS_DROPPED => dropped += payload.get("count").and_then(Value::as_u64).unwrap_or(0),
                _ => {}
            }
        }
        run.events += candidate.events as u64;
        pruned.push(PrunedChain {
            aggregate_type: USAGE_BATCH_TYPE.to_owned(),
            aggregate_id: candidate.aggregate_id.clone(),
            last_sequence: head.sequence,
            first_position: rows.iter().filter_map(|r| r.global_seq).min().unwrap_or(head.position),
            last_position: rows.iter().filter_map(|r| r.global_seq).max().unwrap_or(head.position),
            head_hash: head.hash.to_hex(),
            pruned_by: run_id.to_string(),
        });
    }
    if pruned.is_empty() {
        return Ok((run, Some(next)));
    }
    pruned.sort_by(|a, b| a.aggregate_id.cmp(&b.aggregate_id));
    let (batches, digest) = pruned_digest(&pruned);
    run.batches = batches;

    let mut payload = json!({
        "type": USAGE_RETENTION_APPLIED,
        "retention_days": days,
        "cutoff": run.cutoff,
        "batches": run.batches,
        "events": run.events,
        "requests": run.requests,
        "records_dropped": dropped,
        "first_position": pruned.iter().map(|p| p.first_position).min(),
        "last_position": pruned.iter().map(|p| p.last_position).max(),
        "pruned_digest": digest,
        "totals": totals,
        "key_id": keys.key_id(),
    });
    let id = run_id.to_string();
    let signature = keys.sign(&statement(&id, &payload));
    payload["signature"] = Value::String(signature);
    let metadata = serde_json::to_string(&EventMetadata::new(Actor::system("retention"), now).to_map())
        .expect("metadata serializes");
    let event = BatchEvent {
        event_type: USAGE_RETENTION_APPLIED.to_owned(),
        event_version: "1.0".to_owned(),
        payload_json: payload.to_string(),
    };

    let mut tx = Tx::begin(db).await?;
    for row in &pruned {
        tx.execute(
            "INSERT INTO audit_pruned_chains (aggregate_type, aggregate_id, last_sequence, first_position, \
             last_position, head_hash, pruned_by) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            args![
                row.aggregate_type.as_str(),
                row.aggregate_id.as_str(),
                row.last_sequence,
                row.first_position,
                row.last_position,
                row.head_hash.as_str(),
                row.pruned_by.as_str(),
            ],
        )
        .await?;
        tx.execute(
            "DELETE FROM events WHERE aggregate_type = $1 AND aggregate_id = $2",
            args![USAGE_BATCH_TYPE, row.aggregate_id.as_str()],
        )
        .await?;
        tx.execute(
            "DELETE FROM audit_log WHERE aggregate_type = $1 AND aggregate_id = $2",
            args![USAGE_BATCH_TYPE, row.aggregate_id.as_str()],
        )
        .await?;
    }
    totals.subtract(&mut tx).await?;
    tx.append_batch(USAGE_RETENTION_TYPE, &id, &[event], &metadata).await?;
    tx.commit().await?;
    run.run_id = Some(run_id);
    Ok((run, Some(next)))
}

/// The position every counting read model has applied (their events may be removed up to it).
async fn projected_up_to(db: &Database) -> Result<i64, sqlx::Error> {
    let rows: Vec<(String, i64)> =
        sql::fetch_all(db, "SELECT name, position FROM projection_checkpoints", args![]).await?;
    Ok(COUNTING_PROJECTIONS
        .iter()
        .map(|name| rows.iter().find(|(n, _)| n == name).map_or(0, |(_, p)| *p))
        .min()
        .unwrap_or(0))
}

/// The pruned rows one run recorded, in digest order.
async fn pruned_by(db: &Database, run_id: &str) -> Result<Vec<PrunedChain>, sqlx::Error> {
    sql::fetch_all(
        db,
        "SELECT aggregate_type, aggregate_id, last_sequence, first_position, last_position, head_hash, \
         pruned_by FROM audit_pruned_chains WHERE pruned_by = $1 ORDER BY aggregate_id",
        args![run_id],
    )
    .await
}

/// Checks every retention event against the pruned rows it vouches for, and every pruned row
/// against a retention event and the store, reporting each discrepancy.
pub(super) async fn verify(
    db: &Database,
    trusted: &TrustedKeys,
    report: &mut impl FnMut(Problem),
) -> Result<(), sqlx::Error> {
    let runs = EventRow::read_all_of_type(db, USAGE_RETENTION_TYPE).await?;
    let problem = |kind, row: &EventRow, detail: String| Problem {
        kind,
        aggregate_type: Some(row.aggregate_type.clone()),
        aggregate_id: Some(row.aggregate_id.clone()),
        sequence: Some(row.sequence),
        position: row.global_seq,
        detail,
    };
    let mut runs_seen = Vec::with_capacity(runs.len());
    for row in &runs {
        runs_seen.push(row.aggregate_id.clone());
        let Ok((payload, _)) = row.values() else { continue }; // the chain scan reports it
        let key_id = payload.get("key_id").and_then(Value::as_str).unwrap_or_default();
        let signature = payload.get("signature").and_then(Value::as_str).unwrap_or_default();
        if let Err(detail) = trusted.verify(key_id, &statement(&row.aggregate_id, &payload), signature) {
            report(problem(ProblemKind::Modified, row, format!("retention run: {detail}")));
        }
        let rows = pruned_by(db, &row.aggregate_id).await?;
        let (count, digest) = pruned_digest(&rows);
        let claimed = payload.get("batches").and_then(Value::as_u64).unwrap_or_default();
        if count != claimed || payload.get("pruned_digest").and_then(Value::as_str) != Some(digest.as_str()) {
            report(problem(
                ProblemKind::Modified,
                row,
                format!(
                    "retention run removed {claimed} batch(es); the store keeps {count} pruned head(s) for \
                     it that do not match what it signed: the record of removed batches was altered"
                ),
            ));
        }
    }
    // Pruned rows no signed run vouches for, and pruned batches that still (or again) have events.
    #[derive(sqlx::FromRow)]
    struct Orphan {
        aggregate_type: String,
        aggregate_id: String,
        last_sequence: i64,
        last_position: i64,
        pruned_by: String,
        remaining: i64,
    }
    let orphans: Vec<Orphan> = sql::fetch_all(
        db,
        "SELECT p.aggregate_type, p.aggregate_id, p.last_sequence, p.last_position, p.pruned_by, \
         (SELECT COUNT(*) FROM events e WHERE e.aggregate_type = p.aggregate_type \
          AND e.aggregate_id = p.aggregate_id) AS remaining \
         FROM audit_pruned_chains p ORDER BY p.last_position",
        args![],
    )
    .await?;
    for orphan in orphans {
        let detail = if !runs_seen.contains(&orphan.pruned_by) {
            format!(
                "is recorded as removed by retention run {}, which is not in the history: the removal was \
                 not made by the retention policy",
                orphan.pruned_by
            )
        } else if orphan.remaining > 0 {
            format!(
                "is recorded as removed by retention, yet {} of its events are in the store",
                orphan.remaining
            )
        } else {
            continue;
        };
        report(Problem {
            kind: ProblemKind::Deleted,
            aggregate_type: Some(orphan.aggregate_type),
            aggregate_id: Some(orphan.aggregate_id),
            sequence: Some(orphan.last_sequence),
            position: Some(orphan.last_position),
            detail,
        });
    }
    Ok(())
}
