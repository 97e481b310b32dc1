//! Device public keys and their `keyId`, exactly as the kg-v1 SDKs derive them.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::VerifyingKey;
use p256::pkcs8::DecodePublicKey as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Every P-256 SubjectPublicKeyInfo with an uncompressed point starts with these 36 base64 characters.
pub const SPKI_P256_PREFIX: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE";

/// The DER of a P-256 SubjectPublicKeyInfo up to the uncompressed point: SEQUENCE, the
/// id-ecPublicKey and prime256v1 OIDs, and the BIT STRING header.
const SPKI_P256_DER_HEADER: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86,
    0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Length of the base64 text of a P-256 SPKI with an uncompressed point (91 DER bytes).
pub const SPKI_P256_BASE64_LEN: usize = 124;

/// Why a public key or keyId was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("keyId must be 32 lowercase hexadecimal characters")]
    MalformedKeyId,
    #[error(
        "public key must be standard base64 (with padding) of a DER SubjectPublicKeyInfo, {SPKI_P256_BASE64_LEN} characters"
    )]
    MalformedPublicKey,
    #[error("public key is not a valid P-256 (secp256r1) point")]
    NotP256,
    #[error("keyId {claimed} does not match the public key (expected {derived})")]
    KeyIdMismatch { claimed: KeyId, derived: KeyId },
}

/// A device key id: the first 16 bytes of SHA-256 over the base64 text of the public key, as
/// 32 lowercase hex characters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyId(String);

impl KeyId {
    pub const LEN: usize = 32;

    /// Parses the header / JSON form. Only lowercase hex of exactly 32 characters is a keyId.
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        if s.len() == Self::LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Self(s.to_owned()))
        } else {
            Err(KeyError::MalformedKeyId)
        }
    }

    /// Derives the keyId from the base64 text of a public key (not from its DER bytes: the SDK
    /// hashes the text).
    pub fn derive(public_key_base64: &str) -> Self {
        let digest = Sha256::digest(public_key_base64.as_bytes());
        Self(hex::encode(&digest[..16]))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for KeyId {
    type Error = KeyError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<KeyId> for String {
    fn from(k: KeyId) -> Self {
        k.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

/// A device's P-256 public key, kept in its wire form (base64 DER SPKI) and checked to be a
/// valid curve point on the way in.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PublicKeySpki(String);

impl PublicKeySpki {
    /// Parses the `publicKey` field of an enrollment: strict standard base64 with padding of a
    /// DER SubjectPublicKeyInfo holding an uncompressed P-256 point.
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        if s.len() != SPKI_P256_BASE64_LEN || !s.starts_with(SPKI_P256_PREFIX) {
            return Err(KeyError::MalformedPublicKey);
        }
        let der = STANDARD.decode(s).map_err(|_| KeyError::MalformedPublicKey)?;
        VerifyingKey::from_public_key_der(&der).map_err(|_| KeyError::NotP256)?;
        Ok(Self(s.to_owned()))
    }

    /// The keyId derived from this key.
    pub fn key_id(&self) -> KeyId {
        KeyId::derive(&self.0)
    }

    /// Checks that a client-claimed keyId is the one derived from this key.
    pub fn check_key_id(&self, claimed: &KeyId) -> Result<(), KeyError> {
        let derived = self.key_id();
        if &derived == claimed {
            Ok(())
        } else {
            Err(KeyError::KeyIdMismatch { claimed: claimed.clone(), derived })
        }
    }

    /// The wire form of a key the caller already holds, as WebCrypto's `exportKey('spki')` and
    /// the SDK would produce it.
    pub fn from_verifying_key(key: &VerifyingKey) -> Self {
        let mut der = Vec::with_capacity(SPKI_P256_DER_HEADER.len() + 65);
        der.extend_from_slice(&SPKI_P256_DER_HEADER);
        der.extend_from_slice(key.to_sec1_point(false).as_bytes());
        Self(STANDARD.encode(der))
    }

    /// The parsed verifying key. Parsing cannot fail: the constructor already proved it.
    pub fn verifying_key(&self) -> VerifyingKey {
        let der = STANDARD.decode(&self.0).expect("validated at construction");
        VerifyingKey::from_public_key_der(&der).expect("validated at construction")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PublicKeySpki {
    type Error = KeyError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<PublicKeySpki> for String {
    fn from(k: PublicKeySpki) -> Self {
        k.0
    }
}

impl fmt::Debug for PublicKeySpki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKeySpki({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR_PUBLIC_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEIzqvBP4b0IVzk4HnvYE1Ea60RncyOJYxyI+QjPHZWKQyVBYj5graxhEJdMV5ChywPhe/jDBs4bWWIjPKkoX8ng==";

    #[test]
    fn key_id_is_derived_from_the_base64_text() {
        let key = PublicKeySpki::parse(VECTOR_PUBLIC_KEY).unwrap();
        assert_eq!(key.key_id().as_str(), "5f28758eb139cb43769d731f803d4d6c");
    }

    #[test]
    fn key_id_must_be_lowercase_hex_of_32() {
        assert!(KeyId::parse("5f28758eb139cb43769d731f803d4d6c").is_ok());
        assert_eq!(KeyId::parse("5F28758EB139CB43769D731F803D4D6C"), Err(KeyError::MalformedKeyId));
        assert_eq!(KeyId::parse("5f28758eb139cb43769d731f803d4d6"), Err(KeyError::MalformedKeyId));
        assert_eq!(KeyId::parse("kg_key_test_abc123"), Err(KeyError::MalformedKeyId));
    }

    #[test]
    fn public_key_must_be_a_p256_spki() {
        // base64url instead of standard base64
        let url = VECTOR_PUBLIC_KEY.replace('+', "-").replace('/', "_");
        assert_eq!(PublicKeySpki::parse(&url), Err(KeyError::MalformedPublicKey));
        // right shape, but the point is not on the curve
        let mut off_curve = VECTOR_PUBLIC_KEY.to_owned();
        off_curve.replace_range(40..44, "AAAA");
        assert_eq!(PublicKeySpki::parse(&off_curve), Err(KeyError::NotP256));
        assert_eq!(PublicKeySpki::parse(""), Err(KeyError::MalformedPublicKey));
    }

    #[test]
    fn from_verifying_key_round_trips() {
        let key = PublicKeySpki::parse(VECTOR_PUBLIC_KEY).unwrap();
        assert_eq!(PublicKeySpki::from_verifying_key(&key.verifying_key()), key);
    }

    #[test]
    fn a_mismatched_key_id_is_refused() {
        let key = PublicKeySpki::parse(VECTOR_PUBLIC_KEY).unwrap();
        let other = KeyId::parse("87cbbab955ccd175ddabcef843200171").unwrap();
        assert!(matches!(key.check_key_id(&other), Err(KeyError::KeyIdMismatch { .. })));
    }
}
