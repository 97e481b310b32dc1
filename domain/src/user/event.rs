//! What has happened to a user account.

use std::fmt;

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Email, PasswordHash, Role};
use crate::metadata::Actor;

/// The password hash is stored (the history is the only record of it) but never printed; a
/// projection for the dashboard must leave it out.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum UserEvent {
    UserCreated {
        user_id: Uuid,
        email: Email,
        name: String,
        role: Role,
        password_hash: PasswordHash,
        by: Actor,
        at: DateTime<Utc>,
    },
    UserRoleChanged {
        previous_role: Role,
        role: Role,
        by: Actor,
        at: DateTime<Utc>,
    },
    UserDisabled {
        reason: String,
        by: Actor,
        at: DateTime<Utc>,
    },
    UserEnabled {
        by: Actor,
        at: DateTime<Utc>,
    },
    UserPasswordChanged {
        password_hash: PasswordHash,
        by: Actor,
        at: DateTime<Utc>,
    },
}

impl fmt::Debug for UserEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserEvent::UserCreated { user_id, email, name, role, by, at, .. } => f
                .debug_struct("UserCreated")
                .field("user_id", user_id)
                .field("email", email)
                .field("name", name)
                .field("role", role)
                .field("password_hash", &"<redacted>")
                .field("by", by)
                .field("at", at)
                .finish(),
            UserEvent::UserRoleChanged { previous_role, role, by, at } => f
                .debug_struct("UserRoleChanged")
                .field("previous_role", previous_role)
                .field("role", role)
                .field("by", by)
                .field("at", at)
                .finish(),
            UserEvent::UserDisabled { reason, by, at } => f
                .debug_struct("UserDisabled")
                .field("reason", reason)
                .field("by", by)
                .field("at", at)
                .finish(),
            UserEvent::UserEnabled { by, at } => {
                f.debug_struct("UserEnabled").field("by", by).field("at", at).finish()
            }
            UserEvent::UserPasswordChanged { by, at, .. } => f
                .debug_struct("UserPasswordChanged")
                .field("password_hash", &"<redacted>")
                .field("by", by)
                .field("at", at)
                .finish(),
        }
    }
}

impl DomainEvent for UserEvent {
    fn event_type(&self) -> String {
        match self {
            UserEvent::UserCreated { .. } => "UserCreated",
            UserEvent::UserRoleChanged { .. } => "UserRoleChanged",
            UserEvent::UserDisabled { .. } => "UserDisabled",
            UserEvent::UserEnabled { .. } => "UserEnabled",
            UserEvent::UserPasswordChanged { .. } => "UserPasswordChanged",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1.0".to_owned()
    }
}
