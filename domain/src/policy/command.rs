//! What may be asked of a policy.

use chrono::{DateTime, Utc};

use super::{PolicyScope, PolicySettings};
use crate::metadata::Actor;

#[derive(Debug, Clone, PartialEq)]
pub enum PolicyCommand {
    /// Replaces the settings of this scope with `settings` (fields left `None` fall back to the
    /// less specific levels). The first `Set` fixes the aggregate's scope.
    Set { scope: PolicyScope, settings: PolicySettings, by: Actor, at: DateTime<Utc> },
    /// Removes an API key or device override; the global policy cannot be cleared.
    Clear { by: Actor, at: DateTime<Utc> },
}
