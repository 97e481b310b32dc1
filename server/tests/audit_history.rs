//! `/api/v1/audit/aggregates/{type}/{id}/history` over HTTP: every event of an aggregate with the
//! state it left behind, the state at an instant, clear refusals, and no secret in any answer.

mod support;

use chrono::{DateTime, Utc};
use domain::device::InitialStatus;
use reqwest::Method;
use serde_json::{Value, json};
use support::{ADMIN_PASSWORD, Backend, TestApp};

const PROVIDER_SECRET: &str = "sk-history-0123456789abcdefghijklmnop";

async fn history(app: &TestApp, token: &str, path: &str) -> (u16, Value) {
    app.call(Method::GET, &format!("/api/v1/audit/aggregates/{path}"), Some(token), None).await
}

fn entries(body: &Value) -> &Vec<Value> {
    body["entries"].as_array().expect("entries")
}

fn time(value: &Value) -> DateTime<Utc> {
    value.as_str().expect("a time").parse().expect("an RFC 3339 time")
}

/// A device enrolled pending, then approved, suspended and renamed over the API.
async fn device_story(app: &TestApp, token: &str) -> uuid::Uuid {
    let key = app.create_key(token, "history").await;
    let device = app.seed_device(key, "laptop", InitialStatus::Pending).await;
    let path = |suffix: &str| format!("/api/v1/devices/{device}{suffix}");
    let steps = [
        (path("/approve"), None),
        (path("/suspend"), Some(json!({ "reason": "lost on a train" }))),
        (path(""), Some(json!({ "label": "laptop (found)" }))),
    ];
    for (path, body) in steps {
        let (status, answer) = app.call(Method::PATCH, &path, Some(token), body).await;
        assert_eq!(status, 200, "{path}: {answer}");
    }
    device
}

async fn every_event_comes_with_the_state_it_left(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = app.bootstrap_admin().await;
    let device = device_story(&app, &token).await;

    let (status, body) = history(&app, &token, &format!("device/{device}/history")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["aggregate"], json!({ "type": "device", "id": device.to_string() }));
    assert_eq!(body["at"], Value::Null);
    assert_eq!(body["version"], 4);
    let entries = entries(&body);
    let types: Vec<&str> = entries.iter().map(|e| e["eventType"].as_str().unwrap()).collect();
    assert_eq!(types, ["DeviceEnrolled", "DeviceApproved", "DeviceSuspended", "DeviceRenamed"]);
    let sequences: Vec<i64> = entries.iter().map(|e| e["sequence"].as_i64().unwrap()).collect();
    assert_eq!(sequences, [1, 2, 3, 4]);

    let states: Vec<(&str, &str, Option<&str>)> = entries
        .iter()
        .map(|e| {
            let state = &e["state"];
            (
                state["status"].as_str().unwrap(),
                state["label"].as_str().unwrap(),
                state["status_reason"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("pending", "laptop", None),
            ("active", "laptop", None),
            ("suspended", "laptop", Some("lost on a train")),
            ("suspended", "laptop (found)", Some("lost on a train")),
        ]
    );
    assert_eq!(body["state"], entries[3]["state"], "the top-level state is the current one");

    // Who did each, and when, in order.
    assert_eq!(entries[0]["actor"], json!({ "type": "device", "id": device.to_string() }));
    for entry in &entries[1..] {
        assert_eq!(entry["actor"]["type"], "user", "{entry}");
    }
    let times: Vec<DateTime<Utc>> = entries.iter().map(|e| time(&e["at"])).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    let positions: Vec<i64> = entries.iter().map(|e| e["position"].as_i64().unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    assert_eq!(entries[2]["payload"]["reason"], "lost on a train");

    // The aggregate's view matches the read model's.
    let (status, device_view) =
        app.call(Method::GET, &format!("/api/v1/devices/{device}"), Some(&token), None).await;
    assert_eq!(status, 200, "{device_view}");
    assert_eq!(device_view["label"], body["state"]["label"]);
    assert_eq!(device_view["status"], body["state"]["status"]);
}

async fn at_an_instant_the_state_is_the_one_then(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = app.bootstrap_admin().await;
    let device = device_story(&app, &token).await;
    let (_, full) = history(&app, &token, &format!("device/{device}/history")).await;
    let full = entries(&full);
    let (approved, suspended) = (time(&full[1]["at"]), time(&full[2]["at"]));
    assert!(approved < suspended, "two requests apart: {approved} {suspended}");

    // Between the approval and the suspension: the device was active.
    let between = approved + (suspended - approved) / 2;
    let query = |at: DateTime<Utc>| {
        let at = at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        format!("device/{device}/history?at={}", at.replace('+', "%2B"))
    };
    let (status, body) = history(&app, &token, &query(between)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(time(&body["at"]), between);
    assert_eq!(body["version"], 2);
    assert_eq!(body["state"]["status"], "active");
    assert_eq!(body["state"]["label"], "laptop");
    assert_eq!(entries(&body).len(), 2);
    assert_eq!(body["state"], full[1]["state"]);

    // Exactly at an event's instant, that event counts.
    let (status, body) = history(&app, &token, &query(suspended)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"]["status"], "suspended");

    // After the last event: today's state.
    let (status, body) = history(&app, &token, &query(Utc::now() + chrono::TimeDelta::days(1))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["version"], 4);

    // Before the enrollment the device did not exist.
    let before = time(&full[0]["at"]) - chrono::TimeDelta::seconds(1);
    let (status, body) = history(&app, &token, &query(before)).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"], "aggregate_not_yet_created", "{body}");

    // A timezone offset is the same instant.
    let (status, body) =
        history(&app, &token, &format!("device/{device}/history?at=2000-01-01T02:00:00%2B02:00")).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("aggregate_not_yet_created")), "{body}");
}

async fn refusals_are_clear(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = app.bootstrap_admin().await;
    let unknown = uuid::Uuid::new_v4();

    let (status, body) = history(&app, &token, &format!("device/{unknown}/history")).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("aggregate_not_found")), "{body}");
    let (status, body) = history(&app, &token, &format!("gadget/{unknown}/history")).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_aggregate_type")), "{body}");
    assert!(body["fields"]["type"].is_string(), "{body}");
    let (status, body) = history(&app, &token, "device/not-a-uuid/history").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_aggregate_id")), "{body}");
    let (status, body) = history(&app, &token, "policy/everything/history").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_aggregate_id")), "{body}");
    let (status, body) = history(&app, &token, &format!("device/{unknown}/history?at=yesterday")).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["fields"]["at"].is_string(), "{body}");

    // The trail is for those who may read the audit: not for anonymous callers.
    let (status, _) = app
        .call(Method::GET, &format!("/api/v1/audit/aggregates/device/{unknown}/history"), None, None)
        .await;
    assert_eq!(status, 401);
    let auditor = app.user_with_role(&token, "auditor").await;
    let (status, body) = history(&app, &auditor, &format!("device/{unknown}/history")).await;
    assert_eq!(status, 404, "an auditor reads it: {body}");
}

async fn no_secret_in_any_answer(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let token = app.bootstrap_admin().await;
    let body = json!({
        "name": "sealed", "provider": "openai", "environment": "production", "providerKey": PROVIDER_SECRET
    });
    let (status, created) = app.call(Method::POST, "/api/v1/keys", Some(&token), Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let key: uuid::Uuid = created["key"]["id"].as_str().unwrap().parse().unwrap();
    let body = json!({ "providerKey": format!("{PROVIDER_SECRET}-2") });
    let (status, rotated) =
        app.call(Method::POST, &format!("/api/v1/keys/{key}/rotate-secret"), Some(&token), Some(body)).await;
    assert_eq!(status, 200, "{rotated}");
    let sealed = services::read_models::api_keys::sealed_secret(&app.db, key).await.unwrap().unwrap();

    let (status, key_history) = history(&app, &token, &format!("api_key/{key}/history")).await;
    assert_eq!(status, 200, "{key_history}");
    assert_eq!(key_history["version"], 2);
    for entry in entries(&key_history) {
        assert_eq!(entry["state"]["sealed_secret"], "<redacted>", "{entry}");
        assert_eq!(entry["payload"]["sealed_secret"], "<redacted>", "{entry}");
    }
    assert_eq!(key_history["state"]["name"], "sealed");

    // A user whose password was reset: two hashes in the history, neither shown.
    let email = "grace@example.com";
    let body = json!({ "email": email, "name": "Grace", "role": "operator", "password": ADMIN_PASSWORD });
    let (status, user) = app.call(Method::POST, "/api/v1/users", Some(&token), Some(body)).await;
    assert_eq!(status, 201, "{user}");
    let user_id = user["id"].as_str().or(user["user"]["id"].as_str()).expect("the user's id").to_owned();
    let body = json!({ "password": "another correct horse battery" });
    let (status, reset) =
        app.call(Method::POST, &format!("/api/v1/users/{user_id}/password"), Some(&token), Some(body)).await;
    assert!(status < 300, "{status} {reset}");
    let (status, user_history) = history(&app, &token, &format!("user/{user_id}/history")).await;
    assert_eq!(status, 200, "{user_history}");
    assert_eq!(user_history["version"], 2);
    assert_eq!(user_history["state"]["password_hash"], "<redacted>");
    assert_eq!(user_history["state"]["role"], "operator");

    let (status, policy_history) = history(&app, &token, "policy/global/history").await;
    assert_eq!(status, 404, "no global policy was set: {policy_history}");

    for text in [key_history.to_string(), user_history.to_string()] {
        for secret in [PROVIDER_SECRET, sealed.ciphertext_b64(), "$argon2", ADMIN_PASSWORD] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
    }
}

on_both_backends!(
    every_event_comes_with_the_state_it_left,
    at_an_instant_the_state_is_the_one_then,
    refusals_are_clear,
    no_secret_in_any_answer,
);
