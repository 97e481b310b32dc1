//! Strict standard base64 for header values: one spelling per byte string, nothing lenient.
//!
//! The original server decoded with Node's `Buffer.from(s, 'base64')`, which also took base64url,
//! skipped junk and ignored trailing bits, so several header texts meant the same bytes. Here a
//! value is accepted only if re-encoding the decoded bytes gives back the exact text.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::rejection::FieldError;

/// Length of the padded standard base64 text of `bytes` bytes.
pub(crate) const fn encoded_len(bytes: usize) -> usize {
    bytes.div_ceil(3) * 4
}

/// Rejects the characters no kg-v1 header value may hold: the canonical separator `|`,
/// whitespace and control characters, and anything outside ASCII. Checked in that order so the
/// most telling reason wins.
pub(crate) fn check_visible_ascii(s: &str) -> Result<(), FieldError> {
    if s.contains('|') {
        Err(FieldError::ContainsSeparator)
    } else if s.bytes().any(|b| b <= b' ' || b == 0x7f) {
        Err(FieldError::ContainsWhitespaceOrControl)
    } else if !s.is_ascii() {
        Err(FieldError::NotPrintableAscii)
    } else {
        Ok(())
    }
}

/// Decodes strict standard base64 with canonical padding. Callers bound the length first.
pub(crate) fn decode(s: &str) -> Result<Vec<u8>, FieldError> {
    check_visible_ascii(s)?;
    if s.contains(['-', '_']) {
        return Err(FieldError::Base64UrlAlphabet);
    }
    let bytes = STANDARD.decode(s).map_err(|e| match e {
        base64::DecodeError::InvalidLastSymbol(..) => FieldError::NonCanonicalBase64,
        _ => FieldError::InvalidBase64,
    })?;
    // The engine is configured strictly already; this keeps the guarantee independent of its
    // configuration.
    if STANDARD.encode(&bytes) != s {
        return Err(FieldError::NonCanonicalBase64);
    }
    Ok(bytes)
}

/// Decodes strict standard base64 text of exactly `N` bytes.
pub(crate) fn decode_exact<const N: usize>(s: &str) -> Result<[u8; N], FieldError> {
    let expected = encoded_len(N);
    if s.len() != expected {
        return Err(FieldError::WrongLength { expected, actual: s.len() });
    }
    let bytes = decode(s)?;
    <[u8; N]>::try_from(bytes.as_slice())
        .map_err(|_| FieldError::WrongDecodedLength { expected: N, actual: bytes.len() })
}

pub(crate) fn encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_the_canonical_spelling() {
        assert_eq!(
            decode_exact::<16>("uSJMZOs90jwFgN8s5Ne18A=="),
            Ok([
                0xb9, 0x22, 0x4c, 0x64, 0xeb, 0x3d, 0xd2, 0x3c, 0x05, 0x80, 0xdf, 0x2c, 0xe4, 0xd7, 0xb5,
                0xf0
            ])
        );
        // 'B' leaves a set bit in the discarded tail of the last sextet.
        assert_eq!(decode_exact::<16>("uSJMZOs90jwFgN8s5Ne18B=="), Err(FieldError::NonCanonicalBase64));
    }

    #[test]
    fn names_the_precise_defect() {
        assert_eq!(
            decode_exact::<16>("uSJMZOs90jwFgN8s5Ne18A"),
            Err(FieldError::WrongLength { expected: 24, actual: 22 })
        );
        assert_eq!(decode_exact::<16>("uSJMZOs90jwFgN8s5Ne1-A=="), Err(FieldError::Base64UrlAlphabet));
        assert_eq!(
            decode_exact::<16>("uSJMZOs90jwF N8s5Ne18A=="),
            Err(FieldError::ContainsWhitespaceOrControl)
        );
        assert_eq!(decode_exact::<16>("uSJMZOs90jwF|N8s5Ne18A=="), Err(FieldError::ContainsSeparator));
        assert_eq!(decode_exact::<16>("uSJMZOs90jwF*N8s5Ne18A=="), Err(FieldError::InvalidBase64));
        assert_eq!(decode_exact::<16>("uSJMZOs90jwFgN8s5Ne18A=A"), Err(FieldError::InvalidBase64));
        assert_eq!(decode_exact::<16>("uSJMZOs90jwFgN8s5Né8A=="), Err(FieldError::NotPrintableAscii));
        // Right text length, wrong byte count: 24 characters with one '=' hold 17 bytes.
        assert_eq!(
            decode_exact::<16>("uSJMZOs90jwFgN8s5Ne18AA="),
            Err(FieldError::WrongDecodedLength { expected: 16, actual: 17 })
        );
    }
}
