//! `/api/v1/policies` over HTTP: the global policy and the overrides per key and per device are
//! set, read and cleared; the effective policy takes each field from the most specific level that
//! names it; bad settings are refused naming their field; roles decide who may write.

mod support;

use domain::device::InitialStatus;
use reqwest::Method;
use serde_json::{Value, json};
use support::{Backend, TestApp};
use uuid::Uuid;

fn settings(value: Value) -> Option<Value> {
    Some(json!({ "settings": value }))
}

async fn levels_are_set_read_merged_and_cleared(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.bootstrap_admin().await;
    let key = app.create_key(&admin, "Main").await;
    let other_key = app.create_key(&admin, "Other").await;
    let device = app.seed_device(key, "laptop", InitialStatus::Active).await;
    let key_path = format!("/api/v1/policies/keys/{key}");
    let device_path = format!("/api/v1/policies/devices/{device}");

    // Nothing set: the defaults are in force.
    let (status, global) = app.call(Method::GET, "/api/v1/policies/global", Some(&admin), None).await;
    assert_eq!(status, 200, "{global}");
    assert_eq!((global["scope"].as_str(), &global["settings"]), (Some("global"), &json!({})));
    let (status, body) = app.call(Method::GET, &key_path, Some(&admin), None).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("policy_not_set")), "{body}");
    let (status, effective) = app
        .call(Method::GET, &format!("/api/v1/policies/effective?deviceId={device}"), Some(&admin), None)
        .await;
    assert_eq!(status, 200, "{effective}");
    assert_eq!(effective["timestampWindowSeconds"], 120);
    assert_eq!(effective["requireApproval"], true);
    assert!(effective["requestsPerMinute"].is_null() && effective["ipAllowList"].is_null(), "{effective}");
    assert_eq!(effective["apiKeyId"], key.to_string());

    let global_settings = json!({
        "timestampWindowSeconds": 300,
        "requestsPerMinute": 60,
        "ipAllowList": ["10.1.2.3/8", "2001:db8::/32"],
        "allowedProviders": ["openai", "anthropic"],
        "requireApproval": true
    });
    let (status, global) =
        app.call(Method::PUT, "/api/v1/policies/global", Some(&admin), settings(global_settings)).await;
    assert_eq!(status, 200, "{global}");
    assert_eq!(
        global["settings"]["ipAllowList"],
        json!(["10.0.0.0/8", "2001:db8::/32"]),
        "canonical networks"
    );
    assert!(global["updatedBy"].as_str().unwrap().starts_with("user:"), "{global}");

    let (status, key_policy) = app
        .call(
            Method::PUT,
            &key_path,
            Some(&admin),
            settings(
                json!({ "requestsPerMinute": 30, "allowedModels": ["gpt-4o"], "requireApproval": false }),
            ),
        )
        .await;
    assert_eq!(status, 200, "{key_policy}");
    assert_eq!(
        (key_policy["scope"].as_str(), key_policy["apiKeyId"].as_str()),
        (Some("api_key"), Some(&*key.to_string()))
    );
    let (status, device_policy) = app
        .call(
            Method::PUT,
            &device_path,
            Some(&admin),
            settings(json!({ "requestsPerMinute": 5, "ipAllowList": ["192.168.1.7"] })),
        )
        .await;
    assert_eq!(status, 200, "{device_policy}");
    assert_eq!(
        device_policy["settings"]["ipAllowList"],
        json!(["192.168.1.7/32"]),
        "a bare address is one host"
    );

    let (status, read) = app.call(Method::GET, &key_path, Some(&admin), None).await;
    assert_eq!((status, &read["settings"]), (200, &key_policy["settings"]), "{read}");
    let (status, all) = app.call(Method::GET, "/api/v1/policies", Some(&admin), None).await;
    assert_eq!(status, 200, "{all}");
    let scopes: Vec<&str> = all.as_array().unwrap().iter().map(|p| p["scope"].as_str().unwrap()).collect();
    assert_eq!(scopes, ["global", "api_key", "device"]);

    // Most specific wins, field by field.
    let (status, effective) = app
        .call(Method::GET, &format!("/api/v1/policies/effective?deviceId={device}"), Some(&admin), None)
        .await;
    assert_eq!(status, 200, "{effective}");
    assert_eq!(effective["timestampWindowSeconds"], 300, "global");
    assert_eq!(effective["requestsPerMinute"], 5, "device over key over global");
    assert_eq!(effective["allowedModels"], json!(["gpt-4o"]), "key");
    assert_eq!(effective["requireApproval"], false, "key over global");
    assert_eq!(effective["ipAllowList"], json!(["192.168.1.7/32"]), "device");
    let mut providers: Vec<&str> =
        effective["allowedProviders"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    providers.sort();
    assert_eq!(providers, ["anthropic", "openai"], "global");
    assert!(
        effective["levels"]["device"].is_object() && effective["levels"]["global"].is_object(),
        "{effective}"
    );

    let (_, for_key) = app
        .call(Method::GET, &format!("/api/v1/policies/effective?apiKeyId={key}"), Some(&admin), None)
        .await;
    assert_eq!(
        (for_key["requestsPerMinute"].as_i64(), for_key["ipAllowList"][0].as_str()),
        (Some(30), Some("10.0.0.0/8"))
    );
    let (_, for_other) = app
        .call(Method::GET, &format!("/api/v1/policies/effective?apiKeyId={other_key}"), Some(&admin), None)
        .await;
    assert_eq!(
        (for_other["requestsPerMinute"].as_i64(), for_other["requireApproval"].as_bool()),
        (Some(60), Some(true))
    );
    let (status, body) = app
        .call(
            Method::GET,
            &format!("/api/v1/policies/effective?apiKeyId={other_key}&deviceId={device}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 400, "the device belongs to another key: {body}");
    assert!(body["fields"]["deviceId"].is_string(), "{body}");

    // Setting the same again changes nothing and says so.
    let (status, body) = app
        .call(
            Method::PUT,
            &key_path,
            Some(&admin),
            settings(
                json!({ "requestsPerMinute": 30, "allowedModels": ["gpt-4o"], "requireApproval": false }),
            ),
        )
        .await;
    assert_eq!((status, body["error"].as_str()), (409, Some("policy_unchanged")), "{body}");

    // Clearing the device override hands its fields back to the key and the global level.
    let (status, body) = app.call(Method::DELETE, &device_path, Some(&admin), None).await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = app.call(Method::DELETE, &device_path, Some(&admin), None).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("policy_not_set")), "{body}");
    let (status, body) = app.call(Method::GET, &device_path, Some(&admin), None).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("policy_not_set")), "{body}");
    let (_, effective) = app
        .call(Method::GET, &format!("/api/v1/policies/effective?deviceId={device}"), Some(&admin), None)
        .await;
    assert_eq!(effective["requestsPerMinute"], 30);
    assert_eq!(effective["ipAllowList"], json!(["10.0.0.0/8", "2001:db8::/32"]));
    assert!(effective["levels"]["device"].is_null(), "{effective}");
    let (status, _) = app.call(Method::DELETE, &key_path, Some(&admin), None).await;
    assert_eq!(status, 204);
    let (_, all) = app.call(Method::GET, "/api/v1/policies", Some(&admin), None).await;
    assert_eq!(all.as_array().unwrap().len(), 1, "{all}");

    // Unknown keys and devices are 404, not empty levels.
    for path in [
        format!("/api/v1/policies/keys/{}", Uuid::new_v4()),
        format!("/api/v1/policies/devices/{}", Uuid::new_v4()),
    ] {
        let (status, body) = app.call(Method::GET, &path, Some(&admin), None).await;
        assert_eq!(status, 404, "{path}: {body}");
        let (status, body) =
            app.call(Method::PUT, &path, Some(&admin), settings(json!({ "requestsPerMinute": 1 }))).await;
        assert_eq!(status, 404, "{path}: {body}");
        let (status, body) = app.call(Method::DELETE, &path, Some(&admin), None).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    let (status, body) = app
        .call(
            Method::GET,
            &format!("/api/v1/policies/effective?deviceId={}", Uuid::new_v4()),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!((status, body["error"].as_str()), (404, Some("device_not_found")), "{body}");
}

async fn invalid_settings_name_their_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.bootstrap_admin().await;
    let key = app.create_key(&admin, "Main").await;
    let device = app.seed_device(key, "laptop", InitialStatus::Active).await;
    let global = "/api/v1/policies/global".to_owned();
    let key_path = format!("/api/v1/policies/keys/{key}");
    let device_path = format!("/api/v1/policies/devices/{device}");

    for (path, body, field) in [
        (&global, json!({ "ipAllowList": ["10.0.0.0/33"] }), "ipAllowList"),
        (&global, json!({ "ipAllowList": ["10.0.0.0/8", "not-a-network"] }), "ipAllowList"),
        (&global, json!({ "ipAllowList": [] }), "ipAllowList"),
        (&global, json!({ "timestampWindowSeconds": 901 }), "timestampWindowSeconds"),
        (&global, json!({ "timestampWindowSeconds": 0 }), "timestampWindowSeconds"),
        (&global, json!({ "requestsPerMinute": 0 }), "requestsPerMinute"),
        (&global, json!({ "tokensPerDay": 0 }), "tokensPerDay"),
        (&global, json!({ "allowedProviders": ["openai", "mistral"] }), "allowedProviders"),
        (&global, json!({ "allowedModels": ["gpt 4"] }), "allowedModels"),
        (&key_path, json!({}), "settings"),
        (&device_path, json!({ "requireApproval": false }), "requireApproval"),
    ] {
        let (status, answer) = app.call(Method::PUT, path, Some(&admin), settings(body.clone())).await;
        assert_eq!(status, 400, "{path} {body}: {answer}");
        assert!(answer["fields"][field].is_string(), "{path} {body}: {answer}");
    }
    // A misspelt restriction is refused rather than silently dropped.
    let (status, answer) = app
        .call(Method::PUT, &global, Some(&admin), settings(json!({ "ipWhitelist": ["10.0.0.0/8"] })))
        .await;
    assert_eq!((status, answer["error"].as_str()), (400, Some("invalid_input")), "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("ipWhitelist"), "{answer}");
    // The window's bounds themselves are accepted.
    let (status, answer) = app
        .call(Method::PUT, &global, Some(&admin), settings(json!({ "timestampWindowSeconds": 900 })))
        .await;
    assert_eq!(status, 200, "{answer}");
    // Nothing refused was stored.
    let (_, all) = app.call(Method::GET, "/api/v1/policies", Some(&admin), None).await;
    assert_eq!(all.as_array().unwrap().len(), 1, "{all}");
    assert_eq!(all[0]["settings"], json!({ "timestampWindowSeconds": 900 }));
}

async fn operators_manage_policies_and_auditors_only_read(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.bootstrap_admin().await;
    let operator = app.user_with_role(&admin, "operator").await;
    let auditor = app.user_with_role(&admin, "auditor").await;
    let key = app.create_key(&admin, "Main").await;
    let device = app.seed_device(key, "laptop", InitialStatus::Active).await;
    let global = "/api/v1/policies/global".to_owned();
    let key_path = format!("/api/v1/policies/keys/{key}");
    let device_path = format!("/api/v1/policies/devices/{device}");

    let writes = [
        (Method::PUT, global.clone(), settings(json!({ "requestsPerMinute": 100 }))),
        (Method::PUT, key_path.clone(), settings(json!({ "requestsPerMinute": 50 }))),
        (Method::PUT, device_path.clone(), settings(json!({ "requestsPerMinute": 10 }))),
        (Method::DELETE, device_path.clone(), None),
        (Method::DELETE, key_path.clone(), None),
    ];
    for (method, path, body) in &writes {
        let (status, answer) = app.call(method.clone(), path, Some(&auditor), body.clone()).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (403, Some("forbidden")),
            "auditor {method} {path}: {answer}"
        );
    }
    for (method, path, body) in &writes {
        let (status, answer) = app.call(method.clone(), path, Some(&operator), body.clone()).await;
        assert!(status == 200 || status == 204, "operator {method} {path}: {status} {answer}");
    }
    // Leave a key override in place so that its GET has something to read.
    let (status, _) =
        app.call(Method::PUT, &key_path, Some(&operator), settings(json!({ "tokensPerDay": 1000 }))).await;
    assert_eq!(status, 200);
    for token in [&auditor, &operator] {
        for path in [
            "/api/v1/policies".to_owned(),
            global.clone(),
            key_path.clone(),
            format!("/api/v1/policies/effective?deviceId={device}"),
        ] {
            let (status, answer) = app.call(Method::GET, &path, Some(token), None).await;
            assert_eq!(status, 200, "GET {path}: {answer}");
        }
    }
    let (status, _) = app.call(Method::GET, "/api/v1/policies", None, None).await;
    assert_eq!(status, 401);
}

on_both_backends!(
    levels_are_set_read_merged_and_cleared,
    invalid_settings_name_their_field,
    operators_manage_policies_and_auditors_only_read,
);
