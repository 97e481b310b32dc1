//! Enrolling a device: the payload the TypeScript SDK's `enroll()` builds, and the
//! `POST /api/v1/keyguard/enroll` call that registers it with a project.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::client::{failure, http_error};
use crate::{DeviceKey, Error, ServerUrl};

/// The route a device enrolls on, relative to the server URL.
pub const ENROLL_PATH: &str = "/api/v1/keyguard/enroll";

/// What identifies the machine to the people approving it. Unlike the original server, KeyGuard
/// keys nothing on the fingerprint: it is descriptive only.
#[derive(Debug, Clone, PartialEq)]
pub struct Fingerprint {
    /// An opaque identifier (FingerprintJS's `visitorId` in browsers).
    pub visitor_id: String,
    /// The default device label when the caller gives none.
    pub label: String,
    /// Free-form facts about the machine, shown to administrators.
    pub metadata: serde_json::Value,
}

impl Fingerprint {
    /// A description of this process's platform, for a device holding `key`.
    pub fn of_this_machine(key: &DeviceKey) -> Self {
        let os = std::env::consts::OS;
        Self {
            visitor_id: format!("rust-{}", key.key_id()),
            label: format!("keyguard-device on {os}"),
            metadata: serde_json::json!({
                "platform": "rust",
                "os": os,
                "arch": std::env::consts::ARCH,
                "runtime": concat!("keyguard_sdk/", env!("CARGO_PKG_VERSION")),
            }),
        }
    }
}

/// The User-Agent this SDK sends, e.g. `keyguard_sdk/0.1.0 (linux; x86_64)`.
pub fn user_agent() -> String {
    format!(
        "keyguard_sdk/{} ({}; {})",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

/// The enrollment body, field for field (and in the same order) as the TypeScript SDK's
/// `EnrollmentPayload`, plus the optional `enrollmentCode` the application adds.
///
/// ```
/// use keyguard_sdk::{DeviceKey, EnrollmentPayload, Fingerprint};
///
/// let key = DeviceKey::generate()?;
/// let payload = EnrollmentPayload::new(&key, Fingerprint::of_this_machine(&key), Some("build agent"))
///     .with_code("kgc_0123456789abcdefghjkmnpqrs");
/// let json = serde_json::to_value(&payload).unwrap();
/// assert_eq!(json["keyId"], key.key_id().as_str());
/// assert_eq!(json["label"], "build agent");
/// # Ok::<(), keyguard_sdk::Error>(())
/// ```
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrollmentPayload {
    pub public_key: String,
    pub key_id: String,
    pub device_fingerprint: String,
    pub label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment_code: Option<String>,
}

impl EnrollmentPayload {
    /// As the TypeScript SDK's `enroll(deviceName?)`: the label is `label` or else the
    /// fingerprint's label. The user agent is left out, as the SDK does outside a browser; see
    /// [`EnrollmentPayload::with_user_agent`].
    pub fn new(key: &DeviceKey, fingerprint: Fingerprint, label: Option<&str>) -> Self {
        Self {
            public_key: key.public_key().as_str().to_owned(),
            key_id: key.key_id().as_str().to_owned(),
            device_fingerprint: fingerprint.visitor_id,
            label: label.map(str::to_owned).unwrap_or(fingerprint.label),
            user_agent: None,
            metadata: Some(fingerprint.metadata),
            enrollment_code: None,
        }
    }

    pub fn with_user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = Some(user_agent.into());
        self
    }

    /// Adds a one-time enrollment code from an administrator (auto-approving or not).
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.enrollment_code = Some(code.into());
        self
    }
}

impl fmt::Debug for EnrollmentPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnrollmentPayload")
            .field("key_id", &self.key_id)
            .field("device_fingerprint", &self.device_fingerprint)
            .field("label", &self.label)
            .field("user_agent", &self.user_agent)
            .field("metadata", &self.metadata)
            .field("enrollment_code", &self.enrollment_code.as_ref().map(|_| "[REDACTED]"))
            .finish_non_exhaustive()
    }
}

/// A device's state on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeviceStatus {
    /// Waiting for an administrator to approve it; its requests are refused until then.
    Pending,
    /// May sign requests.
    Active,
    /// Temporarily barred by an administrator.
    Suspended,
    /// Permanently barred.
    Revoked,
}

impl DeviceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Revoked => "revoked",
        }
    }
}

impl FromStr for DeviceStatus {
    type Err = Error;

    /// Either case: the device-facing routes answer upper-case, the admin API lower-case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "pending" => Ok(Self::Pending),
            "active" => Ok(Self::Active),
            "suspended" => Ok(Self::Suspended),
            "revoked" => Ok(Self::Revoked),
            _ => Err(Error::UnexpectedResponse(format!("unknown device status {s:?}"))),
        }
    }
}

impl fmt::Display for DeviceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The server's answer to an enrollment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolled {
    /// The device id administrators see.
    pub id: String,
    /// `Active` when an auto-approving code was used, else usually `Pending`. Enrolling a key the
    /// project already knows answers that device's current status.
    pub status: DeviceStatus,
    /// When the server first registered the key (ISO 8601).
    pub created_at: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnrolledBody {
    id: String,
    status: String,
    created_at: String,
}

/// Enrolls `key` with the project of `project_key` on `server`, optionally redeeming an
/// enrollment `code`. Enrolling the same key again is harmless: the server answers the existing
/// device.
///
/// ```no_run
/// # async fn demo() -> Result<(), keyguard_sdk::Error> {
/// use keyguard_sdk::{DeviceKey, DeviceStatus, ServerUrl, enroll};
///
/// let server = ServerUrl::parse("https://keyguard.example.com")?;
/// let key = DeviceKey::generate()?;
/// let enrolled = enroll(&server, "kg_…project key…", &key, Some("kgc_…code…"), "build agent").await?;
/// if enrolled.status == DeviceStatus::Pending {
///     println!("ask an administrator to approve device {}", enrolled.id);
/// }
/// # Ok(()) }
/// ```
pub async fn enroll(
    server: &ServerUrl,
    project_key: &str,
    key: &DeviceKey,
    code: Option<&str>,
    label: &str,
) -> Result<Enrolled, Error> {
    let mut payload = EnrollmentPayload::new(key, Fingerprint::of_this_machine(key), Some(label))
        .with_user_agent(user_agent());
    if let Some(code) = code {
        payload = payload.with_code(code.trim());
    }
    enroll_payload(&reqwest::Client::new(), server, project_key, &payload).await
}

/// Sends a prepared [`EnrollmentPayload`] with the given HTTP client.
pub async fn enroll_payload(
    http: &reqwest::Client,
    server: &ServerUrl,
    project_key: &str,
    payload: &EnrollmentPayload,
) -> Result<Enrolled, Error> {
    // Checked here so that a typo is reported as such rather than as a generic 401.
    domain::protocol::ProjectKey::parse(project_key).map_err(Error::InvalidProjectKey)?;
    let url = server.url_for(ENROLL_PATH)?;
    let response = http
        .post(url)
        .header("x-keyguard-api-key", project_key)
        .header(reqwest::header::USER_AGENT, user_agent())
        .json(payload)
        .send()
        .await
        .map_err(|e| http_error(server, e))?;
    let status = response.status().as_u16();
    match status {
        200 | 201 => {
            let body: EnrolledBody = response
                .json()
                .await
                .map_err(|e| Error::UnexpectedResponse(format!("enrollment answer: {e}")))?;
            Ok(Enrolled { id: body.id, status: body.status.parse()?, created_at: body.created_at })
        }
        400 => {
            let text = response.text().await.map_err(|e| http_error(server, e))?;
            let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            let field = |name: &str| body[name].as_str().map(str::to_owned);
            Err(Error::EnrollmentRefused {
                code: field("error").unwrap_or_else(|| "bad_request".to_owned()),
                message: field("message").unwrap_or(text),
            })
        }
        401 => Err(Error::ProjectKeyRefused),
        _ => Err(failure(server, response).await),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_parses_either_case_and_serialises_upper_case() {
        assert_eq!("PENDING".parse::<DeviceStatus>().unwrap(), DeviceStatus::Pending);
        assert_eq!("active".parse::<DeviceStatus>().unwrap(), DeviceStatus::Active);
        assert!("gone".parse::<DeviceStatus>().is_err());
        assert_eq!(serde_json::to_string(&DeviceStatus::Revoked).unwrap(), "\"REVOKED\"");
    }

    #[test]
    fn payload_omits_absent_options_and_hides_the_code_from_debug() {
        let key = DeviceKey::generate().unwrap();
        let payload = EnrollmentPayload::new(&key, Fingerprint::of_this_machine(&key), None);
        let json = serde_json::to_value(&payload).unwrap();
        assert_eq!(json["label"], format!("keyguard-device on {}", std::env::consts::OS));
        assert!(json.get("userAgent").is_none() && json.get("enrollmentCode").is_none(), "{json}");
        let with_code = payload.with_code("kgc_secretsecretsecretsecret00");
        assert!(!format!("{with_code:?}").contains("secret"));
        assert_eq!(
            serde_json::to_value(&with_code).unwrap()["enrollmentCode"],
            "kgc_secretsecretsecretsecret00"
        );
    }
}
