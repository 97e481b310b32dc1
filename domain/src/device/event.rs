//! What has happened to a device.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{DeviceStatus, InitialStatus};
use crate::metadata::Actor;
use crate::protocol::{KeyId, PublicKeySpki};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum DeviceEvent {
    DeviceEnrolled {
        device_id: Uuid,
        api_key_id: Uuid,
        key_id: KeyId,
        public_key: PublicKeySpki,
        label: String,
        fingerprint: String,
        user_agent: Option<String>,
        metadata: serde_json::Value,
        ip: Option<IpAddr>,
        initial_status: InitialStatus,
        enrollment_code_id: Option<Uuid>,
        at: DateTime<Utc>,
    },
    DeviceApproved {
        by: Actor,
        at: DateTime<Utc>,
    },
    DeviceSuspended {
        by: Actor,
        reason: String,
        at: DateTime<Utc>,
    },
    /// `status` is where the device went back to: `active`, or `pending` if it was never approved.
    DeviceReactivated {
        by: Actor,
        status: DeviceStatus,
        at: DateTime<Utc>,
    },
    DeviceRevoked {
        by: Actor,
        reason: String,
        at: DateTime<Utc>,
    },
    DeviceRenamed {
        by: Actor,
        previous_label: String,
        label: String,
        at: DateTime<Utc>,
    },
    /// Performed by the device itself, proven with its previous key.
    DeviceKeyRotated {
        old_key_id: KeyId,
        new_key_id: KeyId,
        new_public_key: PublicKeySpki,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for DeviceEvent {
    fn event_type(&self) -> String {
        match self {
            DeviceEvent::DeviceEnrolled { .. } => "DeviceEnrolled",
            DeviceEvent::DeviceApproved { .. } => "DeviceApproved",
            DeviceEvent::DeviceSuspended { .. } => "DeviceSuspended",
            DeviceEvent::DeviceReactivated { .. } => "DeviceReactivated",
            DeviceEvent::DeviceRevoked { .. } => "DeviceRevoked",
            DeviceEvent::DeviceRenamed { .. } => "DeviceRenamed",
            DeviceEvent::DeviceKeyRotated { .. } => "DeviceKeyRotated",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}
