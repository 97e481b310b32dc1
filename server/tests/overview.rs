//! The dashboard overview's data on both backends: real signed requests through the gate to fake
//! providers, and refused ones, fill the current hour of the traffic rollup; usage and audit
//! records of other hours land in their own hourly and daily buckets, which are always complete
//! and in order; a rebuild, or a store the projection has never seen, yields the same rows.

mod device_support;
mod support;

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use device_support::{DeviceKey, Project, enroll, issue_code, send, sign};
use domain::metadata::{Actor, EventMetadata};
use domain::provider::Provider;
use reqwest::Method;
use serde_json::json;
use services::audit::{AuditOutcome, AuditRecord};
use services::gate::{ENROLLMENT_REJECTED_KIND, REJECTED_KIND, SUPPRESSED_KIND};
use services::overview::{self, Overview, OverviewRange, ProviderTokens, TrafficBucket};
use services::projections::Projection;
use services::read_models::devices::StatusCounts;
use services::read_models::traffic::{self, TrafficHour};
use services::store::Database;
use services::usage::{AuditMode, UsageRecord};
use support::upstream::{FakeUpstream, Reply};
use support::{Backend, TestApp};
use uuid::Uuid;

const PROXY_PATH: &str = "/api/v1/proxy/v1/chat/completions";
const OPENAI_REQUEST: &[u8] = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"Hi"}]}"#;
const OPENAI_ANSWER: &str =
    r#"{"id":"chatcmpl-1","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":7}}"#;
const ANTHROPIC_PATH: &str = "/api/v1/proxy/v1/messages";
const ANTHROPIC_REQUEST: &[u8] = br#"{"model":"claude-3-5-haiku","max_tokens":8,"messages":[]}"#;
const ANTHROPIC_OVERLOADED: &str =
    r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;

/// An API key for `provider` whose upstream is `base_url`.
async fn project(app: &TestApp, admin: &str, provider: &str, base_url: String) -> Project {
    let body = json!({
        "name": format!("{provider} {}", Uuid::new_v4().simple()), "provider": provider,
        "environment": "production", "providerKey": "sk-test-provider-secret-0123456789", "baseUrl": base_url,
    });
    let (status, created) = app.call(Method::POST, "/api/v1/keys", Some(admin), Some(body)).await;
    assert_eq!(status, 201, "{created}");
    Project {
        id: created["key"]["id"].as_str().unwrap().parse().unwrap(),
        raw: created["rawKey"].as_str().unwrap().to_owned(),
    }
}

/// An active device of `project`; returns its key and id.
async fn active_device(app: &TestApp, project: &Project) -> (DeviceKey, Uuid) {
    let code = issue_code(app, project, true, None).await;
    let device = DeviceKey::generate();
    let (status, body) = enroll(app, &project.raw, &device.enrollment(Some(&code))).await;
    assert_eq!((status, body["status"].as_str()), (201, Some("ACTIVE")), "{body}");
    (device, body["id"].as_str().unwrap().parse().unwrap())
}

/// Sends a correctly signed request; returns the status.
async fn signed(app: &TestApp, device: &DeviceKey, project: &Project, path: &str, body: &[u8]) -> u16 {
    let mut headers = sign(device, &project.raw, "POST", path, body);
    headers.push(("content-type".to_owned(), "application/json".to_owned()));
    send(app, "POST", path, &headers, body.to_vec()).await.status
}

/// Sends a request whose signature covers another target than the one it is sent to.
async fn forged(app: &TestApp, device: &DeviceKey, project: &Project) -> u16 {
    let signed_for = format!("{PROXY_PATH}?stream=false");
    let mut headers = sign(device, &project.raw, "POST", &signed_for, OPENAI_REQUEST);
    headers.push(("content-type".to_owned(), "application/json".to_owned()));
    send(app, "POST", PROXY_PATH, &headers, OPENAI_REQUEST.to_vec()).await.status
}

fn totals(buckets: &[TrafficBucket]) -> (i64, i64, i64) {
    buckets.iter().fold((0, 0, 0), |(r, e, j), b| (r + b.requests, e + b.errors, j + b.rejections))
}

async fn signed_requests_and_refusals_fill_the_current_hour(backend: Backend) {
    let openai = FakeUpstream::spawn(Reply::Json { status: 200, body: OPENAI_ANSWER.to_owned() }).await;
    let anthropic =
        FakeUpstream::spawn(Reply::Json { status: 529, body: ANTHROPIC_OVERLOADED.to_owned() }).await;
    // Strict: each usage record is stored before its answer ends, so only refusals need waiting for.
    let app = TestApp::spawn_with(backend, |config| config.usage.mode = AuditMode::Strict).await;
    let admin = app.bootstrap_admin().await;
    let openai_key = project(&app, &admin, "openai", openai.base_url()).await;
    let anthropic_key = project(&app, &admin, "anthropic", anthropic.base_url()).await;
    let (busy, busy_id) = active_device(&app, &openai_key).await;
    let (quiet, quiet_id) = active_device(&app, &openai_key).await;
    let (failing, failing_id) = active_device(&app, &anthropic_key).await;
    let started = Utc::now();

    for _ in 0..3 {
        assert_eq!(signed(&app, &busy, &openai_key, PROXY_PATH, OPENAI_REQUEST).await, 200);
    }
    assert_eq!(signed(&app, &quiet, &openai_key, PROXY_PATH, OPENAI_REQUEST).await, 200);
    assert_eq!(signed(&app, &failing, &anthropic_key, ANTHROPIC_PATH, ANTHROPIC_REQUEST).await, 529);
    // One forged request per device: three refusals the gate does not coalesce into one record.
    for device in [&busy, &quiet] {
        assert_eq!(forged(&app, device, &openai_key).await, 401);
    }
    assert_eq!(forged(&app, &failing, &anthropic_key).await, 401);
    assert_eq!(openai.received().len(), 4, "nothing refused reached the provider");

    let (now, day) =
        support::events::eventually("the refusals in the overview", Duration::from_secs(10), || {
            let platform = app.platform.clone();
            async move {
                platform.projections.catch_up().await.unwrap();
                let now = Utc::now();
                let day = overview::overview(&platform, OverviewRange::Day, now).await.unwrap();
                (totals(&day.buckets).2 >= 3).then_some((now, day))
            }
        })
        .await;

    assert_eq!(day.range, OverviewRange::Day);
    assert_eq!(day.buckets.len(), 24);
    assert!(day.buckets.windows(2).all(|w| w[1].start - w[0].start == TimeDelta::hours(1)));
    assert_eq!(day.buckets[23].start, traffic::hour_start(now));
    // 5 forwarded, the overloaded one an error, 3 refused.
    assert_eq!(totals(&day.buckets), (5, 1, 3));
    if traffic::hour_start(started) == traffic::hour_start(now) {
        let current = &day.buckets[23];
        assert_eq!((current.requests, current.errors, current.rejections), (5, 1, 3));
    }
    assert_eq!(
        day.providers,
        [
            ProviderTokens { provider: "openai".into(), requests: 4, tokens_in: 48, tokens_out: 28 },
            ProviderTokens { provider: "anthropic".into(), requests: 1, tokens_in: 0, tokens_out: 0 },
        ]
    );
    let top: Vec<(Uuid, i64, i64)> =
        day.top_devices.iter().map(|d| (d.id, d.request_count, d.token_count)).collect();
    assert_eq!(top, [(busy_id, 3, 57), (quiet_id, 1, 19), (failing_id, 1, 0)]);
    assert!(day.top_devices.iter().all(|d| d.status == "active" && d.label == "test device"));
    assert_eq!(day.devices, StatusCounts { pending: 0, active: 3, suspended: 0, revoked: 0, total: 3 });
    let security: Vec<(&str, &str)> =
        day.recent_security.iter().map(|e| (e.event_type.as_str(), e.outcome.as_str())).collect();
    assert_eq!(security, [(REJECTED_KIND, "failure"); 3]);
    assert!(day.recent_security.windows(2).all(|w| w[0].position > w[1].position), "newest first");
    let refused: Vec<Option<String>> = day.recent_security.iter().map(|e| e.device_id.clone()).collect();
    for id in [busy_id, quiet_id, failing_id] {
        assert!(refused.contains(&Some(id.to_string())), "{id} not among {refused:?}");
    }

    let week = overview::overview(&app.platform, OverviewRange::Week, now).await.unwrap();
    assert_eq!(week.buckets.len(), 7);
    assert_eq!(week.buckets[6].start, OverviewRange::Week.bucket_start(now));
    assert_eq!(totals(&week.buckets), (5, 1, 3));
    assert_eq!(week.providers, day.providers);
}

/// A usage record as the proxy would store it for a request made at `at`.
fn usage(
    provider: Provider,
    at: DateTime<Utc>,
    status: u16,
    completed: bool,
    tokens: (u64, Option<u64>),
) -> UsageRecord {
    UsageRecord {
        api_key_id: Uuid::new_v4(),
        device_id: Uuid::new_v4(),
        key_id: "0123456789abcdef0123456789abcdef".into(),
        provider,
        model: None,
        method: "POST".into(),
        path: "/v1/chat/completions".into(),
        status,
        error: None,
        completed,
        streamed: false,
        tokens_in: Some(tokens.0),
        tokens_out: tokens.1,
        bytes_in: 10,
        bytes_out: 20,
        latency_ms: 5,
        at,
    }
}

fn time(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn bucket(start: &str, requests: i64, errors: i64, rejections: i64) -> TrafficBucket {
    TrafficBucket { start: time(start), requests, errors, rejections }
}

fn empty_buckets(range: OverviewRange, now: DateTime<Utc>) -> Vec<TrafficBucket> {
    let from = range.span(now).0;
    (0..range.buckets() as i32)
        .map(|i| TrafficBucket {
            start: from + range.bucket_width() * i,
            requests: 0,
            errors: 0,
            rejections: 0,
        })
        .collect()
}

async fn rollup(db: &Database) -> Vec<TrafficHour> {
    traffic::between(db, time("2000-01-01T00:00:00Z"), time("2100-01-01T00:00:00Z")).await.unwrap()
}

async fn raw_execute(db: &Database, sql: &str) {
    match db {
        Database::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(drop).unwrap(),
        Database::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(drop).unwrap(),
    }
}

async fn history_lands_in_its_buckets_and_replays_identically(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| config.usage.mode = AuditMode::Strict).await;
    let now = time("2024-03-10T10:20:00Z");
    let records = [
        // Before the week.
        usage(Provider::Google, time("2024-03-03T23:59:59Z"), 200, true, (5, Some(5))),
        usage(Provider::Google, time("2024-03-08T12:00:00Z"), 200, true, (1000, Some(1))),
        // The second before the day's first hour, and its first instant.
        usage(Provider::OpenAi, time("2024-03-09T10:59:59.999Z"), 200, true, (1, Some(1))),
        usage(Provider::OpenAi, time("2024-03-09T11:00:00Z"), 200, true, (1, Some(1))),
        // Three hours ago: a success and an upstream failure.
        usage(Provider::OpenAi, time("2024-03-10T07:20:00Z"), 200, true, (100, Some(20))),
        usage(Provider::Anthropic, time("2024-03-10T07:05:00Z"), 500, true, (0, None)),
        // This hour: an answer the client did not receive in full.
        usage(Provider::OpenAi, time("2024-03-10T10:20:00Z"), 200, false, (10, None)),
    ];
    for record in records {
        assert!(app.platform.usage.record(record).await, "stored before record() returns in strict mode");
    }
    let audit_at = |at: &str| EventMetadata::new(Actor::system("proxy"), time(at));
    let mut coalesced =
        AuditRecord::new(REJECTED_KIND, AuditOutcome::Failure, "bad_signature (5 more times)");
    coalesced.details = json!({ "reason": "bad_signature", "repeated": 5 });
    app.platform.audit.record(coalesced, &audit_at("2024-03-10T07:30:00Z")).await.unwrap();
    let mut suppressed = AuditRecord::new(SUPPRESSED_KIND, AuditOutcome::Failure, "7 refusals not recorded");
    suppressed.details = json!({ "count": 7 });
    let not_proxied = vec![
        suppressed,
        AuditRecord::new("LoginFailed", AuditOutcome::Failure, "sign-in as a@example.com: wrong password"),
        AuditRecord::new(ENROLLMENT_REJECTED_KIND, AuditOutcome::Failure, "enrollment refused"),
    ];
    app.platform.audit.record_all(not_proxied, &audit_at("2024-03-10T10:00:00Z")).await.unwrap();
    app.platform.projections.catch_up().await.unwrap();

    let day = overview::overview(&app.platform, OverviewRange::Day, now).await.unwrap();
    let mut expected = empty_buckets(OverviewRange::Day, now);
    expected[0] = bucket("2024-03-09T11:00:00Z", 1, 0, 0);
    expected[20] = bucket("2024-03-10T07:00:00Z", 2, 1, 5);
    expected[23] = bucket("2024-03-10T10:00:00Z", 1, 1, 7);
    assert_eq!(day.buckets, expected);
    assert_eq!(
        day.providers,
        [
            ProviderTokens { provider: "openai".into(), requests: 3, tokens_in: 111, tokens_out: 21 },
            ProviderTokens { provider: "anthropic".into(), requests: 1, tokens_in: 0, tokens_out: 0 },
        ]
    );
    // The usage records name devices that never enrolled: the devices read model has none.
    assert!(day.top_devices.is_empty());
    let security: Vec<&str> = day.recent_security.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(security, [ENROLLMENT_REJECTED_KIND, "LoginFailed", SUPPRESSED_KIND, REJECTED_KIND]);

    let week = overview::overview(&app.platform, OverviewRange::Week, now).await.unwrap();
    let mut expected = empty_buckets(OverviewRange::Week, now);
    assert_eq!(expected[0].start, time("2024-03-04T00:00:00Z"));
    expected[4] = bucket("2024-03-08T00:00:00Z", 1, 0, 0);
    expected[5] = bucket("2024-03-09T00:00:00Z", 2, 0, 0);
    expected[6] = bucket("2024-03-10T00:00:00Z", 3, 2, 12);
    assert_eq!(week.buckets, expected);
    assert_eq!(
        week.providers,
        [
            ProviderTokens { provider: "google".into(), requests: 1, tokens_in: 1000, tokens_out: 1 },
            ProviderTokens { provider: "openai".into(), requests: 4, tokens_in: 112, tokens_out: 22 },
            ProviderTokens { provider: "anthropic".into(), requests: 1, tokens_in: 0, tokens_out: 0 },
        ]
    );

    // A rebuild reproduces the rollup row for row.
    let db = &app.db;
    let before = rollup(db).await;
    assert_eq!(before.len(), 9, "{before:#?}");
    let reached = app.platform.projections.rebuild().await.unwrap();
    assert_eq!(rollup(db).await, before);
    assert_eq!(app.platform.projections.checkpoints().await.unwrap()[&Projection::Traffic], reached);
    let rebuilt: Overview = overview::overview(&app.platform, OverviewRange::Week, now).await.unwrap();
    assert_eq!(rebuilt, week);

    // A store the projection has never seen (as after the upgrade that adds it): no checkpoint,
    // an empty table. The next catch-up replays the whole history into it.
    raw_execute(db, "DELETE FROM traffic_hourly").await;
    raw_execute(db, "DELETE FROM projection_checkpoints WHERE name = 'traffic'").await;
    assert!(rollup(db).await.is_empty());
    assert_eq!(app.platform.projections.catch_up().await.unwrap(), reached);
    assert_eq!(rollup(db).await, before);
}

on_both_backends!(
    signed_requests_and_refusals_fill_the_current_hour,
    history_lands_in_its_buckets_and_replays_identically,
);
