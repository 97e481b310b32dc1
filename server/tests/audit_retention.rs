//! The retention policy for usage events, signing keys across master-key rotations, and the
//! backup of what is not an event (data keys, signing keys, pruned heads):
//! - expired usage batches go, everything else stays, the counters do not move, a rebuild gives
//!   the same read models, and the history (with its earlier checkpoint) still verifies;
//! - a batch that does not verify is kept as evidence; a deletion passed off as retention is
//!   reported;
//! - checkpoints signed under a master key verify after that key is dropped, through the
//!   registry, and not without it;
//! - a restored backup opens the provider secrets and verifies, pruned batches included.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{Duration, SecondsFormat, Utc};
use domain::metadata::Actor;
use secrecy::SecretString;
use serde_json::{Value, json};
use services::backup::{self, ExportFilter, ExportFormat};
use services::integrity::Integrity;
use services::projections::{Projections, ProjectionsConfig};
use services::secrets::{Envelope, MasterKeySource, MasterKeys};
use services::store::{BatchEvent, Database};
use support::events::{READ_MODEL_TABLES, Scenario, count, dump, metadata, read_all, scenario};
use support::{Backend, TestDb};
use uuid::Uuid;

const COUNTERS: &[&str] = &["devices", "api_keys", "traffic_hourly"];

fn keys(current: &SecretString, previous: &[&SecretString]) -> MasterKeys {
    MasterKeys::load(&MasterKeySource::Inline {
        current: current.clone(),
        previous: previous.iter().map(|k| (*k).clone()).collect(),
    })
    .unwrap()
}

fn new_key() -> SecretString {
    MasterKeys::generate_encoded().unwrap()
}

fn projections(db: &Database) -> Projections {
    Projections::new(db.clone(), ProjectionsConfig::default())
}

/// A usage batch as the proxy writes it: `requests` records for the scenario's device and key.
async fn usage_batch(db: &Database, s: &Scenario, requests: u64, at: chrono::DateTime<Utc>) -> String {
    let events: Vec<BatchEvent> = (0..requests)
        .map(|n| BatchEvent {
            event_type: "RequestCompleted".into(),
            event_version: "1.0".into(),
            payload_json: json!({
                "type": "RequestCompleted",
                "api_key_id": s.api_key,
                "device_id": s.device,
                "key_id": "kid",
                "provider": "openai",
                "model": "gpt-4o-mini",
                "method": "POST",
                "path": "/v1/chat/completions",
                "status": if n == 0 { 502 } else { 200 },
                "completed": true,
                "streamed": false,
                "tokens_in": 10 + n,
                "tokens_out": 20 + n,
                "bytes_in": 100,
                "bytes_out": 200,
                "latency_ms": 7,
                "at": at.to_rfc3339_opts(SecondsFormat::Millis, true),
            })
            .to_string(),
        })
        .collect();
    let id = Uuid::new_v4().to_string();
    let metadata = serde_json::to_string(&metadata(Actor::system("proxy"), "usage")).unwrap();
    db.append_batch("usage_batch", &id, &events, &metadata).await.unwrap();
    id
}

/// Moves an aggregate's events back in time, as if stored `days` ago (the store's time is not
/// part of the hash chain).
async fn age(db: &Database, aggregate_id: &str, days: i64) {
    let then = Utc::now() - Duration::days(days);
    match db {
        Database::Postgres(pool) => {
            sqlx::query("UPDATE events SET recorded_at = $1 WHERE aggregate_id = $2")
                .bind(then)
                .bind(aggregate_id)
                .execute(pool)
                .await
                .unwrap();
        }
        Database::Sqlite(pool) => {
            sqlx::query("UPDATE events SET recorded_at = $1 WHERE aggregate_id = $2")
                .bind(then.to_rfc3339_opts(SecondsFormat::Millis, true))
                .bind(aggregate_id)
                .execute(pool)
                .await
                .unwrap();
        }
    }
}

async fn sql(db: &Database, statement: &str) {
    match db {
        Database::Postgres(pool) => sqlx::query(statement).execute(pool).await.map(drop),
        Database::Sqlite(pool) => sqlx::query(statement).execute(pool).await.map(drop),
    }
    .unwrap_or_else(|e| panic!("{statement}: {e}"));
}

async fn events_of(db: &Database, aggregate_id: &str) -> usize {
    read_all(db).await.iter().filter(|e| e.aggregate_id == aggregate_id).count()
}

/// Every read-model table but the checkpoints (whose `updated_at` is the time of the rebuild).
async fn read_models(db: &Database) -> BTreeMap<String, Vec<String>> {
    let tables: Vec<&str> =
        READ_MODEL_TABLES.iter().copied().filter(|t| *t != "projection_checkpoints").collect();
    dump(db, &tables).await
}

async fn a_login_failure(db: &Database) -> String {
    let id = Uuid::new_v4().to_string();
    let record = BatchEvent {
        event_type: "LoginFailed".into(),
        event_version: "1.0".into(),
        payload_json: r#"{"summary": "Sign-in failed for ada@example.com", "outcome": "failure"}"#.into(),
    };
    let metadata = serde_json::to_string(&metadata(Actor::system("auth"), "login")).unwrap();
    db.append_batch("audit_record", &id, &[record], &metadata).await.unwrap();
    id
}

async fn expired_usage_batches_go_and_the_history_still_verifies(backend: Backend) {
    let t = TestDb::new(backend).await;
    let db = &t.db;
    let s = scenario(db).await;
    let old = usage_batch(db, &s, 3, Utc::now() - Duration::days(40)).await;
    let older = usage_batch(db, &s, 2, Utc::now() - Duration::days(41)).await;
    let fresh = usage_batch(db, &s, 1, Utc::now()).await;
    let login = a_login_failure(db).await;
    for (id, days) in [(&old, 40), (&older, 41), (&login, 400)] {
        age(db, id, days).await;
    }
    let live = projections(db);
    live.catch_up().await.unwrap();
    let integrity = Integrity::new(db.clone(), &keys(&new_key(), &[]));
    let signed = integrity.checkpoint().await.unwrap();
    let counters = dump(db, COUNTERS).await;
    assert!(counters.values().all(|rows| !rows.is_empty()), "{counters:?}");
    let others = count(db, "events").await - 6;

    let runs = integrity.apply_retention(30, Utc::now()).await.unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let run = &runs[0];
    assert_eq!((run.batches, run.events, run.requests), (2, 5, 5), "{run:?}");
    assert!(run.kept.is_empty(), "{run:?}");
    assert_eq!(events_of(db, &old).await, 0);
    assert_eq!(events_of(db, &older).await, 0);
    assert_eq!(events_of(db, &fresh).await, 1, "a batch inside the period stays");
    assert_eq!(events_of(db, &login).await, 1, "security events are never removed, however old");
    // The run is itself an event of the history, with what it removed.
    let all = read_all(db).await;
    let recorded: Vec<_> = all.iter().filter(|e| e.event_type == "UsageRetentionApplied").collect();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].aggregate_id, run.run_id.unwrap().to_string());
    assert_eq!(recorded[0].payload["events"], 5);
    assert_eq!(recorded[0].payload["totals"]["devices"][s.device.to_string()]["requests"], 5);
    assert_eq!(count(db, "events").await, others + 1 + 1, "the other events and the run's own remain");

    // The counters did not move; the audit log lost the removed records and shows the run.
    live.catch_up().await.unwrap();
    assert_eq!(dump(db, COUNTERS).await, counters);
    let audit_log = dump(db, &["audit_log"]).await["audit_log"].join("\n");
    assert!(!audit_log.contains(&old) && !audit_log.contains(&older), "{audit_log}");
    assert!(audit_log.contains("Retention policy removed 5 usage records (2 batches)"), "{audit_log}");

    // A rebuild, which never sees the removed events, gives the very same read models.
    let before = read_models(db).await;
    projections(db).rebuild().await.unwrap();
    assert_eq!(read_models(db).await, before);

    // The history verifies, against the checkpoint signed before the removal too.
    let report = integrity.verify().await.unwrap();
    assert!(report.ok, "{report:?}");
    let status = report.checkpoint.expect("the checkpoint");
    assert_eq!(status.checkpoint.number, signed.number);
    assert!(status.signature_valid);
    integrity.checkpoint().await.expect("a new checkpoint over the pruned history");
    let report = integrity.verify().await.unwrap();
    assert!(report.ok, "{report:?}");

    // Nothing is left to remove.
    assert!(integrity.apply_retention(30, Utc::now()).await.unwrap().is_empty());
}

async fn tampered_batches_are_kept_and_forged_removals_are_reported(backend: Backend) {
    let t = TestDb::new(backend).await;
    let db = &t.db;
    let s = scenario(db).await;
    let tampered = usage_batch(db, &s, 2, Utc::now() - Duration::days(50)).await;
    let expired = usage_batch(db, &s, 2, Utc::now() - Duration::days(50)).await;
    let current = usage_batch(db, &s, 2, Utc::now()).await;
    age(db, &tampered, 50).await;
    age(db, &expired, 50).await;
    projections(db).catch_up().await.unwrap();
    let integrity = Integrity::new(db.clone(), &keys(&new_key(), &[]));

    // A batch whose chain does not verify is evidence: kept, and reported.
    let original: Vec<_> = read_all(db).await.into_iter().filter(|e| e.aggregate_id == tampered).collect();
    sql(db, &format!("UPDATE events SET payload = '{{\"type\":\"RequestCompleted\",\"status\":200}}' WHERE aggregate_id = '{tampered}' AND sequence = 2")).await;
    let runs = integrity.apply_retention(30, Utc::now()).await.unwrap();
    assert_eq!(runs.iter().map(|r| r.batches).sum::<u64>(), 1, "{runs:?}");
    let kept: Vec<_> = runs.iter().flat_map(|r| &r.kept).collect();
    assert_eq!(kept.len(), 1, "{runs:?}");
    assert_eq!(kept[0].aggregate_id.as_deref(), Some(tampered.as_str()));
    assert_eq!(events_of(db, &tampered).await, 2);
    assert_eq!(events_of(db, &expired).await, 0);
    let payload = serde_json::to_string(&original[1].payload).unwrap().replace('\'', "''");
    sql(
        db,
        &format!(
            "UPDATE events SET payload = '{payload}' WHERE aggregate_id = '{tampered}' AND sequence = 2"
        ),
    )
    .await;
    let report = integrity.verify().await.unwrap();
    assert!(report.ok, "the restored batch verifies again: {report:?}");

    // Deleting a live batch and recording it as pruned by a run that does not exist...
    let head: Value = read_all(db)
        .await
        .into_iter()
        .find(|e| e.aggregate_id == current && e.sequence == 2)
        .map(|e| serde_json::to_value(&e.metadata).unwrap())
        .unwrap();
    let hash = head["hash"].as_str().unwrap().to_owned();
    sql(db, &format!("DELETE FROM events WHERE aggregate_id = '{current}'")).await;
    sql(
        db,
        &format!(
            "INSERT INTO audit_pruned_chains (aggregate_type, aggregate_id, last_sequence, first_position, \
         last_position, head_hash, pruned_by) VALUES ('usage_batch', '{current}', 2, 1, 2, '{hash}', '{}')",
            Uuid::new_v4()
        ),
    )
    .await;
    let report = integrity.verify().await.unwrap();
    assert!(!report.ok);
    let problem = report.first_problem.expect("a problem");
    assert_eq!(problem.aggregate_id.as_deref(), Some(current.as_str()), "{problem:?}");
    assert!(problem.detail.contains("which is not in the history"), "{problem:?}");

    // ...or by the real run: its signed digest no longer matches the pruned rows.
    let run = runs.iter().find_map(|r| r.run_id).unwrap();
    sql(db, &format!("UPDATE audit_pruned_chains SET pruned_by = '{run}' WHERE aggregate_id = '{current}'"))
        .await;
    let report = integrity.verify().await.unwrap();
    assert!(!report.ok);
    let problem = report.first_problem.expect("a problem");
    assert_eq!(problem.aggregate_id.as_deref(), Some(run.to_string().as_str()), "{problem:?}");
    assert!(problem.detail.contains("do not match what it signed"), "{problem:?}");
}

async fn checkpoints_verify_after_their_master_key_is_dropped(backend: Backend) {
    let t = TestDb::new(backend).await;
    let db = &t.db;
    scenario(db).await;
    let (first, second) = (new_key(), new_key());
    let signed = Integrity::new(db.clone(), &keys(&first, &[])).checkpoint().await.unwrap();
    let only_second = Integrity::new(db.clone(), &keys(&second, &[]));

    // Without the registry, the dropped key's checkpoint cannot be checked.
    let report = only_second.verify().await.unwrap();
    assert!(!report.ok);
    let detail = report.first_problem.unwrap().detail;
    assert!(detail.contains("neither configured nor endorsed"), "{detail}");

    // Rotated while the first key is still configured: the new key endorses it.
    Integrity::new(db.clone(), &keys(&second, &[&first])).register_key().await.unwrap();
    let report = only_second.verify().await.unwrap();
    assert!(report.ok, "{report:?}");
    let status = report.checkpoint.unwrap();
    assert_eq!(status.checkpoint.number, signed.number);
    assert!(status.signature_valid);

    // A registry row altered in the store endorses nothing.
    let second_id = only_second.public_key().key_id;
    sql(db, &format!("UPDATE audit_signing_keys SET endorses = '[]' WHERE key_id = '{second_id}'")).await;
    let report = only_second.verify().await.unwrap();
    assert!(!report.ok, "{report:?}");
    assert!(report.first_problem.unwrap().detail.contains("neither configured nor endorsed"));

    // Registered again while the first key is configured, the second key signs on.
    sql(db, &format!("DELETE FROM audit_signing_keys WHERE key_id = '{second_id}'")).await;
    Integrity::new(db.clone(), &keys(&second, &[&first])).register_key().await.unwrap();
    let next = only_second.checkpoint().await.expect("the new key signs on");
    assert_eq!(next.key_id, second_id);
    assert!(only_second.verify().await.unwrap().ok);
}

async fn a_restored_backup_opens_secrets_and_verifies_after_retention(backend: Backend) {
    let source = TestDb::new(backend).await;
    let db = &source.db;
    let s = scenario(db).await;
    let master = new_key();
    let envelope = Envelope::new(db.clone(), Arc::new(keys(&master, &[])));
    let data_key = envelope.create_data_key().await.unwrap();
    let secret = SecretString::from("sk-provider-secret-for-the-backup");
    let sealed = envelope.seal(data_key, &secret, "api-key-context").await.unwrap();
    let old = usage_batch(db, &s, 4, Utc::now() - Duration::days(90)).await;
    usage_batch(db, &s, 1, Utc::now()).await;
    age(db, &old, 90).await;
    projections(db).catch_up().await.unwrap();
    let integrity = Integrity::new(db.clone(), &keys(&master, &[]));
    integrity.checkpoint().await.unwrap();
    assert_eq!(integrity.apply_retention(60, Utc::now()).await.unwrap().len(), 1);
    projections(db).catch_up().await.unwrap();

    let mut file = Vec::new();
    let summary =
        backup::export(db, ExportFilter::default(), ExportFormat::Ndjson, 7, &mut file).await.unwrap();
    assert_eq!(summary.store_records, 3, "a data key, a signing key and a pruned head");
    let text = String::from_utf8(file.clone()).unwrap();
    for record in ["\"record\":\"data_key\"", "\"record\":\"signing_key\"", "\"record\":\"pruned_chain\""] {
        assert!(text.contains(record), "{record} in {text}");
    }
    // A filtered export is for reading: events only.
    let mut filtered = Vec::new();
    let since = ExportFilter { since: Some(Utc::now() - Duration::days(1)), until: None };
    let partial = backup::export(db, since, ExportFormat::Ndjson, 7, &mut filtered).await.unwrap();
    assert_eq!(partial.store_records, 0);

    let target = TestDb::new(backend).await;
    let restored = backup::import(&target.db, file.as_slice()).await.unwrap();
    assert_eq!(restored.store_records, 3);
    projections(&target.db).rebuild().await.unwrap();
    assert_eq!(read_models(&target.db).await, read_models(db).await);
    let opened = Envelope::new(target.db.clone(), Arc::new(keys(&master, &[])))
        .open(&sealed, "api-key-context")
        .await
        .expect("the restored data key opens the secret");
    assert_eq!(opened.as_str(), "sk-provider-secret-for-the-backup");
    let report = Integrity::new(target.db.clone(), &keys(&master, &[])).verify().await.unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.checkpoint, None, "checkpoints are the source's, not restored");
}

/// `keyguard audit retention`: needs a period, applies it, and reports what it removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retention_command_applies_the_period_given() {
    let t = TestDb::new(Backend::Sqlite).await;
    let s = scenario(&t.db).await;
    let old = usage_batch(&t.db, &s, 2, Utc::now() - Duration::days(40)).await;
    age(&t.db, &old, 40).await;
    projections(&t.db).catch_up().await.unwrap();
    let services::store::DatabaseConfig::Sqlite { path } = &t.config else { unreachable!() };
    let keyguard = |args: &[&str], env: &[(&str, &str)]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_keyguard"))
            .env_clear()
            .env("KEYGUARD_DATA_DIR", path.parent().unwrap())
            .envs(env.iter().copied())
            .args(args)
            .output()
            .unwrap()
    };
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();

    let none = keyguard(&["audit", "retention"], &[]);
    assert_eq!(none.status.code(), Some(1));
    assert!(text(&none.stderr).contains("pass --days N or set KEYGUARD_USAGE_RETENTION_DAYS"));
    let zero = keyguard(&["audit", "retention", "--days", "0"], &[]);
    assert!(!zero.status.success());
    assert!(text(&zero.stderr).contains("--days"), "{}", text(&zero.stderr));
    assert_eq!(events_of(&t.db, &old).await, 2, "nothing was removed by the refused runs");

    let applied = keyguard(&["audit", "retention"], &[("KEYGUARD_USAGE_RETENTION_DAYS", "30")]);
    let stdout = text(&applied.stdout);
    assert!(applied.status.success(), "{stdout}{}", text(&applied.stderr));
    assert!(
        stdout.contains(
            "retention of 30 day(s): removed 2 usage event(s) (2 request record(s)) in 1 batch(es)"
        ),
        "{stdout}"
    );
    assert_eq!(events_of(&t.db, &old).await, 0);
    let verified = keyguard(&["audit", "verify"], &[]);
    assert!(verified.status.success(), "{}", text(&verified.stdout));
}

on_both_backends!(
    expired_usage_batches_go_and_the_history_still_verifies,
    tampered_batches_are_kept_and_forged_removals_are_reported,
    checkpoints_verify_after_their_master_key_is_dropped,
    a_restored_backup_opens_secrets_and_verifies_after_retention,
);
