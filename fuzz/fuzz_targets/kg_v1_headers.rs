//! The kg-v1 header parser and canonical string, fed what an attacker controls: header names and
//! values, the method and the request target.
//!
//! Input: UTF-8 text; the first line is `METHOD TARGET`, every further line `name:value`.
//! Checked beyond "no panic":
//! - each field parser accepts only visible ASCII without the `|` separator, and only one
//!   spelling per value (re-encoding what it parsed gives back the exact text);
//! - a parsed header set round-trips through `to_pairs`;
//! - missing and duplicate headers are reported truthfully;
//! - an accepted canonical string has exactly eight fields, each the value it came from, so no
//!   text can move from one field into another.

#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use domain::protocol::{
    Algorithm, BodySha256, CanonicalFields, CanonicalRequest, KeyId, KgHeader, Nonce, ProjectKey, Rejection,
    SignatureP1363, SignedHeaders, Timestamp, VERSION_TAG,
};
use libfuzzer_sys::fuzz_target;

/// The first vector of the original SDK, for checking the canonical string against a fuzzed
/// method and target when the fuzzed headers do not parse.
const VECTOR: [(&str, &str); 7] = [
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
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut lines = text.split('\n');
    let request_line = lines.next().unwrap_or_default();
    let (method, target) = request_line.split_once(' ').unwrap_or((request_line, ""));
    let pairs: Vec<(&str, &str)> = lines.filter_map(|line| line.split_once(':')).collect();

    for (name, value) in &pairs {
        if let Some(header) = KgHeader::from_name(name) {
            check_field(header, value);
        }
    }

    match SignedHeaders::parse_pairs(pairs.iter().copied()) {
        Ok(headers) => {
            for header in KgHeader::ALL {
                assert_visible(headers.value(header));
            }
            let again = SignedHeaders::parse_pairs(headers.to_pairs()).expect("what parsed parses again");
            assert!(again == headers, "the header set does not round-trip");
            check_canonical(&headers, method, target);
        }
        Err(rejection) => {
            assert!(!rejection.code().is_empty());
            let count = |header: KgHeader| {
                pairs.iter().filter(|(n, _)| KgHeader::from_name(n) == Some(header)).count()
            };
            match rejection {
                Rejection::MissingHeader { header } => assert_eq!(count(header), 0, "{header} is there"),
                Rejection::DuplicateHeader { header } => {
                    assert!(count(header) >= 2, "{header} is not repeated")
                }
                _ => {}
            }
            let vector = SignedHeaders::parse_pairs(VECTOR).expect("the SDK vector parses");
            check_canonical(&vector, method, target);
        }
    }
});

/// Each header's own parser: what it accepts is visible ASCII, and has one spelling only.
fn check_field(header: KgHeader, value: &str) {
    let accepted = match header {
        KgHeader::ApiKey => ProjectKey::parse(value).is_ok_and(|key| {
            assert_eq!(key.expose_secret(), value);
            assert!((ProjectKey::MIN_LEN..=ProjectKey::MAX_LEN).contains(&value.len()));
            true
        }),
        KgHeader::KeyId => KeyId::parse(value).is_ok_and(|id| {
            assert_eq!(id.as_str(), value);
            assert!(
                value.len() == KeyId::LEN && value.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            );
            true
        }),
        KgHeader::Timestamp => Timestamp::parse(value).is_ok_and(|ts| {
            // One text per instant: formatting the parsed instant gives back the exact text.
            let formatted = Timestamp::from_datetime(ts.datetime()).expect("a parsed instant formats");
            assert_eq!(formatted.as_str(), value);
            true
        }),
        KgHeader::Nonce => Nonce::parse(value).is_ok_and(|nonce| {
            assert_eq!(Nonce::from_bytes(*nonce.as_bytes()).as_str(), value, "non-canonical base64");
            true
        }),
        KgHeader::BodySha256 => BodySha256::parse(value).is_ok_and(|hash| {
            assert_eq!(hash.as_str(), value);
            assert_eq!(STANDARD.encode(hash.digest()), value, "non-canonical base64");
            true
        }),
        KgHeader::Alg => Algorithm::parse(value).is_ok_and(|alg| {
            assert_eq!(alg.as_str(), value);
            true
        }),
        KgHeader::Signature => SignatureP1363::parse(value).is_ok_and(|signature| {
            assert_eq!(STANDARD.encode(signature.as_bytes()), value, "non-canonical base64");
            true
        }),
    };
    if accepted {
        assert_visible(value);
    }
}

/// An accepted canonical string splits back into exactly the fields it was built from.
fn check_canonical(headers: &SignedHeaders, method: &str, target: &str) {
    let Ok(canonical) = CanonicalRequest::new(headers, method, target) else { return };
    assert_eq!(canonical.method(), method.to_ascii_uppercase());
    assert_visible(canonical.method());
    assert_visible(canonical.path_and_query());
    assert!(canonical.path_and_query().starts_with('/') && !canonical.path_and_query().contains('#'));
    let rendered = canonical.render();
    let fields: Vec<&str> = rendered.split('|').collect();
    let expected = [
        VERSION_TAG,
        headers.value(KgHeader::Timestamp),
        canonical.method(),
        target,
        headers.value(KgHeader::BodySha256),
        headers.value(KgHeader::Nonce),
        headers.value(KgHeader::ApiKey),
        headers.value(KgHeader::KeyId),
    ];
    assert_eq!(fields, expected, "a field moved in the canonical string");
    // A signer building from the fields renders the same bytes as the verifier.
    let from_fields = CanonicalRequest::from_fields(CanonicalFields::from(headers), method, target)
        .expect("the same method and target are accepted");
    assert_eq!(from_fields.render(), rendered);
}

fn assert_visible(value: &str) {
    assert!(
        value.bytes().all(|b| b.is_ascii_graphic() && b != b'|'),
        "accepted a value with a separator, whitespace, a control or non-ASCII character: {value:?}"
    );
}
