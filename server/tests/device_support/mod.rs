//! Device-side helpers for the enrollment and verification tests: project keys, enrollment
//! codes, P-256 device keys, kg-v1 signing as the TypeScript SDK does it, and the audit log.

#![allow(dead_code)]

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{TimeDelta, Utc};
use domain::protocol::{KeyId, Nonce, ProjectKey, PublicKeySpki, RequestToSign, SignedHeaders, Timestamp};
use p256::ecdsa::SigningKey;
use p256::pkcs8::DecodePrivateKey as _;
use reqwest::Method;
use serde_json::{Value, json};
use services::caller::Caller;
use services::enrollment_codes::{self, NewCode};
use services::read_models::PageRequest;
use services::read_models::audit::{self, AuditFilter};
use uuid::Uuid;

use crate::support::TestApp;

/// The TypeScript SDK's throwaway test key from `domain/tests/data/kg-v1-vectors.json`.
pub const SDK_PKCS8: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgra9SEdqZSIFmoHXkXpE4Cgsr7xmu4C5f0ptBGhbS9hehRANCAAQjOq8E/hvQhXOTgee9gTURrrRGdzI4ljHIj5CM8dlYpDJUFiPmCtrGEQl0xXkKHLA+F7+MMGzhtZYiM8qShfye";
pub const SDK_PUBLIC_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEIzqvBP4b0IVzk4HnvYE1Ea60RncyOJYxyI+QjPHZWKQyVBYj5graxhEJdMV5ChywPhe/jDBs4bWWIjPKkoX8ng==";
pub const SDK_KEY_ID: &str = "5f28758eb139cb43769d731f803d4d6c";

#[derive(Clone)]
/// A project key: its id and the raw `kg_…` value.
pub struct Project {
    pub id: Uuid,
    pub raw: String,
}

pub async fn create_project(app: &TestApp, admin: &str) -> Project {
    let body = json!({
        "name": format!("app {}", Uuid::new_v4().simple()),
        "provider": "openai",
        "environment": "development",
        "providerKey": "sk-test-provider-secret-0123456789",
        "baseUrl": "http://127.0.0.1:9/v1",
    });
    let (status, created) = app.call(Method::POST, "/api/v1/keys", Some(admin), Some(body)).await;
    assert_eq!(status, 201, "{created}");
    Project {
        id: created["key"]["id"].as_str().unwrap().parse().unwrap(),
        raw: created["rawKey"].as_str().unwrap().to_owned(),
    }
}

pub async fn issue_code(
    app: &TestApp,
    project: &Project,
    auto_approve: bool,
    max_uses: Option<i64>,
) -> String {
    let issued = enrollment_codes::issue(
        &app.platform,
        &Caller::system("test"),
        NewCode {
            api_key_id: Some(project.id),
            max_uses,
            auto_approve,
            expires_in_seconds: None,
            description: None,
        },
    )
    .await
    .expect("issue an enrollment code");
    issued.code.expose().to_owned()
}

/// A device key pair.
pub struct DeviceKey {
    pub signing: SigningKey,
    pub public_key: String,
    pub key_id: String,
}

impl DeviceKey {
    pub fn generate() -> Self {
        loop {
            let mut bytes = [0u8; 32];
            bytes[..16].copy_from_slice(Uuid::new_v4().as_bytes());
            bytes[16..].copy_from_slice(Uuid::new_v4().as_bytes());
            if let Ok(signing) = SigningKey::from_slice(&bytes) {
                return Self::from_signing(signing);
            }
        }
    }

    pub fn sdk() -> Self {
        let der = STANDARD.decode(SDK_PKCS8).unwrap();
        let device = Self::from_signing(SigningKey::from_pkcs8_der(&der).unwrap());
        assert_eq!(device.public_key, SDK_PUBLIC_KEY);
        assert_eq!(device.key_id, SDK_KEY_ID);
        device
    }

    fn from_signing(signing: SigningKey) -> Self {
        let public = PublicKeySpki::from_verifying_key(signing.verifying_key());
        Self { public_key: public.as_str().to_owned(), key_id: public.key_id().as_str().to_owned(), signing }
    }

    pub fn enrollment(&self, code: Option<&str>) -> Value {
        let mut body = json!({
            "publicKey": self.public_key,
            "keyId": self.key_id,
            "deviceFingerprint": "fp-shared-by-many",
            "label": "test device",
            "userAgent": "keyguard-tests",
            "metadata": { "platform": "test" },
        });
        if let Some(code) = code {
            body["enrollmentCode"] = code.into();
        }
        body
    }
}

pub async fn enroll(app: &TestApp, project_key: &str, body: &Value) -> (u16, Value) {
    let response = app
        .client
        .post(app.url("/api/v1/keyguard/enroll"))
        .header("x-keyguard-api-key", project_key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A timestamp `offset` from now, in the SDK's format.
pub fn timestamp(offset: TimeDelta) -> String {
    (Utc::now() + offset).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

pub fn nonce() -> String {
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(Uuid::new_v4().as_bytes());
    Nonce::from_bytes(bytes).as_str().to_owned()
}

/// The seven headers, signed as the SDK signs.
pub fn sign_with(
    device: &DeviceKey,
    project_key: &str,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    timestamp: &str,
    nonce: &str,
) -> Vec<(String, String)> {
    let headers = SignedHeaders::sign(
        &device.signing,
        RequestToSign {
            project_key: ProjectKey::parse(project_key).unwrap(),
            key_id: KeyId::parse(&device.key_id).unwrap(),
            timestamp: Timestamp::parse(timestamp).unwrap(),
            nonce: Nonce::parse(nonce).unwrap(),
            method,
            path_and_query,
            body,
        },
    )
    .unwrap();
    headers.to_pairs().iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect()
}

pub fn sign(
    device: &DeviceKey,
    project_key: &str,
    method: &str,
    path: &str,
    body: &[u8],
) -> Vec<(String, String)> {
    sign_with(device, project_key, method, path, body, &timestamp(TimeDelta::zero()), &nonce())
}

pub struct Answer {
    pub status: u16,
    pub body: String,
    pub retry_after: Option<String>,
}

pub async fn send(
    app: &TestApp,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> Answer {
    let mut request =
        app.client.request(Method::from_bytes(method.as_bytes()).unwrap(), app.url(path)).body(body);
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    Answer { status, body: response.text().await.unwrap(), retry_after }
}

pub const VERIFY: &str = "/api/v1/keyguard/verify-test";

/// Every audit record's reason code of `kind`, polling until `expected` are all present.
pub async fn wait_for_reasons(app: &TestApp, kind: &str, expected: &[&str]) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        app.platform.projections.catch_up().await.unwrap();
        let filter = AuditFilter {
            event_types: vec![kind.to_owned()],
            page: PageRequest::new(PageRequest::MAX_LIMIT, 0),
            ..Default::default()
        };
        let page = audit::list(&app.db, &filter).await.unwrap();
        let payloads: Vec<Value> = page.items.iter().map(|e| e.payload.clone()).collect();
        let missing: Vec<&&str> = expected
            .iter()
            .filter(|code| !payloads.iter().any(|p| p["details"]["reason"] == **code))
            .collect();
        if missing.is_empty() {
            return payloads;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "audit reasons never recorded: {missing:?}; have {payloads:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
