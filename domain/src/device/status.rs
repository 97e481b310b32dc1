//! A device's standing.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a device stands. Only `active` devices may sign requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceStatus {
    Pending,
    Active,
    Suspended,
    Revoked,
}

impl DeviceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Pending => "pending",
            DeviceStatus::Active => "active",
            DeviceStatus::Suspended => "suspended",
            DeviceStatus::Revoked => "revoked",
        }
    }
}

impl std::str::FromStr for DeviceStatus {
    type Err = UnknownStatus;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "pending" => Ok(DeviceStatus::Pending),
            "active" => Ok(DeviceStatus::Active),
            "suspended" => Ok(DeviceStatus::Suspended),
            "revoked" => Ok(DeviceStatus::Revoked),
            other => Err(UnknownStatus(other.to_owned())),
        }
    }
}

/// A status name that is not one of `pending`, `active`, `suspended`, `revoked`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown device status {0:?}; expected pending, active, suspended or revoked")]
pub struct UnknownStatus(pub String);

impl fmt::Display for DeviceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The two states a device may be enrolled in; a separate type so that enrolling a device as
/// suspended or revoked cannot even be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InitialStatus {
    Pending,
    Active,
}

impl From<InitialStatus> for DeviceStatus {
    fn from(s: InitialStatus) -> Self {
        match s {
            InitialStatus::Pending => DeviceStatus::Pending,
            InitialStatus::Active => DeviceStatus::Active,
        }
    }
}
