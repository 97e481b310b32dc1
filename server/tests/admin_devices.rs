//! `/api/v1/devices` over HTTP: the operator's transitions and the domain's refusals, the list
//! with its filters and global counts, a device's full history, enrollment codes that are shown
//! once and listed without their secret, approve racing revoke (exactly one wins), and roles.
//!
//! There is no device-facing enrollment route yet, so devices are enrolled on the store directly,
//! as the enrollment route will.

mod support;

use chrono::Utc;
use domain::device::InitialStatus;
use reqwest::Method;
use serde_json::{Value, json};
use support::{Backend, TestApp};
use uuid::Uuid;

/// Sends a request with an optional `If-Match`; returns the status, the ETag and the JSON body.
async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    if_match: Option<&str>,
    body: Option<Value>,
) -> (u16, Option<String>, Value) {
    let mut request = app.client.request(method, app.url(path)).bearer_auth(token);
    if let Some(version) = if_match {
        request = request.header("if-match", version);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let etag = response.headers().get("etag").map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, etag, json)
}

async fn lifecycle_follows_the_domain_and_refuses_with_its_codes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.bootstrap_admin().await;
    let key = app.create_key(&admin, "Main").await;
    let id = app.seed_device(key, "build agent", InitialStatus::Pending).await;
    let path = format!("/api/v1/devices/{id}");
    let call = |method: Method, suffix: &'static str, body: Option<Value>| {
        let app = &app;
        let admin = &admin;
        let path = format!("{path}{suffix}");
        async move { app.call(method, &path, Some(admin), body).await }
    };

    let (status, etag, device) = send(&app, Method::GET, &path, &admin, None, None).await;
    assert_eq!(status, 200, "{device}");
    assert_eq!(etag.as_deref(), Some("\"1\""));
    assert_eq!(device["status"], "pending");
    assert_eq!(device["label"], "build agent");
    assert_eq!(device["apiKeyId"], key.to_string());
    assert_eq!(device["metadata"], json!({ "os": "linux" }));

    let (status, body) = call(Method::PATCH, "/approve", None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("active")), "{body}");
    let (status, body) = call(Method::PATCH, "/approve", None).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("invalid_transition")), "{body}");

    let (status, body) = call(Method::PATCH, "/suspend", Some(json!({}))).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_reason")), "{body}");
    assert!(body["fields"]["reason"].is_string(), "{body}");
    let (status, body) = call(Method::PATCH, "/suspend", Some(json!({ "reason": "lost\nlaptop" }))).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = call(Method::PATCH, "/suspend", Some(json!({ "reason": "lost laptop" }))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["status"].as_str(), body["statusReason"].as_str()),
        (Some("suspended"), Some("lost laptop"))
    );
    let (status, body) = call(Method::PATCH, "/suspend", Some(json!({ "reason": "again" }))).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("invalid_transition")), "{body}");

    let (status, body) = call(Method::PATCH, "/reactivate", None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("active")), "{body}");
    let (status, body) = call(Method::PATCH, "/reactivate", None).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("invalid_transition")), "{body}");

    let (status, body) = call(Method::PATCH, "", Some(json!({ "label": "  " }))).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_label")), "{body}");
    assert!(body["fields"]["label"].is_string(), "{body}");
    let (status, body) = call(Method::PATCH, "", Some(json!({ "label": "x".repeat(256) }))).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = call(Method::PATCH, "", Some(json!({ "label": "CI runner" }))).await;
    assert_eq!((status, body["label"].as_str()), (200, Some("CI runner")), "{body}");
    let (status, body) = call(Method::PATCH, "", Some(json!({ "label": "CI runner" }))).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("label_unchanged")), "{body}");

    let (status, body) = call(Method::DELETE, "", None).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_reason")), "{body}");
    let (status, etag, body) =
        send(&app, Method::DELETE, &path, &admin, None, Some(json!({ "reason": "decommissioned" }))).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("revoked")), "{body}");
    assert_eq!(
        etag.as_deref(),
        Some("\"6\""),
        "enrolled, approved, suspended, reactivated, renamed, revoked"
    );

    // A revoked device cannot be changed at all.
    for (method, suffix, body) in [
        (Method::PATCH, "/approve", None),
        (Method::PATCH, "/suspend", Some(json!({ "reason": "x" }))),
        (Method::PATCH, "/reactivate", None),
        (Method::PATCH, "", Some(json!({ "label": "new" }))),
        (Method::DELETE, "", Some(json!({ "reason": "again" }))),
    ] {
        let (status, body) = call(method.clone(), suffix, body).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (409, Some("device_revoked")),
            "{method} {suffix}: {body}"
        );
    }

    let (status, events) = call(Method::GET, "/events", None).await;
    assert_eq!(status, 200, "{events}");
    let types: Vec<&str> =
        events.as_array().unwrap().iter().map(|e| e["eventType"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "DeviceEnrolled",
            "DeviceApproved",
            "DeviceSuspended",
            "DeviceReactivated",
            "DeviceRenamed",
            "DeviceRevoked"
        ]
    );
    let sequences: Vec<u64> =
        events.as_array().unwrap().iter().map(|e| e["sequence"].as_u64().unwrap()).collect();
    assert_eq!(sequences, [1, 2, 3, 4, 5, 6]);
    assert_eq!(events[0]["actor"], format!("device:{id}"));
    let (_, me) = app.call(Method::GET, "/api/v1/auth/me", Some(&admin), None).await;
    assert_eq!(events[2]["actor"], format!("user:{}", me["id"].as_str().unwrap()));
    assert_eq!(events[2]["payload"]["reason"], "lost laptop");
    assert_eq!(events[4]["payload"]["previous_label"], "build agent");
    assert!(events[5]["at"].is_string() && events[5]["ip"].is_string(), "{}", events[5]);

    // Unknown devices are 404 everywhere.
    let unknown = format!("/api/v1/devices/{}", Uuid::new_v4());
    for (method, suffix, body) in [
        (Method::GET, "", None),
        (Method::GET, "/events", None),
        (Method::PATCH, "/approve", None),
        (Method::PATCH, "/suspend", Some(json!({ "reason": "x" }))),
        (Method::PATCH, "/reactivate", None),
        (Method::PATCH, "", Some(json!({ "label": "x" }))),
        (Method::DELETE, "", Some(json!({ "reason": "x" }))),
    ] {
        let (status, body) =
            app.call(method.clone(), &format!("{unknown}{suffix}"), Some(&admin), body).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (404, Some("device_not_found")),
            "{method} {suffix}: {body}"
        );
    }
}

async fn list_filters_pages_and_counts_every_status(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.bootstrap_admin().await;
    let first = app.create_key(&admin, "First").await;
    let second = app.create_key(&admin, "Second").await;
    let pending = app.seed_device(first, "alpha laptop", InitialStatus::Pending).await;
    let active = app.seed_device(first, "beta phone", InitialStatus::Active).await;
    let suspended = app.seed_device(second, "gamma server", InitialStatus::Active).await;
    let revoked = app.seed_device(second, "delta tablet", InitialStatus::Pending).await;
    let (status, _) = app
        .call(
            Method::PATCH,
            &format!("/api/v1/devices/{suspended}/suspend"),
            Some(&admin),
            Some(json!({ "reason": "audit" })),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = app
        .call(
            Method::DELETE,
            &format!("/api/v1/devices/{revoked}"),
            Some(&admin),
            Some(json!({ "reason": "gone" })),
        )
        .await;
    assert_eq!(status, 200);

    let ids = |page: &Value| -> Vec<String> {
        page["items"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap().to_owned()).collect()
    };
    let (status, all) = app.call(Method::GET, "/api/v1/devices", Some(&admin), None).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["total"], 4);
    assert_eq!(all["counts"], json!({ "pending": 1, "active": 1, "suspended": 1, "revoked": 1, "total": 4 }));
    assert_eq!(ids(&all), [revoked, suspended, active, pending].map(|id| id.to_string()), "newest first");

    for (query, expected) in [
        ("status=pending", vec![pending]),
        ("status=suspended", vec![suspended]),
        (&format!("apiKeyId={first}") as &str, vec![active, pending]),
        ("search=GAMMA", vec![suspended]),
        ("search=fp-delta", vec![revoked]),
        (&format!("apiKeyId={second}&status=revoked"), vec![revoked]),
        ("lastSeenAfter=2020-01-01T00:00:00Z", vec![]),
    ] {
        let (status, page) =
            app.call(Method::GET, &format!("/api/v1/devices?{query}"), Some(&admin), None).await;
        assert_eq!(status, 200, "{query}: {page}");
        assert_eq!(ids(&page), expected.iter().map(Uuid::to_string).collect::<Vec<_>>(), "{query}");
        assert_eq!(page["counts"]["total"], 4, "counts are global, whatever the filter");
    }

    let (_, page) = app.call(Method::GET, "/api/v1/devices?limit=2&offset=1", Some(&admin), None).await;
    assert_eq!(
        (page["total"].as_i64(), page["limit"].as_i64(), page["offset"].as_i64()),
        (Some(4), Some(2), Some(1))
    );
    assert_eq!(ids(&page), [suspended, active].map(|id| id.to_string()));

    for (query, field) in [
        ("status=lost", "status"),
        ("apiKeyId=nope", "apiKeyId"),
        ("lastSeenBefore=yesterday", "lastSeenBefore"),
    ] {
        let (status, body) =
            app.call(Method::GET, &format!("/api/v1/devices?{query}"), Some(&admin), None).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body["fields"][field].is_string(), "{query}: {body}");
    }
}

async fn enrollment_codes_are_shown_once_listed_without_secret_and_revoked(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.bootstrap_admin().await;

    let (status, body) =
        app.call(Method::POST, "/api/v1/devices/enrollment-code", Some(&admin), Some(json!({}))).await;
    assert_eq!(status, 400, "no key yet: {body}");
    assert!(body["fields"]["apiKeyId"].is_string(), "{body}");

    let key = app.create_key(&admin, "Only").await;
    // With exactly one active key, apiKeyId may be left out.
    let (status, issued) = app
        .call(
            Method::POST,
            "/api/v1/devices/enrollment-code",
            Some(&admin),
            Some(json!({ "expiresInSeconds": 3600, "maxUses": 5, "autoApprove": true, "description": "laptops" })),
        )
        .await;
    assert_eq!(status, 201, "{issued}");
    let code = issued["code"].as_str().unwrap().to_owned();
    assert!(code.starts_with("kgc_") && code.len() == 30, "{code}");
    assert_eq!((issued["maxUses"].as_i64(), issued["autoApprove"].as_bool()), (Some(5), Some(true)));
    assert_eq!(issued["apiKeyId"], key.to_string());
    let expires_at: chrono::DateTime<Utc> = issued["expiresAt"].as_str().unwrap().parse().unwrap();
    let lifetime = expires_at - Utc::now();
    assert!(
        lifetime > chrono::TimeDelta::minutes(59) && lifetime <= chrono::TimeDelta::hours(1),
        "{lifetime}"
    );
    let code_id = issued["codeId"].as_str().unwrap().to_owned();

    let (status, defaults) = app
        .call(Method::POST, "/api/v1/devices/enrollment-code", Some(&admin), Some(json!({ "apiKeyId": key })))
        .await;
    assert_eq!(status, 201, "{defaults}");
    assert_eq!((defaults["maxUses"].as_i64(), defaults["autoApprove"].as_bool()), (Some(1), Some(false)));

    for path in [
        format!("/api/v1/devices/enrollment-codes?apiKeyId={key}"),
        "/api/v1/devices/enrollment-codes".into(),
    ] {
        let (status, list) = app.call(Method::GET, &path, Some(&admin), None).await;
        assert_eq!(status, 200, "{list}");
        assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
        let listed = list.as_array().unwrap().iter().find(|c| c["id"] == code_id.as_str()).unwrap();
        assert_eq!(listed["status"], "active");
        assert_eq!((listed["uses"].as_i64(), listed["maxUses"].as_i64()), (Some(0), Some(5)));
        assert_eq!(listed["description"], "laptops");
        let text = list.to_string();
        assert!(
            !text.contains(&code) && !text.contains("codeHash") && listed.get("code").is_none(),
            "{text}"
        );
    }

    let (status, revoked) = app
        .call(Method::DELETE, &format!("/api/v1/devices/enrollment-codes/{code_id}"), Some(&admin), None)
        .await;
    assert_eq!((status, revoked["status"].as_str()), (200, Some("revoked")), "{revoked}");
    let (status, again) = app
        .call(Method::DELETE, &format!("/api/v1/devices/enrollment-codes/{code_id}"), Some(&admin), None)
        .await;
    assert_eq!((status, again["error"].as_str()), (409, Some("enrollment_code_revoked")), "{again}");
    let (_, list) = app.call(Method::GET, "/api/v1/devices/enrollment-codes", Some(&admin), None).await;
    let statuses: Vec<&str> =
        list.as_array().unwrap().iter().map(|c| c["status"].as_str().unwrap()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == "revoked").count(), 1, "{list}");

    // Bad input names its field.
    for (body, field) in [
        (json!({ "maxUses": 0 }), "maxUses"),
        (json!({ "maxUses": 1001 }), "maxUses"),
        (json!({ "expiresInSeconds": 0 }), "expiresInSeconds"),
        (json!({ "expiresInSeconds": 31 * 24 * 3600 }), "expiresInSeconds"),
        (json!({ "expiresInSeconds": i64::MAX / 1000 }), "expiresInSeconds"),
        (json!({ "maxUses": -1 }), "maxUses"),
    ] {
        let (status, err) =
            app.call(Method::POST, "/api/v1/devices/enrollment-code", Some(&admin), Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {err}");
        assert!(err["fields"][field].is_string(), "{body}: {err}");
    }

    // Unknown ids.
    let (status, body) = app
        .call(
            Method::POST,
            "/api/v1/devices/enrollment-code",
            Some(&admin),
            Some(json!({ "apiKeyId": Uuid::new_v4() })),
        )
        .await;
    assert_eq!((status, body["error"].as_str()), (404, Some("api_key_not_found")), "{body}");
    let (status, body) = app
        .call(
            Method::GET,
            &format!("/api/v1/devices/enrollment-codes?apiKeyId={}", Uuid::new_v4()),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!((status, body["error"].as_str()), (404, Some("api_key_not_found")), "{body}");
    let (status, body) = app
        .call(
            Method::DELETE,
            &format!("/api/v1/devices/enrollment-codes/{}", Uuid::new_v4()),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!((status, body["error"].as_str()), (404, Some("enrollment_code_not_found")), "{body}");

    // With two active keys the caller must say which.
    let second = app.create_key(&admin, "Second").await;
    let (status, body) =
        app.call(Method::POST, "/api/v1/devices/enrollment-code", Some(&admin), Some(json!({}))).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["fields"]["apiKeyId"].is_string(), "{body}");
    let (status, body) = app.call(Method::GET, "/api/v1/devices/enrollment-codes", Some(&admin), None).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = app
        .call(
            Method::POST,
            "/api/v1/devices/enrollment-code",
            Some(&admin),
            Some(json!({ "apiKeyId": second })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (_, list) = app
        .call(Method::GET, &format!("/api/v1/devices/enrollment-codes?apiKeyId={second}"), Some(&admin), None)
        .await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
}

/// Two operators act on the same pending device at once, each on the version they saw: one
/// approves, the other revokes. Whatever the timing, exactly one wins.
async fn concurrent_approve_and_revoke_let_exactly_one_win(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.bootstrap_admin().await;
    let operator = app.user_with_role(&admin, "operator").await;
    let key = app.create_key(&admin, "Main").await;
    let mut winners = (0, 0);
    for round in 0..10 {
        let id = app.seed_device(key, &format!("round {round}"), InitialStatus::Pending).await;
        let path = format!("/api/v1/devices/{id}");
        let (_, etag, _) = send(&app, Method::GET, &path, &admin, None, None).await;
        let etag = etag.expect("a version");
        let approve_path = format!("{path}/approve");
        let approve = send(&app, Method::PATCH, &approve_path, &admin, Some(&etag), None);
        let revoke =
            send(&app, Method::DELETE, &path, &operator, Some(&etag), Some(json!({ "reason": "not ours" })));
        let ((approve_status, _, approve_body), (revoke_status, _, revoke_body)) =
            tokio::join!(approve, revoke);

        let losing = |body: &Value| {
            ["concurrent_modification", "invalid_transition", "device_revoked"]
                .contains(&body["error"].as_str().unwrap_or(""))
        };
        let (_, _, device) = send(&app, Method::GET, &path, &admin, None, None).await;
        let (_, history) = app.call(Method::GET, &format!("{path}/events"), Some(&admin), None).await;
        match (approve_status, revoke_status) {
            (200, 409) => {
                assert!(losing(&revoke_body), "round {round}: {revoke_body}");
                assert_eq!(device["status"], "active", "round {round}");
                assert_eq!(history[1]["eventType"], "DeviceApproved");
                winners.0 += 1;
            }
            (409, 200) => {
                assert!(losing(&approve_body), "round {round}: {approve_body}");
                assert_eq!(device["status"], "revoked", "round {round}");
                assert_eq!(history[1]["eventType"], "DeviceRevoked");
                winners.1 += 1;
            }
            other => {
                panic!("round {round}: exactly one must win, got {other:?}: {approve_body} / {revoke_body}")
            }
        }
        assert_eq!(history.as_array().unwrap().len(), 2, "round {round}: only the winner's event is stored");
    }
    assert_eq!(winners.0 + winners.1, 10);

    // A stale or malformed version is refused before anything is decided.
    let id = app.seed_device(key, "stale", InitialStatus::Pending).await;
    let (status, _, body) =
        send(&app, Method::PATCH, &format!("/api/v1/devices/{id}/approve"), &admin, Some("\"7\""), None)
            .await;
    assert_eq!((status, body["error"].as_str()), (409, Some("concurrent_modification")), "{body}");
    let (status, _, body) =
        send(&app, Method::PATCH, &format!("/api/v1/devices/{id}/approve"), &admin, Some("one"), None).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["fields"]["If-Match"].is_string(), "{body}");
    let (status, etag, body) =
        send(&app, Method::PATCH, &format!("/api/v1/devices/{id}/approve"), &admin, Some("1"), None).await;
    assert_eq!(
        (status, etag.as_deref(), body["status"].as_str()),
        (200, Some("\"2\""), Some("active")),
        "{body}"
    );
}

async fn operators_manage_devices_and_auditors_only_read(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.bootstrap_admin().await;
    let operator = app.user_with_role(&admin, "operator").await;
    let auditor = app.user_with_role(&admin, "auditor").await;
    let key = app.create_key(&admin, "Main").await;
    let id = app.seed_device(key, "shared", InitialStatus::Pending).await;
    let device = format!("/api/v1/devices/{id}");
    let (status, issued) =
        app.call(Method::POST, "/api/v1/devices/enrollment-code", Some(&admin), Some(json!({}))).await;
    assert_eq!(status, 201);
    let code = format!("/api/v1/devices/enrollment-codes/{}", issued["codeId"].as_str().unwrap());

    let writes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::PATCH, format!("{device}/approve"), None),
        (Method::PATCH, format!("{device}/suspend"), Some(json!({ "reason": "check" }))),
        (Method::PATCH, format!("{device}/reactivate"), None),
        (Method::PATCH, device.clone(), Some(json!({ "label": "renamed" }))),
        (Method::POST, "/api/v1/devices/enrollment-code".into(), Some(json!({}))),
        (Method::DELETE, code.clone(), None),
        (Method::DELETE, device.clone(), Some(json!({ "reason": "done" }))),
    ];
    let reads = [
        "/api/v1/devices".to_owned(),
        device.clone(),
        format!("{device}/events"),
        "/api/v1/devices/enrollment-codes".to_owned(),
    ];

    for (method, path, body) in &writes {
        let (status, answer) = app.call(method.clone(), path, Some(&auditor), body.clone()).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (403, Some("forbidden")),
            "auditor {method} {path}: {answer}"
        );
    }
    for path in &reads {
        let (status, answer) = app.call(Method::GET, path, Some(&auditor), None).await;
        assert_eq!(status, 200, "auditor GET {path}: {answer}");
    }
    for (method, path, body) in &writes {
        let (status, answer) = app.call(method.clone(), path, Some(&operator), body.clone()).await;
        assert!(status == 200 || status == 201, "operator {method} {path}: {status} {answer}");
    }
    for path in &reads {
        let (status, answer) = app.call(Method::GET, path, Some(&operator), None).await;
        assert_eq!(status, 200, "operator GET {path}: {answer}");
    }
    let (status, _) = app.call(Method::GET, "/api/v1/devices", None, None).await;
    assert_eq!(status, 401);
}

on_both_backends!(
    lifecycle_follows_the_domain_and_refuses_with_its_codes,
    list_filters_pages_and_counts_every_status,
    enrollment_codes_are_shown_once_listed_without_secret_and_revoked,
    concurrent_approve_and_revoke_let_exactly_one_win,
    operators_manage_devices_and_auditors_only_read,
);
