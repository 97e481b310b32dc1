//! The Policy aggregate: the rules the proxy applies, set globally and overridden per API key and
//! per device.
//!
//! There is one Policy aggregate per scope ([`PolicyScope::aggregate_id`]): `global`,
//! `api_key:{id}` and `device:{id}`. Each holds a [`PolicySettings`] in which every field is
//! optional: an override names only what it changes. [`EffectivePolicy::resolve`] merges the
//! three levels field by field, the most specific level that names a field winning, and fills
//! what none names with the defaults (120 s window, approval required, everything else
//! unlimited or unrestricted).
//!
//! Lists mean "only these": an empty list is refused rather than read as "none" or "any", since
//! either reading would surprise someone. To lift a restriction at a more specific level, name
//! everything (e.g. `0.0.0.0/0` and `::/0`).

mod aggregate;
mod command;
mod effective;
mod error;
mod event;
mod scope;
mod settings;
#[cfg(test)]
mod tests;

pub use aggregate::Policy;
pub use command::PolicyCommand;
pub use effective::EffectivePolicy;
pub use error::PolicyError;
pub use event::PolicyEvent;
pub use scope::{PolicyScope, PolicyScopeError};
pub use settings::{ListError, PolicySettings};

/// The window applied when no level names one, as the original server did.
pub const DEFAULT_TIMESTAMP_WINDOW_SECONDS: u32 = 120;
/// The widest window any level may set (the protocol's 15-minute ceiling).
pub const MAX_TIMESTAMP_WINDOW_SECONDS: u32 = 900;
/// Most entries in any one list.
pub const MAX_LIST_ENTRIES: usize = 1000;
/// Longest model name, in characters.
pub const MAX_MODEL_NAME_CHARS: usize = 200;
