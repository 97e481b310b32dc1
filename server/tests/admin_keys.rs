//! `/api/v1/keys` over HTTP: a new project key is shown once and never a secret, the provider
//! secret is sealed so that only the envelope opens it, rotations and revocation do what they
//! promise, bad input names its field, and roles decide who may write.

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use services::read_models::api_keys::sealed_secret;
use support::{Backend, TestApp};
use uuid::Uuid;

const OPENAI_SECRET: &str = "sk-test-0123456789abcdefghijklmnopqrstuvwxyz";

fn openai_key(name: &str, secret: &str) -> Value {
    json!({ "name": name, "provider": "openai", "environment": "production", "providerKey": secret })
}

async fn create(app: &TestApp, token: &str, body: Value) -> Value {
    let (status, created) = app.call(Method::POST, "/api/v1/keys", Some(token), Some(body)).await;
    assert_eq!(status, 201, "{created}");
    created
}

fn id_of(created: &Value) -> Uuid {
    created["key"]["id"].as_str().expect("an id").parse().expect("a UUID")
}

/// The provider secret as the envelope opens it from the read model.
async fn open_secret(app: &TestApp, id: Uuid) -> Result<String, String> {
    let sealed = sealed_secret(&app.db, id).await.expect("read the sealed secret").expect("a sealed secret");
    app.platform
        .envelope
        .open(&sealed, &id.to_string())
        .await
        .map(|s| s.to_string())
        .map_err(|e| e.to_string())
}

async fn create_shows_the_project_key_once_and_never_a_secret(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.bootstrap_admin().await;

    let body = json!({
        "name": "Chat app",
        "provider": "openai",
        "environment": "production",
        "providerKey": OPENAI_SECRET,
        "baseUrl": "http://127.0.0.1:9/v1",
        "description": "the iOS app",
    });
    let created = create(&app, &admin, body).await;
    let raw_key = created["rawKey"].as_str().expect("a raw key");
    assert!(raw_key.starts_with("kg_") && raw_key.len() >= 35, "{raw_key}");
    let key = &created["key"];
    assert_eq!(key["name"], "Chat app");
    assert_eq!(key["provider"], "openai");
    assert_eq!(key["environment"], "production");
    assert_eq!(key["status"], "active");
    assert_eq!(key["baseUrl"], "http://127.0.0.1:9/v1");
    assert_eq!(key["description"], "the iOS app");
    assert!(raw_key.starts_with(key["keyPrefix"].as_str().unwrap()), "{created}");
    assert_eq!(key["previousKeyPrefix"], Value::Null);
    let text = created.to_string();
    assert!(!text.contains(OPENAI_SECRET), "the provider secret must not come back: {text}");
    assert!(!text.to_lowercase().contains("hash"), "no hash field: {text}");
    for field in ["secret", "sealedSecret", "ciphertext", "providerKey", "projectKeyHash"] {
        assert!(key.get(field).is_none(), "{field} in {key}");
    }

    // Reading it back shows neither the secret nor the project key.
    let id = id_of(&created);
    let (status, fetched) = app.call(Method::GET, &format!("/api/v1/keys/{id}"), Some(&admin), None).await;
    assert_eq!(status, 200, "{fetched}");
    assert_eq!(fetched["id"], key["id"]);
    let text = fetched.to_string();
    assert!(!text.contains(OPENAI_SECRET) && !text.contains(raw_key) && !text.contains("hash"), "{text}");

    // The secret is stored sealed, and the envelope opens it.
    assert_eq!(open_secret(&app, id).await.unwrap(), OPENAI_SECRET);
}

async fn the_provider_secret_may_come_in_the_x_api_key_header(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.bootstrap_admin().await;
    let secret = "sk-ant-from-the-header-0123456789";
    let response = app
        .client
        .post(app.url("/api/v1/keys"))
        .bearer_auth(&admin)
        .header("x-api-key", secret)
        .json(&json!({ "name": "Header", "provider": "anthropic", "environment": "staging" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    assert!(!created.to_string().contains(secret), "{created}");
    assert_eq!(open_secret(&app, id_of(&created)).await.unwrap(), secret);

    // Neither in the body nor in the header: refused, naming the field.
    let body = json!({ "name": "None", "provider": "anthropic", "environment": "staging" });
    let (status, error) = app.call(Method::POST, "/api/v1/keys", Some(&admin), Some(body)).await;
    assert_eq!(status, 400, "{error}");
    assert!(error["fields"].get("providerKey").is_some(), "{error}");
}

async fn list_filters_and_pages(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.bootstrap_admin().await;
    let openai = create(&app, &admin, openai_key("Billing bot", "sk-1-aaaaaaaaaaaaaaaaaaaa")).await;
    let anthropic = create(
        &app,
        &admin,
        json!({ "name": "Support", "provider": "anthropic", "environment": "staging", "providerKey": "sk-ant-2-bbbbbbbbbbbb" }),
    )
    .await;
    let google = create(
        &app,
        &admin,
        json!({ "name": "Research", "provider": "google", "environment": "development", "providerKey": "g-3-cccccccccccc", "description": "billing experiments" }),
    )
    .await;
    let revoked = create(&app, &admin, openai_key("Old", "sk-4-dddddddddddddddddddd")).await;
    let (status, body) =
        app.call(Method::DELETE, &format!("/api/v1/keys/{}", id_of(&revoked)), Some(&admin), None).await;
    assert_eq!(status, 200, "{body}");

    let names = |page: &Value| -> Vec<String> {
        page["items"].as_array().unwrap().iter().map(|k| k["name"].as_str().unwrap().to_owned()).collect()
    };
    let list = |query: &str| {
        let (app, admin) = (&app, &admin);
        let path = format!("/api/v1/keys{query}");
        async move {
            let (status, page) = app.call(Method::GET, &path, Some(admin), None).await;
            assert_eq!(status, 200, "{path}: {page}");
            page
        }
    };

    let all = list("").await;
    assert_eq!(all["total"], 4);
    assert_eq!(names(&all), ["Old", "Research", "Support", "Billing bot"], "newest first");
    assert_eq!(names(&list("?status=revoked").await), ["Old"]);
    assert_eq!(list("?status=active").await["total"], 3);
    assert_eq!(names(&list("?provider=openai").await), ["Old", "Billing bot"]);
    assert_eq!(names(&list("?provider=openai&status=active").await), ["Billing bot"]);
    assert_eq!(names(&list("?environment=staging").await), ["Support"]);
    // Search covers the name and the description, case-insensitively, and the id.
    assert_eq!(names(&list("?search=BILLING").await), ["Research", "Billing bot"]);
    let anthropic_id = id_of(&anthropic).to_string();
    assert_eq!(names(&list(&format!("?search={}", &anthropic_id[..8])).await), ["Support"]);
    assert_eq!(names(&list("?search=nothing-like-this").await), Vec::<String>::new());

    let page = list("?limit=2&offset=1").await;
    assert_eq!(names(&page), ["Research", "Support"]);
    assert_eq!(
        (page["total"].as_i64(), page["limit"].as_i64(), page["offset"].as_i64()),
        (Some(4), Some(2), Some(1))
    );
    assert_eq!(names(&list("?limit=2&offset=4").await), Vec::<String>::new());

    for (query, field) in
        [("?status=lost", "status"), ("?provider=mistral", "provider"), ("?environment=qa", "environment")]
    {
        let (status, error) =
            app.call(Method::GET, &format!("/api/v1/keys{query}"), Some(&admin), None).await;
        assert_eq!(status, 400, "{query}: {error}");
        assert!(error["fields"].get(field).is_some(), "{query}: {error}");
    }
    let _ = (openai, google);
}

async fn rotations_and_revocation_do_what_they_promise(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.bootstrap_admin().await;
    let created = create(&app, &admin, openai_key("Rotating", OPENAI_SECRET)).await;
    let id = id_of(&created);
    let first_raw = created["rawKey"].as_str().unwrap().to_owned();
    let first_prefix = created["key"]["keyPrefix"].as_str().unwrap().to_owned();

    // A new provider secret replaces the old one under the same envelope.
    let new_secret = "sk-test-rotated-9876543210zyxwvutsrqponmlkjih";
    let (status, rotated) = app
        .call(
            Method::POST,
            &format!("/api/v1/keys/{id}/rotate-secret"),
            Some(&admin),
            Some(json!({ "providerKey": new_secret })),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    assert!(!rotated.to_string().contains(new_secret), "{rotated}");
    assert_eq!(open_secret(&app, id).await.unwrap(), new_secret);
    let (status, error) = app
        .call(
            Method::POST,
            &format!("/api/v1/keys/{id}/rotate-secret"),
            Some(&admin),
            Some(json!({ "providerKey": " " })),
        )
        .await;
    assert_eq!(status, 400, "{error}");

    // A new project key with a grace period: both prefixes are shown while it runs.
    let (status, issued) = app
        .call(
            Method::POST,
            &format!("/api/v1/keys/{id}/rotate"),
            Some(&admin),
            Some(json!({ "gracePeriodSeconds": 3600 })),
        )
        .await;
    assert_eq!(status, 200, "{issued}");
    let second_raw = issued["rawKey"].as_str().unwrap();
    assert!(second_raw.starts_with("kg_") && second_raw.len() >= 35, "{issued}");
    assert_ne!(second_raw, first_raw);
    assert_eq!(issued["key"]["previousKeyPrefix"], first_prefix.as_str());
    assert_ne!(issued["key"]["keyPrefix"], first_prefix.as_str());
    assert!(second_raw.starts_with(issued["key"]["keyPrefix"].as_str().unwrap()));
    let grace_until: chrono::DateTime<chrono::Utc> =
        issued["key"]["graceUntil"].as_str().expect("a grace end").parse().unwrap();
    let expected = chrono::Utc::now() + chrono::TimeDelta::seconds(3600);
    assert!((grace_until - expected).num_seconds().abs() < 60, "{grace_until}");
    assert!(!issued.to_string().contains("hash"), "{issued}");
    let (status, error) = app
        .call(
            Method::POST,
            &format!("/api/v1/keys/{id}/rotate"),
            Some(&admin),
            Some(json!({ "gracePeriodSeconds": -5 })),
        )
        .await;
    assert_eq!(status, 400, "{error}");
    assert!(error["fields"].get("gracePeriodSeconds").is_some(), "{error}");

    // Without a grace period the previous key stops at once.
    let (status, again) =
        app.call(Method::POST, &format!("/api/v1/keys/{id}/rotate"), Some(&admin), None).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["key"]["previousKeyPrefix"], Value::Null);
    assert_ne!(again["rawKey"], issued["rawKey"]);

    // Revoking destroys the data key: the sealed secret no longer opens.
    let (status, revoked) = app
        .call(
            Method::DELETE,
            &format!("/api/v1/keys/{id}"),
            Some(&admin),
            Some(json!({ "reason": "leaked in a log" })),
        )
        .await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["status"], "revoked");
    assert_eq!(revoked["revokedReason"], "leaked in a log");
    assert!(open_secret(&app, id).await.is_err(), "a revoked key's secret must not open");
    let (status, fetched) = app.call(Method::GET, &format!("/api/v1/keys/{id}"), Some(&admin), None).await;
    assert_eq!((status, &fetched["status"]), (200, &json!("revoked")));

    // A revoked key takes no more changes.
    let (status, error) =
        app.call(Method::POST, &format!("/api/v1/keys/{id}/rotate"), Some(&admin), None).await;
    assert_eq!(status, 409, "{error}");
    let (status, error) = app.call(Method::DELETE, &format!("/api/v1/keys/{id}"), Some(&admin), None).await;
    assert_eq!(status, 409, "{error}");
}

async fn bad_input_is_refused_naming_the_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.bootstrap_admin().await;
    let post = |body: Value| {
        let (app, admin) = (&app, &admin);
        async move { app.call(Method::POST, "/api/v1/keys", Some(admin), Some(body)).await }
    };

    let (status, error) = post(
        json!({ "name": "X", "provider": "mistral", "environment": "production", "providerKey": "k-123456" }),
    )
    .await;
    assert_eq!(status, 400, "{error}");
    assert!(error["fields"].get("provider").is_some(), "{error}");
    assert!(error["message"].as_str().unwrap().contains("provider"), "{error}");

    let (status, error) =
        post(json!({ "name": "X", "provider": "openai", "environment": "prod", "providerKey": "k-123456" }))
            .await;
    assert_eq!(status, 400, "{error}");
    assert!(error["fields"].get("environment").is_some(), "{error}");

    let azure = json!({
        "name": "Azure", "provider": "azure", "environment": "production", "providerKey": "az-123456",
        "baseUrl": "https://example.openai.azure.com", "azureApiVersion": "2024-06-01",
    });
    let (status, error) = post(azure.clone()).await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error"], "azure_setting_required", "{error}");
    let mut complete = azure.clone();
    complete["azureDeployment"] = json!("gpt-4o");
    let (status, created) = post(complete).await;
    assert_eq!(status, 201, "an Azure key with its deployment is accepted: {created}");
    assert_eq!(created["key"]["azureDeployment"], "gpt-4o");

    let past = (chrono::Utc::now() - chrono::TimeDelta::days(1)).to_rfc3339();
    let (status, error) = post(json!({ "name": "X", "provider": "openai", "environment": "production", "providerKey": "k-123456", "expiresAt": past })).await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error"], "expiry_not_in_future", "{error}");

    // An unknown field is refused rather than silently ignored.
    let response = app
        .client
        .post(app.url("/api/v1/keys"))
        .bearer_auth(&admin)
        .json(&json!({ "name": "X", "provider": "openai", "environment": "production", "providerKey": "k-123456", "owner": "me" }))
        .send()
        .await
        .unwrap();
    assert!([400, 422].contains(&response.status().as_u16()), "{}", response.status());

    // Nothing refused left a key behind.
    let (_, page) = app.call(Method::GET, "/api/v1/keys", Some(&admin), None).await;
    assert_eq!(page["total"], 1, "{page}");

    let unknown = Uuid::new_v4();
    for (method, path, body) in [
        (Method::GET, format!("/api/v1/keys/{unknown}"), None),
        (Method::DELETE, format!("/api/v1/keys/{unknown}"), None),
        (Method::POST, format!("/api/v1/keys/{unknown}/rotate"), None),
        (
            Method::POST,
            format!("/api/v1/keys/{unknown}/rotate-secret"),
            Some(json!({ "providerKey": "k-123456" })),
        ),
    ] {
        let (status, error) = app.call(method.clone(), &path, Some(&admin), body).await;
        assert_eq!(status, 404, "{method} {path}: {error}");
        assert_eq!(error["error"], "api_key_not_found", "{method} {path}: {error}");
    }
}

async fn roles_decide_who_may_write(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.bootstrap_admin().await;
    let auditor = app.user_with_role(&admin, "auditor").await;
    let operator = app.user_with_role(&admin, "operator").await;
    let created = create(&app, &operator, openai_key("Operator's", OPENAI_SECRET)).await;
    let id = id_of(&created);

    let writes = [
        (Method::POST, "/api/v1/keys".to_owned(), Some(openai_key("Auditor's", "sk-aaaaaaaaaaaa"))),
        (
            Method::POST,
            format!("/api/v1/keys/{id}/rotate-secret"),
            Some(json!({ "providerKey": "sk-bbbbbbbbbbbb" })),
        ),
        (Method::POST, format!("/api/v1/keys/{id}/rotate"), Some(json!({ "gracePeriodSeconds": 60 }))),
        (Method::DELETE, format!("/api/v1/keys/{id}"), None),
    ];
    for (method, path, body) in &writes {
        let (status, error) = app.call(method.clone(), path, Some(&auditor), body.clone()).await;
        assert_eq!(status, 403, "auditor {method} {path}: {error}");
        assert_eq!(error["error"], "forbidden");
        let (status, _) = app.call(method.clone(), path, None, body.clone()).await;
        assert_eq!(status, 401, "anonymous {method} {path}");
    }
    // Nothing the auditor tried happened.
    assert_eq!(open_secret(&app, id).await.unwrap(), OPENAI_SECRET);

    for path in ["/api/v1/keys".to_owned(), format!("/api/v1/keys/{id}")] {
        let (status, body) = app.call(Method::GET, &path, Some(&auditor), None).await;
        assert_eq!(status, 200, "auditor GET {path}: {body}");
        let (status, _) = app.call(Method::GET, &path, None, None).await;
        assert_eq!(status, 401, "anonymous GET {path}");
    }
    let (status, body) = app.call(Method::DELETE, &format!("/api/v1/keys/{id}"), Some(&operator), None).await;
    assert_eq!(status, 200, "operators manage keys: {body}");
}

on_both_backends!(
    create_shows_the_project_key_once_and_never_a_secret,
    the_provider_secret_may_come_in_the_x_api_key_header,
    list_filters_and_pages,
    rotations_and_revocation_do_what_they_promise,
    bad_input_is_refused_naming_the_field,
    roles_decide_who_may_write,
);
