//! Tamper evidence, on both backends: rows changed, removed, forged or moved behind the store's
//! back (plain SQL, as someone with database access would) are each reported with the right kind
//! and place; an untouched store, or one whose JSON the database respelled, verifies.

mod support;

use domain::device::InitialStatus;
use domain::metadata::{Actor, EventMetadata};
use reqwest::Method;
use serde_json::Value;
use services::audit::{AuditOutcome, AuditRecord};
use support::{Backend, TestApp};
use uuid::Uuid;

/// A store with a device of three events (cqrs-es path) and an audit batch of four records
/// (`append_batch` path), besides the admin and key the API created.
struct Seeded {
    app: TestApp,
    token: String,
    device: String,
    batch: String,
}

async fn seeded(backend: Backend) -> Seeded {
    let app = TestApp::spawn(backend).await;
    let token = app.bootstrap_admin().await;
    let key = app.create_key(&token, "chain").await;
    let device = app.seed_device(key, "laptop", InitialStatus::Pending).await;
    let (status, body) =
        app.call(Method::PATCH, &format!("/api/v1/devices/{device}/approve"), Some(&token), None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app
        .call(
            Method::PATCH,
            &format!("/api/v1/devices/{device}/suspend"),
            Some(&token),
            Some(serde_json::json!({ "reason": "lost" })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let records = ["First", "Second", "Third", "Fourth"]
        .map(|kind| AuditRecord::new(format!("Test{kind}"), AuditOutcome::Denied, kind.to_lowercase()))
        .to_vec();
    let metadata =
        EventMetadata::new(Actor::system("test"), chrono::Utc::now()).with_ip("192.0.2.7".parse().unwrap());
    let batch = app.platform.audit.record_all(records, &metadata).await.unwrap();
    Seeded { app, token, device: device.to_string(), batch: batch.to_string() }
}

impl Seeded {
    async fn verify(&self) -> Value {
        let (status, body) =
            self.app.call(Method::GET, "/api/v1/audit/verify", Some(&self.token), None).await;
        assert_eq!(status, 200, "{body}");
        // Reading the store a few events at a time crosses chains at page borders: same answer.
        for page in [1, 2, 3] {
            let paged = self.app.platform.integrity.clone().with_page(page).verify().await.unwrap();
            assert_eq!(serde_json::to_value(paged).unwrap(), body, "page size {page}");
        }
        body
    }

    /// Runs one statement, in the SQLite or the PostgreSQL spelling.
    async fn sql(&self, sqlite: &str, postgres: &str) {
        let affected = match &self.app.db {
            services::store::Database::Sqlite(pool) => {
                sqlx::query(sqlite).execute(pool).await.unwrap().rows_affected()
            }
            services::store::Database::Postgres(pool) => {
                sqlx::query(postgres).execute(pool).await.unwrap().rows_affected()
            }
        };
        assert!(affected >= 1, "the tampering statement changed nothing: {sqlite}");
    }

    async fn position(&self, aggregate_type: &str, aggregate_id: &str, sequence: i64) -> i64 {
        let sql =
            "SELECT global_seq FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = $3";
        let (position,): (i64,) = match &self.app.db {
            services::store::Database::Sqlite(pool) => {
                sqlx::query_as(sql)
                    .bind(aggregate_type)
                    .bind(aggregate_id)
                    .bind(sequence)
                    .fetch_one(pool)
                    .await
            }
            services::store::Database::Postgres(pool) => {
                sqlx::query_as(sql)
                    .bind(aggregate_type)
                    .bind(aggregate_id)
                    .bind(sequence)
                    .fetch_one(pool)
                    .await
            }
        }
        .unwrap();
        position
    }

    async fn event_count(&self) -> i64 {
        let sql = "SELECT COUNT(*) FROM events";
        let (count,): (i64,) = match &self.app.db {
            services::store::Database::Sqlite(pool) => sqlx::query_as(sql).fetch_one(pool).await,
            services::store::Database::Postgres(pool) => sqlx::query_as(sql).fetch_one(pool).await,
        }
        .unwrap();
        count
    }
}

/// Asserts the report fails with its first problem of `kind` at this place.
fn assert_problem(
    report: &Value,
    kind: &str,
    aggregate_type: &str,
    aggregate_id: &str,
    sequence: i64,
    position: i64,
) {
    assert_eq!(report["ok"], false, "{report:#}");
    let problem = &report["firstProblem"];
    assert_eq!(problem["kind"], kind, "{report:#}");
    assert_eq!(problem["aggregateType"], aggregate_type, "{report:#}");
    assert_eq!(problem["aggregateId"], aggregate_id, "{report:#}");
    assert_eq!(problem["sequence"], sequence, "{report:#}");
    assert_eq!(problem["position"], position, "{report:#}");
    assert!(problem["detail"].as_str().is_some_and(|d| !d.is_empty()), "{report:#}");
}

async fn an_untouched_store_verifies_even_after_the_database_respells_its_json(backend: Backend) {
    let s = seeded(backend).await;
    let report = s.verify().await;
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["firstProblem"], Value::Null);
    assert_eq!(report["events"], s.event_count().await, "{report:#}");
    assert_eq!(report["unchained"], 0);
    assert!(report["chains"].as_u64().unwrap() >= 4, "user, key, device, batch: {report:#}");
    assert_eq!(report["checkpoint"], Value::Null, "none recorded yet");

    // Every event carries its link.
    let events =
        services::events::EventLog::new(s.app.db.clone()).read_aggregate("device", &s.device).await.unwrap();
    assert_eq!(events.len(), 3);
    for pair in events.windows(2) {
        assert_eq!(pair[1].metadata["prev_hash"], pair[0].metadata["hash"]);
    }
    assert_eq!(events[0].metadata["prev_hash"], "0".repeat(64));

    // jsonb sorts keys and drops whitespace; SQLite's json() minifies. Neither is tampering.
    s.sql(
        "UPDATE events SET payload = json(payload), metadata = json(metadata)",
        "UPDATE events SET payload = payload::jsonb::json, metadata = metadata::jsonb::json",
    )
    .await;
    let report = s.verify().await;
    assert_eq!(report["ok"], true, "{report:#}");

    let checkpoint = s.app.platform.integrity.checkpoint().await.unwrap();
    assert_eq!(checkpoint.events, s.event_count().await);
    let report = s.verify().await;
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["checkpoint"]["number"], 1);
    assert_eq!(report["checkpoint"]["signatureValid"], true);
    assert_eq!(report["checkpoint"]["eventsAfter"], 0);
}

async fn an_updated_payload_is_reported_as_modified(backend: Backend) {
    let s = seeded(backend).await;
    let where_ =
        format!("WHERE aggregate_type = 'device' AND aggregate_id = '{}' AND sequence = 2", s.device);
    s.sql(
        &format!("UPDATE events SET payload = json_set(payload, '$.by', 'someone else') {where_}"),
        &format!(
            "UPDATE events SET payload = (payload::jsonb || '{{\"by\":\"someone else\"}}')::json {where_}"
        ),
    )
    .await;
    let position = s.position("device", &s.device, 2).await;
    assert_problem(&s.verify().await, "modified", "device", &s.device, 2, position);
}

async fn updated_metadata_is_reported_as_modified(backend: Backend) {
    let s = seeded(backend).await;
    let where_ =
        format!("WHERE aggregate_type = 'audit_record' AND aggregate_id = '{}' AND sequence = 2", s.batch);
    s.sql(
        &format!("UPDATE events SET metadata = json_set(metadata, '$.ip', '203.0.113.66') {where_}"),
        &format!(
            "UPDATE events SET metadata = (metadata::jsonb || '{{\"ip\":\"203.0.113.66\"}}')::json {where_}"
        ),
    )
    .await;
    let position = s.position("audit_record", &s.batch, 2).await;
    assert_problem(&s.verify().await, "modified", "audit_record", &s.batch, 2, position);
}

async fn a_deleted_middle_event_is_reported_where_the_gap_is(backend: Backend) {
    let s = seeded(backend).await;
    let next = s.position("audit_record", &s.batch, 3).await;
    let delete = format!(
        "DELETE FROM events WHERE aggregate_type = 'audit_record' AND aggregate_id = '{}' AND sequence = 2",
        s.batch
    );
    s.sql(&delete, &delete).await;
    assert_problem(&s.verify().await, "deleted", "audit_record", &s.batch, 2, next);
}

async fn a_deleted_last_event_is_caught_by_the_checkpoint(backend: Backend) {
    let s = seeded(backend).await;
    let last = s.position("device", &s.device, 3).await;
    let delete = format!(
        "DELETE FROM events WHERE aggregate_type = 'device' AND aggregate_id = '{}' AND sequence = 3",
        s.device
    );

    // A shortened chain is still a consistent chain: only the checkpoint knows where it ended.
    s.app.platform.integrity.checkpoint().await.unwrap();
    assert_eq!(s.verify().await["ok"], true);
    s.sql(&delete, &delete).await;
    let report = s.verify().await;
    assert_problem(&report, "deleted", "device", &s.device, 3, last);
    assert!(report["firstProblem"]["detail"].as_str().unwrap().contains("up to sequence 3"), "{report:#}");
    assert_eq!(report["checkpoint"]["signatureValid"], true);
    // The count the checkpoint signed disagrees too.
    assert!(report["problems"].as_u64().unwrap() >= 2, "{report:#}");

    // And a checkpoint is never signed over a history that does not verify.
    let refused = s.app.platform.integrity.checkpoint().await;
    assert!(refused.is_err(), "{refused:?}");
}

async fn a_forged_event_is_reported_as_inserted(backend: Backend) {
    let s = seeded(backend).await;
    // A copy of the device's last event, as the next one: its links cannot fit.
    let forge = format!(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         SELECT aggregate_type, aggregate_id, 4, 'DeviceReactivated', event_version, payload, metadata FROM events \
         WHERE aggregate_type = 'device' AND aggregate_id = '{}' AND sequence = 3",
        s.device
    );
    s.sql(&forge, &forge).await;
    let position = s.position("device", &s.device, 4).await;
    assert_problem(&s.verify().await, "inserted", "device", &s.device, 4, position);

    let remove = format!("DELETE FROM events WHERE aggregate_id = '{}' AND sequence = 4", s.device);
    s.sql(&remove, &remove).await;
    assert_eq!(s.verify().await["ok"], true);

    // A whole aggregate without hashes, passing itself off as history from before the chain.
    let forged_id = Uuid::new_v4().to_string();
    let (sqlite, postgres) = (
        format!(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
             VALUES ('audit_record', '{forged_id}', 1, 'LoginSucceeded', '1.0', '{{}}', '{{\"actor_type\":\"system\"}}')"
        ),
        format!(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
             VALUES ('audit_record', '{forged_id}', 1, 'LoginSucceeded', '1.0', '{{}}'::json, '{{\"actor_type\":\"system\"}}'::json)"
        ),
    );
    s.sql(&sqlite, &postgres).await;
    let position = s.position("audit_record", &forged_id, 1).await;
    assert_problem(&s.verify().await, "inserted", "audit_record", &forged_id, 1, position);
}

async fn swapped_sequences_are_reported_as_reordered(backend: Backend) {
    let s = seeded(backend).await;
    let moved = s.position("audit_record", &s.batch, 3).await;
    let where_ = format!("WHERE aggregate_type = 'audit_record' AND aggregate_id = '{}'", s.batch);
    for statement in [
        format!("UPDATE events SET sequence = 1000 {where_} AND sequence = 2"),
        format!("UPDATE events SET sequence = 2 {where_} AND sequence = 3"),
        format!("UPDATE events SET sequence = 3 {where_} AND sequence = 1000"),
    ] {
        s.sql(&statement, &statement).await;
    }
    assert_problem(&s.verify().await, "reordered", "audit_record", &s.batch, 2, moved);
}

async fn an_altered_checkpoint_does_not_verify(backend: Backend) {
    let s = seeded(backend).await;
    s.app.platform.integrity.checkpoint().await.unwrap();
    let bump = "UPDATE audit_checkpoints SET events = events - 1";
    s.sql(bump, bump).await;
    let report = s.verify().await;
    assert_eq!(report["ok"], false, "{report:#}");
    assert_eq!(report["checkpoint"]["signatureValid"], false, "{report:#}");
    assert_eq!(report["firstProblem"]["kind"], "checkpoint", "{report:#}");
}

async fn events_from_before_the_chain_are_counted_and_chained_onto(backend: Backend) {
    let s = seeded(backend).await;
    // As if the device's history had been stored before this version: no links, and the
    // migration's mark at its last event.
    let where_ = format!("WHERE aggregate_type = 'device' AND aggregate_id = '{}'", s.device);
    s.sql(
        &format!("UPDATE events SET metadata = json_remove(metadata, '$.hash', '$.prev_hash') {where_}"),
        &format!("UPDATE events SET metadata = (metadata::jsonb - 'hash' - 'prev_hash')::json {where_}"),
    )
    .await;
    let suspended = s.position("device", &s.device, 3).await;
    let mark = format!("UPDATE event_chain SET legacy_position = {suspended}");
    s.sql(&mark, &mark).await;
    let report = s.verify().await;
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["unchained"], 3, "{report:#}");

    // A new event links onto the hash computed over the unchained prefix, and a checkpoint
    // covers it all.
    let (status, body) = s
        .app
        .call(Method::PATCH, &format!("/api/v1/devices/{}/reactivate", s.device), Some(&s.token), None)
        .await;
    assert_eq!(status, 200, "{body}");
    s.app.platform.integrity.checkpoint().await.unwrap();
    let report = s.verify().await;
    assert_eq!((&report["ok"], &report["unchained"]), (&Value::Bool(true), &Value::from(3)), "{report:#}");

    // Changing an unchained event breaks the link of the first chained one.
    s.sql(
        &format!("UPDATE events SET payload = json_set(payload, '$.label', 'forged') {where_} AND sequence = 1"),
        &format!(
            "UPDATE events SET payload = (payload::jsonb || '{{\"label\":\"forged\"}}')::json {where_} AND sequence = 1"
        ),
    )
    .await;
    let reactivated = s.position("device", &s.device, 4).await;
    assert_problem(&s.verify().await, "modified", "device", &s.device, 4, reactivated);
}

async fn verify_needs_a_signed_in_auditor_and_the_public_key_is_public(backend: Backend) {
    let s = seeded(backend).await;
    let (status, _) = s.app.call(Method::GET, "/api/v1/audit/verify", None, None).await;
    assert_eq!(status, 401);
    let auditor = s.app.user_with_role(&s.token, "auditor").await;
    let (status, body) = s.app.call(Method::GET, "/api/v1/audit/verify", Some(&auditor), None).await;
    assert_eq!((status, &body["ok"]), (200, &Value::Bool(true)), "{body}");

    let (status, key) = s.app.call(Method::GET, "/api/v1/audit/public-key", None, None).await;
    assert_eq!(status, 200, "{key}");
    assert_eq!(key["algorithm"], "Ed25519");
    assert_eq!(key, serde_json::to_value(s.app.platform.integrity.public_key()).unwrap());
    assert!(
        key["pem"].as_str().unwrap().starts_with("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA"),
        "{key}"
    );
}

/// A batch's events get time-ordered ids (UUID version 7), in the order of the batch, so that they
/// land at the end of the unique indexes on `event_id` rather than all over them.
async fn a_batchs_events_get_time_ordered_ids(backend: Backend) {
    let s = seeded(backend).await;
    let sql = "SELECT CAST(event_id AS text) FROM events WHERE aggregate_id = $1 ORDER BY sequence";
    let ids: Vec<(String,)> = match &s.app.db {
        services::store::Database::Sqlite(pool) => sqlx::query_as(sql).bind(&s.batch).fetch_all(pool).await,
        services::store::Database::Postgres(pool) => sqlx::query_as(sql).bind(&s.batch).fetch_all(pool).await,
    }
    .unwrap();
    let ids: Vec<Uuid> = ids.iter().map(|(id,)| Uuid::parse_str(id).unwrap()).collect();
    assert_eq!(ids.len(), 4, "{ids:?}");
    assert!(ids.iter().all(|id| id.get_version_num() == 7), "{ids:?}");
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
}

on_both_backends!(
    a_batchs_events_get_time_ordered_ids,
    an_untouched_store_verifies_even_after_the_database_respells_its_json,
    an_updated_payload_is_reported_as_modified,
    updated_metadata_is_reported_as_modified,
    a_deleted_middle_event_is_reported_where_the_gap_is,
    a_deleted_last_event_is_caught_by_the_checkpoint,
    a_forged_event_is_reported_as_inserted,
    swapped_sequences_are_reported_as_reordered,
    an_altered_checkpoint_does_not_verify,
    events_from_before_the_chain_are_counted_and_chained_onto,
    verify_needs_a_signed_in_auditor_and_the_public_key_is_public,
);
