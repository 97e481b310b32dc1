//! KeyGuard as the benchmark uses it: started from its release binary on a fresh SQLite file (or
//! an already running server), provisioned through its real API exactly as an administrator and
//! devices would (first admin, a project key whose base URL is the fake upstream, a policy with
//! a rate limit so that every check runs, an auto-approving enrollment code, N enrolled devices
//! from the SDK), and requests signed ahead of time with the SDK's signer.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use keyguard_sdk::{DeviceKey, DeviceStatus, ServerUrl, Signer};
use serde_json::{Value, json};

use crate::load::Prepared;
use crate::process::{Server, free_port, wait_ready};

const ADMIN_EMAIL: &str = "bench@example.com";
const ADMIN_PASSWORD: &str = "benchmark horse battery staple";
/// The proxy route a device calls for an OpenAI chat completion.
pub const PROXY_PATH: &str = "/api/v1/proxy/v1/chat/completions";

/// How to start KeyGuard.
#[derive(Debug, Clone)]
pub struct Launch {
    pub binary: PathBuf,
    /// `async` or `strict` (`KEYGUARD_AUDIT_MODE`).
    pub audit_mode: String,
    /// `KEYGUARD_DATABASE_URL`; the default is a SQLite file in a temporary directory.
    pub database_url: Option<String>,
}

/// A KeyGuard this run talks to.
pub struct KeyGuard {
    pub url: String,
    /// Set when this run started the server (and so can read its memory).
    pub server: Option<Server>,
    _data: Option<tempfile::TempDir>,
}

impl KeyGuard {
    pub async fn start(launch: &Launch) -> anyhow::Result<Self> {
        let data = tempfile::tempdir()?;
        let addr = free_port()?;
        let mut command = Command::new(&launch.binary);
        command
            .env_remove("KEYGUARD_NATS_URL")
            .env("KEYGUARD_DATA_DIR", data.path())
            .env("LEPTOS_SITE_ADDR", addr.to_string())
            .env("KEYGUARD_LOG", "warn")
            .env("KEYGUARD_AUDIT_MODE", &launch.audit_mode)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        match &launch.database_url {
            Some(url) => command.env("KEYGUARD_DATABASE_URL", url),
            None => command.env_remove("KEYGUARD_DATABASE_URL"),
        };
        let mut server = Server::start("keyguard", command)?;
        let url = format!("http://{addr}");
        wait_ready(&mut server, &format!("{url}/api/v1/ready"), Duration::from_secs(60)).await?;
        Ok(Self { url, server: Some(server), _data: Some(data) })
    }

    /// A server someone else runs; it must have no administrator yet.
    pub fn external(url: &str) -> Self {
        Self { url: url.trim_end_matches('/').to_owned(), server: None, _data: None }
    }
}

/// What provisioning left: the project key and the enrolled devices' signers.
pub struct Provisioned {
    pub signers: Vec<Signer>,
}

/// Sets KeyGuard up for the run through its API.
pub async fn provision(
    kg: &KeyGuard,
    upstream_base_url: &str,
    devices: usize,
) -> anyhow::Result<Provisioned> {
    let http = reqwest::Client::new();
    let api = Api { http: &http, base: &kg.url };
    let (status, body) = api
        .call(
            reqwest::Method::POST,
            "/api/v1/auth/setup",
            None,
            json!({ "email": ADMIN_EMAIL, "name": "Benchmark", "password": ADMIN_PASSWORD }),
        )
        .await?;
    if status != 201 {
        bail!("the first administrator could not be created ({status}: {body}); a fresh server is needed");
    }
    let (status, body) = api
        .call(
            reqwest::Method::POST,
            "/api/v1/auth/login",
            None,
            json!({ "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD }),
        )
        .await?;
    let token = body["accessToken"].as_str().with_context(|| format!("login: {status} {body}"))?.to_owned();
    let (status, created) = api
        .call(
            reqwest::Method::POST,
            "/api/v1/keys",
            Some(&token),
            json!({
                "name": "benchmark", "provider": "openai", "environment": "production",
                "providerKey": "sk-bench-provider-secret-0123456789", "baseUrl": upstream_base_url,
            }),
        )
        .await?;
    if status != 201 {
        bail!("creating the project key: {status} {created}");
    }
    let project_key = created["rawKey"].as_str().context("rawKey")?.to_owned();
    let api_key_id = created["key"]["id"].as_str().context("key id")?.to_owned();
    // Every check on: the rate limit is counted on each request (high enough never to refuse).
    // The default 120 s window: nonces are kept twice that, so under steady load the nonce store
    // reaches its full size after 4 minutes, well within a 10-minute soak (the soak signs each
    // minute's requests just before sending them).
    let (status, body) = api
        .call(
            reqwest::Method::PUT,
            "/api/v1/policies/global",
            Some(&token),
            json!({ "settings": { "requestsPerMinute": 100_000_000u32, "timestampWindowSeconds": 120 } }),
        )
        .await?;
    if status != 200 {
        bail!("setting the global policy: {status} {body}");
    }
    let (status, issued) = api
        .call(
            reqwest::Method::POST,
            "/api/v1/devices/enrollment-code",
            Some(&token),
            json!({ "apiKeyId": api_key_id, "autoApprove": true, "maxUses": devices.max(1) }),
        )
        .await?;
    if status != 201 {
        bail!("issuing an enrollment code: {status} {issued}");
    }
    let code = issued["code"].as_str().context("code")?.to_owned();
    let server = ServerUrl::parse(&kg.url)?;
    let mut signers = Vec::with_capacity(devices);
    for i in 0..devices {
        let key = DeviceKey::generate()?;
        let enrolled =
            keyguard_sdk::enroll(&server, &project_key, &key, Some(&code), &format!("bench device {i}"))
                .await?;
        if enrolled.status != DeviceStatus::Active {
            bail!("device {i} enrolled as {}, not active", enrolled.status);
        }
        signers.push(Signer::new(key, &project_key)?);
    }
    Ok(Provisioned { signers })
}

struct Api<'a> {
    http: &'a reqwest::Client,
    base: &'a str,
}

impl Api<'_> {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> anyhow::Result<(u16, Value)> {
        let mut request = self.http.request(method, format!("{}{path}", self.base)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.with_context(|| path.to_owned())?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }
}

/// Signs `count` requests with fresh nonces, spread over the devices, on every core: the client's
/// signing is done before the clock starts, so it is not what is measured.
pub fn presign(signers: &[Signer], body: &bytes::Bytes, count: usize) -> anyhow::Result<Vec<Prepared>> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).min(count.max(1));
    let per_thread = count.div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || -> anyhow::Result<Vec<Prepared>> {
                    let start = t * per_thread;
                    let end = (start + per_thread).min(count);
                    (start..end)
                        .map(|i| {
                            let signer = &signers[i % signers.len()];
                            let signed = signer.sign("POST", PROXY_PATH, body)?;
                            let mut headers =
                                vec![("content-type".to_owned(), "application/json".to_owned())];
                            headers.extend(
                                signed.header_pairs().iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())),
                            );
                            Prepared::new(PROXY_PATH, &headers, body.clone())
                        })
                        .collect()
                })
            })
            .collect();
        let mut all = Vec::with_capacity(count);
        for worker in workers {
            all.extend(worker.join().map_err(|_| anyhow::anyhow!("a signing thread panicked"))??);
        }
        Ok(all)
    })
}
