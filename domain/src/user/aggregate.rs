//! A user account's state and the rules of its commands.

use std::fmt;

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Email, MAX_NAME_CHARS, MAX_REASON_CHARS, PasswordHash, Role, UserCommand, UserError, UserEvent};
use crate::metadata::Actor;
use crate::text::single_line;

/// The User aggregate. Empty until created.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct User {
    state: Option<UserState>,
}

/// Why and by whom an account was disabled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Disablement {
    reason: String,
    by: Actor,
    at: DateTime<Utc>,
}

impl Disablement {
    pub fn reason(&self) -> &str {
        &self.reason
    }
    pub fn by(&self) -> &Actor {
        &self.by
    }
    pub fn at(&self) -> DateTime<Utc> {
        self.at
    }
}

/// A created account as its history describes it.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct UserState {
    id: Uuid,
    email: Email,
    name: String,
    role: Role,
    password_hash: PasswordHash,
    disabled: Option<Disablement>,
    created_by: Actor,
    created_at: DateTime<Utc>,
    password_changed_at: DateTime<Utc>,
}

impl UserState {
    pub fn id(&self) -> Uuid {
        self.id
    }
    pub fn email(&self) -> &Email {
        &self.email
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn role(&self) -> Role {
        self.role
    }
    /// For the server's login check only; never put it in a response or a read model.
    pub fn password_hash(&self) -> &PasswordHash {
        &self.password_hash
    }
    pub fn is_disabled(&self) -> bool {
        self.disabled.is_some()
    }
    pub fn disablement(&self) -> Option<&Disablement> {
        self.disabled.as_ref()
    }
    pub fn created_by(&self) -> &Actor {
        &self.created_by
    }
    pub fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }
    /// When the password was set last (creation counts), e.g. to end older sessions.
    pub fn password_changed_at(&self) -> DateTime<Utc> {
        self.password_changed_at
    }
}

impl fmt::Debug for UserState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserState")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("name", &self.name)
            .field("role", &self.role)
            .field("password_hash", &"<redacted>")
            .field("disabled", &self.disabled)
            .field("created_by", &self.created_by)
            .field("created_at", &self.created_at)
            .field("password_changed_at", &self.password_changed_at)
            .finish()
    }
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User").field("state", &self.state).finish()
    }
}

impl User {
    /// The account, once created.
    pub fn state(&self) -> Option<&UserState> {
        self.state.as_ref()
    }

    fn existing(&self) -> Result<&UserState, UserError> {
        self.state.as_ref().ok_or(UserError::NotFound)
    }

    /// An account that exists and is not disabled: everything but `Enable` needs one.
    fn enabled(&self) -> Result<&UserState, UserError> {
        let user = self.existing()?;
        if user.is_disabled() {
            return Err(UserError::Disabled);
        }
        Ok(user)
    }

    fn decide(&self, command: UserCommand) -> Result<UserEvent, UserError> {
        let is_self = |user: &UserState, by: &Actor| *by == Actor::User { id: user.id };
        match command {
            UserCommand::Create(cmd) => {
                if self.state.is_some() {
                    return Err(UserError::AlreadyExists);
                }
                let name = single_line(&cmd.name, MAX_NAME_CHARS).map_err(UserError::InvalidName)?;
                Ok(UserEvent::UserCreated {
                    user_id: cmd.user_id,
                    email: cmd.email,
                    name,
                    role: cmd.role,
                    password_hash: cmd.password_hash,
                    by: cmd.by,
                    at: cmd.at,
                })
            }
            UserCommand::ChangeRole { role, by, at } => {
                let user = self.enabled()?;
                if is_self(user, &by) {
                    return Err(UserError::SelfModification);
                }
                if user.role == role {
                    return Err(UserError::RoleUnchanged(role));
                }
                Ok(UserEvent::UserRoleChanged { previous_role: user.role, role, by, at })
            }
            UserCommand::Disable { reason, by, at } => {
                let user = self.enabled()?;
                if is_self(user, &by) {
                    return Err(UserError::SelfModification);
                }
                let reason = single_line(&reason, MAX_REASON_CHARS).map_err(UserError::InvalidReason)?;
                Ok(UserEvent::UserDisabled { reason, by, at })
            }
            UserCommand::Enable { by, at } => {
                if !self.existing()?.is_disabled() {
                    return Err(UserError::NotDisabled);
                }
                Ok(UserEvent::UserEnabled { by, at })
            }
            UserCommand::ChangePassword { password_hash, by, at } => {
                let user = self.enabled()?;
                if user.password_hash == password_hash {
                    return Err(UserError::PasswordUnchanged);
                }
                Ok(UserEvent::UserPasswordChanged { password_hash, by, at })
            }
        }
    }
}

impl Aggregate for User {
    const TYPE: &'static str = "user";
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = UserError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let event = self.decide(command)?;
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        if let UserEvent::UserCreated { user_id, email, name, role, password_hash, by, at } = event {
            self.state = Some(UserState {
                id: user_id,
                email,
                name,
                role,
                password_hash,
                disabled: None,
                created_by: by,
                created_at: at,
                password_changed_at: at,
            });
            return;
        }
        // Only creation can start a history; see the Device aggregate for why a gap is ignored.
        let Some(user) = self.state.as_mut() else {
            return;
        };
        match event {
            UserEvent::UserCreated { .. } => {}
            UserEvent::UserRoleChanged { role, .. } => user.role = role,
            UserEvent::UserDisabled { reason, by, at } => {
                user.disabled = Some(Disablement { reason, by, at });
            }
            UserEvent::UserEnabled { .. } => user.disabled = None,
            UserEvent::UserPasswordChanged { password_hash, at, .. } => {
                user.password_hash = password_hash;
                user.password_changed_at = at;
            }
        }
    }
}
