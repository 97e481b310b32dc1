//! KeyGuard's pure core: the kg-v1 protocol, the aggregates (devices, API keys, policies, users)
//! with their commands, events and errors, and the metadata every event carries.
//!
//! Nothing here performs I/O; callers pass in the current time and randomness is only drawn from
//! the operating system's CSPRNG for new secrets.

pub mod api_key;
pub mod device;
pub mod error;
pub mod hash;
pub mod metadata;
pub mod policy;
pub mod protocol;
pub mod provider;
pub mod text;
pub mod user;

#[cfg(test)]
mod test_support;

pub use error::ErrorCode;
