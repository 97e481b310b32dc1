//! Fixtures shared by the aggregate tests: fixed instants, actors and deterministic P-256 keys.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, TimeDelta, TimeZone as _, Utc};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::EncodePublicKey as _;
use uuid::Uuid;

use crate::metadata::Actor;
use crate::protocol::PublicKeySpki;

/// The instant every test scenario starts at.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

/// `t0` plus some seconds.
pub fn t(seconds: i64) -> DateTime<Utc> {
    t0() + TimeDelta::seconds(seconds)
}

pub fn admin() -> Actor {
    Actor::User { id: Uuid::from_u128(0xad) }
}

/// A deterministic signing key; `seed` must be non-zero.
pub fn signing_key(seed: u8) -> SigningKey {
    SigningKey::from_slice(&[seed; 32]).unwrap()
}

pub fn public_key(key: &SigningKey) -> PublicKeySpki {
    let der = key.verifying_key().to_public_key_der().unwrap();
    PublicKeySpki::parse(&STANDARD.encode(der.as_bytes())).unwrap()
}

/// A P1363 signature in standard base64, as WebCrypto and the SDK produce it.
pub fn sign(key: &SigningKey, message: &str) -> String {
    let signature: Signature = key.sign(message.as_bytes());
    STANDARD.encode(signature.to_bytes())
}

/// Asserts that every error in `errors` has a distinct, non-empty `snake_case` code and a message
/// that reads as a sentence.
pub fn assert_codes_distinct<E: crate::error::ErrorCode + std::fmt::Display>(errors: &[E]) {
    let mut seen = std::collections::HashSet::new();
    for e in errors {
        let code = e.code();
        assert!(
            !code.is_empty()
                && code.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "code {code:?} is not snake_case"
        );
        assert!(seen.insert(code), "code {code:?} is used twice");
        let message = e.to_string();
        assert!(
            message.starts_with(|c: char| c.is_uppercase()) && message.ends_with('.'),
            "message {message:?} is not a sentence"
        );
    }
}
