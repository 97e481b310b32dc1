//! What has happened to a policy.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::{PolicyScope, PolicySettings};
use crate::metadata::Actor;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum PolicyEvent {
    /// The complete settings of the scope from now on, in canonical form.
    PolicySet {
        scope: PolicyScope,
        settings: PolicySettings,
        by: Actor,
        at: DateTime<Utc>,
    },
    PolicyCleared {
        scope: PolicyScope,
        by: Actor,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for PolicyEvent {
    fn event_type(&self) -> String {
        match self {
            PolicyEvent::PolicySet { .. } => "PolicySet",
            PolicyEvent::PolicyCleared { .. } => "PolicyCleared",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}
