//! Real processes for the reliability tests: `keyguard` nodes that can be killed with SIGKILL and
//! started again, private PostgreSQL and NATS servers that a test may stop and restart (never the
//! shared ones other tests use), upstream providers that hang or reset, and the HTTP calls an
//! administrator and a device make.
//!
//! Everything started here is stopped when its handle drops.

#![allow(dead_code)]

pub mod upstream;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use reqwest::Method;
use serde_json::{Value, json};
use services::store::Database;
use tempfile::TempDir;
use uuid::Uuid;

use crate::device_support::{DeviceKey, Project, VERIFY, sign};
use crate::support::events::eventually;

/// How long a process may take to start answering.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind a free port").local_addr().unwrap().port()
}

/// A few random bytes (the tests' only source of randomness).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    for chunk in out.chunks_mut(16) {
        chunk.copy_from_slice(&Uuid::new_v4().as_bytes()[..chunk.len()]);
    }
    out
}

/// A random duration in `range`.
pub fn random_between(range: std::ops::Range<Duration>) -> Duration {
    let span = (range.end - range.start).as_millis().max(1) as u64;
    range.start + Duration::from_millis(u64::from_le_bytes(random_bytes::<8>()) % span)
}

/// Sends `signal` (`TERM`, `INT`, …) to a process.
fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill").args(["-s", signal, &pid.to_string()]).status().expect("run kill");
    assert!(status.success(), "kill -s {signal} {pid} failed");
}

/// Waits for a child to exit, killing it if it takes longer than `deadline`.
fn wait_or_kill(child: &mut Child, deadline: Duration) {
    let started = std::time::Instant::now();
    while started.elapsed() < deadline {
        if child.try_wait().expect("wait for a child").is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

async fn wait_for_port(port: u16, what: &str) {
    eventually(what, START_DEADLINE, || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok().map(|_| ())
    })
    .await;
}

/// A nats-server with JetStream of this test's own, on a port of its own; its data directory
/// survives [`PrivateNats::stop`], so a restart finds the streams and buckets again.
pub struct PrivateNats {
    dir: TempDir,
    port: u16,
    child: Option<Child>,
}

impl PrivateNats {
    pub async fn start() -> Self {
        let mut nats =
            Self { dir: tempfile::tempdir().expect("a NATS directory"), port: free_port(), child: None };
        nats.run().await;
        nats
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    async fn run(&mut self) {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("nats.log"))
            .unwrap();
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(self.dir.path().join("jetstream"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("nats-server is required for this test (scripts/test.sh installs it)");
        self.child = Some(child);
        wait_for_port(self.port, "the private NATS server to listen").await;
    }

    /// Stops the server (gracefully, so JetStream keeps what it acknowledged).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            send_signal(child.id(), "TERM");
            wait_or_kill(&mut child, Duration::from_secs(20));
        }
    }

    /// Starts the server again on the same port and data.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "restart a stopped server");
        self.run().await;
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A PostgreSQL cluster of this test's own (initdb in a temporary directory), which the test
/// may stop and start again. PostgreSQL refuses to run as root: as root, it runs as the
/// `postgres` system user.
pub struct PrivatePostgres {
    dir: TempDir,
    port: u16,
    child: Option<Child>,
    /// (uid, gid) to run as, when this process is root.
    run_as: Option<(u32, u32)>,
}

/// Where PostgreSQL's server programs are: `KEYGUARD_TEST_PG_BIN`, or the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian's layout).
fn postgres_bin() -> PathBuf {
    if let Ok(dir) = std::env::var("KEYGUARD_TEST_PG_BIN") {
        return PathBuf::from(dir);
    }
    let versions = std::fs::read_dir("/usr/lib/postgresql").into_iter().flatten().flatten();
    versions
        .filter_map(|entry| Some((entry.file_name().to_str()?.parse::<u32>().ok()?, entry.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").exists())
        .max()
        .map(|(_, bin)| bin)
        .expect("PostgreSQL's server programs are required (scripts/test.sh installs them), or set KEYGUARD_TEST_PG_BIN")
}

impl PrivatePostgres {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("a PostgreSQL directory");
        let run_as = if is_root() { Some(system_user("postgres")) } else { None };
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("hand the directory to postgres");
        }
        let mut pg = Self { dir, port: free_port(), child: None, run_as };
        let initdb = pg
            .command("initdb")
            .args(["-D"])
            .arg(pg.data())
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
            .output()
            .expect("PostgreSQL 15 is required for this test (scripts/test.sh installs it)");
        assert!(initdb.status.success(), "initdb failed: {}", String::from_utf8_lossy(&initdb.stderr));
        pg.run().await;
        pg
    }

    /// The superuser's URL for the `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(postgres_bin().join(program));
        if let Some((uid, gid)) = self.run_as {
            command.uid(uid).gid(gid);
        }
        command
    }

    async fn run(&mut self) {
        let log = self.dir.path().join("postgres.log");
        let log = std::fs::File::options().create(true).append(true).open(log).unwrap();
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data())
            .arg("-k")
            .arg(self.dir.path())
            .args(["-p", &self.port.to_string(), "-c", "listen_addresses=127.0.0.1", "-F"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start postgres");
        self.child = Some(child);
        let url = self.url();
        eventually("the private PostgreSQL to accept connections", START_DEADLINE, || async {
            use sqlx::Connection as _;
            sqlx::PgConnection::connect(&url).await.ok().map(|_| ())
        })
        .await;
    }

    /// Stops the server (fast shutdown: open sessions are ended).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            send_signal(child.id(), "INT");
            wait_or_kill(&mut child, Duration::from_secs(30));
        }
    }

    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "restart a stopped server");
        self.run().await;
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Immediate shutdown: the data is thrown away with the directory.
            send_signal(child.id(), "QUIT");
            wait_or_kill(&mut child, Duration::from_secs(10));
        }
    }
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("run id");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// The uid and gid of a system user, from `/etc/passwd`.
fn system_user(name: &str) -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&name))
        .map(|fields| (fields[2].parse().unwrap(), fields[3].parse().unwrap()))
        .unwrap_or_else(|| panic!("no system user {name} to run PostgreSQL as"))
}

/// A new master key (base64 of 32 random bytes), as every node of a cluster must share.
pub fn master_key() -> String {
    base64::engine::general_purpose::STANDARD.encode(random_bytes::<32>())
}

/// What every node of one deployment shares: database, NATS, master key, and any other setting.
#[derive(Clone)]
pub struct Deployment {
    vars: HashMap<String, String>,
    dir: std::sync::Arc<LogDir>,
}

/// The nodes' data and logs; a failing test prints the end of every log before they go.
pub struct LogDir(TempDir);

impl LogDir {
    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for LogDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let Ok(entries) = std::fs::read_dir(self.0.path()) else { return };
        for path in entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "log"))
        {
            eprintln!("--- {} ---\n{}", path.display(), tail(&path));
        }
    }
}

impl Deployment {
    pub fn new(database_url: &str, nats_url: Option<&str>) -> Self {
        let mut vars = HashMap::from([
            ("KEYGUARD_DATABASE_URL".to_owned(), database_url.to_owned()),
            ("KEYGUARD_MASTER_KEY".to_owned(), master_key()),
            ("KEYGUARD_LOG".to_owned(), "warn".to_owned()),
            ("KEYGUARD_AUDIT_CHECKPOINT_MINUTES".to_owned(), "0".to_owned()),
        ]);
        if let Some(url) = nats_url {
            vars.insert("KEYGUARD_NATS_URL".to_owned(), url.to_owned());
        }
        let dir = LogDir(tempfile::tempdir().expect("a directory for node logs"));
        Self { vars, dir: std::sync::Arc::new(dir) }
    }

    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.vars.insert(name.to_owned(), value.to_owned());
        self
    }

    /// Starts a node named `name` (its log is `<name>.log`, kept across restarts).
    pub async fn start(&self, name: &str) -> Node {
        let mut node = Node {
            name: name.to_owned(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            child: None,
            deployment: self.clone(),
            starts: 0,
        };
        node.restart().await;
        node
    }

    /// Runs a `keyguard` subcommand against this deployment's store; its exit status and output.
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new(keyguard_bin())
            .args(args)
            .env_clear()
            .envs(&self.vars)
            .env("KEYGUARD_DATA_DIR", self.dir.path())
            .output()
            .expect("run keyguard")
    }

    /// The store these nodes share, opened from the test.
    pub async fn database(&self) -> Database {
        let config =
            services::store::DatabaseConfig::Postgres { url: self.vars["KEYGUARD_DATABASE_URL"].clone() };
        Database::connect(&config, 4).await.expect("open the deployment's store")
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }
}

/// A `keyguard serve` process on a loopback port of its own.
pub struct Node {
    pub name: String,
    pub addr: SocketAddr,
    child: Option<Child>,
    deployment: Deployment,
    /// How many times this node was started.
    pub starts: u32,
}

impl Node {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the process with SIGKILL: no shutdown, no flush, nothing.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL a node");
            child.wait().expect("reap a node");
        }
    }

    /// Stops the process with SIGTERM and waits for its graceful shutdown.
    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            send_signal(child.id(), "TERM");
            wait_or_kill(&mut child, Duration::from_secs(30));
        }
    }

    /// Starts the process (again), on a new port, and waits until it answers `/api/v1/health`.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "{} is still running", self.name);
        let port = free_port();
        self.addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log_path = self.deployment.log_path(&self.name);
        let log = std::fs::File::options().create(true).append(true).open(&log_path).unwrap();
        let data_dir = self.deployment.dir.path().join(&self.name);
        std::fs::create_dir_all(&data_dir).unwrap();
        let child = Command::new(keyguard_bin())
            .arg("serve")
            .env_clear()
            .envs(&self.deployment.vars)
            .env("KEYGUARD_DATA_DIR", &data_dir)
            .env("LEPTOS_SITE_ADDR", self.addr.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start keyguard");
        self.child = Some(child);
        self.starts += 1;
        let client = reqwest::Client::new();
        let started = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("{} exited at start-up ({status}):\n{}", self.name, tail(&log_path));
            }
            let health = client.get(self.url("/api/v1/health")).send().await;
            if health.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(started.elapsed() < START_DEADLINE, "{} never answered:\n{}", self.name, tail(&log_path));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The end of this node's log, for failure messages.
    pub fn log_tail(&self) -> String {
        tail(&self.deployment.log_path(&self.name))
    }

    pub fn api(&self) -> Api {
        Api::new(self.url(""))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// What an administrator and a device do over HTTP, against one node.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
}

/// A signed request's answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    /// The `error` code of a JSON error body.
    pub fn code(&self) -> Option<String> {
        serde_json::from_str::<Value>(&self.body).ok()?["error"].as_str().map(str::to_owned)
    }
}

impl Api {
    pub fn new(base: String) -> Self {
        let client =
            reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("an HTTP client");
        Self { base, client }
    }

    /// The text of a successful GET (e.g. `/metrics`).
    pub async fn text(&self, path: &str) -> String {
        let response = self.client.get(format!("{}{path}", self.base)).send().await;
        let response = response.and_then(reqwest::Response::error_for_status);
        response.unwrap_or_else(|e| panic!("{path}: {e}")).text().await.expect("a text body")
    }

    /// A JSON request; the status and the JSON body (`null` when empty), or the transport error.
    pub async fn try_call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<(u16, Value), reqwest::Error> {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.try_call(method, path, token, body).await.unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// Creates the first admin and signs in; the access token.
    pub async fn setup_admin(&self) -> String {
        let (status, body) = self
            .call(
                Method::POST,
                "/api/v1/auth/setup",
                None,
                Some(json!({ "email": "admin@example.com", "name": "Ada", "password": crate::support::ADMIN_PASSWORD })),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        self.login().await
    }

    pub async fn login(&self) -> String {
        let (status, body) = self
            .call(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({ "email": "admin@example.com", "password": crate::support::ADMIN_PASSWORD })),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["accessToken"].as_str().unwrap().to_owned()
    }

    /// An OpenAI key whose provider is `upstream`.
    pub async fn create_project(&self, token: &str, upstream: &str) -> Project {
        let body = json!({
            "name": format!("app {}", Uuid::new_v4().simple()), "provider": "openai",
            "environment": "production", "providerKey": "sk-reliability-0123456789", "baseUrl": upstream,
        });
        let (status, created) = self.call(Method::POST, "/api/v1/keys", Some(token), Some(body)).await;
        assert_eq!(status, 201, "{created}");
        Project {
            id: created["key"]["id"].as_str().unwrap().parse().unwrap(),
            raw: created["rawKey"].as_str().unwrap().to_owned(),
        }
    }

    /// An enrollment code that `uses` devices may redeem and that makes them active.
    pub async fn enrollment_code(&self, token: &str, project: &Project, uses: i64) -> String {
        let body = json!({ "apiKeyId": project.id, "maxUses": uses, "autoApprove": true });
        let (status, issued) =
            self.call(Method::POST, "/api/v1/devices/enrollment-code", Some(token), Some(body)).await;
        assert_eq!(status, 201, "{issued}");
        issued["code"].as_str().unwrap().to_owned()
    }

    /// Enrolls a new device with `code`; the key and the device's id.
    pub async fn enroll(&self, project: &Project, code: &str) -> (DeviceKey, Uuid) {
        let device = DeviceKey::generate();
        let response = self
            .client
            .post(format!("{}/api/v1/keyguard/enroll", self.base))
            .header("x-keyguard-api-key", &project.raw)
            .json(&device.enrollment(Some(code)))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert_eq!((status, body["status"].as_str()), (201, Some("ACTIVE")), "{body}");
        (device, body["id"].as_str().unwrap().parse().unwrap())
    }

    /// A kg-v1 signed request, freshly signed.
    pub async fn signed(
        &self,
        device: &DeviceKey,
        project: &Project,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<Answer, reqwest::Error> {
        self.send_signed(method, path, &sign(device, &project.raw, method, path, body), body).await
    }

    /// A request with the given signed headers (e.g. the same ones again, to replay them).
    pub async fn send_signed(
        &self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Answer, reqwest::Error> {
        let mut request = self
            .client
            .request(Method::from_bytes(method.as_bytes()).unwrap(), format!("{}{path}", self.base))
            .body(body.to_vec());
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        Ok(Answer { status, body: response.text().await? })
    }

    /// `verify-test`, signed by `device`: 200 while the device may sign, 401 once it may not.
    pub async fn verify(&self, device: &DeviceKey, project: &Project) -> Answer {
        self.signed(device, project, "POST", VERIFY, b"").await.expect("verify-test")
    }
}

/// A chat completion body that names `model`, so the usage record of the request can be found.
pub fn completion_request(model: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({ "model": model, "messages": [{ "role": "user", "content": "hello" }] }))
        .unwrap()
}

pub const COMPLETIONS: &str = "/api/v1/proxy/v1/chat/completions";

/// What a provider answers a completion with, usage included.
pub const COMPLETION_ANSWER: &str = r#"{"id":"c1","object":"chat.completion","choices":[{"message":{"role":"assistant","content":"hi"}}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;

/// Every event in the store: (event id, type, payload as text), in store order.
pub async fn stored_events(db: &Database) -> Vec<(Uuid, String, String)> {
    let Database::Postgres(pool) = db else { panic!("the reliability tests run on PostgreSQL") };
    sqlx::query_as("SELECT event_id, event_type, payload::text FROM events ORDER BY global_seq")
        .fetch_all(pool)
        .await
        .expect("read the events")
}

/// The `Nats-Msg-Id` of every message in the event stream of the NATS at `url`, in stream order.
pub async fn published_event_ids(url: &str) -> Vec<Uuid> {
    use futures::StreamExt as _;
    let client = async_nats::connect(url).await.expect("connect to NATS");
    let jetstream = async_nats::jetstream::new(client);
    // Created by the first relay that reached NATS.
    let Ok(mut stream) = jetstream.get_stream("KEYGUARD_EVENTS").await else { return Vec::new() };
    let expected = stream.info().await.expect("the stream's state").state.messages as usize;
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await
        .expect("an ordered consumer");
    let mut messages = consumer.messages().await.expect("read the stream");
    let mut ids = Vec::with_capacity(expected);
    while ids.len() < expected {
        let message = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .expect("the stream delivers every message it holds")
            .expect("the stream ended early")
            .expect("a message");
        let id = message.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")).expect("a Nats-Msg-Id");
        ids.push(id.as_str().parse().expect("an event id"));
    }
    ids
}

/// How the store and the stream compare: events missing from the stream, and ids found more
/// than once in it.
#[derive(Debug)]
pub struct Delivery {
    pub stored: usize,
    pub published: usize,
    pub missing: Vec<Uuid>,
    pub duplicated: Vec<Uuid>,
    pub unknown: Vec<Uuid>,
}

impl Delivery {
    pub fn exactly_once(&self) -> bool {
        self.missing.is_empty() && self.duplicated.is_empty() && self.unknown.is_empty()
    }
}

pub async fn compare_delivery(db: &Database, nats_url: &str) -> Delivery {
    let stored: Vec<Uuid> = stored_events(db).await.into_iter().map(|(id, ..)| id).collect();
    let published = published_event_ids(nats_url).await;
    let mut seen: HashMap<Uuid, usize> = HashMap::new();
    for id in &published {
        *seen.entry(*id).or_default() += 1;
    }
    let in_store: std::collections::HashSet<&Uuid> = stored.iter().collect();
    Delivery {
        stored: stored.len(),
        published: published.len(),
        missing: stored.iter().filter(|id| !seen.contains_key(id)).copied().collect(),
        duplicated: seen.iter().filter(|(_, n)| **n > 1).map(|(id, _)| *id).collect(),
        unknown: seen.keys().filter(|id| !in_store.contains(id)).copied().collect(),
    }
}

/// Waits until every stored event is in the stream exactly once.
pub async fn wait_for_exactly_once(db: &Database, nats_url: &str, deadline: Duration) -> Delivery {
    eventually("every stored event to be published exactly once", deadline, || async {
        let delivery = compare_delivery(db, nats_url).await;
        delivery.exactly_once().then_some(delivery)
    })
    .await
}

/// The 50th, 99th percentiles and the largest of some durations.
pub fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration, Duration) {
    assert!(!samples.is_empty());
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1];
    (at(0.50), at(0.99), *samples.last().unwrap())
}

/// The `keyguard` binary the nodes run: this build's, or `KEYGUARD_TEST_BIN` (a release build,
/// for figures closer to production).
fn keyguard_bin() -> std::path::PathBuf {
    std::env::var_os("KEYGUARD_TEST_BIN").map_or_else(|| env!("CARGO_BIN_EXE_keyguard").into(), Into::into)
}
