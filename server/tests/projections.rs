//! The projections on both backends: real domain commands produce the expected read models,
//! a rebuild reproduces them exactly, an interrupted catch-up applies every event exactly once,
//! a failing event rolls back its whole batch with the checkpoint, the event log never passes a
//! transaction still in flight, and audit records travel like any other event.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DurationRound as _, SecondsFormat, TimeDelta, Utc};
use domain::device::{Device, DeviceCommand, DeviceStatus};
use domain::metadata::{Actor, EventMetadata};
use domain::policy::PolicyScope;
use domain::user::Email;
use services::audit::{AuditOutcome, AuditRecord, AuditRecorder};
use services::events::EventLog;
use services::projections::{Projection, ProjectionError, Projections, ProjectionsConfig};
use services::read_models::audit::AuditFilter;
use services::read_models::devices::{DeviceFilter, StatusCounts};
use services::read_models::users::UserFilter;
use services::read_models::{self, PageRequest, api_keys, audit, devices, enrollment_codes, policies, users};
use services::store::{BatchEvent, Database};
use support::events::{
    READ_MODEL_TABLES, count, dump, enroll, eventually, metadata, read_all, scenario, sealed,
};
use support::{Backend, TestDb};
use uuid::Uuid;

fn projections(db: &Database) -> Projections {
    Projections::new(db.clone(), ProjectionsConfig::default())
}

async fn domain_commands_produce_the_expected_read_models(backend: Backend) {
    let test = TestDb::new(backend).await;
    let db = &test.db;
    let s = scenario(db).await;
    let reached = projections(db).catch_up().await.unwrap();
    assert_eq!(reached, EventLog::new(db.clone()).head().await.unwrap());

    // Devices.
    let device = devices::get(db, s.device).await.unwrap().expect("the device is projected");
    assert_eq!(device.api_key_id, s.api_key);
    assert_eq!(device.label, "build agent 2");
    assert_eq!(device.status, "suspended");
    assert_eq!(device.status_reason.as_deref(), Some("lost laptop"));
    assert_eq!(device.enrolled_ip.as_deref(), Some("198.51.100.9"));
    assert_eq!(device.metadata, serde_json::json!({ "os": "linux" }));
    assert_eq!(device.enrollment_code_id, Some(s.code.to_string()));
    assert_eq!((device.last_seen_at, device.request_count, device.token_count), (None, 0, 0));
    assert!(device.updated_at >= device.enrolled_at);
    let found = devices::find_by_key_id(db, s.api_key, &device.key_id).await.unwrap().unwrap();
    assert_eq!(found.api_key_id, s.api_key);

    let all = devices::list(db, &DeviceFilter::default()).await.unwrap();
    assert_eq!(all.total, 2);
    let revoked =
        devices::list(db, &DeviceFilter { status: Some(DeviceStatus::Revoked), ..Default::default() })
            .await
            .unwrap();
    assert_eq!(revoked.items.iter().map(|d| d.id).collect::<Vec<_>>(), [s.second_device]);
    let searched = devices::list(db, &DeviceFilter { search: Some("AGENT".into()), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(searched.items.iter().map(|d| d.id).collect::<Vec<_>>(), [s.device]);
    let other_key =
        devices::list(db, &DeviceFilter { api_key_id: Some(Uuid::new_v4()), ..Default::default() })
            .await
            .unwrap();
    assert_eq!(other_key.total, 0);
    let paged = devices::list(db, &DeviceFilter { page: PageRequest::new(1, 1), ..Default::default() })
        .await
        .unwrap();
    assert_eq!((paged.items.len(), paged.total, paged.limit, paged.offset), (1, 2, 1, 1));
    assert_eq!(
        devices::counts_by_status(db).await.unwrap(),
        StatusCounts { pending: 0, active: 0, suspended: 1, revoked: 1, total: 2 }
    );

    // API keys and codes.
    let key = api_keys::get(db, s.api_key).await.unwrap().unwrap();
    assert_eq!(
        (key.name.as_str(), key.provider.as_str(), key.environment.as_str()),
        ("production", "openai", "production")
    );
    assert_eq!(key.project_key_prefix, "kg_ab12");
    assert_eq!(key.status_at(Utc::now()), domain::api_key::ApiKeyStatus::Active);
    assert_eq!(key.created_by, format!("user:{}", s.admin));
    let by_hash = api_keys::find_by_project_key_hash(db, &s.project_key_hash).await.unwrap().unwrap();
    assert_eq!(by_hash.id, s.api_key);
    assert!(by_hash.accepts_hash_at(&s.project_key_hash, Utc::now()));
    assert_eq!(api_keys::sealed_secret(db, s.api_key).await.unwrap(), Some(sealed()));
    let listed = api_keys::list(db, &Default::default()).await.unwrap();
    assert_eq!(listed.total, 1);
    let listed_json = serde_json::to_string(&listed).unwrap();
    assert!(!listed_json.contains(sealed().ciphertext_b64()), "listings never carry the sealed secret");
    let codes = enrollment_codes::list(db, s.api_key).await.unwrap();
    assert_eq!(codes.len(), 1);
    assert_eq!((codes[0].id, codes[0].uses, codes[0].max_uses), (s.code, 1, 1));
    assert_eq!(codes[0].status, "exhausted");
    assert_eq!(codes[0].description.as_deref(), Some("laptop"));

    // Users: the hash only through the login lookup.
    let email = Email::parse("admin@example.com").unwrap();
    let user = users::find_by_email(db, &email).await.unwrap().unwrap();
    assert_eq!(
        (user.id, user.name.as_str(), user.role.as_str(), user.disabled),
        (s.admin, "Ada Admin", "admin", false)
    );
    assert_eq!(users::count(db).await.unwrap(), 1);
    assert_eq!(users::list(db, &UserFilter::default()).await.unwrap().items, vec![user.clone()]);
    assert!(!serde_json::to_string(&user).unwrap().contains("argon2"));
    let credentials = users::credentials_by_email(db, &email).await.unwrap().unwrap();
    assert_eq!(credentials.password_hash.as_phc_str(), support::events::PASSWORD_HASH);
    assert!(!format!("{credentials:?}").contains("argon2"));

    // Policies.
    let global = policies::get(db, PolicyScope::Global).await.unwrap().unwrap();
    assert_eq!(global.settings.requests_per_minute, Some(s.requests_per_minute));
    let all = policies::all(db).await.unwrap();
    assert_eq!(
        all.iter().map(|p| p.scope).collect::<Vec<_>>(),
        [PolicyScope::Global, PolicyScope::Device(s.device)]
    );

    // The audit log: one entry per event, with the real actor, IP and user agent.
    let events = count(db, "events").await;
    let entries =
        audit::list(db, &AuditFilter { page: PageRequest::new(500, 0), ..Default::default() }).await.unwrap();
    assert_eq!(entries.total, events);
    assert!(entries.items.windows(2).all(|w| w[0].position > w[1].position), "newest first");
    let suspended = audit::list(
        db,
        &AuditFilter {
            event_types: vec!["DeviceSuspended".into()],
            device_id: Some(s.device),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(suspended.total, 1);
    let entry = &suspended.items[0];
    assert_eq!(entry.actor_type.as_deref(), Some("user"));
    assert_eq!(entry.actor_id, Some(s.admin.to_string()));
    assert_eq!(entry.ip.as_deref(), Some("203.0.113.7"));
    assert_eq!(entry.user_agent.as_deref(), Some("keyguard-tests/1.0"));
    assert_eq!(entry.request_id.as_deref(), Some("r-suspend"));
    assert_eq!(entry.outcome, "success");
    assert_eq!(entry.summary, "Device suspended: lost laptop");
    assert_eq!(audit::get(db, entry.position).await.unwrap().as_ref(), Some(entry));
    let by_key =
        audit::list(db, &AuditFilter { api_key_id: Some(s.api_key), ..Default::default() }).await.unwrap();
    assert!(by_key.items.iter().any(|e| e.event_type == "ApiKeyCreated"));
    assert!(by_key.items.iter().any(|e| e.event_type == "DeviceEnrolled"));
    let searched =
        audit::list(db, &AuditFilter { search: Some("STOLEN".into()), ..Default::default() }).await.unwrap();
    assert_eq!(searched.items.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>(), ["DeviceRevoked"]);
    let by_actor =
        audit::list(db, &AuditFilter { actor_id: Some("cli".into()), ..Default::default() }).await.unwrap();
    assert_eq!(by_actor.items.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>(), ["UserCreated"]);
    let future =
        audit::list(db, &AuditFilter { from: Some(Utc::now() + TimeDelta::hours(1)), ..Default::default() })
            .await
            .unwrap();
    assert_eq!(future.total, 0);
    let past =
        audit::list(db, &AuditFilter { to: Some(Utc::now() + TimeDelta::hours(1)), ..Default::default() })
            .await
            .unwrap();
    assert_eq!(past.total, events);
    let failures =
        audit::list(db, &AuditFilter { outcome: Some(AuditOutcome::Failure), ..Default::default() })
            .await
            .unwrap();
    assert_eq!(failures.total, 0);
    // Secrets never reach the audit trail.
    let dumped = serde_json::to_string(&entries).unwrap();
    assert!(!dumped.contains("argon2id") && !dumped.contains(sealed().ciphertext_b64()), "{dumped}");
}

async fn rebuild_reproduces_identical_read_models(backend: Backend) {
    let test = TestDb::new(backend).await;
    let db = &test.db;
    scenario(db).await;
    scenario(db).await;
    let runner = projections(db);
    runner.catch_up().await.unwrap();
    let before = dump(db, READ_MODEL_TABLES).await;
    assert_eq!(before["audit_log"].len() as i64, count(db, "events").await);

    let reached = runner.rebuild().await.unwrap();
    let after = dump(db, READ_MODEL_TABLES).await;
    assert_eq!(reached, EventLog::new(db.clone()).head().await.unwrap());
    for table in READ_MODEL_TABLES.iter().filter(|t| **t != "projection_checkpoints") {
        assert_eq!(before[*table], after[*table], "table {table} differs after the rebuild");
    }
    let checkpoints = runner.checkpoints().await.unwrap();
    assert!(checkpoints.values().all(|p| *p == reached), "{checkpoints:?}");
}

async fn an_interrupted_catch_up_applies_every_event_exactly_once(backend: Backend) {
    let test = TestDb::new(backend).await;
    let db = &test.db;
    scenario(db).await;
    scenario(db).await;
    let head = EventLog::new(db.clone()).head().await.unwrap();

    // One event per transaction, so the crash lands between two committed batches or inside one.
    let slow =
        Arc::new(Projections::new(db.clone(), ProjectionsConfig { batch_size: 1, ..Default::default() }));
    let running = tokio::spawn({
        let slow = slow.clone();
        async move { slow.catch_up().await }
    });
    let crashed_at = eventually("the first batches to commit", Duration::from_secs(20), || async {
        let audit = slow.checkpoints().await.ok()?[&Projection::AuditLog];
        (audit >= 3).then_some(audit)
    })
    .await;
    running.abort();
    let _ = running.await;
    drop(slow);
    assert!(crashed_at < head, "the crash must come before the end ({crashed_at} of {head})");
    let partial = count(db, "audit_log").await;
    assert!(partial < count(db, "events").await, "the catch-up really was interrupted");

    // A new runner resumes from the checkpoints; the audit log's plain INSERT would fail on a
    // position applied twice.
    let resumed = projections(db);
    assert_eq!(resumed.catch_up().await.unwrap(), head);
    assert_eq!(count(db, "audit_log").await, count(db, "events").await);
    let after_crash = dump(db, READ_MODEL_TABLES).await;
    resumed.rebuild().await.unwrap();
    let rebuilt = dump(db, READ_MODEL_TABLES).await;
    for table in READ_MODEL_TABLES.iter().filter(|t| **t != "projection_checkpoints") {
        assert_eq!(after_crash[*table], rebuilt[*table], "table {table} differs from a clean replay");
    }
}

async fn a_failing_event_rolls_back_its_batch_and_checkpoint(backend: Backend) {
    let test = TestDb::new(backend).await;
    let db = &test.db;
    let runner = projections(db);
    runner.catch_up().await.unwrap();
    let device = Uuid::new_v4();
    enroll(db, device, Uuid::new_v4(), None, "poisoned").await;
    // A hand-written event the devices projection cannot read, after a good one.
    let bad = r#"{"type":"DeviceApproved","by":"nobody"}"#;
    let meta = serde_json::to_string(&metadata(Actor::system("tests"), "r-bad")).unwrap();
    let insert = "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
                  VALUES ('device', $1, 2, 'DeviceApproved', '1.0', $2, $3)";
    match db {
        Database::Postgres(pool) => {
            let sql = insert.replace("$2, $3", "$2::json, $3::json");
            sqlx::query(&sql).bind(device.to_string()).bind(bad).bind(&meta).execute(pool).await.unwrap();
        }
        Database::Sqlite(pool) => {
            sqlx::query(insert).bind(device.to_string()).bind(bad).bind(&meta).execute(pool).await.unwrap();
        }
    }

    // Both events must come in one batch. On PostgreSQL the log hands out an event only once no
    // older transaction anywhere in the cluster (another test's) can still commit before it, so
    // the bad one may become readable a moment after the good one: wait until both are.
    let log = EventLog::new(db.clone());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while log.read_after(0, 10).await.unwrap().len() < 2 {
        assert!(std::time::Instant::now() < deadline, "the two events never became readable together");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let err = runner.catch_up().await.unwrap_err();
    assert!(matches!(err, ProjectionError::Apply { projection: "devices", .. }), "{err:?}");
    // Neither the good event of the batch nor the checkpoint moved for devices...
    assert_eq!(devices::get(db, device).await.unwrap(), None);
    let checkpoints = runner.checkpoints().await.unwrap();
    assert_eq!(checkpoints[&Projection::Devices], 0);
    // ...while the other projections went on.
    let head = EventLog::new(db.clone()).head().await.unwrap();
    assert_eq!(checkpoints[&Projection::AuditLog], head);
    assert_eq!(count(db, "audit_log").await, 2);

    // Once the bad event is gone (only a test may do that), the batch applies as a whole.
    let delete = "DELETE FROM events WHERE aggregate_id = $1 AND sequence = 2";
    match db {
        Database::Postgres(pool) => {
            sqlx::query(delete).bind(device.to_string()).execute(pool).await.unwrap();
        }
        Database::Sqlite(pool) => {
            sqlx::query(delete).bind(device.to_string()).execute(pool).await.unwrap();
        }
    }
    runner.catch_up().await.unwrap();
    assert_eq!(devices::get(db, device).await.unwrap().unwrap().status, "pending");
}

/// A transaction holds an appended event uncommitted while another command appends after it:
/// the reader must not pass the held event, and sees both, in order, once it commits.
async fn the_log_never_passes_an_uncommitted_append(backend: Backend) {
    let test = TestDb::new(backend).await;
    let db = &test.db;
    let log = EventLog::new(db.clone());
    let first = Uuid::new_v4();
    enroll(db, first, Uuid::new_v4(), None, "first").await;
    let before = read_all(db).await;
    assert_eq!(before.len(), 1);

    let held_id = Uuid::new_v4().to_string();
    let meta = serde_json::to_string(&metadata(Actor::system("tests"), "r-held")).unwrap();
    let payload =
        r#"{"type":"DeviceApproved","by":{"type":"system","component":"tests"},"at":"2026-03-01T12:00:00Z"}"#;
    let insert = "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
                  VALUES ('held', $1, 1, 'DeviceApproved', '1.0', $2, $3)";
    enum Held {
        Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
        Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    }
    let held = match db {
        Database::Postgres(pool) => {
            let mut tx = pool.begin().await.unwrap();
            let sql = insert.replace("$2, $3", "$2::json, $3::json");
            sqlx::query(&sql).bind(&held_id).bind(payload).bind(&meta).execute(&mut *tx).await.unwrap();
            Held::Postgres(tx)
        }
        Database::Sqlite(pool) => {
            let mut tx = pool.begin().await.unwrap();
            sqlx::query(insert).bind(&held_id).bind(payload).bind(&meta).execute(&mut *tx).await.unwrap();
            Held::Sqlite(tx)
        }
    };

    // A later command: it waits for the held append (appends are ordered by commit) or, were
    // it to commit first, must still not be read past the held one.
    let later = Uuid::new_v4();
    let writer = tokio::spawn({
        let db = db.clone();
        async move { enroll(&db, later, Uuid::new_v4(), None, "later").await }
    });
    for _ in 0..20 {
        // Fewer is fine (another test's transaction may hold the reader back); more is not.
        let seen = log.read_after(0, 100).await.unwrap();
        assert!(
            seen.iter().all(|e| before.contains(e)),
            "the reader went past an uncommitted append: {seen:?}"
        );
        tokio::task::yield_now().await;
    }

    match held {
        Held::Postgres(tx) => tx.commit().await.unwrap(),
        Held::Sqlite(tx) => tx.commit().await.unwrap(),
    }
    writer.await.unwrap();
    let all = eventually("both appends to be readable", Duration::from_secs(10), || async {
        let all = log.read_after(0, 100).await.unwrap();
        (all.len() == 3).then_some(all)
    })
    .await;
    let ids: Vec<&str> = all.iter().map(|e| e.aggregate_id.as_str()).collect();
    assert_eq!(ids, [first.to_string().as_str(), held_id.as_str(), later.to_string().as_str()]);
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));
    let unique: std::collections::HashSet<Uuid> = all.iter().map(|e| e.event_id).collect();
    assert_eq!(unique.len(), 3, "every event has its own id");
}

/// Many concurrent commands while the background runner works: every event ends up in the
/// audit log exactly once, and the devices agree with a clean replay.
async fn the_background_runner_keeps_up_with_concurrent_commands(backend: Backend) {
    let test = TestDb::new(backend).await;
    let db = &test.db;
    let bus = services::events::EventBus::default();
    let runner = Arc::new(Projections::new(
        db.clone(),
        ProjectionsConfig { batch_size: 7, poll_interval: Duration::from_millis(20), ..Default::default() },
    ));
    let task = runner.clone().spawn(&bus);
    let writers: Vec<_> = (0..8)
        .map(|n| {
            let db = db.clone();
            tokio::spawn(async move {
                let id = Uuid::new_v4();
                enroll(&db, id, Uuid::new_v4(), None, &format!("d{n}")).await;
                let cqrs = db.cqrs::<Device>(vec![], ());
                let admin = Actor::User { id: Uuid::from_u128(1) };
                for i in 0..5 {
                    let rename = DeviceCommand::Rename {
                        by: admin.clone(),
                        label: format!("d{n}-{i}"),
                        at: Utc::now(),
                    };
                    cqrs.execute_with_metadata(&id.to_string(), rename, metadata(admin.clone(), "r"))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let events = count(db, "events").await;
    assert_eq!(events, 8 * 6);
    eventually("the runner to apply every event", Duration::from_secs(20), || async {
        (count(db, "audit_log").await == events).then_some(())
    })
    .await;
    task.shutdown().await;
    let labels: HashMap<Uuid, String> = devices::list(db, &DeviceFilter::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|d| (d.id, d.label))
        .collect();
    assert_eq!(labels.len(), 8);
    assert!(labels.values().all(|l| l.ends_with("-4")), "{labels:?}");
}

async fn audit_records_travel_like_any_event(backend: Backend) {
    let test = TestDb::new(backend).await;
    let db = &test.db;
    let recorder = AuditRecorder::new(db.clone());
    let meta = EventMetadata::new(Actor::system("auth"), Utc::now())
        .with_ip("2001:db8::7".parse().unwrap())
        .with_user_agent("curl/8")
        .with_request_id("r-login");
    let device = Uuid::new_v4();
    let mut failed =
        AuditRecord::new("LoginFailed", AuditOutcome::Failure, "Failed login for eve@example.com");
    failed.details = serde_json::json!({ "email": "eve@example.com", "reason": "wrong_password" });
    let mut rejected = AuditRecord::new("SignatureRejected", AuditOutcome::Denied, "Signature rejected");
    rejected.device_id = Some(device);
    let batch = recorder.record_all(vec![failed.clone(), rejected], &meta).await.unwrap();
    let single = recorder.record(failed, &meta).await.unwrap();
    assert_ne!(batch, single);
    assert!(
        AuditRecorder::new(db.clone())
            .record(AuditRecord::new("bad kind!", AuditOutcome::Failure, "x"), &meta)
            .await
            .is_err()
    );

    let log = read_all(db).await;
    assert_eq!(log.len(), 3);
    assert_eq!(
        log.iter().map(|e| (e.aggregate_id.clone(), e.sequence)).collect::<Vec<_>>(),
        [(batch.to_string(), 1), (batch.to_string(), 2), (single.to_string(), 1)]
    );
    assert!(log.iter().all(|e| e.aggregate_type == "audit_record"));
    assert_eq!(log[0].payload["type"], "LoginFailed");

    projections(db).catch_up().await.unwrap();
    let failures =
        audit::list(db, &AuditFilter { outcome: Some(AuditOutcome::Failure), ..Default::default() })
            .await
            .unwrap();
    assert_eq!(failures.total, 2);
    let entry = &failures.items[0];
    assert_eq!(
        (entry.event_type.as_str(), entry.summary.as_str()),
        ("LoginFailed", "Failed login for eve@example.com")
    );
    assert_eq!((entry.actor_type.as_deref(), entry.actor_id.as_deref()), (Some("system"), Some("auth")));
    assert_eq!(entry.ip.as_deref(), Some("2001:db8::7"));
    assert_eq!(entry.user_agent.as_deref(), Some("curl/8"));
    let denied =
        audit::list(db, &AuditFilter { device_id: Some(device), ..Default::default() }).await.unwrap();
    assert_eq!(denied.items.iter().map(|e| e.outcome.as_str()).collect::<Vec<_>>(), ["denied"]);
    // Audit records touch no other read model.
    assert_eq!(read_models::users::count(db).await.unwrap(), 0);
}

/// A usage batch as the proxy writes it, one record per `(device, status, completed, at)`.
async fn usage_batch(db: &Database, api_key: Uuid, records: &[(Uuid, u16, bool, chrono::DateTime<Utc>)]) {
    let events: Vec<BatchEvent> = (0u64..)
        .zip(records)
        .map(|(n, (device, status, completed, at))| BatchEvent {
            event_type: "RequestCompleted".into(),
            event_version: "1.0".into(),
            payload_json: serde_json::json!({
                "type": "RequestCompleted",
                "api_key_id": api_key,
                "device_id": device,
                "key_id": "kid",
                "provider": "openai",
                "method": "POST",
                "path": "/v1/chat/completions",
                "status": status,
                "completed": completed,
                "streamed": false,
                "tokens_in": 10 + n,
                "tokens_out": 100 + n,
                "bytes_in": 1,
                "bytes_out": 2,
                "latency_ms": 3,
                "at": at.to_rfc3339_opts(SecondsFormat::Millis, true),
            })
            .to_string(),
        })
        .collect();
    let metadata = serde_json::to_string(&metadata(Actor::system("proxy"), "usage")).unwrap();
    db.append_batch("usage_batch", &Uuid::new_v4().to_string(), &events, &metadata).await.unwrap();
}

/// Usage records are counted a run at a time (one write per device, key and hour); the rows must
/// be those of counting them one by one, whatever falls between the runs.
async fn usage_counted_in_runs_equals_one_record_at_a_time(backend: Backend) {
    let test = TestDb::new(backend).await;
    let db = &test.db;
    let s = scenario(db).await;
    let hour = (Utc::now() - TimeDelta::hours(3)).duration_trunc(TimeDelta::hours(1)).unwrap();
    let (a, b) = (s.device, s.second_device);
    usage_batch(
        db,
        s.api_key,
        &[
            (a, 200, true, hour),
            (b, 502, true, hour + TimeDelta::minutes(70)),
            (a, 200, false, hour + TimeDelta::minutes(65)),
            (a, 200, true, hour + TimeDelta::minutes(5)),
        ],
    )
    .await;
    // Between two runs: an event that changes a device, so a run cannot swallow it.
    let devices = db.cqrs::<Device>(vec![], ());
    let reactivate = DeviceCommand::Reactivate { by: Actor::User { id: s.admin }, at: Utc::now() };
    devices
        .execute_with_metadata(&a.to_string(), reactivate, metadata(Actor::User { id: s.admin }, "r"))
        .await
        .unwrap();
    usage_batch(db, s.api_key, &[(b, 200, true, hour + TimeDelta::minutes(61)), (a, 404, true, hour)]).await;

    let runs = projections(db);
    runs.catch_up().await.unwrap();
    let tables = ["devices", "api_keys", "traffic_hourly", "audit_log"];
    let counted_in_runs = dump(db, &tables).await;
    let one_at_a_time =
        Projections::new(db.clone(), ProjectionsConfig { batch_size: 1, ..Default::default() });
    one_at_a_time.rebuild().await.unwrap();
    assert_eq!(dump(db, &tables).await, counted_in_runs);

    let device = devices::get(db, a).await.unwrap().unwrap();
    assert_eq!(device.status, DeviceStatus::Active.as_str());
    // Tokens: records 0, 2, 3 of the first batch and 1 of the second.
    assert_eq!((device.request_count, device.error_count), (4, 2), "{device:?}");
    assert_eq!((device.tokens_in, device.tokens_out), (10 + 12 + 13 + 11, 100 + 102 + 103 + 101));
    assert_eq!(
        device.last_seen_at.map(|t| t.timestamp_millis()),
        Some((hour + TimeDelta::minutes(65)).timestamp_millis())
    );
    let key = api_keys::get(db, s.api_key).await.unwrap().unwrap();
    assert_eq!((key.request_count, key.error_count), (6, 3), "{key:?}");
    let traffic = dump(db, &["traffic_hourly"]).await["traffic_hourly"].len();
    assert_eq!(traffic, 2, "two hours of traffic");
}

on_both_backends!(
    usage_counted_in_runs_equals_one_record_at_a_time,
    domain_commands_produce_the_expected_read_models,
    rebuild_reproduces_identical_read_models,
    an_interrupted_catch_up_applies_every_event_exactly_once,
    a_failing_event_rolls_back_its_batch_and_checkpoint,
    the_log_never_passes_an_uncommitted_append,
    the_background_runner_keeps_up_with_concurrent_commands,
    audit_records_travel_like_any_event,
);
