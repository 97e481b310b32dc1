//! Hostile requests against `POST /api/v1/keyguard/verify-test`: every one gets the generic 401
//! `{"error":"unauthorized"}` (or 413 / 429 where that is the rule), whatever failed, and the
//! audit trail records the precise reason. Also: per-device rate limits answer 429 with
//! `Retry-After`, and a suspension through the admin API holds from the very next request.

mod device_support;
mod support;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::TimeDelta;
use device_support::*;
use domain::policy::PolicyScope;
use reqwest::Method;
use serde_json::json;
use services::caller::Caller;
use services::gate::REJECTED_KIND;
use services::policies::{self, SettingsInput};
use support::{Backend, TestApp};

/// (label, method, target, headers, body, the audited reason)
type Attack = (&'static str, &'static str, String, Vec<(String, String)>, Vec<u8>, &'static str);

const GENERIC: &str = r#"{"error":"unauthorized"}"#;

/// An active device of `project`, enrolled with an auto-approving code; returns it and its id.
async fn active_device(app: &TestApp, project: &Project) -> (DeviceKey, String) {
    let code = issue_code(app, project, true, None).await;
    let device = DeviceKey::generate();
    let (status, body) = enroll(app, &project.raw, &device.enrollment(Some(&code))).await;
    assert_eq!((status, body["status"].as_str()), (201, Some("ACTIVE")), "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    (device, id)
}

fn replace(headers: &[(String, String)], name: &str, value: &str) -> Vec<(String, String)> {
    headers.iter().map(|(n, v)| (n.clone(), if n == name { value.to_owned() } else { v.clone() })).collect()
}

fn without(headers: &[(String, String)], name: &str) -> Vec<(String, String)> {
    headers.iter().filter(|(n, _)| n != name).cloned().collect()
}

fn value<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    &headers.iter().find(|(n, _)| n == name).unwrap().1
}

async fn forty_hostile_requests_get_the_generic_401_and_are_audited(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.bootstrap_admin().await;
    let project = create_project(&app, &admin).await;
    let other_project = create_project(&app, &admin).await;
    let doomed_project = create_project(&app, &admin).await;
    let (device, _) = active_device(&app, &project).await;
    let (stranger, _) = active_device(&app, &other_project).await;
    let (doomed, _) = active_device(&app, &doomed_project).await;
    let (suspended, suspended_id) = active_device(&app, &project).await;
    let (revoked, revoked_id) = active_device(&app, &project).await;
    let pending = DeviceKey::generate();
    let (status, _) = enroll(&app, &project.raw, &pending.enrollment(None)).await;
    assert_eq!(status, 201);
    let (status, body) = app
        .call(
            Method::PATCH,
            &format!("/api/v1/devices/{suspended_id}/suspend"),
            Some(&admin),
            Some(json!({"reason": "lost phone"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app
        .call(
            Method::DELETE,
            &format!("/api/v1/devices/{revoked_id}"),
            Some(&admin),
            Some(json!({"reason": "lost"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app
        .call(
            Method::DELETE,
            &format!("/api/v1/keys/{}", doomed_project.id),
            Some(&admin),
            Some(json!({"reason": "leaked"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let key = project.raw.as_str();
    let body = br#"{"model":"gpt-4o-mini","messages":[]}"#.to_vec();
    let good = || sign(&device, key, "POST", VERIFY, &body);

    // (label, method, path, headers, body, expected reason)
    let mut attacks: Vec<Attack> = Vec::new();
    let replayed = good();
    let first = send(&app, "POST", VERIFY, &replayed, body.clone()).await;
    assert_eq!(first.status, 200, "{}", first.body);
    attacks.push(("replay", "POST", VERIFY.into(), replayed, body.clone(), "replayed_nonce"));
    attacks.push(("method", "PUT", VERIFY.into(), good(), body.clone(), "bad_signature"));
    attacks.push(("query added", "POST", format!("{VERIFY}?admin=1"), good(), body.clone(), "bad_signature"));
    let other_path = sign(&device, key, "POST", "/api/v1/proxy/v1/chat/completions", &body);
    attacks.push(("path", "POST", VERIFY.into(), other_path, body.clone(), "bad_signature"));
    let with_query = sign(&device, key, "POST", &format!("{VERIFY}?a=1"), &body);
    attacks.push((
        "query changed",
        "POST",
        format!("{VERIFY}?a=2"),
        with_query,
        body.clone(),
        "bad_signature",
    ));
    attacks.push((
        "body",
        "POST",
        VERIFY.into(),
        good(),
        b"{\"model\":\"gpt-4o\"}".to_vec(),
        "body_hash_mismatch",
    ));
    let forged_body = b"{\"model\":\"o1\"}".to_vec();
    let rehashed =
        replace(&good(), "x-keyguard-body-sha256", domain::protocol::BodySha256::of(&forged_body).as_str());
    attacks.push(("body and its hash", "POST", VERIFY.into(), rehashed, forged_body, "bad_signature"));
    let g = good();
    let ts = value(&g, "x-keyguard-timestamp").to_owned();
    let shifted = format!("{}{}Z", &ts[..22], if &ts[22..23] == "9" { "8" } else { "9" });
    attacks.push((
        "timestamp",
        "POST",
        VERIFY.into(),
        replace(&g, "x-keyguard-timestamp", &shifted),
        body.clone(),
        "bad_signature",
    ));
    attacks.push((
        "nonce",
        "POST",
        VERIFY.into(),
        replace(&good(), "x-keyguard-nonce", &nonce()),
        body.clone(),
        "bad_signature",
    ));
    attacks.push((
        "api key of another project",
        "POST",
        VERIFY.into(),
        replace(&good(), "x-keyguard-api-key", &other_project.raw),
        body.clone(),
        "unknown_device",
    ));
    attacks.push((
        "keyId of another device",
        "POST",
        VERIFY.into(),
        replace(&good(), "x-keyguard-key-id", &suspended.key_id),
        body.clone(),
        "device_not_active",
    ));
    attacks.push((
        "keyId of a stranger",
        "POST",
        VERIFY.into(),
        replace(&good(), "x-keyguard-key-id", &stranger.key_id),
        body.clone(),
        "unknown_device",
    ));
    let future = sign_with(&device, key, "POST", VERIFY, &body, &timestamp(TimeDelta::minutes(10)), &nonce());
    attacks.push((
        "from the future",
        "POST",
        VERIFY.into(),
        future,
        body.clone(),
        "timestamp_outside_window",
    ));
    let past = sign_with(&device, key, "POST", VERIFY, &body, &timestamp(TimeDelta::minutes(-3)), &nonce());
    attacks.push(("from the past", "POST", VERIFY.into(), past, body.clone(), "timestamp_outside_window"));
    attacks.push((
        "pending device",
        "POST",
        VERIFY.into(),
        sign(&pending, key, "POST", VERIFY, &body),
        body.clone(),
        "device_not_active",
    ));
    attacks.push((
        "suspended device",
        "POST",
        VERIFY.into(),
        sign(&suspended, key, "POST", VERIFY, &body),
        body.clone(),
        "device_not_active",
    ));
    attacks.push((
        "revoked device",
        "POST",
        VERIFY.into(),
        sign(&revoked, key, "POST", VERIFY, &body),
        body.clone(),
        "device_not_active",
    ));
    attacks.push((
        "device of another project",
        "POST",
        VERIFY.into(),
        sign(&stranger, key, "POST", VERIFY, &body),
        body.clone(),
        "unknown_device",
    ));
    attacks.push((
        "revoked project key",
        "POST",
        VERIFY.into(),
        sign(&doomed, &doomed_project.raw, "POST", VERIFY, &body),
        body.clone(),
        "project_key_inactive",
    ));
    let unknown_key = "kg_this_key_was_never_issued_0123456789abcdef";
    attacks.push((
        "unknown project key",
        "POST",
        VERIFY.into(),
        sign(&device, unknown_key, "POST", VERIFY, &body),
        body.clone(),
        "unknown_project_key",
    ));
    // Another device's key signing under this device's keyId.
    let mut impostor = sign(&stranger, key, "POST", VERIFY, &body);
    impostor = replace(&impostor, "x-keyguard-key-id", &device.key_id);
    attacks.push(("signed by another key", "POST", VERIFY.into(), impostor, body.clone(), "bad_signature"));
    attacks.push((
        "alg DER",
        "POST",
        VERIFY.into(),
        replace(&good(), "x-keyguard-alg", "ECDSA_P256_SHA256_DER"),
        body.clone(),
        "unsupported_algorithm",
    ));
    attacks.push((
        "alg none",
        "POST",
        VERIFY.into(),
        replace(&good(), "x-keyguard-alg", "none"),
        body.clone(),
        "unsupported_algorithm",
    ));
    let g = good();
    let raw = STANDARD.decode(value(&g, "x-keyguard-signature")).unwrap();
    let der = p256::ecdsa::Signature::from_slice(&raw).unwrap().to_der();
    attacks.push((
        "DER signature",
        "POST",
        VERIFY.into(),
        replace(&g, "x-keyguard-signature", &STANDARD.encode(der.as_bytes())),
        body.clone(),
        "signature_not_p1363",
    ));
    let urlsafe = value(&g, "x-keyguard-signature").replace('+', "-").replace('/', "_");
    if urlsafe != value(&g, "x-keyguard-signature") {
        attacks.push((
            "base64url signature",
            "POST",
            VERIFY.into(),
            replace(&g, "x-keyguard-signature", &urlsafe),
            body.clone(),
            "malformed_signature",
        ));
    }
    attacks.push((
        "short signature",
        "POST",
        VERIFY.into(),
        replace(&good(), "x-keyguard-signature", &STANDARD.encode([1u8; 63])),
        body.clone(),
        "malformed_signature",
    ));
    attacks.push((
        "short nonce",
        "POST",
        VERIFY.into(),
        replace(&good(), "x-keyguard-nonce", "AAAAAAAAAAAAAAAAAAAA"),
        body.clone(),
        "malformed_nonce",
    ));
    attacks.push((
        "nonce with separator",
        "POST",
        VERIFY.into(),
        replace(&good(), "x-keyguard-nonce", "AAAAAAAAAAAAAAAAAAAA|A=="),
        body.clone(),
        "malformed_nonce",
    ));
    attacks.push((
        "upper-case keyId",
        "POST",
        VERIFY.into(),
        replace(&good(), "x-keyguard-key-id", &device.key_id.to_uppercase()),
        body.clone(),
        "malformed_key_id",
    ));
    attacks.push((
        "keyId too long",
        "POST",
        VERIFY.into(),
        replace(&good(), "x-keyguard-key-id", &"a".repeat(300)),
        body.clone(),
        "malformed_key_id",
    ));
    attacks.push((
        "timestamp without millis",
        "POST",
        VERIFY.into(),
        replace(&good(), "x-keyguard-timestamp", &ts[..19]),
        body.clone(),
        "malformed_timestamp",
    ));
    attacks.push((
        "timestamp as epoch",
        "POST",
        VERIFY.into(),
        replace(&good(), "x-keyguard-timestamp", "1736937000000"),
        body.clone(),
        "malformed_timestamp",
    ));
    attacks.push((
        "body hash not base64",
        "POST",
        VERIFY.into(),
        replace(&good(), "x-keyguard-body-sha256", "not base64 at all"),
        body.clone(),
        "malformed_body_sha256",
    ));
    attacks.push((
        "api key with separator",
        "POST",
        VERIFY.into(),
        replace(&good(), "x-keyguard-api-key", "kg_abc|def_0123456789abcdef"),
        body.clone(),
        "malformed_project_key",
    ));
    attacks.push((
        "oversized api key",
        "POST",
        VERIFY.into(),
        replace(&good(), "x-keyguard-api-key", &format!("kg_{}", "x".repeat(4000))),
        body.clone(),
        "malformed_project_key",
    ));
    let mut duplicated = good();
    duplicated.push(("X-KeyGuard-Nonce".into(), nonce()));
    attacks.push((
        "duplicated nonce header",
        "POST",
        VERIFY.into(),
        duplicated,
        body.clone(),
        "duplicate_header",
    ));
    for name in [
        "x-keyguard-api-key",
        "x-keyguard-key-id",
        "x-keyguard-timestamp",
        "x-keyguard-nonce",
        "x-keyguard-body-sha256",
        "x-keyguard-alg",
        "x-keyguard-signature",
    ] {
        attacks.push((
            "missing header",
            "POST",
            VERIFY.into(),
            without(&good(), name),
            body.clone(),
            "missing_header",
        ));
    }
    attacks.push(("no headers at all", "POST", VERIFY.into(), vec![], body.clone(), "missing_header"));
    assert!(attacks.len() >= 40, "only {} attacks", attacks.len());

    for (label, method, path, headers, payload, reason) in &attacks {
        let answer = send(&app, method, path, headers, payload.clone()).await;
        assert_eq!((answer.status, answer.body.as_str()), (401, GENERIC), "{label} (expected {reason})");
    }

    // Too large: 413, audited, before anything else is looked at.
    let huge = vec![b'a'; 10 * 1024 * 1024 + 1];
    let answer = send(&app, "POST", VERIFY, &sign(&device, key, "POST", VERIFY, &huge), huge).await;
    assert_eq!(answer.status, 413, "{}", answer.body);

    let mut reasons: Vec<&str> = attacks.iter().map(|a| a.5).collect();
    reasons.push("body_too_large");
    reasons.sort_unstable();
    reasons.dedup();
    let records = wait_for_reasons(&app, REJECTED_KIND, &reasons).await;
    // Records name the device, key and IP when they are known.
    let replay = records.iter().find(|r| r["details"]["reason"] == "replayed_nonce").unwrap();
    assert_eq!(replay["api_key_id"], project.id.to_string());
    assert!(replay["device_id"].is_string(), "{replay}");
    assert_eq!(replay["details"]["ip"], "127.0.0.1");

    // The good request still works after all that.
    let answer = send(&app, "POST", VERIFY, &good(), body.clone()).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

async fn too_many_requests_per_minute_get_429_with_retry_after(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.bootstrap_admin().await;
    let project = create_project(&app, &admin).await;
    let (device, device_id) = active_device(&app, &project).await;
    let input = SettingsInput { requests_per_minute: Some(3), ..Default::default() };
    policies::set(
        &app.platform,
        &Caller::system("test"),
        PolicyScope::Device(device_id.parse().unwrap()),
        input,
    )
    .await
    .unwrap();
    for _ in 0..3 {
        let answer =
            send(&app, "POST", VERIFY, &sign(&device, &project.raw, "POST", VERIFY, b""), vec![]).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    let answer = send(&app, "POST", VERIFY, &sign(&device, &project.raw, "POST", VERIFY, b""), vec![]).await;
    assert_eq!(answer.status, 429, "{}", answer.body);
    let retry: u64 = answer.retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    assert_eq!(answer.body, r#"{"error":"rate_limited"}"#);
    wait_for_reasons(&app, REJECTED_KIND, &["rate_limited_requests"]).await;

    // Another device of the project is not held back by this one's limit.
    let (other, _) = active_device(&app, &project).await;
    let answer = send(&app, "POST", VERIFY, &sign(&other, &project.raw, "POST", VERIFY, b""), vec![]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

async fn a_suspension_holds_from_the_next_request(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.bootstrap_admin().await;
    let project = create_project(&app, &admin).await;
    let (device, id) = active_device(&app, &project).await;
    let answer = send(&app, "POST", VERIFY, &sign(&device, &project.raw, "POST", VERIFY, b""), vec![]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);

    let (status, body) = app
        .call(
            Method::PATCH,
            &format!("/api/v1/devices/{id}/suspend"),
            Some(&admin),
            Some(json!({"reason": "lost phone"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let answer = send(&app, "POST", VERIFY, &sign(&device, &project.raw, "POST", VERIFY, b""), vec![]).await;
    assert_eq!((answer.status, answer.body.as_str()), (401, GENERIC));

    let (status, body) =
        app.call(Method::PATCH, &format!("/api/v1/devices/{id}/reactivate"), Some(&admin), None).await;
    assert_eq!(status, 200, "{body}");
    let answer = send(&app, "POST", VERIFY, &sign(&device, &project.raw, "POST", VERIFY, b""), vec![]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);

    // Revoking the project key holds from the next request too.
    let (status, body) = app
        .call(
            Method::DELETE,
            &format!("/api/v1/keys/{}", project.id),
            Some(&admin),
            Some(json!({"reason": "leaked"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let answer = send(&app, "POST", VERIFY, &sign(&device, &project.raw, "POST", VERIFY, b""), vec![]).await;
    assert_eq!((answer.status, answer.body.as_str()), (401, GENERIC));
    wait_for_reasons(&app, REJECTED_KIND, &["device_not_active", "project_key_inactive"]).await;
}

async fn the_body_limit_is_configurable_and_requests_are_counted_by_route(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| config.max_body_bytes = 4096).await;
    let admin = app.bootstrap_admin().await;
    let project = create_project(&app, &admin).await;
    let (device, _) = active_device(&app, &project).await;

    let fits = vec![b'a'; 4096];
    let answer = send(&app, "POST", VERIFY, &sign(&device, &project.raw, "POST", VERIFY, &fits), fits).await;
    assert_eq!(answer.status, 200, "a body at the limit passes: {}", answer.body);
    let over = vec![b'a'; 4097];
    let answer = send(&app, "POST", VERIFY, &sign(&device, &project.raw, "POST", VERIFY, &over), over).await;
    assert_eq!(answer.status, 413, "{}", answer.body);
    wait_for_reasons(&app, REJECTED_KIND, &["body_too_large"]).await;

    // The device-facing routes are in /metrics like the admin API.
    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for status in ["200", "413"] {
        let counted = text.lines().any(|line| {
            line.starts_with("keyguard_http_requests_total{")
                && line.contains(r#"route="/api/v1/keyguard/verify-test""#)
                && line.contains(&format!(r#"status="{status}""#))
        });
        assert!(counted, "verify-test {status} is counted:\n{text}");
    }
}

on_both_backends!(
    the_body_limit_is_configurable_and_requests_are_counted_by_route,
    forty_hostile_requests_get_the_generic_401_and_are_audited,
    too_many_requests_per_minute_get_429_with_retry_after,
    a_suspension_holds_from_the_next_request,
);
