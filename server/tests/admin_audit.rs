//! `/api/v1/audit/logs` over HTTP: what admins did and who failed to sign in, each entry with the
//! real actor, IP, user agent and request id; filters that narrow, paging, single entries, and who
//! may read the trail.

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::{ADMIN_PASSWORD, Backend, TestApp};

const USER_AGENT: &str = "keyguard-audit-test/1.0 (+loopback)";
const PROVIDER_SECRET: &str = "sk-audit-0123456789abcdefghijklmnop";

/// Sends a JSON request with our user agent and a chosen request id.
async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    request_id: &str,
    body: Value,
) -> (u16, Value) {
    let mut request = app
        .client
        .request(method, app.url(path))
        .header("user-agent", USER_AGENT)
        .header("x-request-id", request_id)
        .json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

async fn logs(app: &TestApp, token: &str, query: &str) -> Value {
    let path = format!("/api/v1/audit/logs{query}");
    let (status, page) = app.call(Method::GET, &path, Some(token), None).await;
    assert_eq!(status, 200, "{path}: {page}");
    page
}

fn items(page: &Value) -> &Vec<Value> {
    page["items"].as_array().expect("items")
}

fn event_types(page: &Value) -> Vec<&str> {
    items(page).iter().map(|e| e["eventType"].as_str().unwrap()).collect()
}

fn only<'a>(page: &'a Value, event_type: &str) -> &'a Value {
    let found: Vec<&Value> = items(page).iter().filter(|e| e["eventType"] == event_type).collect();
    assert_eq!(found.len(), 1, "one {event_type} in {page}");
    found[0]
}

/// What the tests below act out: an admin creates a key and a user, and someone fails to sign in.
struct Story {
    app: TestApp,
    admin: String,
    admin_id: String,
    key_id: String,
    started: chrono::DateTime<chrono::Utc>,
}

async fn story(backend: Backend) -> Story {
    let started = chrono::Utc::now();
    let app = TestApp::spawn(backend).await;
    let admin = app.bootstrap_admin().await;
    let (_, me) = app.call(Method::GET, "/api/v1/auth/me", Some(&admin), None).await;
    let admin_id = me["id"].as_str().expect("my id").to_owned();

    let key = json!({ "name": "Audited key", "provider": "openai", "environment": "production", "providerKey": PROVIDER_SECRET });
    let (status, created) =
        send(&app, Method::POST, "/api/v1/keys", Some(&admin), "req-create-key", key).await;
    assert_eq!(status, 201, "{created}");
    let key_id = created["key"]["id"].as_str().unwrap().to_owned();

    let user = json!({ "email": "olga@example.com", "name": "Olga", "role": "operator", "password": ADMIN_PASSWORD });
    let (status, body) =
        send(&app, Method::POST, "/api/v1/users", Some(&admin), "req-create-user", user).await;
    assert_eq!(status, 201, "{body}");

    let wrong = json!({ "email": "olga@example.com", "password": "not her password at all" });
    let (status, body) = send(&app, Method::POST, "/api/v1/auth/login", None, "req-bad-login", wrong).await;
    assert_eq!(status, 401, "{body}");
    Story { app, admin, admin_id, key_id, started }
}

async fn entries_show_the_real_actor_and_where_the_request_came_from(backend: Backend) {
    let Story { app, admin, admin_id, key_id, .. } = story(backend).await;
    let page = logs(&app, &admin, "").await;

    let key = only(&page, "ApiKeyCreated");
    assert_eq!(key["actor"], json!({ "type": "user", "id": admin_id }));
    assert_eq!(key["ip"], "127.0.0.1");
    assert_eq!(key["userAgent"], USER_AGENT);
    assert_eq!(key["requestId"], "req-create-key");
    assert_eq!(key["outcome"], "success");
    assert_eq!(key["aggregate"]["type"], "api_key");
    assert_eq!(key["aggregate"]["id"], key_id.as_str());
    assert_eq!(key["aggregate"]["sequence"], 1);
    assert_eq!(key["apiKeyId"], key_id.as_str());
    assert!(key["summary"].as_str().unwrap().contains("Audited key"), "{key}");
    assert_eq!(key["payload"]["name"], "Audited key");
    assert!(key["at"].as_str().is_some() && key["position"].as_i64().unwrap() > 0, "{key}");
    assert!(key["eventId"].as_str().is_some(), "{key}");

    // The first admin's own creation (by the setup page) is a UserCreated too.
    let users: Vec<&Value> = items(&page).iter().filter(|e| e["eventType"] == "UserCreated").collect();
    assert_eq!(users.len(), 2, "{page}");
    assert_eq!(users[1]["actor"], json!({ "type": "system", "id": "setup" }));
    let user = users[0];
    assert_eq!(user["actor"], json!({ "type": "user", "id": admin_id }));
    assert_eq!(user["requestId"], "req-create-user");
    assert_eq!(user["userAgent"], USER_AGENT);
    assert_eq!(user["aggregate"]["type"], "user");
    assert!(user["summary"].as_str().unwrap().contains("olga@example.com"), "{user}");

    let failed = only(&page, "LoginFailed");
    assert_eq!(failed["outcome"], "failure");
    assert_eq!(failed["actor"]["type"], "system");
    assert_eq!(failed["ip"], "127.0.0.1");
    assert_eq!(failed["userAgent"], USER_AGENT);
    assert_eq!(failed["requestId"], "req-bad-login");
    assert!(failed["summary"].as_str().unwrap().contains("olga@example.com"), "{failed}");

    // Newest first, and no secret anywhere in the trail.
    let positions: Vec<i64> = items(&page).iter().map(|e| e["position"].as_i64().unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] > w[1]), "{positions:?}");
    assert_eq!(page["total"].as_i64().unwrap() as usize, positions.len());
    let text = page.to_string();
    assert!(!text.contains(PROVIDER_SECRET), "the provider secret leaked into the audit log");
    assert!(!text.contains(ADMIN_PASSWORD) && !text.contains("not her password"), "a password leaked");
    assert!(!text.contains("$argon2"), "a password hash leaked");
}

async fn filters_narrow_and_pages_split(backend: Backend) {
    let Story { app, admin, admin_id, key_id, started } = story(backend).await;
    let all = logs(&app, &admin, "").await;
    let total = all["total"].as_i64().unwrap();
    assert!(total >= 5, "{all}");

    assert_eq!(event_types(&logs(&app, &admin, "?eventType=LoginFailed").await), ["LoginFailed"]);
    assert_eq!(
        event_types(&logs(&app, &admin, "?eventType=UserCreated,ApiKeyCreated&actor=user").await),
        ["UserCreated", "ApiKeyCreated"]
    );
    assert_eq!(event_types(&logs(&app, &admin, "?outcome=failure").await), ["LoginFailed"]);
    assert_eq!(logs(&app, &admin, "?outcome=denied").await["total"], 0);

    let by_admin = logs(&app, &admin, &format!("?actor=user:{admin_id}")).await;
    let types = event_types(&by_admin);
    assert!(types.contains(&"ApiKeyCreated") && types.contains(&"UserCreated"), "{types:?}");
    assert!(!types.contains(&"LoginFailed"), "{types:?}");
    assert!(items(&by_admin).iter().all(|e| e["actor"]["id"] == admin_id.as_str()), "{by_admin}");
    assert_eq!(event_types(&logs(&app, &admin, "?actor=system:auth").await), ["LoginFailed"]);

    assert_eq!(event_types(&logs(&app, &admin, &format!("?apiKeyId={key_id}")).await), ["ApiKeyCreated"]);
    assert_eq!(logs(&app, &admin, &format!("?deviceId={}", uuid::Uuid::new_v4())).await["total"], 0);
    // Text search covers request ids, user agents and summaries, case-insensitively.
    assert_eq!(event_types(&logs(&app, &admin, "?q=REQ-CREATE-USER").await), ["UserCreated"]);
    assert_eq!(event_types(&logs(&app, &admin, "?q=audited%20key").await), ["ApiKeyCreated"]);
    assert_eq!(logs(&app, &admin, "?q=audit-test/1.0").await["total"], 3);

    // Time range: [from, to).
    let rfc = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let before = rfc(started - chrono::TimeDelta::minutes(5));
    let after = rfc(chrono::Utc::now() + chrono::TimeDelta::minutes(5));
    assert_eq!(logs(&app, &admin, &format!("?from={before}&to={after}")).await["total"], total);
    assert_eq!(logs(&app, &admin, &format!("?from={after}")).await["total"], 0);
    assert_eq!(logs(&app, &admin, &format!("?to={before}")).await["total"], 0);

    // Pages: the same entries, split, in the same order.
    let first = logs(&app, &admin, "?limit=2").await;
    let second = logs(&app, &admin, "?limit=2&offset=2").await;
    assert_eq!((first["limit"].as_i64(), second["offset"].as_i64()), (Some(2), Some(2)));
    assert_eq!((first["total"].as_i64(), second["total"].as_i64()), (Some(total), Some(total)));
    let paged: Vec<&Value> = items(&first).iter().chain(items(&second)).collect();
    let expected: Vec<&Value> = items(&all).iter().take(4).collect();
    assert_eq!(paged, expected);
    assert_eq!(items(&logs(&app, &admin, &format!("?offset={total}")).await).len(), 0);

    for (query, field) in [
        ("?from=yesterday", "from"),
        ("?to=2025-01-01", "to"),
        ("?from=2025-02-01T00:00:00Z&to=2025-01-01T00:00:00Z", "to"),
        ("?actor=robot:1", "actor"),
        ("?deviceId=not-a-uuid", "deviceId"),
        ("?apiKeyId=42", "apiKeyId"),
        ("?eventType=Login%20Failed", "eventType"),
        ("?outcome=ok", "outcome"),
        ("?limit=0", "limit"),
        ("?limit=ten", "limit"),
        ("?offset=-1", "offset"),
    ] {
        let (status, error) =
            app.call(Method::GET, &format!("/api/v1/audit/logs{query}"), Some(&admin), None).await;
        assert_eq!(status, 400, "{query}: {error}");
        assert_eq!(error["error"], "invalid_input", "{query}: {error}");
        assert!(error["fields"].get(field).is_some(), "{query} names {field}: {error}");
    }
}

async fn one_entry_by_position(backend: Backend) {
    let Story { app, admin, .. } = story(backend).await;
    let page = logs(&app, &admin, "?eventType=LoginFailed").await;
    let listed = only(&page, "LoginFailed");
    let position = listed["position"].as_i64().unwrap();
    let (status, entry) =
        app.call(Method::GET, &format!("/api/v1/audit/logs/{position}"), Some(&admin), None).await;
    assert_eq!(status, 200, "{entry}");
    assert_eq!(&entry, listed);

    let (status, error) = app.call(Method::GET, "/api/v1/audit/logs/999999", Some(&admin), None).await;
    assert_eq!(status, 404, "{error}");
    assert_eq!(error["error"], "audit_entry_not_found");
    for bad in ["abc", "0", "-3"] {
        let (status, error) =
            app.call(Method::GET, &format!("/api/v1/audit/logs/{bad}"), Some(&admin), None).await;
        assert_eq!(status, 400, "{bad}: {error}");
        assert!(error["fields"].get("position").is_some(), "{bad}: {error}");
    }
}

async fn admins_operators_and_auditors_read_anonymous_does_not(backend: Backend) {
    let Story { app, admin, .. } = story(backend).await;
    let auditor = app.user_with_role(&admin, "auditor").await;
    let operator = app.user_with_role(&admin, "operator").await;
    let position = items(&logs(&app, &admin, "").await)[0]["position"].as_i64().unwrap();
    for path in ["/api/v1/audit/logs".to_owned(), format!("/api/v1/audit/logs/{position}")] {
        for (who, token) in [("admin", &admin), ("operator", &operator), ("auditor", &auditor)] {
            let (status, body) = app.call(Method::GET, &path, Some(token), None).await;
            assert_eq!(status, 200, "{who} GET {path}: {body}");
        }
        let (status, body) = app.call(Method::GET, &path, None, None).await;
        assert_eq!(status, 401, "anonymous GET {path}: {body}");
        assert_eq!(body["error"], "unauthorized");
    }
    // The trail is read-only.
    let (status, _) =
        app.call(Method::DELETE, &format!("/api/v1/audit/logs/{position}"), Some(&admin), None).await;
    assert_eq!(status, 405);
}

on_both_backends!(
    entries_show_the_real_actor_and_where_the_request_came_from,
    filters_narrow_and_pages_split,
    one_entry_by_position,
    admins_operators_and_auditors_read_anonymous_does_not,
);
