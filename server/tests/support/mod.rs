//! Shared test harness: a fresh database per test on either backend, and the real application on
//! a random loopback port.
//!
//! PostgreSQL tests need a server: `KEYGUARD_TEST_DATABASE_URL` (default
//! `postgres://keyguard:keyguard@127.0.0.1:5432/keyguard_test`, which `scripts/test.sh` prepares).
//! A missing server fails the test loudly; it is never skipped.

#![allow(dead_code)]

pub mod events;
pub mod upstream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use server::config::{Config, DatabaseConfig};
use server::startup::Application;
use services::store::Database;
use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use tempfile::TempDir;

const DEFAULT_TEST_DATABASE_URL: &str = "postgres://keyguard:keyguard@127.0.0.1:5432/keyguard_test";
const DEFAULT_TEST_NATS_URL: &str = "nats://127.0.0.1:4222";

/// A password that satisfies the policy, for test accounts.
pub const ADMIN_PASSWORD: &str = "correct horse battery staple";

/// The NATS server tests use (`KEYGUARD_TEST_NATS_URL`); `scripts/test.sh` starts it.
pub fn nats_url() -> String {
    std::env::var("KEYGUARD_TEST_NATS_URL").unwrap_or_else(|_| DEFAULT_TEST_NATS_URL.to_owned())
}

/// Which event store a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// An empty, migrated database that belongs to one test only.
pub struct TestDb {
    pub db: Database,
    pub config: DatabaseConfig,
    // Keeps the SQLite file alive for as long as the test runs.
    _dir: Option<TempDir>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        let config = fresh_database(backend).await;
        let db = Database::connect(&config.0, 5).await.expect("connect to the test database");
        db.migrate().await.expect("migrate the test database");
        Self { db, config: config.0, _dir: config.1 }
    }
}

/// Creates an empty database of the given kind and returns its configuration: a SQLite file in a
/// temporary directory, or a PostgreSQL schema of its own (so tests run in parallel).
pub async fn fresh_database(backend: Backend) -> (DatabaseConfig, Option<TempDir>) {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temporary directory");
            let path: PathBuf = dir.path().join("keyguard.db");
            (DatabaseConfig::Sqlite { path }, Some(dir))
        }
        Backend::Postgres => (DatabaseConfig::Postgres { url: fresh_postgres_schema().await }, None),
    }
}

async fn fresh_postgres_schema() -> String {
    let base =
        std::env::var("KEYGUARD_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_TEST_DATABASE_URL.to_owned());
    let options = PgConnectOptions::from_str(&base).expect("KEYGUARD_TEST_DATABASE_URL is a PostgreSQL URL");
    let mut conn = PgConnection::connect_with(&options).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is required for this test and is not reachable at {base} ({e}); \
             run scripts/test.sh, which installs and starts it"
        )
    });
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&mut conn).await.expect("create a test schema");
    conn.close().await.ok();
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}options=-c%20search_path%3D{schema}")
}

/// A running application on a random port, stopped when dropped.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub db: Database,
    /// The running app's services, for seeding state the API cannot create (yet) and for
    /// catching the read models up after a direct write.
    pub platform: std::sync::Arc<services::platform::Platform>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    running: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// What [`TestApp::spawn_beside`] needs to start another node on the same data.
    database: DatabaseConfig,
    data_dir: PathBuf,
    _dir: Option<TempDir>,
    _data_dir: Option<TempDir>,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, |_| {}).await
    }

    /// Spawns with a configuration adjusted by `adjust` (after the test database is set).
    pub async fn spawn_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> Self {
        let (database, dir) = fresh_database(backend).await;
        // Files the server keeps beside its database (the generated master key) go here.
        let data_dir = tempfile::tempdir().expect("temporary directory");
        let mut app = Self::start(database, data_dir.path().to_owned(), adjust).await;
        app._dir = dir;
        app._data_dir = Some(data_dir);
        app
    }

    /// Another node on this one's database and master key (a cluster of two); it must not
    /// outlive `self`, which owns the files.
    pub async fn spawn_beside(&self, adjust: impl FnOnce(&mut Config)) -> Self {
        Self::start(self.database.clone(), self.data_dir.clone(), adjust).await
    }

    async fn start(database: DatabaseConfig, data_dir: PathBuf, adjust: impl FnOnce(&mut Config)) -> Self {
        let mut config =
            Config::from_vars([("KEYGUARD_DATA_DIR".to_owned(), data_dir.display().to_string())])
                .expect("default configuration");
        config.database = database.clone();
        config.listen_addr = "127.0.0.1:0".parse().unwrap();
        adjust(&mut config);
        let app = Application::build(&config).await.expect("build the application");
        let addr = app.local_addr();
        let db = app.state().db.clone();
        let platform = app.state().platform.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let running = tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        Self {
            addr,
            // A request that never gets an answer fails the test, naming it, instead of stalling
            // the whole run.
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("an HTTP client"),
            db,
            platform,
            shutdown: Some(tx),
            running: Some(running),
            database,
            data_dir,
            _dir: None,
            _data_dir: None,
        }
    }

    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let response = self.client.get(self.url(path)).send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON body"))
    }

    /// Sends a JSON request, with a bearer token when given; returns the status and the JSON body
    /// (`null` for an empty body).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let json = if text.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
        };
        (status, json)
    }

    /// Creates the first admin through the setup route and signs in; returns the access token.
    pub async fn bootstrap_admin(&self) -> String {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                "/api/v1/auth/setup",
                None,
                Some(serde_json::json!({ "email": "admin@example.com", "name": "Ada Admin", "password": ADMIN_PASSWORD })),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        self.login("admin@example.com", ADMIN_PASSWORD).await
    }

    /// Signs in and returns the access token.
    pub async fn login(&self, email: &str, password: &str) -> String {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                "/api/v1/auth/login",
                None,
                Some(serde_json::json!({ "email": email, "password": password })),
            )
            .await;
        assert_eq!(status, 200, "login as {email}: {body}");
        body["accessToken"].as_str().expect("an access token").to_owned()
    }

    /// Creates a user with the given role (as `admin_token`) and signs in as them.
    pub async fn user_with_role(&self, admin_token: &str, role: &str) -> String {
        let email = format!("{role}-{}@example.com", uuid::Uuid::new_v4().simple());
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                "/api/v1/users",
                Some(admin_token),
                Some(serde_json::json!({ "email": email, "name": role, "role": role, "password": ADMIN_PASSWORD })),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        self.login(&email, ADMIN_PASSWORD).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Shuts the node down gracefully, as a signal would, and waits until it has stopped (its
    /// database closed); the data stays for [`TestApp::reopen_store`].
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(running) = self.running.take() {
            running.await.expect("the server task").expect("a graceful shutdown");
        }
    }

    /// A new connection to this node's database, e.g. after [`TestApp::stop`].
    pub async fn reopen_store(&self) -> Database {
        Database::connect(&self.database, 2).await.expect("reconnect to the test database")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Runs one async test body against both backends, as two tests named `sqlite` and `postgres`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::support::Backend::Sqlite).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::support::Backend::Postgres).await;
                }
            }
        )*
    };
}

/// A valid P-256 public key (the TypeScript SDK's test vector) for devices seeded on the store.
pub const VECTOR_PUBLIC_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEIzqvBP4b0IVzk4HnvYE1Ea60RncyOJYxyI+QjPHZWKQyVBYj5graxhEJdMV5ChywPhe/jDBs4bWWIjPKkoX8ng==";

impl TestApp {
    /// Creates an OpenAI key over the API (as `token`) and returns its id.
    pub async fn create_key(&self, token: &str, name: &str) -> uuid::Uuid {
        let body = serde_json::json!({
            "name": name, "provider": "openai", "environment": "production", "providerKey": "sk-test-0123456789"
        });
        let (status, created) =
            self.call(reqwest::Method::POST, "/api/v1/keys", Some(token), Some(body)).await;
        assert_eq!(status, 201, "{created}");
        created["key"]["id"].as_str().unwrap().parse().unwrap()
    }

    /// Enrolls a device directly on the store, acting as the device, and catches the read models
    /// up; for admin tests that need devices without going through the signed enrollment route.
    pub async fn seed_device(
        &self,
        api_key_id: uuid::Uuid,
        label: &str,
        status: domain::device::InitialStatus,
    ) -> uuid::Uuid {
        use domain::device::{Device, DeviceCommand, EnrollDevice};
        use domain::metadata::{Actor, EventMetadata};
        let device_id = uuid::Uuid::new_v4();
        let public_key = domain::protocol::PublicKeySpki::parse(VECTOR_PUBLIC_KEY).unwrap();
        let command = DeviceCommand::Enroll(EnrollDevice {
            device_id,
            api_key_id,
            key_id: public_key.key_id(),
            public_key,
            label: label.into(),
            fingerprint: format!("fp-{label}"),
            user_agent: Some("keyguard-device/0.1".into()),
            metadata: serde_json::json!({ "os": "linux" }),
            ip: None,
            initial_status: status,
            enrollment_code_id: None,
            at: chrono::Utc::now(),
        });
        let metadata = EventMetadata::new(Actor::Device { id: device_id }, chrono::Utc::now()).to_map();
        self.db
            .cqrs::<Device>(vec![], ())
            .execute_with_metadata(&device_id.to_string(), command, metadata)
            .await
            .unwrap();
        self.platform.projections.catch_up().await.unwrap();
        device_id
    }
}
