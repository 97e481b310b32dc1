//! The kg-v1 protocol against the original SDK's vectors, sign-then-verify properties, and the
//! malformed inputs the original accepted.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use domain::protocol::{
    Algorithm, BodySha256, CanonicalFields, CanonicalRequest, FieldError, FreshnessWindow, KeyId, KgHeader,
    Nonce, ProjectKey, PublicKeySpki, ReceivedRequest, Rejection, RequestToSign, SignatureP1363,
    SignedHeaders, Timestamp, sign, verify_signature,
};
use p256::ecdsa::{DerSignature, Signature, SigningKey};
use p256::pkcs8::DecodePrivateKey as _;
use proptest::prelude::*;
use serde_json::Value;

const VECTORS: &str = include_str!("data/kg-v1-vectors.json");

struct Vector {
    public_key: String,
    enrolled_key_id: String,
    pkcs8_base64: String,
    method: String,
    path_and_query: String,
    body: String,
    headers: Vec<(String, String)>,
    canonical: String,
    signature_der: String,
}

fn vectors() -> Vec<Vector> {
    let json: Value = serde_json::from_str(VECTORS).unwrap();
    let text = |v: &Value| v.as_str().unwrap().to_owned();
    json["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| Vector {
            public_key: text(&v["enrollment"]["publicKey"]),
            enrolled_key_id: text(&v["enrollment"]["keyId"]),
            pkcs8_base64: text(&v["privateKey"]["pkcs8Base64"]),
            method: text(&v["request"]["method"]),
            path_and_query: text(&v["request"]["pathAndQuery"]),
            body: text(&v["request"]["body"]),
            headers: v["request"]["headers"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), text(v)))
                .collect(),
            canonical: text(&v["canonicalString"]),
            signature_der: text(&v["signatureDerBase64"]),
        })
        .collect()
}

impl Vector {
    fn parse(&self) -> Result<SignedHeaders, Rejection> {
        SignedHeaders::parse_pairs(self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    fn with_header(&self, name: &str, value: &str) -> Result<SignedHeaders, Rejection> {
        SignedHeaders::parse_pairs(
            self.headers.iter().map(|(k, v)| (k.as_str(), if k == name { value } else { v.as_str() })),
        )
    }

    fn header(&self, name: &str) -> &str {
        &self.headers.iter().find(|(k, _)| k == name).unwrap().1
    }

    fn signing_key(&self) -> SigningKey {
        use base64::Engine as _;
        let der = base64::engine::general_purpose::STANDARD.decode(&self.pkcs8_base64).unwrap();
        SigningKey::from_pkcs8_der(&der).unwrap()
    }
}

#[test]
fn both_vectors_verify() {
    let vectors = vectors();
    assert_eq!(vectors.len(), 2);
    for v in &vectors {
        // Through `parse` with a case-folding lookup, as the server will call it.
        let map: HashMap<String, &str> =
            v.headers.iter().map(|(k, val)| (k.to_ascii_lowercase(), val.as_str())).collect();
        let headers = SignedHeaders::parse(|name| map.get(&name.to_ascii_lowercase()).copied()).unwrap();
        assert_eq!(Ok(&headers), v.parse().as_ref());

        let canonical = CanonicalRequest::new(&headers, &v.method, &v.path_and_query).unwrap();
        assert_eq!(canonical.render(), v.canonical);

        assert_eq!(headers.body_sha256(), &BodySha256::of(v.body.as_bytes()));
        assert!(headers.body_sha256().matches(v.body.as_bytes()));
        if v.body.is_empty() {
            assert_eq!(headers.body_sha256().as_str(), BodySha256::EMPTY);
        }

        let public = PublicKeySpki::parse(&v.public_key).unwrap();
        assert_eq!(public.key_id().as_str(), v.enrolled_key_id);
        assert_eq!(public.check_key_id(headers.key_id()), Ok(()));
        assert_eq!(PublicKeySpki::from_verifying_key(v.signing_key().verifying_key()), public);

        let key = public.verifying_key();
        assert_eq!(verify_signature(&key, &canonical, headers.signature()), Ok(()));
        let at_signing_time = headers.timestamp().datetime();
        let request =
            ReceivedRequest { method: &v.method, path_and_query: &v.path_and_query, body: v.body.as_bytes() };
        assert_eq!(headers.verify(&request, &key, at_signing_time, FreshnessWindow::default()), Ok(()));

        // The DER form of the same signature is refused at parse time with its own reason...
        assert_eq!(
            v.with_header("x-keyguard-signature", &v.signature_der),
            Err(Rejection::SignatureNotP1363)
        );
        assert_eq!(SignatureP1363::parse(&v.signature_der), Err(FieldError::DerSignature));
        // ...and really is the same (r, s), so the vectors agree with themselves.
        let der = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.decode(&v.signature_der).unwrap()
        };
        let from_der = Signature::from_der(&der).unwrap();
        assert_eq!(from_der.to_bytes().as_slice(), headers.signature().as_bytes().as_slice());
        assert!(DerSignature::from_bytes(&der).is_ok());
    }
}

#[test]
fn our_signer_reproduces_the_vectors_canonical_strings() {
    for v in vectors() {
        let key = v.signing_key();
        let headers = SignedHeaders::sign(
            &key,
            RequestToSign {
                project_key: ProjectKey::parse(v.header("x-keyguard-api-key")).unwrap(),
                key_id: KeyId::parse(v.header("x-keyguard-key-id")).unwrap(),
                timestamp: Timestamp::parse(v.header("x-keyguard-timestamp")).unwrap(),
                nonce: Nonce::parse(v.header("x-keyguard-nonce")).unwrap(),
                method: &v.method.to_ascii_lowercase(),
                path_and_query: &v.path_and_query,
                body: v.body.as_bytes(),
            },
        )
        .unwrap();
        let sdk = v.parse().unwrap();
        for h in KgHeader::ALL.into_iter().filter(|h| *h != KgHeader::Signature) {
            assert_eq!(headers.value(h), sdk.value(h), "{h}");
        }
        let canonical = CanonicalRequest::new(&headers, &v.method, &v.path_and_query).unwrap();
        assert_eq!(canonical.render(), v.canonical);
        let public = PublicKeySpki::parse(&v.public_key).unwrap();
        assert_eq!(verify_signature(&public.verifying_key(), &canonical, headers.signature()), Ok(()));
    }
}

#[test]
fn malformed_headers_are_refused_with_precise_reasons() {
    let v = &vectors()[0];
    let wrong_len = |expected, actual| FieldError::WrongLength { expected, actual };
    let cases: Vec<(&str, String, Rejection)> = vec![
        // wrong length
        (
            "x-keyguard-nonce",
            "uSJMZOs90jwFgN8s5Ne18A==AAAA".into(),
            Rejection::MalformedNonce(wrong_len(24, 28)),
        ),
        (
            "x-keyguard-key-id",
            "5f28758eb139cb43769d731f803d4d6c00".into(),
            Rejection::MalformedKeyId(wrong_len(32, 34)),
        ),
        // base64url alphabet
        (
            "x-keyguard-body-sha256",
            "5lnwzKt2E-WXIAThT3imAXt09j8YY8CkBFzwfeyk-b0=".into(),
            Rejection::MalformedBodySha256(FieldError::Base64UrlAlphabet),
        ),
        // missing padding
        ("x-keyguard-nonce", "uSJMZOs90jwFgN8s5Ne18A".into(), Rejection::MalformedNonce(wrong_len(24, 22))),
        (
            "x-keyguard-signature",
            v.header("x-keyguard-signature").trim_end_matches('=').into(),
            Rejection::MalformedSignature(wrong_len(88, 86)),
        ),
        // padding moved inside
        (
            "x-keyguard-nonce",
            "uSJMZOs90jwFgN8s5Ne1=A==".into(),
            Rejection::MalformedNonce(FieldError::InvalidBase64),
        ),
        // whitespace
        (
            "x-keyguard-nonce",
            "uSJMZOs90jwF\tN8s5Ne18A==".into(),
            Rejection::MalformedNonce(FieldError::ContainsWhitespaceOrControl),
        ),
        (
            "x-keyguard-timestamp",
            "2025-01-15T10:30:00.000Z ".into(),
            Rejection::MalformedTimestamp(wrong_len(24, 25)),
        ),
        // non-canonical trailing bits
        (
            "x-keyguard-nonce",
            "uSJMZOs90jwFgN8s5Ne18P==".into(),
            Rejection::MalformedNonce(FieldError::NonCanonicalBase64),
        ),
        (
            "x-keyguard-body-sha256",
            "5lnwzKt2E+WXIAThT3imAXt09j8YY8CkBFzwfeyk+b1=".into(),
            Rejection::MalformedBodySha256(FieldError::NonCanonicalBase64),
        ),
        // the separator
        (
            "x-keyguard-api-key",
            "kg_1733668200000_abcdefghij|lmnopqrstuvwxyz012345".into(),
            Rejection::MalformedProjectKey(FieldError::ContainsSeparator),
        ),
        // timestamps
        (
            "x-keyguard-timestamp",
            "2025-01-15T10:30:00Z".into(),
            Rejection::MalformedTimestamp(wrong_len(24, 20)),
        ),
        (
            "x-keyguard-timestamp",
            "2025-01-15T10:30:00.000+00:00".into(),
            Rejection::MalformedTimestamp(wrong_len(24, 29)),
        ),
        (
            "x-keyguard-timestamp",
            "2025-01-15t10:30:00.000z".into(),
            Rejection::MalformedTimestamp(FieldError::TimestampLayout),
        ),
        (
            "x-keyguard-timestamp",
            "2025-13-15T10:30:00.000Z".into(),
            Rejection::MalformedTimestamp(FieldError::TimestampOutOfRange),
        ),
        // algorithm
        (
            "x-keyguard-alg",
            "ECDSA_P256_SHA256_DER".into(),
            Rejection::UnsupportedAlgorithm(FieldError::UnsupportedAlgorithm),
        ),
        // DER instead of P1363
        ("x-keyguard-signature", v.signature_der.clone(), Rejection::SignatureNotP1363),
    ];
    for (name, value, expected) in cases {
        assert_eq!(v.with_header(name, &value), Err(expected.clone()), "{name}: {value:?}");
        assert!(!expected.to_string().is_empty());
    }
}

#[test]
fn missing_and_mixed_case_headers() {
    let v = &vectors()[0];
    for header in KgHeader::ALL {
        let rest =
            v.headers.iter().filter(|(k, _)| k != header.name()).map(|(k, val)| (k.as_str(), val.as_str()));
        let got = SignedHeaders::parse_pairs(rest).unwrap_err();
        assert_eq!(got, Rejection::MissingHeader { header });
        assert_eq!(got.code(), "missing_header");
    }
    let mixed: Vec<(String, &str)> =
        v.headers.iter().map(|(k, val)| (k.replace("x-keyguard", "X-KeyGuard"), val.as_str())).collect();
    let parsed = SignedHeaders::parse_pairs(mixed.iter().map(|(k, val)| (k.as_str(), *val)));
    assert_eq!(parsed, v.parse());
}

// ---------------------------------------------------------------------------------------------
// Properties

fn signing_key() -> impl Strategy<Value = SigningKey> {
    any::<[u8; 32]>().prop_filter_map("not a valid scalar", |b| SigningKey::from_slice(&b).ok())
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec!["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
            .prop_map(str::to_owned),
        "[A-Za-z][A-Za-z0-9!#$%&'*+.^_`~-]{0,15}",
    ]
}

fn path_and_query() -> impl Strategy<Value = String> {
    "/[A-Za-z0-9/._~%!$&'()*+,;=:@-]{0,40}(\\?[A-Za-z0-9/._~%!$&'()*+,;=:@?-]{0,40})?"
}

fn project_key() -> impl Strategy<Value = ProjectKey> {
    // Printable ASCII except space and '|' (0x7c).
    "[!-{}~]{16,80}".prop_map(|s| ProjectKey::parse(&s).unwrap())
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    // 0000-01-01 to 9999-12-31, in milliseconds since the Unix epoch.
    (-62_167_219_200_000i64..253_402_300_800_000)
        .prop_map(|ms| Timestamp::from_datetime(DateTime::<Utc>::from_timestamp_millis(ms).unwrap()).unwrap())
}

fn other_key_id(k: &KeyId) -> KeyId {
    let mut s = k.as_str().to_owned();
    let first = if s.starts_with('0') { "1" } else { "0" };
    s.replace_range(0..1, first);
    KeyId::parse(&s).unwrap()
}

fn other_project_key(k: &ProjectKey) -> ProjectKey {
    let s = k.expose_secret();
    let last = if s.ends_with('a') { "b" } else { "a" };
    ProjectKey::parse(&format!("{}{last}", &s[..s.len() - 1])).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn sign_then_verify_and_every_field_is_bound(
        key in signing_key(),
        project_key in project_key(),
        timestamp in timestamp(),
        nonce in any::<[u8; 16]>(),
        method in method(),
        path in path_and_query(),
        body in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let key_id = PublicKeySpki::from_verifying_key(key.verifying_key()).key_id();
        let headers = SignedHeaders::sign(&key, RequestToSign {
            project_key,
            key_id,
            timestamp,
            nonce: Nonce::from_bytes(nonce),
            method: &method,
            path_and_query: &path,
            body: &body,
        }).unwrap();

        // What the SDK sends, the server parses back to the same thing.
        let reparsed = SignedHeaders::parse_pairs(headers.to_pairs()).unwrap();
        prop_assert_eq!(&reparsed, &headers);

        let vk = key.verifying_key();
        let now = headers.timestamp().datetime();
        let request = ReceivedRequest { method: &method, path_and_query: &path, body: &body };
        prop_assert_eq!(reparsed.verify(&request, vk, now, FreshnessWindow::default()), Ok(()));

        let fields = CanonicalFields::from(&headers);
        let sig = headers.signature();
        let check = |fields: CanonicalFields<'_>, method: &str, path: &str| {
            let canonical = CanonicalRequest::from_fields(fields, method, path).unwrap();
            verify_signature(vk, &canonical, sig)
        };
        prop_assert_eq!(check(fields, &method, &path), Ok(()));
        // RFC 6979: signing the same canonical string again gives the same bytes.
        let canonical = CanonicalRequest::from_fields(fields, &method, &path).unwrap();
        prop_assert_eq!(&sign(&key, &canonical), sig);

        let later = Timestamp::from_datetime(
            now.checked_add_signed(TimeDelta::milliseconds(1))
                .filter(|t| Timestamp::from_datetime(*t).is_ok())
                .unwrap_or(now - TimeDelta::milliseconds(1)),
        ).unwrap();
        prop_assert_eq!(
            check(CanonicalFields { timestamp: &later, ..fields }, &method, &path),
            Err(Rejection::BadSignature)
        );

        let other_method = if method.eq_ignore_ascii_case("GET") { "POST" } else { "GET" };
        prop_assert_eq!(check(fields, other_method, &path), Err(Rejection::BadSignature));

        prop_assert_eq!(check(fields, &method, &format!("{path}x")), Err(Rejection::BadSignature));

        let mut longer = body.clone();
        longer.push(0);
        let other_hash = BodySha256::of(&longer);
        prop_assert_eq!(
            check(CanonicalFields { body_sha256: &other_hash, ..fields }, &method, &path),
            Err(Rejection::BadSignature)
        );
        prop_assert_eq!(
            reparsed.verify(
                &ReceivedRequest { body: &longer, ..request },
                vk,
                now,
                FreshnessWindow::default()
            ),
            Err(Rejection::BodyHashMismatch)
        );

        let mut flipped = nonce;
        flipped[0] ^= 1;
        let other_nonce = Nonce::from_bytes(flipped);
        prop_assert_eq!(
            check(CanonicalFields { nonce: &other_nonce, ..fields }, &method, &path),
            Err(Rejection::BadSignature)
        );

        let other_project = other_project_key(headers.project_key());
        prop_assert_eq!(
            check(CanonicalFields { project_key: &other_project, ..fields }, &method, &path),
            Err(Rejection::BadSignature)
        );

        let other_id = other_key_id(headers.key_id());
        prop_assert_eq!(
            check(CanonicalFields { key_id: &other_id, ..fields }, &method, &path),
            Err(Rejection::BadSignature)
        );
    }

    #[test]
    fn header_parsers_never_panic(s in any::<String>()) {
        let _ = ProjectKey::parse(&s);
        let _ = KeyId::parse(&s);
        let _ = Timestamp::parse(&s);
        let _ = Nonce::parse(&s);
        let _ = BodySha256::parse(&s);
        let _ = Algorithm::parse(&s);
        let _ = SignatureP1363::parse(&s);
        let _ = PublicKeySpki::parse(&s);
    }

    #[test]
    fn near_miss_values_never_panic_and_round_trip(
        s in "[A-Za-z0-9+/=_ |:.TZ-]{0,100}",
    ) {
        if let Ok(t) = Timestamp::parse(&s) {
            prop_assert_eq!(t.as_str(), s.as_str());
            prop_assert_eq!(Timestamp::from_datetime(t.datetime()), Ok(t));
        }
        if let Ok(n) = Nonce::parse(&s) {
            prop_assert_eq!(Nonce::from_bytes(*n.as_bytes()), n);
        }
        if let Ok(b) = BodySha256::parse(&s) {
            prop_assert_eq!(b.as_str(), s.as_str());
        }
        if let Ok(sig) = SignatureP1363::parse(&s) {
            prop_assert_eq!(sig.as_str(), s.as_str());
        }
        if let Ok(k) = ProjectKey::parse(&s) {
            prop_assert!(!k.expose_secret().contains('|'));
        }
    }

    #[test]
    fn timestamp_shaped_text_never_panics(
        s in "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z",
    ) {
        if let Ok(t) = Timestamp::parse(&s) {
            prop_assert_eq!(t.as_str(), s.as_str());
        } else {
            prop_assert_eq!(Timestamp::parse(&s), Err(FieldError::TimestampOutOfRange));
        }
    }

    #[test]
    fn whole_header_sets_never_panic(
        values in prop::collection::vec(any::<String>(), 7),
        method in any::<String>(),
        path in any::<String>(),
    ) {
        let pairs = KgHeader::ALL.iter().zip(&values).map(|(h, v)| (h.name(), v.as_str()));
        if let Ok(headers) = SignedHeaders::parse_pairs(pairs) {
            let _ = CanonicalRequest::new(&headers, &method, &path).map(|c| c.render());
        }
        if let Err(r) = SignedHeaders::parse(|name| {
            KgHeader::from_name(name).and_then(|h| values.get(h as usize)).map(String::as_str)
        }) {
            prop_assert!(!r.code().is_empty());
        }
    }

    #[test]
    fn canonical_fields_never_contain_the_separator(
        method in any::<String>(),
        path in any::<String>(),
    ) {
        let headers = vectors()[0].parse().unwrap();
        if let Ok(c) = CanonicalRequest::new(&headers, &method, &path) {
            prop_assert_eq!(c.render().matches('|').count(), 7);
        }
    }
}
