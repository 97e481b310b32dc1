//! The kg-v1 canonical string: the exact bytes a device signs.
//!
//! `kg-v1|{timestamp}|{METHOD}|{pathAndQuery}|{bodySha256}|{nonce}|{apiKey}|{keyId}`. There is
//! no escaping, so the only defence against shifting text between fields is that no field can
//! contain `|`; the header newtypes guarantee it for the six header values, and this module does
//! for the method and request target.

use std::fmt;

use super::fields::{BodySha256, Nonce, ProjectKey};
use super::headers::SignedHeaders;
use super::key::KeyId;
use super::rejection::{FieldError, Rejection};
use super::strict_base64::check_visible_ascii;
use super::timestamp::Timestamp;

/// The protocol tag that opens every canonical string.
pub const VERSION_TAG: &str = "kg-v1";

/// Longest accepted method. Real methods are short; this only bounds what reaches the audit log.
pub const MAX_METHOD_LEN: usize = 32;

/// The header values that enter the canonical string (all but the algorithm and signature).
#[derive(Clone, Copy)]
pub struct CanonicalFields<'a> {
    pub project_key: &'a ProjectKey,
    pub key_id: &'a KeyId,
    pub timestamp: &'a Timestamp,
    pub nonce: &'a Nonce,
    pub body_sha256: &'a BodySha256,
}

impl<'a> From<&'a SignedHeaders> for CanonicalFields<'a> {
    fn from(h: &'a SignedHeaders) -> Self {
        Self {
            project_key: &h.project_key,
            key_id: &h.key_id,
            timestamp: &h.timestamp,
            nonce: &h.nonce,
            body_sha256: &h.body_sha256,
        }
    }
}

/// A request reduced to what is signed, with the method and request target validated.
#[derive(Clone)]
pub struct CanonicalRequest<'a> {
    fields: CanonicalFields<'a>,
    method: String,
    path_and_query: &'a str,
}

impl<'a> CanonicalRequest<'a> {
    /// For the verifier: the received headers plus the method and origin-form request target
    /// exactly as the server received them (including the public `/api/v1` prefix and query).
    pub fn new(headers: &'a SignedHeaders, method: &str, path_and_query: &'a str) -> Result<Self, Rejection> {
        Self::from_fields(headers.into(), method, path_and_query)
    }

    /// For signers, which have the header values before they have a signature.
    pub fn from_fields(
        fields: CanonicalFields<'a>,
        method: &str,
        path_and_query: &'a str,
    ) -> Result<Self, Rejection> {
        Ok(Self {
            fields,
            method: canonical_method(method).map_err(Rejection::MalformedMethod)?,
            path_and_query: check_path_and_query(path_and_query).map_err(Rejection::MalformedPath)?,
        })
    }

    /// The upper-cased method as signed.
    pub fn method(&self) -> &str {
        &self.method
    }

    pub fn path_and_query(&self) -> &str {
        self.path_and_query
    }

    pub fn fields(&self) -> CanonicalFields<'a> {
        self.fields
    }

    /// The canonical string. It contains the project key, so it is deliberately not `Display`:
    /// it must never reach a log by accident.
    pub fn render(&self) -> String {
        let f = &self.fields;
        [
            VERSION_TAG,
            f.timestamp.as_str(),
            &self.method,
            self.path_and_query,
            f.body_sha256.as_str(),
            f.nonce.as_str(),
            f.project_key.expose_secret(),
            f.key_id.as_str(),
        ]
        .join("|")
    }
}

impl fmt::Debug for CanonicalRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CanonicalRequest")
            .field("timestamp", self.fields.timestamp)
            .field("method", &self.method)
            .field("path_and_query", &self.path_and_query)
            .field("body_sha256", self.fields.body_sha256)
            .field("nonce", self.fields.nonce)
            .field("project_key", self.fields.project_key)
            .field("key_id", self.fields.key_id)
            .finish()
    }
}

/// Upper-cases an HTTP method token (RFC 9110 `tchar`s, minus the `|` that `tchar` allows).
fn canonical_method(method: &str) -> Result<String, FieldError> {
    if !(1..=MAX_METHOD_LEN).contains(&method.len()) {
        return Err(FieldError::LengthOutOfRange { min: 1, max: MAX_METHOD_LEN, actual: method.len() });
    }
    check_visible_ascii(method)?;
    let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`~".contains(&b);
    if !method.bytes().all(is_tchar) {
        return Err(FieldError::NotAMethodToken);
    }
    Ok(method.to_ascii_uppercase())
}

/// Accepts an origin-form request target: starts with `/`, visible ASCII, no fragment. The SDK
/// signs a path it was given verbatim, and the server sees what hyper received; both are this.
fn check_path_and_query(target: &str) -> Result<&str, FieldError> {
    check_visible_ascii(target)?;
    if !target.starts_with('/') || target.contains('#') {
        return Err(FieldError::NotOriginForm);
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANONICAL: &str = "kg-v1|2025-01-15T10:30:00.000Z|POST|/api/v1/keyguard/verify-test|5lnwzKt2E+WXIAThT3imAXt09j8YY8CkBFzwfeyk+b0=|uSJMZOs90jwFgN8s5Ne18A==|kg_1733668200000_abcdefghijklmnopqrstuvwxyz012345|5f28758eb139cb43769d731f803d4d6c";

    struct Owned {
        project_key: ProjectKey,
        key_id: KeyId,
        timestamp: Timestamp,
        nonce: Nonce,
        body_sha256: BodySha256,
    }

    impl Owned {
        fn vector() -> Self {
            Self {
                project_key: ProjectKey::parse("kg_1733668200000_abcdefghijklmnopqrstuvwxyz012345").unwrap(),
                key_id: KeyId::parse("5f28758eb139cb43769d731f803d4d6c").unwrap(),
                timestamp: Timestamp::parse("2025-01-15T10:30:00.000Z").unwrap(),
                nonce: Nonce::parse("uSJMZOs90jwFgN8s5Ne18A==").unwrap(),
                body_sha256: BodySha256::parse("5lnwzKt2E+WXIAThT3imAXt09j8YY8CkBFzwfeyk+b0=").unwrap(),
            }
        }

        fn fields(&self) -> CanonicalFields<'_> {
            CanonicalFields {
                project_key: &self.project_key,
                key_id: &self.key_id,
                timestamp: &self.timestamp,
                nonce: &self.nonce,
                body_sha256: &self.body_sha256,
            }
        }
    }

    #[test]
    fn renders_the_vector_and_upper_cases_the_method() {
        let owned = Owned::vector();
        for method in ["POST", "post", "Post"] {
            let c = CanonicalRequest::from_fields(owned.fields(), method, "/api/v1/keyguard/verify-test")
                .unwrap();
            assert_eq!(c.render(), CANONICAL);
        }
    }

    #[test]
    fn debug_does_not_show_the_project_key() {
        let owned = Owned::vector();
        let c = CanonicalRequest::from_fields(owned.fields(), "GET", "/").unwrap();
        assert!(!format!("{c:?}").contains("abcdefgh"));
    }

    #[test]
    fn refuses_methods_that_could_shift_fields() {
        let owned = Owned::vector();
        let method =
            |m| CanonicalRequest::from_fields(owned.fields(), m, "/").map(|c| c.render()).unwrap_err();
        assert_eq!(method("PO|ST"), Rejection::MalformedMethod(FieldError::ContainsSeparator));
        assert_eq!(method("POST "), Rejection::MalformedMethod(FieldError::ContainsWhitespaceOrControl));
        assert_eq!(method("GET\r\n"), Rejection::MalformedMethod(FieldError::ContainsWhitespaceOrControl));
        assert_eq!(method("GE(T"), Rejection::MalformedMethod(FieldError::NotAMethodToken));
        assert_eq!(method("PÖST"), Rejection::MalformedMethod(FieldError::NotPrintableAscii));
        assert_eq!(
            method(""),
            Rejection::MalformedMethod(FieldError::LengthOutOfRange { min: 1, max: 32, actual: 0 })
        );
    }

    #[test]
    fn refuses_targets_that_are_not_origin_form() {
        let owned = Owned::vector();
        let target =
            |p| CanonicalRequest::from_fields(owned.fields(), "GET", p).map(|c| c.render()).unwrap_err();
        for (bad, reason) in [
            ("", FieldError::NotOriginForm),
            ("api/v1/proxy", FieldError::NotOriginForm),
            ("*", FieldError::NotOriginForm),
            ("https://api.openai.com/v1/chat/completions", FieldError::NotOriginForm),
            ("/api/v1/proxy#frag", FieldError::NotOriginForm),
            ("/api/v1/proxy?a=b|c", FieldError::ContainsSeparator),
            ("/api/v1/proxy?a=b c", FieldError::ContainsWhitespaceOrControl),
            ("/api/v1/proxy\n", FieldError::ContainsWhitespaceOrControl),
            ("/api/v1/prøxy", FieldError::NotPrintableAscii),
        ] {
            assert_eq!(target(bad), Rejection::MalformedPath(reason), "{bad:?}");
        }
        assert!(CanonicalRequest::from_fields(owned.fields(), "GET", "/a%7Cb?x=%20").is_ok());
    }
}
