//! The Rust SDK and the `keyguard-device` CLI against the real server: the CLI enrolls with an
//! enrollment code, is told it waits for approval, is approved over the admin API, then streams a
//! proxied completion from a fake OpenAI while the upstream is still holding back the rest; the
//! SDK's client verifies through the same server; a suspended device is told what may be wrong.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use keyguard_sdk::cli::{EnrollmentRecord, run};
use keyguard_sdk::{DeviceStatus, FileKeyStore, KeyStore as _, ServerUrl, SignedClient, Signer};
use reqwest::Method;
use serde_json::json;
use support::upstream::{FakeUpstream, Reply};
use support::{Backend, TestApp};
use tokio::sync::mpsc;

const PROVIDER_KEY: &str = "sk-sdk-provider-secret-0123456789";
const FIRST: &str = "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n";
const REST: &str = "data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\ndata: [DONE]\n\n";
const REQUEST: &str =
    r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hello"}]}"#;

/// The CLI's output as it is written, chunk by chunk.
struct ChannelWriter(mpsc::UnboundedSender<Vec<u8>>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = self.0.send(buf.to_vec());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Device {
    _dir: tempfile::TempDir,
    key_file: PathBuf,
}

impl Device {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self { key_file: dir.path().join("keyguard/device.key"), _dir: dir }
    }

    fn argv(&self, args: &[&str]) -> Vec<String> {
        let mut argv = vec!["keyguard-device".to_owned(), "--key-file".to_owned()];
        argv.push(self.key_file.display().to_string());
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        argv
    }

    /// Runs a command to completion: its output, or its error as the binary prints it.
    async fn run(&self, args: &[&str]) -> Result<String, String> {
        let mut out = Vec::new();
        match run(self.argv(args), &mut out).await {
            Ok(()) => Ok(String::from_utf8(out).unwrap()),
            Err(e) => Err(format!("{e:#}")),
        }
    }

    fn record(&self) -> EnrollmentRecord {
        EnrollmentRecord::load(&EnrollmentRecord::path_for(&self.key_file)).unwrap().expect("a record")
    }
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Waits for `rx` to have produced output containing `needle`; everything received so far.
async fn read_until(rx: &mut mpsc::UnboundedReceiver<Vec<u8>>, seen: &mut Vec<u8>, needle: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !String::from_utf8_lossy(seen).contains(needle) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(chunk)) => seen.extend_from_slice(&chunk),
            Ok(None) => panic!("the CLI finished without printing {needle:?}; printed {seen:?}"),
            Err(_) => {
                panic!("{needle:?} not printed within 20 s; printed {:?}", String::from_utf8_lossy(seen))
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_enrolls_is_approved_and_streams_a_proxied_completion() {
    let fake =
        FakeUpstream::spawn(Reply::Sse { first: FIRST.to_owned(), rest: REST.to_owned(), paused: true })
            .await;
    let app = TestApp::spawn(Backend::Sqlite).await;
    let admin = app.bootstrap_admin().await;
    let body = json!({
        "name": "sdk e2e", "provider": "openai", "environment": "production",
        "providerKey": PROVIDER_KEY, "baseUrl": fake.base_url(),
    });
    let (status, created) = app.call(Method::POST, "/api/v1/keys", Some(&admin), Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let project_key = created["rawKey"].as_str().unwrap().to_owned();
    let api_key_id = created["key"]["id"].as_str().unwrap().to_owned();
    let (status, issued) = app
        .call(
            Method::POST,
            "/api/v1/devices/enrollment-code",
            Some(&admin),
            Some(json!({ "apiKeyId": api_key_id, "autoApprove": false })),
        )
        .await;
    assert_eq!(status, 201, "{issued}");
    let code = issued["code"].as_str().unwrap().to_owned();

    // Enroll: the code is valid but does not auto-approve, so the device waits.
    let device = Device::new();
    let server = app.url("");
    let out = device
        .run(&[
            "enroll",
            "--server",
            &server,
            "--api-key",
            &project_key,
            "--code",
            &code,
            "--label",
            "e2e laptop",
        ])
        .await
        .unwrap();
    let record = device.record();
    assert!(out.contains(&format!("Enrolled device {}", record.device_id)), "{out}");
    assert!(out.contains("pending approval"), "{out}");
    assert_eq!(record.status, DeviceStatus::Pending);
    assert_eq!(record.label, "e2e laptop");
    assert_eq!(record.server, server);
    assert_eq!(mode(&device.key_file), 0o600);
    assert_eq!(mode(&EnrollmentRecord::path_for(&device.key_file)), 0o600);
    let key = FileKeyStore::new(&device.key_file).load().unwrap().unwrap();
    assert_eq!(record.key_id, key.key_id().as_str());

    // The server sees the device as the CLI described it.
    let device_path = format!("/api/v1/devices/{}", record.device_id);
    let (status, listed) = app.call(Method::GET, &device_path, Some(&admin), None).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!((listed["status"].as_str(), listed["label"].as_str()), (Some("pending"), Some("e2e laptop")));

    // A used code cannot enroll a second device.
    let other = Device::new();
    let err = other.run(&["enroll", "--server", &server, "--api-key", &project_key, "--code", &code]).await;
    assert!(err.unwrap_err().contains("enrollment refused"));

    // Pending: refused, and told why it may be.
    let err = device.run(&["status"]).await.unwrap_err();
    assert!(err.contains("pending approval") && err.contains(&record.device_id), "{err}");
    let err = device.run(&["call", "POST", "/api/v1/proxy/v1/chat/completions", "--data", REQUEST]).await;
    assert!(err.unwrap_err().contains("pending approval"));
    assert!(fake.received().is_empty(), "nothing is forwarded for a pending device");

    let (status, approved) =
        app.call(Method::PATCH, &format!("{device_path}/approve"), Some(&admin), None).await;
    assert_eq!((status, approved["status"].as_str()), (200, Some("active")), "{approved}");
    let out =
        support::events::eventually("the approved device to verify", Duration::from_secs(10), || async {
            device.run(&["status"]).await.ok()
        })
        .await;
    assert!(out.starts_with("active:") && out.contains(&record.key_id), "{out}");
    assert_eq!(device.record().status, DeviceStatus::Active);

    let out = device.run(&["whoami"]).await.unwrap();
    assert!(out.contains(&record.device_id) && out.contains("status    active (last checked"), "{out}");
    assert!(!out.contains(&project_key), "{out}");

    // Stream: the first event is printed while the upstream still holds back the rest.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let argv =
        device.argv(&["call", "POST", "/api/v1/proxy/v1/chat/completions", "--data", REQUEST, "--stream"]);
    let call = tokio::spawn(run(argv, ChannelWriter(tx)));
    let mut seen = Vec::new();
    read_until(&mut rx, &mut seen, FIRST).await;
    assert!(!String::from_utf8_lossy(&seen).contains("[DONE]"));
    fake.release();
    read_until(&mut rx, &mut seen, "[DONE]").await;
    tokio::time::timeout(Duration::from_secs(20), call).await.expect("the call ends").unwrap().unwrap();
    while let Ok(chunk) = rx.try_recv() {
        seen.extend_from_slice(&chunk);
    }
    assert_eq!(String::from_utf8(seen).unwrap(), format!("{FIRST}{REST}"));

    let received = fake.single();
    assert_eq!(received.method, Method::POST.as_str());
    assert_eq!(received.target, "/v1/chat/completions");
    assert_eq!(&received.body[..], REQUEST.as_bytes());
    assert_eq!(received.headers["authorization"], format!("Bearer {PROVIDER_KEY}"));
    for name in received.headers.keys() {
        assert!(!name.as_str().starts_with("x-keyguard-"), "{name} reached the provider");
    }

    // The library's own client, on the same key and record.
    let signer = Signer::new(key.clone(), &project_key).unwrap();
    let client = SignedClient::new(ServerUrl::parse(&server).unwrap(), signer).unwrap();
    let verified = client.verify().await.unwrap();
    assert_eq!((verified.valid, verified.device_id.as_str()), (true, record.device_id.as_str()));

    // Suspended: refused, and the message names what may have happened.
    let (status, suspended) = app
        .call(
            Method::PATCH,
            &format!("{device_path}/suspend"),
            Some(&admin),
            Some(json!({ "reason": "lost laptop" })),
        )
        .await;
    assert_eq!((status, suspended["status"].as_str()), (200, Some("suspended")), "{suspended}");
    let err = support::events::eventually(
        "the suspended device to be refused",
        Duration::from_secs(10),
        || async { device.run(&["status"]).await.err() },
    )
    .await;
    assert!(err.contains("suspended or revoked") && err.contains("was active when last checked"), "{err}");
    assert!(matches!(client.verify().await, Err(keyguard_sdk::Error::Unauthorized { .. })));

    let out = device.run(&["forget"]).await.unwrap();
    assert!(out.contains(&record.device_id), "{out}");
    assert!(!device.key_file.exists());
    let err = device.run(&["whoami"]).await.unwrap_err();
    assert!(err.contains("not enrolled"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_errors_from_the_server_are_explained() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let admin = app.bootstrap_admin().await;
    let (status, created) = app
        .call(
            Method::POST,
            "/api/v1/keys",
            Some(&admin),
            Some(json!({ "name": "errors", "provider": "openai", "environment": "production", "providerKey": PROVIDER_KEY })),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let project_key = created["rawKey"].as_str().unwrap().to_owned();
    let server = app.url("");

    let device = Device::new();
    let wrong_key = "kg_0000000000000_notaprojectkeyofthisserver000";
    let err = device.run(&["enroll", "--server", &server, "--api-key", wrong_key]).await.unwrap_err();
    assert!(err.contains("refused the project API key"), "{err}");

    let err = device
        .run(&[
            "enroll",
            "--server",
            &server,
            "--api-key",
            &project_key,
            "--code",
            "kgc_00000000000000000000000000",
        ])
        .await
        .unwrap_err();
    assert!(err.contains("enrollment refused (enrollment_code_"), "{err}");

    // Without a code the device is enrolled pending, with the key that was already created.
    let out = device.run(&["enroll", "--server", &server, "--api-key", &project_key]).await.unwrap();
    assert!(out.contains("Using the existing device key") && out.contains("pending approval"), "{out}");
}
