//! The provider secret as the domain sees it: an envelope-encryption ciphertext, never plaintext.
//!
//! The server encrypts the provider key with AES-256-GCM under a data key (see the architecture's
//! "Secrets") and hands over only the result. The domain checks its shape so that a plaintext key
//! pasted into the wrong field, or a truncated ciphertext, cannot be recorded in an event.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ErrorCode;

/// AES-GCM nonce length.
pub const NONCE_LEN: usize = 12;
/// AES-GCM tag length; a ciphertext is at least one byte longer.
pub const TAG_LEN: usize = 16;
/// Provider keys are short; anything larger is not one.
pub const MAX_CIPHERTEXT_LEN: usize = 8 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealedSecretError {
    #[error("The data key version must be at least 1.")]
    InvalidKeyVersion,
    #[error("The nonce must be {NONCE_LEN} bytes in standard base64 with padding.")]
    MalformedNonce,
    #[error("The ciphertext must be standard base64 with padding.")]
    MalformedCiphertext,
    #[error(
        "The ciphertext must hold a {TAG_LEN}-byte tag and at least one byte, and at most {MAX_CIPHERTEXT_LEN} bytes (got {len})."
    )]
    CiphertextLength { len: usize },
}

impl ErrorCode for SealedSecretError {
    fn code(&self) -> &'static str {
        match self {
            SealedSecretError::InvalidKeyVersion => "sealed_secret_invalid_key_version",
            SealedSecretError::MalformedNonce => "sealed_secret_malformed_nonce",
            SealedSecretError::MalformedCiphertext => "sealed_secret_malformed_ciphertext",
            SealedSecretError::CiphertextLength { .. } => "sealed_secret_ciphertext_length",
        }
    }
}

/// An encrypted provider secret: which data key (and version) sealed it, the nonce, and the
/// ciphertext with its tag.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "SealedSecretParts", into = "SealedSecretParts")]
pub struct SealedSecret {
    data_key_id: Uuid,
    key_version: u32,
    nonce_b64: String,
    ciphertext_b64: String,
}

#[derive(Serialize, Deserialize)]
struct SealedSecretParts {
    data_key_id: Uuid,
    key_version: u32,
    nonce_b64: String,
    ciphertext_b64: String,
}

impl SealedSecret {
    pub fn new(
        data_key_id: Uuid,
        key_version: u32,
        nonce_b64: impl Into<String>,
        ciphertext_b64: impl Into<String>,
    ) -> Result<Self, SealedSecretError> {
        let (nonce_b64, ciphertext_b64) = (nonce_b64.into(), ciphertext_b64.into());
        if key_version == 0 {
            return Err(SealedSecretError::InvalidKeyVersion);
        }
        match STANDARD.decode(&nonce_b64) {
            Ok(nonce) if nonce.len() == NONCE_LEN => {}
            _ => return Err(SealedSecretError::MalformedNonce),
        }
        // Checked before decoding so that a huge value is refused without allocating for it.
        if ciphertext_b64.len() > MAX_CIPHERTEXT_LEN.div_ceil(3) * 4 {
            return Err(SealedSecretError::CiphertextLength { len: ciphertext_b64.len() / 4 * 3 });
        }
        let len = STANDARD.decode(&ciphertext_b64).map_err(|_| SealedSecretError::MalformedCiphertext)?.len();
        if len <= TAG_LEN || len > MAX_CIPHERTEXT_LEN {
            return Err(SealedSecretError::CiphertextLength { len });
        }
        Ok(Self { data_key_id, key_version, nonce_b64, ciphertext_b64 })
    }

    pub fn data_key_id(&self) -> Uuid {
        self.data_key_id
    }
    pub fn key_version(&self) -> u32 {
        self.key_version
    }
    pub fn nonce_b64(&self) -> &str {
        &self.nonce_b64
    }
    pub fn ciphertext_b64(&self) -> &str {
        &self.ciphertext_b64
    }

    /// Whether `other` was sealed under the same data key with the same nonce: with AES-GCM that
    /// would leak both plaintexts' XOR and the authentication key.
    pub fn reuses_nonce_of(&self, other: &SealedSecret) -> bool {
        self.data_key_id == other.data_key_id && self.nonce_b64 == other.nonce_b64
    }
}

impl TryFrom<SealedSecretParts> for SealedSecret {
    type Error = SealedSecretError;
    fn try_from(p: SealedSecretParts) -> Result<Self, Self::Error> {
        Self::new(p.data_key_id, p.key_version, p.nonce_b64, p.ciphertext_b64)
    }
}

impl From<SealedSecret> for SealedSecretParts {
    fn from(s: SealedSecret) -> Self {
        Self {
            data_key_id: s.data_key_id,
            key_version: s.key_version,
            nonce_b64: s.nonce_b64,
            ciphertext_b64: s.ciphertext_b64,
        }
    }
}

/// Names the data key; leaves the ciphertext out of logs.
impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedSecret")
            .field("data_key_id", &self.data_key_id)
            .field("key_version", &self.key_version)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> String {
        STANDARD.encode(bytes)
    }

    #[test]
    fn accepts_a_well_formed_envelope_and_round_trips_through_json() {
        let s = SealedSecret::new(Uuid::from_u128(1), 1, b64(&[7; 12]), b64(&[9; 40])).unwrap();
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["key_version"], 1);
        assert_eq!(serde_json::from_value::<SealedSecret>(json).unwrap(), s);
        assert!(!format!("{s:?}").contains(s.ciphertext_b64()));
    }

    #[test]
    fn refuses_what_cannot_be_a_gcm_ciphertext() {
        let id = Uuid::from_u128(1);
        let nonce = b64(&[7; 12]);
        assert_eq!(
            SealedSecret::new(id, 0, &nonce, b64(&[1; 40])),
            Err(SealedSecretError::InvalidKeyVersion)
        );
        assert_eq!(
            SealedSecret::new(id, 1, b64(&[7; 16]), b64(&[1; 40])),
            Err(SealedSecretError::MalformedNonce)
        );
        assert_eq!(
            SealedSecret::new(id, 1, &nonce, "sk-proj-plaintext-key!"),
            Err(SealedSecretError::MalformedCiphertext)
        );
        assert_eq!(
            SealedSecret::new(id, 1, &nonce, b64(&[1; 16])),
            Err(SealedSecretError::CiphertextLength { len: 16 })
        );
        assert!(SealedSecret::new(id, 1, &nonce, b64(&[1; 17])).is_ok());
        assert!(SealedSecret::new(id, 1, &nonce, b64(&vec![1; MAX_CIPHERTEXT_LEN])).is_ok());
        assert!(matches!(
            SealedSecret::new(id, 1, &nonce, b64(&vec![1; MAX_CIPHERTEXT_LEN + 1])),
            Err(SealedSecretError::CiphertextLength { .. })
        ));
        let stored = serde_json::json!({
            "data_key_id": id, "key_version": 1, "nonce_b64": "AA==", "ciphertext_b64": b64(&[1; 40])
        });
        assert!(serde_json::from_value::<SealedSecret>(stored).is_err());
    }
}
