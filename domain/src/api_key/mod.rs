//! The ApiKey aggregate: a KeyGuard project key bound to one provider credential, and the
//! enrollment codes that let devices join it.
//!
//! The aggregate holds only what is safe to keep in an event history: the SHA-256 of the raw
//! project key (the proxy's O(1) lookup key), a short display prefix, the provider secret as an
//! envelope-encryption ciphertext, and the SHA-256 of each enrollment code.
//!
//! Lifecycle: created → (provider secret and project key rotations) → revoked, terminal. Expiry
//! is a point in time, not an event: from `expires_at` on the key opens nothing and issues no
//! codes. A project-key rotation may keep the previous key valid for a grace period of up to
//! 30 days so that deployed applications can switch over; only one previous key is kept.
//!
//! # Enrollment codes and atomic redemption
//! Codes are issued with an expiry (default 15 minutes, at most 30 days) and a number of uses
//! (default 1, at most 1000), and redeemed by presenting the code itself. Redemption is atomic
//! without any lock: the server loads this aggregate, runs `RedeemEnrollmentCode`, and commits the
//! resulting `EnrollmentCodeRedeemed` with cqrs-es's optimistic concurrency, which appends only if
//! the aggregate is still at the version it was loaded at. When two devices redeem the last use of
//! a code concurrently, both load the same version, both pass the checks, and exactly one commit
//! succeeds; the other fails with a concurrency error and, when retried, reloads the aggregate and
//! gets `enrollment_code_exhausted`. The server must therefore redeem the code *before* it enrolls
//! the device, and enroll only if the redemption committed.

mod aggregate;
mod command;
mod enrollment_code;
mod environment;
mod error;
mod event;
mod hashes;
mod sealed_secret;
#[cfg(test)]
mod tests;
mod upstream;

use chrono::TimeDelta;

pub use aggregate::{
    ApiKey, ApiKeyState, ApiKeyStatus, EnrollmentCodeStatus, IssuedEnrollmentCode, PreviousProjectKey,
    ProjectKey, ProjectKeyMatch, Revocation,
};
pub use command::{ApiKeyCommand, CreateApiKey, IssueEnrollmentCode};
pub use enrollment_code::{EnrollmentCode, EnrollmentCodeError, EntropyUnavailable};
pub use environment::{Environment, EnvironmentParseError};
pub use error::ApiKeyError;
pub use event::ApiKeyEvent;
pub use hashes::{EnrollmentCodeHash, ProjectKeyHash};
pub use sealed_secret::{SealedSecret, SealedSecretError};
pub use upstream::{AzureDeployment, AzureError, BaseUrl, BaseUrlError};

/// Longest accepted key name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Longest accepted description (of a key or a code), in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 500;
/// Longest accepted revocation reason, in characters.
pub const MAX_REASON_CHARS: usize = 500;
/// Longest accepted project key display prefix: enough to recognise a key, too short to use it.
pub const MAX_PREFIX_CHARS: usize = 16;
/// How long the previous project key may stay valid after a rotation.
pub const MAX_GRACE_PERIOD: TimeDelta = TimeDelta::days(30);
/// An enrollment code's lifetime when the issuer names none.
pub const DEFAULT_CODE_LIFETIME: TimeDelta = TimeDelta::minutes(15);
/// The longest lifetime an enrollment code may be given.
pub const MAX_CODE_LIFETIME: TimeDelta = TimeDelta::days(30);
/// An enrollment code's number of uses when the issuer names none.
pub const DEFAULT_CODE_USES: u32 = 1;
/// The most uses an enrollment code may allow.
pub const MAX_CODE_USES: u32 = 1000;
