//! What may be asked of a user account.

use std::fmt;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Email, PasswordHash, Role};
use crate::metadata::Actor;

/// Creation of a dashboard account; the server computed the argon2id hash.
#[derive(Clone, PartialEq)]
pub struct CreateUser {
    pub user_id: Uuid,
    pub email: Email,
    pub name: String,
    pub role: Role,
    pub password_hash: PasswordHash,
    pub by: Actor,
    pub at: DateTime<Utc>,
}

#[derive(Clone, PartialEq)]
pub enum UserCommand {
    Create(CreateUser),
    ChangeRole { role: Role, by: Actor, at: DateTime<Utc> },
    Disable { reason: String, by: Actor, at: DateTime<Utc> },
    Enable { by: Actor, at: DateTime<Utc> },
    ChangePassword { password_hash: PasswordHash, by: Actor, at: DateTime<Utc> },
}

// Written by hand, like every type here that holds a password hash: nothing derived may print it.
impl fmt::Debug for CreateUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateUser")
            .field("user_id", &self.user_id)
            .field("email", &self.email)
            .field("name", &self.name)
            .field("role", &self.role)
            .field("password_hash", &"<redacted>")
            .field("by", &self.by)
            .field("at", &self.at)
            .finish()
    }
}

impl fmt::Debug for UserCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserCommand::Create(c) => f.debug_tuple("Create").field(c).finish(),
            UserCommand::ChangeRole { role, by, at } => {
                f.debug_struct("ChangeRole").field("role", role).field("by", by).field("at", at).finish()
            }
            UserCommand::Disable { reason, by, at } => {
                f.debug_struct("Disable").field("reason", reason).field("by", by).field("at", at).finish()
            }
            UserCommand::Enable { by, at } => {
                f.debug_struct("Enable").field("by", by).field("at", at).finish()
            }
            UserCommand::ChangePassword { by, at, .. } => f
                .debug_struct("ChangePassword")
                .field("password_hash", &"<redacted>")
                .field("by", by)
                .field("at", at)
                .finish(),
        }
    }
}
