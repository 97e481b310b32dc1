//! Enrollment codes: one-time secrets an admin hands to a device owner.
//!
//! A code is 128 bits from the OS CSPRNG, written `kgc_` + 26 characters of Crockford's base32
//! alphabet (digits and lowercase letters without i, l, o, u, so nothing is ambiguous when read
//! aloud or retyped). The domain only ever stores its SHA-256; the text exists once, when it is
//! shown to the admin, and in the redeeming request.

use std::fmt;

use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use super::EnrollmentCodeHash;
use crate::error::ErrorCode;

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// Why a text is not an enrollment code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnrollmentCodeError {
    #[error("An enrollment code starts with \"kgc_\".")]
    MissingPrefix,
    #[error("An enrollment code has 26 characters after \"kgc_\" (found {found}).")]
    WrongLength { found: usize },
    #[error(
        "Character {position} of the enrollment code is not allowed (digits and letters other than i, l, o and u)."
    )]
    InvalidCharacter { position: usize },
    #[error("The first character after \"kgc_\" of an enrollment code is a digit from 0 to 7.")]
    OutOfRange,
}

impl ErrorCode for EnrollmentCodeError {
    fn code(&self) -> &'static str {
        match self {
            EnrollmentCodeError::MissingPrefix => "enrollment_code_missing_prefix",
            EnrollmentCodeError::WrongLength { .. } => "enrollment_code_wrong_length",
            EnrollmentCodeError::InvalidCharacter { .. } => "enrollment_code_invalid_character",
            EnrollmentCodeError::OutOfRange => "enrollment_code_out_of_range",
        }
    }
}

/// The operating system could not provide randomness; no code can be made safely.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("The operating system's random number generator failed.")]
pub struct EntropyUnavailable;

impl ErrorCode for EntropyUnavailable {
    fn code(&self) -> &'static str {
        "entropy_unavailable"
    }
}

/// An enrollment code in canonical (lowercase) form. Wiped from memory when dropped; `Debug`
/// shows nothing of it; compared in constant time; deliberately not `Serialize`.
#[derive(Clone)]
pub struct EnrollmentCode(Zeroizing<String>);

impl PartialEq for EnrollmentCode {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for EnrollmentCode {}

impl EnrollmentCode {
    pub const PREFIX: &'static str = "kgc_";
    pub const BODY_LEN: usize = 26;
    pub const LEN: usize = Self::PREFIX.len() + Self::BODY_LEN;

    /// A fresh code from 128 bits of OS randomness.
    pub fn generate() -> Result<Self, EntropyUnavailable> {
        let mut bytes = Zeroizing::new([0u8; 16]);
        getrandom::fill(bytes.as_mut()).map_err(|_| EntropyUnavailable)?;
        Ok(Self::from_entropy(*bytes))
    }

    fn from_entropy(bytes: [u8; 16]) -> Self {
        let value = Zeroizing::new(u128::from_be_bytes(bytes));
        let mut text = Zeroizing::new(String::with_capacity(Self::LEN));
        text.push_str(Self::PREFIX);
        for i in (0..Self::BODY_LEN).rev() {
            let digit = (*value >> (5 * i)) & 0x1f;
            text.push(char::from(ALPHABET[digit as usize]));
        }
        Self(text)
    }

    /// Accepts exactly what [`EnrollmentCode::generate`] renders, in any letter case and with
    /// surrounding whitespace; nothing else (no separators, no look-alike substitutions).
    pub fn parse(input: &str) -> Result<Self, EnrollmentCodeError> {
        let text = Zeroizing::new(input.trim().to_ascii_lowercase());
        let body = text.strip_prefix(Self::PREFIX).ok_or(EnrollmentCodeError::MissingPrefix)?;
        let found = body.chars().count();
        if found != Self::BODY_LEN {
            return Err(EnrollmentCodeError::WrongLength { found });
        }
        for (i, b) in body.bytes().enumerate() {
            if !ALPHABET.contains(&b) {
                return Err(EnrollmentCodeError::InvalidCharacter { position: Self::PREFIX.len() + i + 1 });
            }
        }
        // 26 digits hold 130 bits; the top digit carries only the top 3 of the 128.
        if body.as_bytes()[0] > b'7' {
            return Err(EnrollmentCodeError::OutOfRange);
        }
        Ok(Self(text))
    }

    /// The code's text, to show once to the admin who issued it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What the domain stores and looks codes up by.
    pub fn hash(&self) -> EnrollmentCodeHash {
        EnrollmentCodeHash::of_canonical(&self.0)
    }
}

impl fmt::Debug for EnrollmentCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EnrollmentCode(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_codes_have_the_documented_shape_and_differ() {
        let a = EnrollmentCode::generate().unwrap();
        let b = EnrollmentCode::generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), EnrollmentCode::LEN);
        assert!(a.expose().starts_with("kgc_"));
        assert_eq!(EnrollmentCode::parse(a.expose()), Ok(a));
    }

    #[test]
    fn encoding_is_big_endian_base32_of_the_128_bits() {
        assert_eq!(EnrollmentCode::from_entropy([0; 16]).expose(), "kgc_00000000000000000000000000");
        assert_eq!(EnrollmentCode::from_entropy([0xff; 16]).expose(), "kgc_7zzzzzzzzzzzzzzzzzzzzzzzzz");
        let mut one = [0; 16];
        one[15] = 33;
        assert_eq!(EnrollmentCode::from_entropy(one).expose(), "kgc_00000000000000000000000011");
    }

    #[test]
    fn parse_is_case_insensitive_and_trims_whitespace() {
        let code = EnrollmentCode::from_entropy(*b"0123456789abcdef");
        let shouted = format!("  {}\n", code.expose().to_uppercase());
        let parsed = EnrollmentCode::parse(&shouted).unwrap();
        assert_eq!(parsed, code);
        assert_eq!(parsed.hash(), code.hash());
    }

    #[test]
    fn parse_refuses_anything_else_precisely() {
        let good = EnrollmentCode::from_entropy(*b"0123456789abcdef");
        let body = &good.expose()[4..];
        assert_eq!(EnrollmentCode::parse(""), Err(EnrollmentCodeError::MissingPrefix));
        assert_eq!(EnrollmentCode::parse(body), Err(EnrollmentCodeError::MissingPrefix));
        assert_eq!(EnrollmentCode::parse("KG-ENRL-AB12"), Err(EnrollmentCodeError::MissingPrefix));
        assert_eq!(
            EnrollmentCode::parse(&format!("kgc_{}", &body[1..])),
            Err(EnrollmentCodeError::WrongLength { found: 25 })
        );
        assert_eq!(
            EnrollmentCode::parse(&format!("kgc_{body}0")),
            Err(EnrollmentCodeError::WrongLength { found: 27 })
        );
        let dashed = format!("kgc_{}-{}", &body[..12], &body[13..]);
        assert_eq!(
            EnrollmentCode::parse(&dashed),
            Err(EnrollmentCodeError::InvalidCharacter { position: 17 })
        );
        assert_eq!(
            EnrollmentCode::parse(&format!("kgc_{}i", &body[..25])),
            Err(EnrollmentCodeError::InvalidCharacter { position: 30 })
        );
        assert_eq!(
            EnrollmentCode::parse(&format!("kgc_{}é", &body[..25])),
            Err(EnrollmentCodeError::InvalidCharacter { position: 30 })
        );
        assert_eq!(
            EnrollmentCode::parse(&format!("kgc_8{}", &body[1..])),
            Err(EnrollmentCodeError::OutOfRange)
        );
    }

    #[test]
    fn debug_redacts_and_hash_is_sha256_of_the_canonical_text() {
        let code = EnrollmentCode::from_entropy([0; 16]);
        assert_eq!(format!("{code:?}"), "EnrollmentCode(<redacted>)");
        assert_eq!(
            code.hash(),
            EnrollmentCodeHash::parse(
                &crate::hash::Sha256Hex::of(b"kgc_00000000000000000000000000").to_string()
            )
            .unwrap()
        );
    }

    proptest! {
        #[test]
        fn every_128_bit_value_round_trips(bytes in any::<[u8; 16]>()) {
            let code = EnrollmentCode::from_entropy(bytes);
            prop_assert_eq!(EnrollmentCode::parse(code.expose()), Ok(code.clone()));
            prop_assert_eq!(EnrollmentCode::parse(&code.expose().to_uppercase()), Ok(code));
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            let _ = EnrollmentCode::parse(&s);
        }
    }
}
