//! The `keyguard-device` CLI without a KeyGuard server: what it says when it is not enrolled,
//! cannot reach the server, finds a key others can read, or is refused by a server whose clock
//! differs from ours. A one-request HTTP server on loopback stands in for KeyGuard where an
//! answer is needed; the full flow against the real server is in the server's `sdk_cli` tests.

use std::path::{Path, PathBuf};

use chrono::{TimeDelta, Utc};
use keyguard_sdk::cli::{EnrollmentRecord, run};
use keyguard_sdk::protocol::{FreshnessWindow, PublicKeySpki, ReceivedRequest, SignedHeaders};
use keyguard_sdk::{DeviceKey, DeviceStatus, FileKeyStore, KeyStore as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

const PROJECT_KEY: &str = "kg_1733668200000_abcdefghijklmnopqrstuvwxyz012345";

struct Device {
    _dir: tempfile::TempDir,
    key_file: PathBuf,
}

impl Device {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key_file = dir.path().join("keyguard").join("device.key");
        Self { _dir: dir, key_file }
    }

    /// Runs the CLI with `--key-file` set; the output, or the error as the binary prints it.
    async fn run(&self, args: &[&str]) -> Result<String, String> {
        let mut argv = vec!["keyguard-device", "--key-file", self.key_file.to_str().unwrap()];
        argv.extend_from_slice(args);
        let mut out = Vec::new();
        match run(argv, &mut out).await {
            Ok(()) => Ok(String::from_utf8(out).unwrap()),
            Err(e) => Err(format!("{e:#}")),
        }
    }

    /// Writes a key and an enrollment record as `enroll` would have.
    fn enrolled_on(&self, server: &str, status: DeviceStatus) -> DeviceKey {
        let key = DeviceKey::generate().unwrap();
        FileKeyStore::new(&self.key_file).save(&key).unwrap();
        EnrollmentRecord {
            server: server.to_owned(),
            device_id: "0f0e0d0c-0000-4000-8000-000000000001".to_owned(),
            key_id: key.key_id().to_string(),
            label: "ci runner".to_owned(),
            status,
            enrolled_at: "2025-01-15T10:30:00.000Z".to_owned(),
            checked_at: None,
            project_key: PROJECT_KEY.to_owned(),
        }
        .save(&self.record_path())
        .unwrap();
        key
    }

    fn record_path(&self) -> PathBuf {
        EnrollmentRecord::path_for(&self.key_file)
    }
}

/// One request as received: method, target, headers, body.
struct Captured {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Accepts one connection, reads one request and answers it with `status`, `date` and `body`.
async fn answer_once(
    status: &'static str,
    date: String,
    body: &'static str,
) -> (String, tokio::task::JoinHandle<Captured>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        let head_end = loop {
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed before the request ended");
            raw.extend_from_slice(&buf[..n]);
            if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8(raw[..head_end].to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().unwrap().split(' ');
        let (method, target) =
            (request_line.next().unwrap().to_owned(), request_line.next().unwrap().to_owned());
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize =
            headers.iter().find(|(n, _)| n == "content-length").map_or(0, |(_, v)| v.parse().unwrap());
        while raw.len() < head_end + length {
            let n = socket.read(&mut buf).await.unwrap();
            raw.extend_from_slice(&buf[..n]);
        }
        let response = format!(
            "HTTP/1.1 {status}\r\ndate: {date}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{body}",
            body.len()
        );
        socket.write_all(response.as_bytes()).await.unwrap();
        socket.shutdown().await.ok();
        Captured { method, target, headers, body: raw[head_end..head_end + length].to_vec() }
    });
    (url, task)
}

fn http_date(offset: TimeDelta) -> String {
    (Utc::now() + offset).format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

async fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    url
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn every_command_says_when_the_device_is_not_enrolled() {
    let device = Device::new();
    for args in [&["status"][..], &["whoami"], &["call", "GET", "/api/v1/proxy/v1/models"]] {
        let err = device.run(args).await.unwrap_err();
        assert!(err.contains("not enrolled") && err.contains("keyguard-device enroll"), "{args:?}: {err}");
    }
    let err = device.run(&["forget"]).await.unwrap_err();
    assert!(err.contains("nothing to forget"), "{err}");
}

#[tokio::test]
async fn an_unreachable_server_is_named_and_the_key_is_kept_for_a_retry() {
    let device = Device::new();
    let server = closed_port_url().await;
    let args = ["enroll", "--server", &server, "--api-key", PROJECT_KEY, "--code", "kgc_x"];
    let err = device.run(&args).await.unwrap_err();
    assert!(err.contains(&format!("cannot reach the KeyGuard server at {server}")), "{err}");
    // The key was created private and is reused by the next attempt; no record was written.
    assert_eq!(mode(&device.key_file), 0o600);
    assert!(!device.record_path().exists());
    let first = FileKeyStore::new(&device.key_file).load().unwrap().unwrap();
    let err = device.run(&["whoami"]).await.unwrap_err();
    assert!(err.contains("enrollment did not complete"), "{err}");
    let out = device.run(&args).await;
    assert!(out.unwrap_err().contains("cannot reach"));
    assert_eq!(FileKeyStore::new(&device.key_file).load().unwrap().unwrap(), first);
}

#[tokio::test]
async fn bad_input_is_refused_before_anything_is_sent() {
    let device = Device::new();
    let err =
        device.run(&["enroll", "--server", "localhost:3000", "--api-key", PROJECT_KEY]).await.unwrap_err();
    assert!(err.contains("invalid server URL"), "{err}");
    let err =
        device.run(&["enroll", "--server", "http://127.0.0.1:9", "--api-key", "kg short"]).await.unwrap_err();
    assert!(err.contains("project API key"), "{err}");

    device.enrolled_on("http://127.0.0.1:9", DeviceStatus::Active);
    let err = device.run(&["call", "POST", "/api/v1/proxy/v1/chat/completions", "--data", "{oops"]).await;
    assert!(err.unwrap_err().contains("--data is not valid JSON"));
    let err = device.run(&["call", "GET", "/api/v1/a|b"]).await.unwrap_err();
    assert!(err.contains("cannot sign this request"), "{err}");
}

#[tokio::test]
async fn a_key_file_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let device = Device::new();
    device.enrolled_on("http://127.0.0.1:9", DeviceStatus::Active);
    std::fs::set_permissions(&device.key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = device.run(&["status"]).await.unwrap_err();
    assert!(err.contains("accessible by other users") && err.contains("chmod 600"), "{err}");
}

#[tokio::test]
async fn whoami_works_offline_and_forget_deletes_both_files() {
    let device = Device::new();
    let key = device.enrolled_on("http://127.0.0.1:9", DeviceStatus::Pending);
    let out = device.run(&["whoami"]).await.unwrap();
    for expected in [
        "device    0f0e0d0c-0000-4000-8000-000000000001",
        &format!("keyId     {}", key.key_id()),
        "label     ci runner",
        "server    http://127.0.0.1:9",
        "status    pending (at enrollment, 2025-01-15T10:30:00.000Z)",
        "project   kg_17336…2345",
    ] {
        assert!(out.contains(expected), "{expected:?} missing from\n{out}");
    }
    assert!(!out.contains("abcdefgh"), "the project key must not be printed: {out}");

    let err = device.run(&["enroll", "--server", "http://127.0.0.1:9", "--api-key", PROJECT_KEY]).await;
    assert!(err.unwrap_err().contains("already enrolled"));

    let out = device.run(&["forget"]).await.unwrap();
    assert!(out.contains("Forgot device 0f0e0d0c") && out.contains("revoke"), "{out}");
    assert!(!device.key_file.exists() && !device.record_path().exists());
}

#[tokio::test]
async fn a_refusal_with_a_distant_server_clock_is_blamed_on_the_clock() {
    let device = Device::new();
    let (server, request) =
        answer_once("401 Unauthorized", http_date(TimeDelta::minutes(10)), r#"{"error":"unauthorized"}"#)
            .await;
    let key = device.enrolled_on(&server, DeviceStatus::Active);
    let err = device.run(&["status"]).await.unwrap_err();
    // The Date header has one-second resolution and was written before the CLI ran.
    let seconds: i64 = err
        .split("clock is ")
        .nth(1)
        .and_then(|rest| rest.split(" s behind the server's").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no clock skew in: {err}"));
    assert!((540..=600).contains(&seconds), "{err}");
    assert!(err.contains("Fix the system clock"), "{err}");

    // What was sent is a verify-test request the server's verifier accepts.
    let request = request.await.unwrap();
    assert_eq!((request.method.as_str(), request.target.as_str()), ("POST", "/api/v1/keyguard/verify-test"));
    let headers =
        SignedHeaders::parse_pairs(request.headers.iter().map(|(n, v)| (n.as_str(), v.as_str()))).unwrap();
    let received =
        ReceivedRequest { method: &request.method, path_and_query: &request.target, body: &request.body };
    let public = PublicKeySpki::parse(key.public_key().as_str()).unwrap();
    assert_eq!(
        headers.verify(&received, &public.verifying_key(), Utc::now(), FreshnessWindow::default()),
        Ok(())
    );
}

#[tokio::test]
async fn a_refusal_of_a_pending_device_says_it_needs_approval() {
    let device = Device::new();
    let (server, _request) =
        answer_once("401 Unauthorized", http_date(TimeDelta::zero()), r#"{"error":"unauthorized"}"#).await;
    let key = device.enrolled_on(&server, DeviceStatus::Pending);
    let err = device.run(&["status"]).await.unwrap_err();
    assert!(err.contains("pending approval") && err.contains(key.key_id().as_str()), "{err}");
    assert!(!err.contains("clock"), "{err}");
}

#[tokio::test]
async fn call_sends_the_body_signed_and_prints_the_answer() {
    let device = Device::new();
    let (server, request) =
        answer_once("200 OK", http_date(TimeDelta::zero()), r#"{"id":"chatcmpl-1"}"#).await;
    let key = device.enrolled_on(&server, DeviceStatus::Active);
    let data = r#"{"model":"gpt-4o-mini","messages":[]}"#;
    let out = device
        .run(&[
            "call",
            "post",
            "/api/v1/proxy/v1/chat/completions?trace=1",
            "--data",
            data,
            "-H",
            "X-Trace: on",
        ])
        .await
        .unwrap();
    assert_eq!(out, "{\"id\":\"chatcmpl-1\"}\n");
    let request = request.await.unwrap();
    assert_eq!(request.target, "/api/v1/proxy/v1/chat/completions?trace=1");
    assert_eq!(request.body, data.as_bytes());
    let header = |name: &str| request.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    assert_eq!(header("content-type"), Some("application/json"));
    assert_eq!(header("x-trace"), Some("on"));
    assert_eq!(header("x-keyguard-key-id"), Some(key.key_id().as_str()));
    let headers =
        SignedHeaders::parse_pairs(request.headers.iter().map(|(n, v)| (n.as_str(), v.as_str()))).unwrap();
    let received = ReceivedRequest { method: "POST", path_and_query: &request.target, body: &request.body };
    let public = PublicKeySpki::parse(key.public_key().as_str()).unwrap();
    assert_eq!(
        headers.verify(&received, &public.verifying_key(), Utc::now(), FreshnessWindow::default()),
        Ok(())
    );
}
