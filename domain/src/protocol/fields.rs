//! The kg-v1 header values other than the keyId and the timestamp, each a newtype whose
//! constructor is the only way in.
//!
//! The original server accepted any non-empty string for most of these (§11.9 of the original
//! system notes); after parsing here, the rest of the code cannot hold a value that could smuggle
//! a `|` into the canonical string, decode two ways, or be the wrong size.

use std::fmt;

use p256::ecdsa::DerSignature;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::rejection::FieldError;
use super::strict_base64::{self, check_visible_ascii, encoded_len};

/// The project API key from `x-keyguard-api-key`: a bearer secret, so its `Debug` redacts it and
/// it has no `Display`.
#[derive(Clone)]
pub struct ProjectKey(String);

impl ProjectKey {
    /// Shortest accepted key. Generated keys are far longer; this only refuses obvious junk.
    pub const MIN_LEN: usize = 16;
    /// Longest accepted key, so that a hostile header cannot make us hash megabytes.
    pub const MAX_LEN: usize = 256;

    /// Accepts 16 to 256 printable ASCII characters other than `|` (no spaces).
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        if !(Self::MIN_LEN..=Self::MAX_LEN).contains(&s.len()) {
            return Err(FieldError::LengthOutOfRange {
                min: Self::MIN_LEN,
                max: Self::MAX_LEN,
                actual: s.len(),
            });
        }
        check_visible_ascii(s)?;
        Ok(Self(s.to_owned()))
    }

    /// Lowercase hex SHA-256 of the key: what the store indexes, so lookup is one equality
    /// probe instead of the original's bcrypt scan over every key. Keys are high-entropy random,
    /// so an unsalted fast hash is enough.
    pub fn sha256_hex(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }

    /// The key itself, for the canonical string and for sending it. Do not log it.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl PartialEq for ProjectKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for ProjectKey {}

impl fmt::Debug for ProjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProjectKey([REDACTED])")
    }
}

/// The `x-keyguard-nonce`: 16 random bytes in strict standard base64 (24 characters).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Nonce {
    text: String,
    bytes: [u8; Nonce::BYTES],
}

impl Nonce {
    pub const BYTES: usize = 16;
    pub const LEN: usize = encoded_len(Self::BYTES);

    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let bytes = strict_base64::decode_exact::<{ Self::BYTES }>(s)?;
        Ok(Self { text: s.to_owned(), bytes })
    }

    /// For signers: wraps bytes the caller drew from a CSPRNG.
    pub fn from_bytes(bytes: [u8; Self::BYTES]) -> Self {
        Self { text: strict_base64::encode(&bytes), bytes }
    }

    /// A fresh nonce from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; Self::BYTES];
        getrandom::fill(&mut bytes)?;
        Ok(Self::from_bytes(bytes))
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn as_bytes(&self) -> &[u8; Self::BYTES] {
        &self.bytes
    }
}

impl fmt::Debug for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nonce({})", self.text)
    }
}

impl fmt::Display for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The `x-keyguard-body-sha256`: SHA-256 of the exact body bytes, strict standard base64
/// (44 characters).
#[derive(Clone, PartialEq, Eq)]
pub struct BodySha256 {
    text: String,
    digest: [u8; BodySha256::BYTES],
}

impl BodySha256 {
    pub const BYTES: usize = 32;
    pub const LEN: usize = encoded_len(Self::BYTES);
    /// The hash of an empty body, which the SDK sends for GET requests.
    pub const EMPTY: &str = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";

    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let digest = strict_base64::decode_exact::<{ Self::BYTES }>(s)?;
        Ok(Self { text: s.to_owned(), digest })
    }

    /// Hashes a body, for signers.
    pub fn of(body: &[u8]) -> Self {
        let digest: [u8; Self::BYTES] = Sha256::digest(body).into();
        Self { text: strict_base64::encode(&digest), digest }
    }

    /// Whether `body` hashes to this value. Compares digests in constant time so that the
    /// check leaks nothing about how close a forged body came.
    pub fn matches(&self, body: &[u8]) -> bool {
        let actual: [u8; Self::BYTES] = Sha256::digest(body).into();
        actual.ct_eq(&self.digest).into()
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn digest(&self) -> &[u8; Self::BYTES] {
        &self.digest
    }
}

impl fmt::Debug for BodySha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BodySha256({})", self.text)
    }
}

/// The `x-keyguard-alg`. kg-v1 has exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Algorithm {
    #[default]
    EcdsaP256Sha256P1363,
}

impl Algorithm {
    pub const ECDSA_P256_SHA256_P1363: &str = "ECDSA_P256_SHA256_P1363";

    /// Exact, case-sensitive match: the SDK sends the constant verbatim.
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        check_visible_ascii(s)?;
        if s == Self::ECDSA_P256_SHA256_P1363 {
            Ok(Self::EcdsaP256Sha256P1363)
        } else {
            Err(FieldError::UnsupportedAlgorithm)
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::EcdsaP256Sha256P1363 => Self::ECDSA_P256_SHA256_P1363,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `x-keyguard-signature`: raw IEEE P1363 `r‖s` (64 bytes) in strict standard base64
/// (88 characters), as WebCrypto produces it.
#[derive(Clone, PartialEq, Eq)]
pub struct SignatureP1363 {
    text: String,
    bytes: [u8; SignatureP1363::BYTES],
}

impl SignatureP1363 {
    pub const BYTES: usize = 64;
    pub const LEN: usize = encoded_len(Self::BYTES);
    /// A DER ECDSA P-256 signature is at most 72 bytes; beyond that text length it cannot be one.
    const DER_MAX_LEN: usize = encoded_len(72);

    /// Parses the header. A DER signature (the `MEUCIQ…` form some original docs show) is
    /// refused with its own reason because it is the most likely integration mistake.
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        match strict_base64::decode_exact::<{ Self::BYTES }>(s) {
            Ok(bytes) => Ok(Self { text: s.to_owned(), bytes }),
            Err(FieldError::WrongLength { .. } | FieldError::WrongDecodedLength { .. })
                if s.len() <= Self::DER_MAX_LEN && is_der_signature(s) =>
            {
                Err(FieldError::DerSignature)
            }
            Err(e) => Err(e),
        }
    }

    pub(crate) fn from_bytes(bytes: [u8; Self::BYTES]) -> Self {
        Self { text: strict_base64::encode(&bytes), bytes }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn as_bytes(&self) -> &[u8; Self::BYTES] {
        &self.bytes
    }
}

fn is_der_signature(s: &str) -> bool {
    strict_base64::decode(s).is_ok_and(|der| DerSignature::from_bytes(&der).is_ok())
}

impl fmt::Debug for SignatureP1363 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignatureP1363({})", self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR_API_KEY: &str = "kg_1733668200000_abcdefghijklmnopqrstuvwxyz012345";
    const VECTOR_SIGNATURE: &str =
        "u2FOMvppkssedXks10+53VxpguncIhfVmyoi/7cQhKcwLyv6HCQ8Qrwj8vDiNauaTkxJ1dxFu8EF38cyKjpQGA==";
    const VECTOR_SIGNATURE_DER: &str =
        "MEUCIQC7YU4y+mmSyx51eSzXT7ndXGmC6dwiF9WbKiL/txCEpwIgMC8r+hwkPEK8I/Lw4jWrmk5MSdXcRbvBBd/HMio6UBg=";

    #[test]
    fn project_key_debug_redacts() {
        let key = ProjectKey::parse(VECTOR_API_KEY).unwrap();
        let shown = format!("{key:?}");
        assert!(!shown.contains("abcdefgh"), "{shown}");
        assert_eq!(key.expose_secret(), VECTOR_API_KEY);
    }

    #[test]
    fn project_key_hash_is_sha256_hex() {
        let key = ProjectKey::parse(VECTOR_API_KEY).unwrap();
        let hash = key.sha256_hex();
        assert_eq!(hash.len(), 64);
        assert_eq!(hash, hex::encode(Sha256::digest(VECTOR_API_KEY)));
    }

    #[test]
    fn project_key_rejects_bad_input() {
        let range = |actual| FieldError::LengthOutOfRange { min: 16, max: 256, actual };
        assert_eq!(ProjectKey::parse(""), Err(range(0)));
        assert_eq!(ProjectKey::parse("kg_short"), Err(range(8)));
        assert_eq!(ProjectKey::parse(&"k".repeat(257)), Err(range(257)));
        assert!(ProjectKey::parse(&"k".repeat(256)).is_ok());
        assert_eq!(ProjectKey::parse("kg_1733668200000_abc|def"), Err(FieldError::ContainsSeparator));
        assert_eq!(
            ProjectKey::parse("kg_1733668200000_abc def"),
            Err(FieldError::ContainsWhitespaceOrControl)
        );
        assert_eq!(
            ProjectKey::parse("kg_1733668200000_abc\tdef"),
            Err(FieldError::ContainsWhitespaceOrControl)
        );
        assert_eq!(ProjectKey::parse("kg_1733668200000_abcdéf"), Err(FieldError::NotPrintableAscii));
    }

    #[test]
    fn nonce_is_24_chars_of_16_bytes() {
        let n = Nonce::parse("uSJMZOs90jwFgN8s5Ne18A==").unwrap();
        assert_eq!(n.as_str(), "uSJMZOs90jwFgN8s5Ne18A==");
        assert_eq!(Nonce::from_bytes(*n.as_bytes()), n);
        // The hex nonces of the original demo page and the script's `nonce_<ms>_<b36>` form.
        assert!(matches!(
            Nonce::parse("0123456789abcdef0123456789abcdef"),
            Err(FieldError::WrongLength { expected: 24, actual: 32 })
        ));
        assert!(Nonce::parse("nonce_1736937000000_k3j4").is_err());
        assert_eq!(
            Nonce::parse("uSJMZOs90jwFgN8s5Ne18A"),
            Err(FieldError::WrongLength { expected: 24, actual: 22 })
        );
        assert_eq!(Nonce::parse("uSJMZOs90jwFgN8s5Ne18A= "), Err(FieldError::ContainsWhitespaceOrControl));
        assert_eq!(Nonce::parse("uSJMZOs90jwFgN8s5Ne18B=="), Err(FieldError::NonCanonicalBase64));
        assert!(Nonce::generate().is_ok());
    }

    #[test]
    fn body_hash_matches_only_its_body() {
        let empty = BodySha256::parse(BodySha256::EMPTY).unwrap();
        assert_eq!(BodySha256::of(b""), empty);
        assert!(empty.matches(b""));
        assert!(!empty.matches(b" "));
        let vector = BodySha256::parse("5lnwzKt2E+WXIAThT3imAXt09j8YY8CkBFzwfeyk+b0=").unwrap();
        assert!(vector.matches(br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}]}"#));
    }

    #[test]
    fn body_hash_rejects_hex_and_url_alphabet() {
        // The original `sign-request.js` sent hex.
        let hex = hex::encode(Sha256::digest(b""));
        assert_eq!(BodySha256::parse(&hex), Err(FieldError::WrongLength { expected: 44, actual: 64 }));
        assert_eq!(
            BodySha256::parse("47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU="),
            Err(FieldError::Base64UrlAlphabet)
        );
        assert_eq!(
            BodySha256::parse("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFV="),
            Err(FieldError::NonCanonicalBase64)
        );
        assert_eq!(
            BodySha256::parse("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"),
            Err(FieldError::WrongLength { expected: 44, actual: 43 })
        );
        assert_eq!(
            BodySha256::parse("47DEQpj8HBSa+/TImW+5JCeu|eRkm5NMpJWZG3hSuFU="),
            Err(FieldError::ContainsSeparator)
        );
    }

    #[test]
    fn algorithm_is_the_exact_constant() {
        assert_eq!(Algorithm::parse("ECDSA_P256_SHA256_P1363"), Ok(Algorithm::EcdsaP256Sha256P1363));
        for wrong in ["ecdsa_p256_sha256_p1363", "ECDSA_P256_SHA256", "ES256", "ECDSA_P256_SHA256_DER", ""] {
            assert_eq!(Algorithm::parse(wrong), Err(FieldError::UnsupportedAlgorithm), "{wrong}");
        }
        assert_eq!(
            Algorithm::parse("ECDSA_P256_SHA256_P1363 "),
            Err(FieldError::ContainsWhitespaceOrControl)
        );
        assert_eq!(Algorithm::parse("ECDSA_P256_SHA256_P1363|"), Err(FieldError::ContainsSeparator));
    }

    #[test]
    fn signature_must_be_p1363() {
        assert!(SignatureP1363::parse(VECTOR_SIGNATURE).is_ok());
        assert_eq!(SignatureP1363::parse(VECTOR_SIGNATURE_DER), Err(FieldError::DerSignature));
        // A truncated DER prefix is just the wrong length, not a DER signature.
        assert_eq!(
            SignatureP1363::parse("MEUCIQC7YU4y"),
            Err(FieldError::WrongLength { expected: 88, actual: 12 })
        );
        let url = VECTOR_SIGNATURE.replace('/', "_").replace('+', "-");
        assert_eq!(SignatureP1363::parse(&url), Err(FieldError::Base64UrlAlphabet));
        let unpadded = VECTOR_SIGNATURE.trim_end_matches('=');
        assert!(matches!(SignatureP1363::parse(unpadded), Err(FieldError::WrongLength { .. })));
        let mut non_canonical = VECTOR_SIGNATURE.to_owned();
        non_canonical.replace_range(85..86, "B");
        assert_eq!(SignatureP1363::parse(&non_canonical), Err(FieldError::NonCanonicalBase64));
        let mut piped = VECTOR_SIGNATURE.to_owned();
        piped.replace_range(10..11, "|");
        assert_eq!(SignatureP1363::parse(&piped), Err(FieldError::ContainsSeparator));
        assert_eq!(
            SignatureP1363::parse(&format!(" {}", &VECTOR_SIGNATURE[1..])),
            Err(FieldError::ContainsWhitespaceOrControl)
        );
    }
}
