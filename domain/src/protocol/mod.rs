//! The kg-v1 request-signing protocol: keys, headers, canonical string and verification.
//!
//! A verifier parses the headers ([`SignedHeaders::parse`]), finds the project and device by
//! [`ProjectKey::sha256_hex`] and [`KeyId`], then calls [`SignedHeaders::verify`] with the device
//! key; every refusal along the way is a [`Rejection`] with a stable audit code.

mod canonical;
mod fields;
mod headers;
mod key;
mod rejection;
mod strict_base64;
mod timestamp;
mod verify;

pub use canonical::{CanonicalFields, CanonicalRequest, MAX_METHOD_LEN, VERSION_TAG};
pub use fields::{Algorithm, BodySha256, Nonce, ProjectKey, SignatureP1363};
pub use headers::{KgHeader, SignedHeaders};
pub use key::{KeyError, KeyId, PublicKeySpki, SPKI_P256_BASE64_LEN, SPKI_P256_PREFIX};
pub use rejection::{FieldError, Rejection};
pub use timestamp::{DEFAULT_WINDOW, FreshnessWindow, MAX_WINDOW, Timestamp, WindowError};
pub use verify::{ReceivedRequest, RequestToSign, sign, verify_signature};
