//! Policy on the proxy's path, end to end: a key made over the API, an enrolled device, kg-v1
//! signed requests through `/api/v1/proxy` to a fake upstream on loopback, and policies set over
//! `PUT /api/v1/policies/keys/{id}`. A refused request gets the generic answer, never reaches the
//! provider, and leaves an audit record with its precise reason; admitted requests show up in the
//! device's and the key's usage counters, which a rebuild reproduces.

mod device_support;
mod support;

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use device_support::{DeviceKey, Project, enroll, issue_code, sign, wait_for_reasons};
use reqwest::Method;
use serde_json::{Value, json};
use services::gate::REJECTED_KIND;
use support::upstream::{FakeUpstream, Reply, closed_port_url};
use support::{Backend, TestApp};
use uuid::Uuid;

const UNAUTHORIZED: &str = r#"{"error":"unauthorized"}"#;
const CHAT: &str = "/api/v1/proxy/v1/chat/completions";
const ANSWER: &str = r#"{"id":"chatcmpl-1","choices":[{"message":{"content":"Hi"}}],"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19}}"#;

/// An app, its admin, and one project key (OpenAI, pointed at `base_url`) with an active device.
struct Setup {
    app: TestApp,
    admin: String,
    project: Project,
    device: DeviceKey,
    device_id: Uuid,
}

async fn setup(backend: Backend, base_url: &str, expires_at: Option<chrono::DateTime<Utc>>) -> Setup {
    let app = TestApp::spawn(backend).await;
    let admin = app.bootstrap_admin().await;
    let project = create_key(&app, &admin, base_url, expires_at).await;
    let (device, device_id) = enrolled_device(&app, &project).await;
    Setup { app, admin, project, device, device_id }
}

async fn create_key(
    app: &TestApp,
    admin: &str,
    base_url: &str,
    expires_at: Option<chrono::DateTime<Utc>>,
) -> Project {
    let mut body = json!({
        "name": format!("app {}", Uuid::new_v4().simple()), "provider": "openai",
        "environment": "production", "providerKey": "sk-policy-provider-secret-0123456789",
        "baseUrl": base_url,
    });
    if let Some(at) = expires_at {
        body["expiresAt"] = at.to_rfc3339().into();
    }
    let (status, created) = app.call(Method::POST, "/api/v1/keys", Some(admin), Some(body)).await;
    assert_eq!(status, 201, "{created}");
    Project {
        id: created["key"]["id"].as_str().unwrap().parse().unwrap(),
        raw: created["rawKey"].as_str().unwrap().to_owned(),
    }
}

async fn enrolled_device(app: &TestApp, project: &Project) -> (DeviceKey, Uuid) {
    let code = issue_code(app, project, true, None).await;
    let device = DeviceKey::generate();
    let (status, enrolled) = enroll(app, &project.raw, &device.enrollment(Some(&code))).await;
    assert_eq!(status, 201, "{enrolled}");
    assert_eq!(enrolled["status"], "ACTIVE");
    let id = enrolled["id"].as_str().unwrap().parse().unwrap();
    (device, id)
}

impl Setup {
    /// Replaces the key's policy override with `settings`.
    async fn key_policy(&self, settings: Value) {
        let path = format!("/api/v1/policies/keys/{}", self.project.id);
        let (status, body) =
            self.app.call(Method::PUT, &path, Some(&self.admin), Some(json!({ "settings": settings }))).await;
        assert_eq!(status, 200, "{body}");
    }

    /// A signed JSON POST through the proxy.
    async fn proxy(&self, path: &str, body: &Value) -> device_support::Answer {
        proxy_as(&self.app, &self.device, &self.project, path, body).await
    }
}

async fn proxy_as(
    app: &TestApp,
    device: &DeviceKey,
    project: &Project,
    path: &str,
    body: &Value,
) -> device_support::Answer {
    let bytes = serde_json::to_vec(body).unwrap();
    let mut headers = sign(device, &project.raw, "POST", path, &bytes);
    headers.push(("content-type".to_owned(), "application/json".to_owned()));
    device_support::send(app, "POST", path, &headers, bytes).await
}

fn chat(model: &str) -> Value {
    json!({ "model": model, "messages": [{ "role": "user", "content": "Hello" }] })
}

/// The rejection record with `reason`, checked to name this key and device (a refusal raised
/// before the device is looked up names only its keyId).
async fn rejection(setup: &Setup, reason: &str) -> Value {
    let records = wait_for_reasons(&setup.app, REJECTED_KIND, &[reason]).await;
    let record = records.into_iter().find(|p| p["details"]["reason"] == reason).unwrap();
    assert_eq!(record["api_key_id"], setup.project.id.to_string(), "{record}");
    assert_eq!(record["details"]["keyId"], setup.device.key_id, "{record}");
    if reason != "project_key_expired" {
        assert_eq!(record["device_id"], setup.device_id.to_string(), "{record}");
    }
    record
}

async fn the_ip_allow_list_refuses_loopback_until_it_is_listed(backend: Backend) {
    let fake = FakeUpstream::spawn(Reply::Json { status: 200, body: ANSWER.to_owned() }).await;
    let s = setup(backend, &fake.base_url(), None).await;

    s.key_policy(json!({ "ipAllowList": ["10.0.0.0/8"] })).await;
    let refused = s.proxy(CHAT, &chat("gpt-4o")).await;
    assert_eq!((refused.status, refused.body.as_str()), (401, UNAUTHORIZED));
    assert!(fake.received().is_empty(), "a refused request reached the provider");
    let record = rejection(&s, "ip_not_allowed").await;
    assert_eq!(record["details"]["ip"], "127.0.0.1", "{record}");

    s.key_policy(json!({ "ipAllowList": ["127.0.0.0/8"] })).await;
    let admitted = s.proxy(CHAT, &chat("gpt-4o")).await;
    assert_eq!(admitted.status, 200, "{}", admitted.body);
    assert_eq!(admitted.body, ANSWER);
    assert_eq!(fake.single().target, "/v1/chat/completions");
}

async fn only_allowed_providers_pass(backend: Backend) {
    let fake = FakeUpstream::spawn(Reply::Json { status: 200, body: ANSWER.to_owned() }).await;
    let s = setup(backend, &fake.base_url(), None).await;

    // The key is an OpenAI key; the policy allows only Anthropic.
    s.key_policy(json!({ "allowedProviders": ["anthropic"] })).await;
    let refused = s.proxy(CHAT, &chat("gpt-4o")).await;
    assert_eq!((refused.status, refused.body.as_str()), (401, UNAUTHORIZED));
    rejection(&s, "provider_not_allowed").await;

    // Allowed, but the path names another provider than the key's.
    s.key_policy(json!({ "allowedProviders": ["openai", "anthropic"] })).await;
    let other = s.proxy("/api/v1/proxy/anthropic/v1/messages", &chat("claude")).await;
    assert_eq!((other.status, other.body.as_str()), (401, UNAUTHORIZED));
    assert!(fake.received().is_empty(), "a refused request reached the provider");

    let admitted = s.proxy("/api/v1/proxy/openai/v1/chat/completions", &chat("gpt-4o")).await;
    assert_eq!(admitted.status, 200, "{}", admitted.body);
    assert_eq!(fake.single().target, "/v1/chat/completions");
}

async fn only_allowed_models_pass(backend: Backend) {
    let fake = FakeUpstream::spawn(Reply::Json { status: 200, body: ANSWER.to_owned() }).await;
    let s = setup(backend, &fake.base_url(), None).await;
    s.key_policy(json!({ "allowedModels": ["gpt-4o-mini"] })).await;

    let refused = s.proxy(CHAT, &chat("gpt-4o")).await;
    assert_eq!((refused.status, refused.body.as_str()), (401, UNAUTHORIZED));
    assert!(fake.received().is_empty(), "a refused request reached the provider");
    rejection(&s, "model_not_allowed").await;

    let body = chat("gpt-4o-mini");
    let admitted = s.proxy(CHAT, &body).await;
    assert_eq!(admitted.status, 200, "{}", admitted.body);
    assert_eq!(&fake.single().body[..], serde_json::to_vec(&body).unwrap());
}

async fn tokens_per_day_run_out_with_429_and_retry_after(backend: Backend) {
    let fake = FakeUpstream::spawn(Reply::Json { status: 200, body: ANSWER.to_owned() }).await;
    let s = setup(backend, &fake.base_url(), None).await;
    s.key_policy(json!({ "tokensPerDay": 10 })).await;

    // Under the limit before the request; the answer's 19 tokens use it up.
    let first = s.proxy(CHAT, &chat("gpt-4o")).await;
    assert_eq!(first.status, 200, "{}", first.body);
    // The gate counts the tokens before the usage record is queued: once the key's counters
    // show the request, the limit knows it too.
    counted(&s.app, &s.admin, &format!("/api/v1/keys/{}", s.project.id), "tokensIn", 12).await;

    let refused = s.proxy(CHAT, &chat("gpt-4o")).await;
    assert_eq!((refused.status, refused.body.as_str()), (429, r#"{"error":"rate_limited"}"#));
    let retry: u64 = refused.retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=86_400).contains(&retry), "Retry-After {retry} is not within a day");
    assert_eq!(fake.received().len(), 1, "a refused request reached the provider");
    rejection(&s, "rate_limited_tokens").await;
}

async fn an_expired_project_key_is_refused(backend: Backend) {
    // The gate reads the wall clock: the key expires a few seconds after the device enrolled,
    // and the test polls (with a deadline) until the expiry has passed.
    let fake = FakeUpstream::spawn(Reply::Json { status: 200, body: ANSWER.to_owned() }).await;
    // Long enough that a loaded machine still finishes the setup first.
    let expires_at = Utc::now() + TimeDelta::seconds(12);
    let s = setup(backend, &fake.base_url(), Some(expires_at)).await;
    assert!(Utc::now() < expires_at, "the setup took longer than the key's lifetime");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let refused = loop {
        let answer = s.proxy(CHAT, &chat("gpt-4o")).await;
        if answer.status != 200 {
            break answer;
        }
        assert!(tokio::time::Instant::now() < deadline, "the expired key is still admitted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(Utc::now() >= expires_at, "refused before the expiry: {}", refused.body);
    assert_eq!((refused.status, refused.body.as_str()), (401, UNAUTHORIZED));
    rejection(&s, "project_key_expired").await;

    let (status, key) =
        s.app.call(Method::GET, &format!("/api/v1/keys/{}", s.project.id), Some(&s.admin), None).await;
    assert_eq!(status, 200, "{key}");
    assert_eq!(key["status"], "expired");
}

/// Polls the resource until `field` reaches `expected` (usage is written in batches).
async fn counted(app: &TestApp, admin: &str, path: &str, field: &str, expected: i64) -> Value {
    support::events::eventually(path, Duration::from_secs(10), || async {
        app.platform.projections.catch_up().await.unwrap();
        let (status, body) = app.call(Method::GET, path, Some(admin), None).await;
        assert_eq!(status, 200, "{body}");
        (body[field] == expected).then_some(body)
    })
    .await
}

async fn usage_counts_per_device_and_key_and_survives_a_rebuild(backend: Backend) {
    let fake = FakeUpstream::spawn(Reply::Json { status: 200, body: ANSWER.to_owned() }).await;
    let started = Utc::now();
    let s = setup(backend, &fake.base_url(), None).await;
    // A second key whose provider is unreachable: its requests are 502s, counted as errors.
    let broken = create_key(&s.app, &s.admin, &closed_port_url().await, None).await;
    let (broken_device, broken_device_id) = enrolled_device(&s.app, &broken).await;

    let device_path = format!("/api/v1/devices/{}", s.device_id);
    let key_path = format!("/api/v1/keys/{}", s.project.id);
    let (_, fresh) = s.app.call(Method::GET, &device_path, Some(&s.admin), None).await;
    assert_eq!((fresh["requestCount"].as_i64(), fresh["lastSeenAt"].is_null()), (Some(0), true), "{fresh}");

    for _ in 0..2 {
        let answer = s.proxy(CHAT, &chat("gpt-4o")).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    // A refusal at the gate is not a proxied request.
    s.key_policy(json!({ "allowedModels": ["gpt-4o"] })).await;
    assert_eq!(s.proxy(CHAT, &chat("other")).await.status, 401);
    let failed = proxy_as(&s.app, &broken_device, &broken, CHAT, &chat("gpt-4o")).await;
    assert_eq!(failed.status, 502, "{}", failed.body);

    let device = counted(&s.app, &s.admin, &device_path, "requestCount", 2).await;
    assert_eq!(
        [&device["tokensIn"], &device["tokensOut"], &device["tokenCount"], &device["errorCount"]],
        [24, 14, 38, 0],
        "{device}"
    );
    let seen: chrono::DateTime<Utc> = device["lastSeenAt"].as_str().unwrap().parse().unwrap();
    assert!(seen >= started && seen <= Utc::now(), "{device}");
    let key = counted(&s.app, &s.admin, &key_path, "requestCount", 2).await;
    assert_eq!([&key["tokensIn"], &key["tokensOut"], &key["errorCount"]], [24, 14, 0], "{key}");
    assert!(key["lastUsedAt"].is_string(), "{key}");

    let broken_path = format!("/api/v1/devices/{broken_device_id}");
    let broken_view = counted(&s.app, &s.admin, &broken_path, "errorCount", 1).await;
    assert_eq!([&broken_view["requestCount"], &broken_view["tokensIn"]], [1, 0], "{broken_view}");
    let broken_key = counted(&s.app, &s.admin, &format!("/api/v1/keys/{}", broken.id), "errorCount", 1).await;
    assert_eq!(broken_key["requestCount"], 1, "{broken_key}");

    // The usage events are in the audit log under their device.
    let (status, logs) = s
        .app
        .call(
            Method::GET,
            &format!("/api/v1/audit/logs?deviceId={}&eventType=RequestCompleted", s.device_id),
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{logs}");
    assert_eq!(logs["total"], 2, "{logs}");

    // A rebuild from the event store gives the same counters.
    s.app.platform.projections.rebuild().await.unwrap();
    let (_, rebuilt) = s.app.call(Method::GET, &device_path, Some(&s.admin), None).await;
    assert_eq!(rebuilt, device);
    let (_, rebuilt_key) = s.app.call(Method::GET, &key_path, Some(&s.admin), None).await;
    assert_eq!(rebuilt_key, key);
}

on_both_backends!(
    the_ip_allow_list_refuses_loopback_until_it_is_listed,
    only_allowed_providers_pass,
    only_allowed_models_pass,
    tokens_per_day_run_out_with_429_and_retry_after,
    an_expired_project_key_is_refused,
    usage_counts_per_device_and_key_and_survives_a_rebuild,
);
