//! What may be asked of a device.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::InitialStatus;
use crate::metadata::Actor;
use crate::protocol::{KeyId, PublicKeySpki};

/// Enrollment, as received from the SDK's `enroll()` payload plus what the server decided.
#[derive(Debug, Clone, PartialEq)]
pub struct EnrollDevice {
    pub device_id: Uuid,
    /// The project (API key) the device enrolls into.
    pub api_key_id: Uuid,
    /// The keyId the client claims; must be the one derived from `public_key`.
    pub key_id: KeyId,
    pub public_key: PublicKeySpki,
    pub label: String,
    /// Client-supplied and unverifiable: kept for display, never used to identify the device.
    pub fingerprint: String,
    pub user_agent: Option<String>,
    /// A JSON object of at most [`super::MAX_METADATA_BYTES`]; pass `{}` when the client sent none.
    pub metadata: serde_json::Value,
    pub ip: Option<IpAddr>,
    pub initial_status: InitialStatus,
    pub enrollment_code_id: Option<Uuid>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DeviceCommand {
    Enroll(EnrollDevice),
    Approve {
        by: Actor,
        at: DateTime<Utc>,
    },
    Suspend {
        by: Actor,
        reason: String,
        at: DateTime<Utc>,
    },
    Reactivate {
        by: Actor,
        at: DateTime<Utc>,
    },
    Revoke {
        by: Actor,
        reason: String,
        at: DateTime<Utc>,
    },
    Rename {
        by: Actor,
        label: String,
        at: DateTime<Utc>,
    },
    /// Sent by the device itself; `proof` is the standard-base64 P1363 signature by the current
    /// key over [`super::rotation_message`].
    RotateKey {
        new_public_key: PublicKeySpki,
        proof: String,
        at: DateTime<Utc>,
    },
}
