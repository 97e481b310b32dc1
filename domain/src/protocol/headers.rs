//! The seven kg-v1 request headers, parsed all-or-nothing into [`SignedHeaders`].
//!
//! Takes a lookup function rather than an HTTP header map so that the domain stays free of
//! `http`; the server adapts its `HeaderMap` with a one-line closure.

use std::fmt;

use super::fields::{Algorithm, BodySha256, Nonce, ProjectKey, SignatureP1363};
use super::key::KeyId;
use super::rejection::{FieldError, Rejection};
use super::strict_base64::check_visible_ascii;
use super::timestamp::Timestamp;

/// One of the seven signed-request headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KgHeader {
    ApiKey,
    KeyId,
    Timestamp,
    Nonce,
    BodySha256,
    Alg,
    Signature,
}

impl KgHeader {
    /// All seven, in the protocol's table order, which is also the order problems are reported.
    pub const ALL: [Self; 7] = [
        Self::ApiKey,
        Self::KeyId,
        Self::Timestamp,
        Self::Nonce,
        Self::BodySha256,
        Self::Alg,
        Self::Signature,
    ];

    /// The header name, lower-case as the SDK sends it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::ApiKey => "x-keyguard-api-key",
            Self::KeyId => "x-keyguard-key-id",
            Self::Timestamp => "x-keyguard-timestamp",
            Self::Nonce => "x-keyguard-nonce",
            Self::BodySha256 => "x-keyguard-body-sha256",
            Self::Alg => "x-keyguard-alg",
            Self::Signature => "x-keyguard-signature",
        }
    }

    /// Matches a header name case-insensitively, as HTTP requires.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|h| h.name().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for KgHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// All seven headers of a signed request, each already well-formed.
///
/// Well-formed is not authentic: nothing here has been checked against a project, a device, the
/// clock or the body yet (see [`SignedHeaders::verify`]).
#[derive(Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    pub(super) project_key: ProjectKey,
    pub(super) key_id: KeyId,
    pub(super) timestamp: Timestamp,
    pub(super) nonce: Nonce,
    pub(super) body_sha256: BodySha256,
    pub(super) algorithm: Algorithm,
    pub(super) signature: SignatureP1363,
}

impl SignedHeaders {
    /// Parses the headers through `lookup`, which is called with each lower-case header name and
    /// must match names case-insensitively (as `http::HeaderMap::get` does).
    ///
    /// Every missing header is reported before any malformed one, each in table order, so the
    /// audited reason does not depend on lookup order. `lookup` should answer `None` for a value
    /// that is not valid UTF-8; a header sent twice is best refused by the caller, or use
    /// [`SignedHeaders::parse_pairs`], which detects it.
    pub fn parse<'v>(lookup: impl Fn(&str) -> Option<&'v str>) -> Result<Self, Rejection> {
        let mut values = [""; 7];
        for (slot, header) in values.iter_mut().zip(KgHeader::ALL) {
            *slot = lookup(header.name()).ok_or(Rejection::MissingHeader { header })?;
        }
        Self::from_values(values)
    }

    /// Parses from raw `(name, value)` pairs, matching names case-insensitively, ignoring other
    /// headers and refusing a kg-v1 header that appears twice (which value was signed would be
    /// ambiguous).
    pub fn parse_pairs<'v>(pairs: impl IntoIterator<Item = (&'v str, &'v str)>) -> Result<Self, Rejection> {
        let mut found: [Option<&str>; 7] = [None; 7];
        for (name, value) in pairs {
            if let Some(header) = KgHeader::from_name(name) {
                let slot = &mut found[header as usize];
                if slot.is_some() {
                    return Err(Rejection::DuplicateHeader { header });
                }
                *slot = Some(value);
            }
        }
        Self::parse(|name| KgHeader::from_name(name).and_then(|h| found[h as usize]))
    }

    fn from_values(v: [&str; 7]) -> Result<Self, Rejection> {
        let at = |header: KgHeader| v[header as usize];
        let field = |header| move |e| Rejection::malformed(header, e);
        Ok(Self {
            project_key: ProjectKey::parse(at(KgHeader::ApiKey)).map_err(field(KgHeader::ApiKey))?,
            key_id: parse_key_id(at(KgHeader::KeyId)).map_err(field(KgHeader::KeyId))?,
            timestamp: Timestamp::parse(at(KgHeader::Timestamp)).map_err(field(KgHeader::Timestamp))?,
            nonce: Nonce::parse(at(KgHeader::Nonce)).map_err(field(KgHeader::Nonce))?,
            body_sha256: BodySha256::parse(at(KgHeader::BodySha256)).map_err(field(KgHeader::BodySha256))?,
            algorithm: Algorithm::parse(at(KgHeader::Alg)).map_err(field(KgHeader::Alg))?,
            signature: SignatureP1363::parse(at(KgHeader::Signature)).map_err(field(KgHeader::Signature))?,
        })
    }

    pub fn project_key(&self) -> &ProjectKey {
        &self.project_key
    }

    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    pub fn timestamp(&self) -> &Timestamp {
        &self.timestamp
    }

    pub fn nonce(&self) -> &Nonce {
        &self.nonce
    }

    pub fn body_sha256(&self) -> &BodySha256 {
        &self.body_sha256
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn signature(&self) -> &SignatureP1363 {
        &self.signature
    }

    /// The `(name, value)` pairs to put on the wire, in table order. Holds the project key.
    pub fn to_pairs(&self) -> [(&'static str, &str); 7] {
        KgHeader::ALL.map(|h| (h.name(), self.value(h)))
    }

    /// The value of one header, exactly as sent.
    pub fn value(&self, header: KgHeader) -> &str {
        match header {
            KgHeader::ApiKey => self.project_key.expose_secret(),
            KgHeader::KeyId => self.key_id.as_str(),
            KgHeader::Timestamp => self.timestamp.as_str(),
            KgHeader::Nonce => self.nonce.as_str(),
            KgHeader::BodySha256 => self.body_sha256.as_str(),
            KgHeader::Alg => self.algorithm.as_str(),
            KgHeader::Signature => self.signature.as_str(),
        }
    }
}

impl fmt::Debug for SignedHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedHeaders")
            .field("project_key", &self.project_key)
            .field("key_id", &self.key_id)
            .field("timestamp", &self.timestamp)
            .field("nonce", &self.nonce)
            .field("body_sha256", &self.body_sha256)
            .field("algorithm", &self.algorithm)
            .field("signature", &self.signature)
            .finish()
    }
}

/// [`KeyId::parse`] with the precise reason, for the audit trail.
fn parse_key_id(s: &str) -> Result<KeyId, FieldError> {
    if s.len() != KeyId::LEN {
        return Err(FieldError::WrongLength { expected: KeyId::LEN, actual: s.len() });
    }
    check_visible_ascii(s)?;
    KeyId::parse(s).map_err(|_| FieldError::NotLowercaseHex)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn vector() -> Vec<(&'static str, &'static str)> {
        vec![
            ("x-keyguard-api-key", "kg_1733668200000_abcdefghijklmnopqrstuvwxyz012345"),
            ("x-keyguard-key-id", "5f28758eb139cb43769d731f803d4d6c"),
            ("x-keyguard-timestamp", "2025-01-15T10:30:00.000Z"),
            ("x-keyguard-nonce", "uSJMZOs90jwFgN8s5Ne18A=="),
            ("x-keyguard-body-sha256", "5lnwzKt2E+WXIAThT3imAXt09j8YY8CkBFzwfeyk+b0="),
            ("x-keyguard-alg", "ECDSA_P256_SHA256_P1363"),
            (
                "x-keyguard-signature",
                "u2FOMvppkssedXks10+53VxpguncIhfVmyoi/7cQhKcwLyv6HCQ8Qrwj8vDiNauaTkxJ1dxFu8EF38cyKjpQGA==",
            ),
        ]
    }

    fn with(name: &str, value: &'static str) -> Vec<(&'static str, &'static str)> {
        vector().into_iter().map(|(n, v)| (n, if n == name { value } else { v })).collect()
    }

    fn parse(pairs: &[(&str, &str)]) -> Result<SignedHeaders, Rejection> {
        SignedHeaders::parse_pairs(pairs.iter().copied())
    }

    #[test]
    fn parses_the_vector_and_gives_back_the_exact_values() {
        let headers = parse(&vector()).unwrap();
        assert_eq!(headers.to_pairs().to_vec(), vector());
        assert_eq!(headers.algorithm(), Algorithm::EcdsaP256Sha256P1363);
        assert!(!format!("{headers:?}").contains("abcdefgh"));
    }

    #[test]
    fn header_names_are_case_insensitive() {
        let shouted: Vec<(String, &str)> = vector()
            .into_iter()
            .enumerate()
            .map(|(i, (n, v))| {
                let name = if i % 2 == 0 {
                    n.to_ascii_uppercase()
                } else {
                    n.replace("keyguard", "KeyGuard").replacen('x', "X", 1)
                };
                (name, v)
            })
            .collect();
        let pairs = shouted.iter().map(|(n, v)| (n.as_str(), *v));
        assert_eq!(SignedHeaders::parse_pairs(pairs).unwrap(), parse(&vector()).unwrap());

        // Through `parse`, with a lookup that folds case like an HTTP header map.
        let map: HashMap<String, &str> = shouted.iter().map(|(n, v)| (n.to_ascii_lowercase(), *v)).collect();
        let headers = SignedHeaders::parse(|name| map.get(&name.to_ascii_lowercase()).copied());
        assert_eq!(headers.unwrap(), parse(&vector()).unwrap());
    }

    #[test]
    fn every_missing_header_is_named() {
        for header in KgHeader::ALL {
            let pairs: Vec<_> = vector().into_iter().filter(|(n, _)| *n != header.name()).collect();
            assert_eq!(parse(&pairs), Err(Rejection::MissingHeader { header }));
        }
        assert_eq!(parse(&[]), Err(Rejection::MissingHeader { header: KgHeader::ApiKey }));
    }

    #[test]
    fn missing_is_reported_before_malformed() {
        let mut pairs = with("x-keyguard-api-key", "short");
        pairs.retain(|(n, _)| *n != "x-keyguard-signature");
        assert_eq!(parse(&pairs), Err(Rejection::MissingHeader { header: KgHeader::Signature }));
    }

    #[test]
    fn duplicate_headers_are_refused() {
        let mut pairs = vector();
        pairs.push(("X-Keyguard-Nonce", "5IN7DidEPTd2Ek3pqjlaAg=="));
        assert_eq!(parse(&pairs), Err(Rejection::DuplicateHeader { header: KgHeader::Nonce }));
    }

    #[test]
    fn unrelated_headers_are_ignored() {
        let mut pairs = vector();
        pairs.push(("content-type", "application/json"));
        pairs.push(("x-keyguard-something", "else"));
        assert!(parse(&pairs).is_ok());
    }

    #[test]
    fn each_malformed_header_has_its_own_code() {
        let cases = [
            ("x-keyguard-api-key", "kg|1733668200000_abcdef", "malformed_project_key"),
            ("x-keyguard-key-id", "5F28758EB139CB43769D731F803D4D6C", "malformed_key_id"),
            ("x-keyguard-key-id", "kg_key_test_abc123", "malformed_key_id"),
            ("x-keyguard-timestamp", "2025-01-15T10:30:00Z", "malformed_timestamp"),
            ("x-keyguard-nonce", "uSJMZOs90jwFgN8s5Ne18A", "malformed_nonce"),
            ("x-keyguard-body-sha256", "e3b0c44298fc1c149afbf4c8996fb924", "malformed_body_sha256"),
            ("x-keyguard-alg", "ES256", "unsupported_algorithm"),
            (
                "x-keyguard-signature",
                "MEUCIQC7YU4y+mmSyx51eSzXT7ndXGmC6dwiF9WbKiL/txCEpwIgMC8r+hwkPEK8I/Lw4jWrmk5MSdXcRbvBBd/HMio6UBg=",
                "signature_not_p1363",
            ),
            ("x-keyguard-signature", "c2lnbmF0dXJl", "malformed_signature"),
        ];
        for (name, value, code) in cases {
            let got = parse(&with(name, value)).unwrap_err();
            assert_eq!(got.code(), code, "{name}: {value}: {got}");
        }
    }

    #[test]
    fn key_id_reasons_are_precise() {
        assert_eq!(
            parse(&with("x-keyguard-key-id", "5f28758eb139cb43769d731f803d4d6")),
            Err(Rejection::MalformedKeyId(FieldError::WrongLength { expected: 32, actual: 31 }))
        );
        assert_eq!(
            parse(&with("x-keyguard-key-id", "5f28758eb139cb43|69d731f803d4d6c")),
            Err(Rejection::MalformedKeyId(FieldError::ContainsSeparator))
        );
        assert_eq!(
            parse(&with("x-keyguard-key-id", "5F28758EB139CB43769D731F803D4D6C")),
            Err(Rejection::MalformedKeyId(FieldError::NotLowercaseHex))
        );
    }

    #[test]
    fn a_separator_in_any_header_is_refused() {
        let cases = [
            ("x-keyguard-api-key", "kg_1733668200000_abc|defghijklmnopqrstuvwxyz012345"),
            ("x-keyguard-key-id", "5f28758eb139cb43769d731f803d4d6|"),
            ("x-keyguard-timestamp", "2025-01-15T10:30:00.000|"),
            ("x-keyguard-nonce", "uSJMZOs90jwFgN8s5Ne18A|="),
            ("x-keyguard-body-sha256", "5lnwzKt2E+WXIAThT3imAXt09j8YY8CkBFzwfeyk+b|="),
            ("x-keyguard-alg", "ECDSA_P256_SHA256_P1363|"),
            (
                "x-keyguard-signature",
                "u2FOMvppkssedXks10+53VxpguncIhfVmyoi/7cQhKcwLyv6HCQ8Qrwj8vDiNauaTkxJ1dxFu8EF38cyKjpQG|==",
            ),
        ];
        for (name, value) in cases {
            let header = KgHeader::from_name(name).unwrap();
            assert_eq!(
                parse(&with(name, value)),
                Err(Rejection::malformed(header, FieldError::ContainsSeparator)),
                "{name}"
            );
        }
    }
}
