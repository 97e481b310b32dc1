//! `POST /api/v1/keyguard/enroll`: codes that auto-approve, devices that wait for approval,
//! keyIds that must match their key, codes that are bad, used or expired, idempotency on
//! (project, keyId) and never on the fingerprint, and the TypeScript SDK's key end to end.

mod device_support;
mod support;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{TimeDelta, Utc};
use cqrs_es::EventStore as _;
use cqrs_es::persist::PersistedEventStore;
use device_support::*;
use domain::api_key::{ApiKey, ApiKeyCommand, EnrollmentCode, IssueEnrollmentCode};
use domain::metadata::Actor;
use reqwest::Method;
use serde_json::json;
use support::{Backend, TestApp};
use uuid::Uuid;

async fn a_code_that_auto_approves_enrolls_an_active_device(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.bootstrap_admin().await;
    let project = create_project(&app, &admin).await;
    let code = issue_code(&app, &project, true, None).await;
    let device = DeviceKey::generate();

    let (status, body) = enroll(&app, &project.raw, &device.enrollment(Some(&code))).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "ACTIVE");
    assert!(body["id"].as_str().unwrap().parse::<Uuid>().is_ok());
    assert!(body["createdAt"].as_str().unwrap().ends_with('Z'), "{body}");
    assert_eq!(body.as_object().unwrap().len(), 3, "{body}");

    // It can sign at once.
    let headers = sign(&device, &project.raw, "POST", VERIFY, b"{}");
    let answer = send(&app, "POST", VERIFY, &headers, b"{}".to_vec()).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let verified: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(verified, json!({ "valid": true, "deviceId": body["id"], "keyId": device.key_id }));

    // The single-use code is spent: a second device gets a clear 400.
    let (status, body) = enroll(&app, &project.raw, &DeviceKey::generate().enrollment(Some(&code))).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "enrollment_code_exhausted");
    assert!(body["message"].as_str().unwrap().len() > 10);
    wait_for_reasons(&app, services::gate::ENROLLMENT_REJECTED_KIND, &["enrollment_code_exhausted"]).await;
}

async fn without_a_code_a_device_waits_for_approval(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.bootstrap_admin().await;
    let project = create_project(&app, &admin).await;
    let device = DeviceKey::generate();

    let (status, body) = enroll(&app, &project.raw, &device.enrollment(None)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "PENDING");
    let id = body["id"].as_str().unwrap().to_owned();

    let headers = sign(&device, &project.raw, "POST", VERIFY, b"");
    assert_eq!(send(&app, "POST", VERIFY, &headers, vec![]).await.status, 401);

    let (status, approved) =
        app.call(Method::PATCH, &format!("/api/v1/devices/{id}/approve"), Some(&admin), None).await;
    assert_eq!(status, 200, "{approved}");
    // Enforced from the very next request: no waiting for the cache.
    let headers = sign(&device, &project.raw, "POST", VERIFY, b"");
    let answer = send(&app, "POST", VERIFY, &headers, vec![]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);

    // A code that does not auto-approve also leaves the device pending.
    let code = issue_code(&app, &project, false, None).await;
    let (status, body) = enroll(&app, &project.raw, &DeviceKey::generate().enrollment(Some(&code))).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "PENDING");
}

async fn the_key_id_must_be_derived_from_the_public_key(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.bootstrap_admin().await;
    let project = create_project(&app, &admin).await;
    let device = DeviceKey::generate();
    let mut body = device.enrollment(None);
    body["keyId"] = DeviceKey::generate().key_id.into();
    let (status, answer) = enroll(&app, &project.raw, &body).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"], "key_id_mismatch");
    assert!(answer["message"].as_str().unwrap().contains("derived"), "{answer}");

    // Malformed pieces and unknown fields are 400s too.
    let mut body = device.enrollment(None);
    body["keyId"] = "not-hex".into();
    assert_eq!(enroll(&app, &project.raw, &body).await.1["error"], "invalid_key_id");
    let mut body = device.enrollment(None);
    body["publicKey"] = "AAAA".into();
    assert_eq!(enroll(&app, &project.raw, &body).await.1["error"], "invalid_public_key");
    let mut body = device.enrollment(None);
    body["isAdmin"] = true.into();
    let (status, answer) = enroll(&app, &project.raw, &body).await;
    assert_eq!((status, answer["error"].as_str()), (400, Some("invalid_body")), "{answer}");

    // A wrong or missing project key: the generic 401.
    let (status, answer) = enroll(&app, "kg_not_a_real_key_0123456789abcdef", &device.enrollment(None)).await;
    assert_eq!((status, answer), (401, json!({ "error": "unauthorized" })));
    wait_for_reasons(
        &app,
        services::gate::ENROLLMENT_REJECTED_KIND,
        &["key_id_mismatch", "invalid_key_id", "invalid_public_key", "invalid_body", "unknown_project_key"],
    )
    .await;
}

async fn bad_used_expired_and_revoked_codes_are_errors(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.bootstrap_admin().await;
    let project = create_project(&app, &admin).await;
    let other = create_project(&app, &admin).await;

    let unknown = EnrollmentCode::generate().unwrap();
    let (status, body) =
        enroll(&app, &project.raw, &DeviceKey::generate().enrollment(Some(unknown.expose()))).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("enrollment_code_invalid")), "{body}");
    let (status, body) =
        enroll(&app, &project.raw, &DeviceKey::generate().enrollment(Some("KG-ENRL-ABCD"))).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("enrollment_code_invalid")), "{body}");

    // A code of another project does not open this one.
    let foreign = issue_code(&app, &other, true, None).await;
    let (status, body) = enroll(&app, &project.raw, &DeviceKey::generate().enrollment(Some(&foreign))).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("enrollment_code_invalid")), "{body}");

    // Expired: issued directly through the aggregate, already past its expiry.
    let code = EnrollmentCode::generate().unwrap();
    let issued_at = Utc::now() - TimeDelta::minutes(10);
    let command = ApiKeyCommand::IssueEnrollmentCode(IssueEnrollmentCode {
        code_id: Uuid::new_v4(),
        code_hash: code.hash(),
        expires_at: Some(issued_at + TimeDelta::minutes(1)),
        max_uses: None,
        auto_approve: true,
        description: None,
        by: Actor::system("test"),
        at: issued_at,
    });
    app.db.cqrs::<ApiKey>(vec![], ()).execute(&project.id.to_string(), command).await.unwrap();
    app.platform.projections.catch_up().await.unwrap();
    let (status, body) =
        enroll(&app, &project.raw, &DeviceKey::generate().enrollment(Some(code.expose()))).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("enrollment_code_expired")), "{body}");

    // Revoked.
    let code = issue_code(&app, &project, true, None).await;
    let store = PersistedEventStore::<_, ApiKey>::new_event_store(app.db.event_repository());
    let state = store.load_aggregate(&project.id.to_string()).await.unwrap();
    let parsed = EnrollmentCode::parse(&code).unwrap();
    let code_id = state.aggregate.state().unwrap().find_enrollment_code(&parsed.hash()).unwrap().id();
    let (status, body) = app
        .call(Method::DELETE, &format!("/api/v1/devices/enrollment-codes/{code_id}"), Some(&admin), None)
        .await;
    assert!(status == 200 || status == 204, "{status} {body}");
    let (status, body) = enroll(&app, &project.raw, &DeviceKey::generate().enrollment(Some(&code))).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("enrollment_code_revoked")), "{body}");

    // Two uses, three devices racing for them: exactly two win.
    let code = issue_code(&app, &project, true, Some(2)).await;
    let devices: Vec<DeviceKey> = (0..3).map(|_| DeviceKey::generate()).collect();
    let answers = futures::future::join_all(
        devices.iter().map(|d| async { enroll(&app, &project.raw, &d.enrollment(Some(&code))).await }),
    )
    .await;
    let won = answers.iter().filter(|(s, b)| *s == 201 && b["status"] == "ACTIVE").count();
    let lost: Vec<_> = answers.iter().filter(|(s, _)| *s == 400).map(|(_, b)| b["error"].clone()).collect();
    assert_eq!(won, 2, "{answers:?}");
    assert_eq!(lost, vec![json!("enrollment_code_exhausted")], "{answers:?}");
}

async fn enrollment_is_idempotent_on_the_key_never_the_fingerprint(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.bootstrap_admin().await;
    let project = create_project(&app, &admin).await;
    let device = DeviceKey::generate();

    let (status, first) = enroll(&app, &project.raw, &device.enrollment(None)).await;
    assert_eq!(status, 201, "{first}");
    // Same key again, now with an auto-approving code: the existing device, unchanged, and
    // the code is not spent.
    let code = issue_code(&app, &project, true, None).await;
    let (status, again) = enroll(&app, &project.raw, &device.enrollment(Some(&code))).await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(again, first);
    // Another key with the same fingerprint is another device.
    let (status, other) = enroll(&app, &project.raw, &DeviceKey::generate().enrollment(Some(&code))).await;
    assert_eq!(status, 201, "{other}");
    assert_ne!(other["id"], first["id"]);
    assert_eq!(other["status"], "ACTIVE");

    // Concurrent enrollments of one key make one device.
    let fresh = DeviceKey::generate();
    let answers = futures::future::join_all(
        (0..4).map(|_| async { enroll(&app, &project.raw, &fresh.enrollment(None)).await }),
    )
    .await;
    assert!(answers.iter().all(|(s, b)| *s == 201 && b["id"] == answers[0].1["id"]), "{answers:?}");
}

async fn the_typescript_sdk_key_enrolls_and_its_signatures_verify(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.bootstrap_admin().await;
    let project = create_project(&app, &admin).await;
    let code = issue_code(&app, &project, true, None).await;
    let sdk = DeviceKey::sdk();

    // The SDK's enrollment payload, exactly as in the vectors file, plus the code.
    let vectors: serde_json::Value =
        serde_json::from_str(include_str!("../../domain/tests/data/kg-v1-vectors.json")).unwrap();
    let mut payload = vectors["vectors"][0]["enrollment"].clone();
    payload["enrollmentCode"] = code.clone().into();
    let (status, body) = enroll(&app, &project.raw, &payload).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "ACTIVE");

    // A request as the SDK builds it: its header names and formats, fresh timestamp and nonce,
    // the vector's exact body.
    let request = &vectors["vectors"][0]["request"];
    let body_text = request["body"].as_str().unwrap();
    let ts = timestamp(TimeDelta::zero());
    let mut nonce_bytes = [0u8; 16];
    nonce_bytes.copy_from_slice(Uuid::new_v4().as_bytes());
    let nonce = STANDARD.encode(nonce_bytes);
    let headers = sign_with(&sdk, &project.raw, "POST", VERIFY, body_text.as_bytes(), &ts, &nonce);
    let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
    let sdk_names: Vec<&str> = request["headers"].as_object().unwrap().keys().map(String::as_str).collect();
    for name in &sdk_names {
        assert!(names.contains(name), "{name} missing from {names:?}");
    }
    let expected_hash = request["headers"]["x-keyguard-body-sha256"].as_str().unwrap();
    assert!(headers.iter().any(|(n, v)| n == "x-keyguard-body-sha256" && v == expected_hash));
    let answer = send(&app, "POST", VERIFY, &headers, body_text.as_bytes().to_vec()).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let verified: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(verified["keyId"], SDK_KEY_ID);
    assert_eq!(verified["deviceId"], body["id"]);
}

on_both_backends!(
    a_code_that_auto_approves_enrolls_an_active_device,
    without_a_code_a_device_waits_for_approval,
    the_key_id_must_be_derived_from_the_public_key,
    bad_used_expired_and_revoked_codes_are_errors,
    enrollment_is_idempotent_on_the_key_never_the_fingerprint,
    the_typescript_sdk_key_enrolls_and_its_signatures_verify,
);
