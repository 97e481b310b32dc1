//! Secrets never leak: the whole flow runs through the real HTTP API with every log at `debug`,
//! and no provider key, project key, password, JWT, refresh token, enrollment code or master key
//! may then appear in a log line, an error body, an API answer that is not the one handing the
//! secret out, an event's payload or metadata, or any table of the store.
//!
//! The flow: first-run setup and sign-in, refresh, a wrong password, a second user, a provider
//! key created and its secret rotated, an enrollment code, a wrong code, enrollment, approval, a
//! signed proxy call to a fake provider, a bad signature, a replay, reading every admin list, and
//! sign-out. The scan proves it can fail: it must find the debug lines the flow is known to
//! produce, and a secret deliberately logged.

mod device_support;
mod support;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use device_support::{DeviceKey, Project};
use reqwest::Method;
use secrecy::SecretString;
use serde_json::{Value, json};
use services::secrets::MasterKeySource;
use services::store::Database;
use support::upstream::{FakeUpstream, Reply};
use support::{Backend, TestApp};
use tracing_subscriber::fmt::format::FmtSpan;
use uuid::Uuid;

const OPENAI_REQUEST: &[u8] = br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
const OPENAI_ANSWER: &str = r#"{"id":"c1","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":7}}"#;

/// Everything every subscriber layer writes, for the whole test binary.
fn captured_logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_ansi(false)
            .with_target(true)
            // Span fields are written when a span opens too, so a secret recorded on a span that
            // logs nothing inside it is still seen.
            .with_span_events(FmtSpan::NEW | FmtSpan::CLOSE)
            .with_writer(move || Capture(sink.clone()))
            .try_init()
            .expect("the only subscriber of this test binary");
        logs
    })
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Named secrets and where they must not be.
#[derive(Default)]
struct Secrets(Vec<(String, String)>);

impl Secrets {
    fn add(&mut self, name: impl Into<String>, value: &str) {
        assert!(value.len() >= 12, "{value:?} is too short to search for");
        self.0.push((name.into(), value.to_owned()));
    }

    /// A JWT is found whole or by its signature, the part that makes it a credential.
    fn add_jwt(&mut self, name: &str, token: &str) {
        self.add(name, token);
        let signature = token.rsplit('.').next().expect("a JWT has three parts");
        self.add(format!("{name} (signature)"), signature);
    }

    /// Each `(secret, place)` where a secret occurs, case-insensitively.
    fn leaks<'a>(&'a self, places: &'a [(String, String)]) -> Vec<(&'a str, &'a str)> {
        let mut found = Vec::new();
        for (place, text) in places {
            let text = text.to_ascii_lowercase();
            for (name, value) in &self.0 {
                if text.contains(&value.to_ascii_lowercase()) {
                    found.push((name.as_str(), place.as_str()));
                }
            }
        }
        found
    }
}

/// Talks to the app and keeps every answer: an answer that hands a secret out is `handing_out`,
/// all others are scanned.
struct Client<'a> {
    app: &'a TestApp,
    answers: Vec<(String, String)>,
}

impl Client<'_> {
    async fn call(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let (status, body) = self.app.call(method.clone(), path, token, body).await;
        self.answers.push((format!("{method} {path} ({status})"), body.to_string()));
        (status, body)
    }

    /// A call whose answer carries a secret by design (a token, a new key, a code).
    async fn handing_out(&mut self, method: Method, path: &str, token: Option<&str>, body: Value) -> Value {
        let (status, body) = self.app.call(method.clone(), path, token, Some(body)).await;
        assert!((200..300).contains(&status), "{method} {path}: {status} {body}");
        body
    }

    async fn raw(&mut self, label: &str, request: reqwest::RequestBuilder) -> (u16, String) {
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        self.answers.push((format!("{label} ({status})"), text.clone()));
        (status, text)
    }
}

async fn no_secret_leaks(backend: Backend) {
    let logs = captured_logs();
    let run = Uuid::new_v4().simple().to_string();
    let mut secrets = Secrets::default();

    let master_key = "bWFzdGVyLWtleS1mb3ItdGhlLWh5Z2llbmUtdGVzdDE="; // 32 bytes, base64
    secrets.add("master key", master_key);
    let fake = FakeUpstream::spawn(Reply::Json { status: 200, body: OPENAI_ANSWER.to_owned() }).await;
    let app = TestApp::spawn_with(backend, |config| {
        config.master_key =
            MasterKeySource::Inline { current: SecretString::from(master_key.to_owned()), previous: vec![] };
    })
    .await;
    let mut client = Client { app: &app, answers: Vec::new() };

    // People: setup, sign-in, refresh, a wrong password, a second user, sign-out.
    let password = format!("hygiene passphrase {run}");
    let wrong_password = format!("mistyped passphrase {run}");
    let user_password = format!("operator passphrase {run}");
    secrets.add("admin password", &password);
    secrets.add("wrong password", &wrong_password);
    secrets.add("operator password", &user_password);
    let setup = json!({ "email": "admin@example.com", "name": "Ada Admin", "password": password });
    client.handing_out(Method::POST, "/api/v1/auth/setup", None, setup).await;
    let login = json!({ "email": "admin@example.com", "password": password });
    let session = client.handing_out(Method::POST, "/api/v1/auth/login", None, login).await;
    let refresh = json!({ "refreshToken": session["refreshToken"] });
    let renewed = client.handing_out(Method::POST, "/api/v1/auth/refresh", None, refresh).await;
    for (name, body) in [("first", &session), ("renewed", &renewed)] {
        secrets.add_jwt(&format!("{name} access token"), body["accessToken"].as_str().unwrap());
        secrets.add(format!("{name} refresh token"), body["refreshToken"].as_str().unwrap());
    }
    let wrong = json!({ "email": "admin@example.com", "password": wrong_password });
    let (status, _) = client.call(Method::POST, "/api/v1/auth/login", None, Some(wrong)).await;
    assert_eq!(status, 401);
    let reused = json!({ "refreshToken": session["refreshToken"] });
    let (status, _) = client.call(Method::POST, "/api/v1/auth/refresh", None, Some(reused)).await;
    assert_eq!(status, 401, "a reused refresh token is refused");
    // The reuse ended that session; sign in again.
    let login = json!({ "email": "admin@example.com", "password": password });
    let session = client.handing_out(Method::POST, "/api/v1/auth/login", None, login).await;
    secrets.add_jwt("second access token", session["accessToken"].as_str().unwrap());
    secrets.add("second refresh token", session["refreshToken"].as_str().unwrap());
    let admin = session["accessToken"].as_str().unwrap();
    let operator =
        json!({ "email": "op@example.com", "name": "Op", "role": "operator", "password": user_password });
    let (status, _) = client.call(Method::POST, "/api/v1/users", Some(admin), Some(operator)).await;
    assert_eq!(status, 201);
    let (status, _) =
        client.call(Method::GET, "/api/v1/auth/me", Some("not-a-jwt-at-all-0123456789"), None).await;
    assert_eq!(status, 401);

    // A provider key, its secret rotated; the project key.
    let provider_key = format!("sk-hygiene-provider-{run}");
    let rotated_provider_key = format!("sk-hygiene-rotated-{run}");
    secrets.add("provider key", &provider_key);
    secrets.add("rotated provider key", &rotated_provider_key);
    let key = json!({
        "name": "hygiene", "provider": "openai", "environment": "production",
        "providerKey": provider_key, "baseUrl": format!("{}/v1", fake.base_url()),
    });
    let created = client.handing_out(Method::POST, "/api/v1/keys", Some(admin), key).await;
    let project = Project {
        id: created["key"]["id"].as_str().unwrap().parse().unwrap(),
        raw: created["rawKey"].as_str().unwrap().to_owned(),
    };
    secrets.add("project key", &project.raw);
    let rotate = json!({ "providerKey": rotated_provider_key });
    let path = format!("/api/v1/keys/{}/rotate-secret", project.id);
    let (status, body) = client.call(Method::POST, &path, Some(admin), Some(rotate)).await;
    assert_eq!(status, 200, "{body}");

    // Enrollment: a wrong code, the right one (pending), approval.
    let issue = json!({ "apiKeyId": project.id, "autoApprove": false });
    let issued =
        client.handing_out(Method::POST, "/api/v1/devices/enrollment-code", Some(admin), issue).await;
    let code = issued["code"].as_str().unwrap().to_owned();
    secrets.add("enrollment code", &code);
    let wrong_code = format!("kgc_{}", "7".repeat(26));
    secrets.add("wrong enrollment code", &wrong_code);
    let device = DeviceKey::generate();
    let enroll = |body: Value| {
        app.client
            .post(app.url("/api/v1/keyguard/enroll"))
            .header("x-keyguard-api-key", &project.raw)
            .json(&body)
    };
    let (status, body) =
        client.raw("enroll with a wrong code", enroll(device.enrollment(Some(&wrong_code)))).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = client.raw("enroll", enroll(device.enrollment(Some(&code)))).await;
    assert_eq!(status, 201, "{body}");
    let device_id = serde_json::from_str::<Value>(&body).unwrap()["id"].as_str().unwrap().to_owned();
    let bad_project = format!("kg_0000000000000_{run}");
    secrets.add("unknown project key", &bad_project);
    let request =
        app.client.post(app.url("/api/v1/keyguard/enroll")).header("x-keyguard-api-key", &bad_project);
    let (status, _) =
        client.raw("enroll with an unknown project key", request.json(&device.enrollment(None))).await;
    assert_eq!(status, 401);
    let approve = format!("/api/v1/devices/{device_id}/approve");
    let (status, body) = client.call(Method::PATCH, &approve, Some(admin), None).await;
    assert_eq!(status, 200, "{body}");

    // The signed proxy call, a bad signature and a replay.
    let path = "/api/v1/proxy/v1/chat/completions";
    let mut headers = device_support::sign(&device, &project.raw, "POST", path, OPENAI_REQUEST);
    headers.push(("content-type".to_owned(), "application/json".to_owned()));
    let proxied = |headers: &[(String, String)]| {
        headers.iter().fold(app.client.post(app.url(path)).body(OPENAI_REQUEST), |r, (n, v)| r.header(n, v))
    };
    let (status, body) = client.raw("proxy", proxied(&headers)).await;
    assert_eq!((status, body.as_str()), (200, OPENAI_ANSWER));
    let received = fake.single();
    assert_eq!(
        received.headers["authorization"],
        format!("Bearer {rotated_provider_key}"),
        "the secret is used"
    );
    let (status, _) = client.raw("replay", proxied(&headers)).await;
    assert_eq!(status, 401);
    let mut forged = device_support::sign(&device, &project.raw, "POST", path, OPENAI_REQUEST);
    forged.retain(|(name, _)| name != "x-keyguard-signature");
    let other = device_support::sign(&device, &project.raw, "GET", path, b"");
    forged.push(other.into_iter().find(|(name, _)| name == "x-keyguard-signature").unwrap());
    let (status, _) = client.raw("bad signature", proxied(&forged)).await;
    assert_eq!(status, 401);

    // Everything an admin can read, then sign-out.
    for path in [
        "/api/v1/keys".to_owned(),
        format!("/api/v1/keys/{}", project.id),
        "/api/v1/devices".to_owned(),
        format!("/api/v1/devices/{device_id}"),
        format!("/api/v1/devices/{device_id}/events"),
        "/api/v1/devices/enrollment-codes".to_owned(),
        "/api/v1/users".to_owned(),
        "/api/v1/audit/logs?limit=200".to_owned(),
        "/api/v1/auth/me".to_owned(),
    ] {
        let (status, body) = client.call(Method::GET, &path, Some(admin), None).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    let export = app.client.get(app.url("/api/v1/audit/export")).bearer_auth(admin);
    let (status, body) = client.raw("audit export", export).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = client.raw("login page", app.client.get(app.url("/login"))).await;
    assert_eq!(status, 200);
    let logout = json!({ "refreshToken": session["refreshToken"] });
    client.call(Method::POST, "/api/v1/auth/logout", None, Some(logout)).await;

    // Let the usage record and the projections land before reading the store.
    let usage = support::events::eventually("the usage event", Duration::from_secs(10), || async {
        let all = support::events::read_all(&app.db).await;
        all.iter().any(|e| e.aggregate_type == services::usage::USAGE_BATCH_TYPE).then_some(all)
    })
    .await;
    app.platform.projections.catch_up().await.unwrap();
    let events: Vec<(String, String)> = usage
        .iter()
        .map(|e| {
            let place = format!("event {} {} #{}", e.aggregate_type, e.event_type, e.position);
            (place, format!("{} {}", e.payload, serde_json::to_string(&e.metadata).unwrap()))
        })
        .collect();
    assert!(events.len() >= 10, "the flow left {} events", events.len());
    let tables = all_tables(&app.db).await;
    assert!(tables.len() >= 5, "{tables:?}");
    let mut rows = Vec::new();
    for table in &tables {
        rows.push((format!("table {table}"), dump(&app.db, table).await));
    }
    assert!(rows.iter().any(|(_, text)| text.contains(&device.key_id)), "the dump holds the device");

    // The scan sees what it must see: the flow's debug lines, and a secret logged on purpose.
    let canary = format!("canary-secret-{run}");
    tracing::debug!(target: "server::security", leaked = %canary, "logged on purpose");
    let log_text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    let lines: Vec<(String, String)> = log_text
        .lines()
        .enumerate()
        .map(|(i, line)| (format!("log line {}: {line}", i + 1), line.to_owned()))
        .collect();
    assert!(
        lines.iter().any(|(_, l)| l.contains("DEBUG") && l.contains("tower_http::trace") && l.contains(path)),
        "the proxy call's debug trace was not captured"
    );
    assert!(lines.iter().any(|(_, l)| l.contains("DEBUG") && l.contains("sqlx")), "no database debug line");
    let mut with_canary = Secrets::default();
    with_canary.add("canary", &canary);
    assert_eq!(with_canary.leaks(&lines).len(), 1, "the scan misses a secret in a log line");
    assert!(!with_canary.leaks(&[("answer".into(), format!("x{}y", canary.to_uppercase()))]).is_empty());

    for (kind, places) in
        [("log lines", &lines), ("answers", &client.answers), ("events", &events), ("tables", &rows)]
    {
        let leaks = secrets.leaks(places);
        assert!(leaks.is_empty(), "secrets in {kind}: {leaks:#?}");
    }
}

/// Every table of the test's database (its own SQLite file or PostgreSQL schema).
async fn all_tables(db: &Database) -> Vec<String> {
    let rows: Vec<(String,)> = match db {
        Database::Postgres(pool) => sqlx::query_as(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY 1",
        )
        .fetch_all(pool)
        .await
        .unwrap(),
        Database::Sqlite(pool) => sqlx::query_as(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY 1",
        )
        .fetch_all(pool)
        .await
        .unwrap(),
    };
    rows.into_iter().map(|(name,)| name).collect()
}

/// Every row of `table` as text, whatever its column types (SQLite blobs as their bytes).
async fn dump(db: &Database, table: &str) -> String {
    let rows: Vec<(Vec<u8>,)> = match db {
        Database::Postgres(pool) => {
            let sql = format!("SELECT convert_to(row_to_json(t)::text, 'UTF8') FROM {table} t");
            sqlx::query_as(&sql).fetch_all(pool).await.unwrap()
        }
        Database::Sqlite(pool) => {
            let columns: Vec<(String,)> =
                sqlx::query_as(&format!("SELECT name FROM pragma_table_info('{table}')"))
                    .fetch_all(pool)
                    .await
                    .unwrap();
            let values: Vec<String> = columns
                .iter()
                .map(|(c,)| {
                    format!("'{c}', CASE WHEN typeof({c}) = 'blob' THEN CAST({c} AS TEXT) ELSE {c} END")
                })
                .collect();
            let sql = format!("SELECT CAST(json_object({}) AS BLOB) FROM {table}", values.join(", "));
            sqlx::query_as(&sql).fetch_all(pool).await.unwrap()
        }
    };
    // A blob that is not text (a nonce, a ciphertext) reads lossily; text inside stays whole.
    rows.into_iter().map(|(row,)| String::from_utf8_lossy(&row).into_owned()).collect::<Vec<_>>().join("\n")
}

on_both_backends!(no_secret_leaks);
