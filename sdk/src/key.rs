//! The device's ECDSA P-256 key pair, its wire-form public key and its keyId.

use std::fmt;

use domain::protocol::{KeyId, PublicKeySpki};
use p256::ecdsa::SigningKey;
use p256::elliptic_curve::Generate as _;
use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, LineEnding};
use zeroize::Zeroizing;

use crate::Error;

/// A device's private key, with its public key and keyId derived once.
///
/// The private scalar is wiped from memory when the key is dropped, and `Debug` shows only the
/// keyId.
///
/// ```
/// use keyguard_sdk::DeviceKey;
///
/// let key = DeviceKey::generate()?;
/// // The public key as the server stores it: base64 of a DER SubjectPublicKeyInfo.
/// assert!(key.public_key().as_str().starts_with("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE"));
/// // The keyId: the first 16 bytes of SHA-256 over that base64 text, in lowercase hex.
/// assert_eq!(key.key_id().as_str().len(), 32);
///
/// // PKCS#8 round trip, as the file store writes it.
/// let pem = key.to_pkcs8_pem()?;
/// assert_eq!(DeviceKey::from_pkcs8(pem.as_bytes()).unwrap().key_id(), key.key_id());
/// # Ok::<(), keyguard_sdk::Error>(())
/// ```
#[derive(Clone)]
pub struct DeviceKey {
    signing: SigningKey,
    public_key: PublicKeySpki,
    key_id: KeyId,
}

impl DeviceKey {
    /// A fresh key from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, Error> {
        let signing = SigningKey::try_generate().map_err(|_| Error::Entropy)?;
        Ok(Self::from_signing_key(signing))
    }

    /// Wraps an existing P-256 signing key.
    pub fn from_signing_key(signing: SigningKey) -> Self {
        let public_key = PublicKeySpki::from_verifying_key(signing.verifying_key());
        let key_id = public_key.key_id();
        Self { signing, public_key, key_id }
    }

    /// Reads a PKCS#8 private key, PEM (`-----BEGIN PRIVATE KEY-----`) or DER. `None` if the bytes
    /// are neither, or not a P-256 key.
    pub fn from_pkcs8(bytes: &[u8]) -> Option<Self> {
        let signing = match std::str::from_utf8(bytes) {
            Ok(text) if text.trim_start().starts_with("-----BEGIN") => {
                SigningKey::from_pkcs8_pem(text.trim()).ok()?
            }
            _ => SigningKey::from_pkcs8_der(bytes).ok()?,
        };
        Some(Self::from_signing_key(signing))
    }

    /// The private key as PKCS#8 DER. Zeroed when dropped.
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        let document = self.signing.to_pkcs8_der().map_err(|_| Error::KeyEncoding)?;
        Ok(Zeroizing::new(document.as_bytes().to_vec()))
    }

    /// The private key as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`). Zeroed when dropped.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, Error> {
        self.signing.to_pkcs8_pem(LineEnding::LF).map_err(|_| Error::KeyEncoding)
    }

    /// The public key in its wire form (base64 DER SPKI, 124 characters).
    pub fn public_key(&self) -> &PublicKeySpki {
        &self.public_key
    }

    /// The keyId the server knows this device by.
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    /// The P-256 signing key itself.
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }
}

impl PartialEq for DeviceKey {
    /// Two keys are the same when their public halves are; never compares secrets.
    fn eq(&self, other: &Self) -> bool {
        self.public_key == other.public_key
    }
}

impl Eq for DeviceKey {}

impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceKey").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}
