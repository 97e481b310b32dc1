//! The User aggregate: a dashboard account (admin, operator or auditor).
//!
//! Lifecycle: created → (role and password changes) → disabled ⇄ enabled. A disabled account
//! accepts nothing but `Enable`. Nobody changes their own role or disables themselves, so an
//! administrator cannot lock the last way in by accident; that there is always at least one
//! enabled admin spans accounts and is the server's to enforce, as is email uniqueness.
//!
//! The password is known only as an argon2id PHC string computed by the server; no type here
//! that holds one derives `Debug`.

mod aggregate;
mod command;
mod email;
mod error;
mod event;
mod password_hash;
mod permission;
mod role;
#[cfg(test)]
mod tests;

pub use aggregate::{Disablement, User, UserState};
pub use command::{CreateUser, UserCommand};
pub use email::{Email, EmailError, MAX_EMAIL_LEN};
pub use error::UserError;
pub use event::UserEvent;
pub use password_hash::{MAX_PHC_LEN, PasswordHash, PasswordHashError};
pub use permission::Permission;
pub use role::{Role, RoleParseError};

/// Longest accepted display name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Longest accepted reason for disabling an account, in characters.
pub const MAX_REASON_CHARS: usize = 500;
