//! SHA-256 digests in the lowercase-hex form in which the domain stores hashed secrets.
//!
//! Project keys and enrollment codes are high-entropy random strings, so a plain SHA-256 is a
//! sound one-way lookup key (no salt or slow hash needed) and lets the proxy find a key in O(1).

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// Why a digest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("A SHA-256 digest must be 64 lowercase hexadecimal characters.")]
pub struct MalformedDigest;

/// A SHA-256 digest as 64 lowercase hex characters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sha256Hex(String);

impl Sha256Hex {
    pub const LEN: usize = 64;

    pub fn parse(s: &str) -> Result<Self, MalformedDigest> {
        if s.len() == Self::LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Self(s.to_owned()))
        } else {
            Err(MalformedDigest)
        }
    }

    pub fn of(bytes: &[u8]) -> Self {
        Self(hex::encode(Sha256::digest(bytes)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Equality that takes the same time wherever the first difference is.
    pub fn ct_eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl TryFrom<String> for Sha256Hex {
    type Error = MalformedDigest;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Sha256Hex> for String {
    fn from(h: Sha256Hex) -> Self {
        h.0
    }
}

impl fmt::Display for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Only a prefix: enough to tell digests apart in a log, too little to serve as a lookup key.
impl fmt::Debug for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}…", &self.0[..8])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_lowercase_hex_of_64() {
        let h = Sha256Hex::of(b"");
        assert_eq!(h.as_str(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(Sha256Hex::parse(h.as_str()), Ok(h.clone()));
        assert_eq!(Sha256Hex::parse(&h.as_str().to_uppercase()), Err(MalformedDigest));
        assert_eq!(Sha256Hex::parse(&h.as_str()[1..]), Err(MalformedDigest));
        assert!(serde_json::from_str::<Sha256Hex>("\"abc\"").is_err());
    }

    #[test]
    fn debug_shows_only_a_prefix() {
        let h = Sha256Hex::of(b"");
        assert_eq!(format!("{h:?}"), "e3b0c442…");
        assert!(h.ct_eq(&Sha256Hex::of(b"")));
        assert!(!h.ct_eq(&Sha256Hex::of(b"x")));
    }
}
