//! KeyGuard device SDK for Rust.
//!
//! A device holds an ECDSA P-256 key; it enrolls the public half with a KeyGuard project, and once
//! an administrator has approved it (or an auto-approving enrollment code did), it signs every
//! request with the `kg-v1` protocol. KeyGuard verifies the signature and forwards the request
//! to the LLM provider with a provider key the device never sees.
//!
//! The pieces, in the order a program uses them:
//! - [`DeviceKey`]: generate a key, read and write it as PKCS#8, its keyId;
//! - [`KeyStore`]: keep it between runs ([`FileKeyStore`], mode 0600; [`MemoryKeyStore`]);
//! - [`enroll`]: register the key with a project (`POST /api/v1/keyguard/enroll`);
//! - [`Signer`]: sign a method, path and body into the seven `x-keyguard-*` headers;
//! - [`SignedClient`]: a reqwest client that signs every request it sends.
//!
//! The protocol types (canonical string, keyId, header formats) are the server's own, from
//! [`domain::protocol`], so client and server cannot drift apart.
//!
//! ```
//! use keyguard_sdk::{DeviceKey, KeyStore, MemoryKeyStore, Signer};
//!
//! let store = MemoryKeyStore::default();
//! let key = match store.load()? {
//!     Some(key) => key,
//!     None => {
//!         let key = DeviceKey::generate()?;
//!         store.save(&key)?;
//!         key
//!     }
//! };
//! let signer = Signer::new(key, "kg_1733668200000_abcdefghijklmnopqrstuvwxyz012345")?;
//! let signed = signer.sign("GET", "/api/v1/proxy/v1/models?limit=5", b"")?;
//! for (name, value) in signed.header_pairs() {
//!     assert!(name.starts_with("x-keyguard-") && !value.is_empty());
//! }
//! # Ok::<(), keyguard_sdk::Error>(())
//! ```

pub mod cli;
mod client;
mod enrollment;
mod error;
mod key;
mod server;
mod signer;
mod store;

pub use client::{SignedClient, SignedRequestBuilder, VERIFY_TEST_PATH, Verified, check, clock_offset};
pub use enrollment::{
    DeviceStatus, ENROLL_PATH, Enrolled, EnrollmentPayload, Fingerprint, enroll, enroll_payload, user_agent,
};
pub use error::{CLOCK_SKEW_THRESHOLD, Error, StoreError};
pub use key::DeviceKey;
pub use server::ServerUrl;
pub use signer::{SignedRequest, Signer};
pub use store::{FileKeyStore, KeyStore, MemoryKeyStore};

/// The kg-v1 protocol types this SDK is built on, for callers that want to verify or inspect.
pub use domain::protocol;
