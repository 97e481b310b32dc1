//! The kg-v1 request-signing protocol: keys, headers, canonical string and verification.

mod key;

pub use key::{KeyError, KeyId, PublicKeySpki, SPKI_P256_BASE64_LEN, SPKI_P256_PREFIX};
