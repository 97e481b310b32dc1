//! Why a kg-v1 request was refused: one enum for every check from header parsing to replay, each
//! with a stable `snake_case` code for the audit trail.
//!
//! The client never sees these: every rejection is answered with the same generic 401 so that
//! nobody can probe which check failed. The precise reason is for the audit trail only, which is
//! why the messages are specific but never echo the project key.

use super::headers::KgHeader;

/// What is wrong with a single header value (or the request method / target).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("is {actual} characters long, expected exactly {expected}")]
    WrongLength { expected: usize, actual: usize },
    #[error("is {actual} characters long, expected {min} to {max}")]
    LengthOutOfRange { min: usize, max: usize, actual: usize },
    #[error("contains the canonical separator '|'")]
    ContainsSeparator,
    #[error("contains whitespace or a control character")]
    ContainsWhitespaceOrControl,
    #[error("contains a character outside printable ASCII")]
    NotPrintableAscii,
    #[error("uses the base64url alphabet ('-' or '_'); standard base64 is required")]
    Base64UrlAlphabet,
    #[error("is not standard base64 with canonical '=' padding")]
    InvalidBase64,
    #[error("has non-zero trailing bits (non-canonical base64)")]
    NonCanonicalBase64,
    #[error("decodes to {actual} bytes, expected {expected}")]
    WrongDecodedLength { expected: usize, actual: usize },
    #[error("is not lowercase hexadecimal")]
    NotLowercaseHex,
    #[error("does not have the layout YYYY-MM-DDTHH:MM:SS.sssZ (UTC, milliseconds)")]
    TimestampLayout,
    #[error("is not a real calendar date and time")]
    TimestampOutOfRange,
    #[error("is not ECDSA_P256_SHA256_P1363")]
    UnsupportedAlgorithm,
    #[error("is an ASN.1 DER signature; kg-v1 requires raw IEEE P1363 r||s (64 bytes)")]
    DerSignature,
    #[error("is not an HTTP method token")]
    NotAMethodToken,
    #[error("is not origin-form (must start with '/' and carry no fragment)")]
    NotOriginForm,
}

/// Every reason a signed request can be refused, from header parsing to the replay check.
///
/// The later variants (`UnknownProjectKey` onwards) are raised by the server once it has looked
/// things up; they live here so that one type and one set of codes covers the whole pipeline.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("missing header {header}")]
    MissingHeader { header: KgHeader },
    #[error("header {header} was sent more than once")]
    DuplicateHeader { header: KgHeader },
    #[error("malformed x-keyguard-api-key: the value {0}")]
    MalformedProjectKey(FieldError),
    #[error("malformed x-keyguard-key-id: the value {0}")]
    MalformedKeyId(FieldError),
    #[error("malformed x-keyguard-timestamp: the value {0}")]
    MalformedTimestamp(FieldError),
    #[error("malformed x-keyguard-nonce: the value {0}")]
    MalformedNonce(FieldError),
    #[error("malformed x-keyguard-body-sha256: the value {0}")]
    MalformedBodySha256(FieldError),
    #[error("unsupported x-keyguard-alg: the value {0}")]
    UnsupportedAlgorithm(FieldError),
    #[error("x-keyguard-signature is DER-encoded; kg-v1 requires raw IEEE P1363 r||s")]
    SignatureNotP1363,
    #[error("malformed x-keyguard-signature: the value {0}")]
    MalformedSignature(FieldError),
    #[error("request method {0}")]
    MalformedMethod(FieldError),
    #[error("request target {0}")]
    MalformedPath(FieldError),
    #[error("no project has this API key")]
    UnknownProjectKey,
    #[error("the project API key is not active")]
    ProjectKeyInactive,
    #[error("the project API key has expired")]
    ProjectKeyExpired,
    #[error("no device with this keyId in the project")]
    UnknownDevice,
    #[error("the device is not active")]
    DeviceNotActive,
    #[error("timestamp is {skew_ms} ms from server time (positive: in the past), outside the window")]
    TimestampOutsideWindow { skew_ms: i64 },
    #[error("the body does not hash to x-keyguard-body-sha256")]
    BodyHashMismatch,
    #[error("the signature does not verify over the canonical string")]
    BadSignature,
    #[error("the nonce was already used by this device")]
    ReplayedNonce,
    #[error("the client IP address is not allowed by the policy")]
    IpNotAllowed,
}

impl Rejection {
    /// The stable audit code. Never change one once released: dashboards translate them.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingHeader { .. } => "missing_header",
            Self::DuplicateHeader { .. } => "duplicate_header",
            Self::MalformedProjectKey(_) => "malformed_project_key",
            Self::MalformedKeyId(_) => "malformed_key_id",
            Self::MalformedTimestamp(_) => "malformed_timestamp",
            Self::MalformedNonce(_) => "malformed_nonce",
            Self::MalformedBodySha256(_) => "malformed_body_sha256",
            Self::UnsupportedAlgorithm(_) => "unsupported_algorithm",
            Self::SignatureNotP1363 => "signature_not_p1363",
            Self::MalformedSignature(_) => "malformed_signature",
            Self::MalformedMethod(_) => "malformed_method",
            Self::MalformedPath(_) => "malformed_path",
            Self::UnknownProjectKey => "unknown_project_key",
            Self::ProjectKeyInactive => "project_key_inactive",
            Self::ProjectKeyExpired => "project_key_expired",
            Self::UnknownDevice => "unknown_device",
            Self::DeviceNotActive => "device_not_active",
            Self::TimestampOutsideWindow { .. } => "timestamp_outside_window",
            Self::BodyHashMismatch => "body_hash_mismatch",
            Self::BadSignature => "bad_signature",
            Self::ReplayedNonce => "replayed_nonce",
            Self::IpNotAllowed => "ip_not_allowed",
        }
    }

    /// Attributes a value error to the header it came from.
    pub(crate) fn malformed(header: KgHeader, error: FieldError) -> Self {
        match header {
            KgHeader::ApiKey => Self::MalformedProjectKey(error),
            KgHeader::KeyId => Self::MalformedKeyId(error),
            KgHeader::Timestamp => Self::MalformedTimestamp(error),
            KgHeader::Nonce => Self::MalformedNonce(error),
            KgHeader::BodySha256 => Self::MalformedBodySha256(error),
            KgHeader::Alg => Self::UnsupportedAlgorithm(error),
            KgHeader::Signature if error == FieldError::DerSignature => Self::SignatureNotP1363,
            KgHeader::Signature => Self::MalformedSignature(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case() {
        let all = [
            Rejection::MissingHeader { header: KgHeader::Nonce },
            Rejection::DuplicateHeader { header: KgHeader::Nonce },
            Rejection::MalformedProjectKey(FieldError::ContainsSeparator),
            Rejection::MalformedKeyId(FieldError::ContainsSeparator),
            Rejection::MalformedTimestamp(FieldError::ContainsSeparator),
            Rejection::MalformedNonce(FieldError::ContainsSeparator),
            Rejection::MalformedBodySha256(FieldError::ContainsSeparator),
            Rejection::UnsupportedAlgorithm(FieldError::UnsupportedAlgorithm),
            Rejection::SignatureNotP1363,
            Rejection::MalformedSignature(FieldError::ContainsSeparator),
            Rejection::MalformedMethod(FieldError::ContainsSeparator),
            Rejection::MalformedPath(FieldError::ContainsSeparator),
            Rejection::UnknownProjectKey,
            Rejection::ProjectKeyInactive,
            Rejection::ProjectKeyExpired,
            Rejection::UnknownDevice,
            Rejection::DeviceNotActive,
            Rejection::TimestampOutsideWindow { skew_ms: 1 },
            Rejection::BodyHashMismatch,
            Rejection::BadSignature,
            Rejection::ReplayedNonce,
            Rejection::IpNotAllowed,
        ];
        let mut codes: Vec<_> = all.iter().map(Rejection::code).collect();
        assert!(
            codes
                .iter()
                .all(|c| { c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') })
        );
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
    }

    #[test]
    fn messages_name_the_header_and_the_reason() {
        let r = Rejection::MalformedNonce(FieldError::WrongLength { expected: 24, actual: 22 });
        assert_eq!(
            r.to_string(),
            "malformed x-keyguard-nonce: the value is 22 characters long, expected exactly 24"
        );
        assert_eq!(
            Rejection::MissingHeader { header: KgHeader::Alg }.to_string(),
            "missing header x-keyguard-alg"
        );
    }
}
