//! The Device aggregate: one enrolled device of one project, its key and its standing.
//!
//! A device enrolls a P-256 public key whose keyId must be the one derived from it, and starts
//! `pending` or `active` (the caller decides from the enrollment code and policy). From there:
//!
//! ```text
//! pending ──approve──▶ active ◀──reactivate── suspended
//!    │                   │                      ▲
//!    └──────suspend──────┴───────suspend────────┘
//! any state but revoked ──revoke──▶ revoked (terminal)
//! ```
//!
//! A suspended device that was never approved goes back to `pending` when reactivated, so that
//! suspension cannot be used to skip approval. Only an `active` device may rotate its key, and
//! only with a proof signed by its current key; a key it used before is never accepted again,
//! which also makes an old rotation proof useless if replayed.

mod aggregate;
mod command;
mod error;
mod event;
mod rotation;
mod status;
#[cfg(test)]
mod tests;

pub use aggregate::{Device, EnrolledDevice};
pub use command::{DeviceCommand, EnrollDevice};
pub use error::{DeviceAction, DeviceError};
pub use event::DeviceEvent;
pub use rotation::{ROTATION_PROOF_TAG, rotation_message};
pub use status::{DeviceStatus, InitialStatus, UnknownStatus};

/// Longest accepted label, in characters (the original API's limit).
pub const MAX_LABEL_CHARS: usize = 255;
/// Longest accepted client fingerprint, in characters.
pub const MAX_FINGERPRINT_CHARS: usize = 255;
/// Longest accepted user agent, in characters.
pub const MAX_USER_AGENT_CHARS: usize = 1024;
/// Longest accepted suspension or revocation reason, in characters.
pub const MAX_REASON_CHARS: usize = 500;
/// Largest accepted client metadata object, in bytes of compact JSON.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
