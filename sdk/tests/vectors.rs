//! Interop with the TypeScript SDK: the SDK reproduces the vectors' keyId, body hash, headers and
//! canonical string, the vectors' own signatures verify over the canonical string it builds, and
//! what it signs verifies with the server's verifier (`domain::protocol`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, TimeDelta, Utc};
use keyguard_sdk::protocol::{
    CanonicalRequest, FreshnessWindow, KgHeader, Nonce, PublicKeySpki, ReceivedRequest, Rejection,
    SignatureP1363, SignedHeaders, Timestamp, verify_signature,
};
use keyguard_sdk::{DeviceKey, EnrollmentPayload, Fingerprint, Signer};
use serde_json::Value;

/// The same file as `shared/testdata/kg-v1-vectors.json`, kept in the repository.
const VECTORS: &str = include_str!("../../domain/tests/data/kg-v1-vectors.json");

struct Vector {
    json: Value,
}

impl Vector {
    fn all() -> Vec<Self> {
        let json: Value = serde_json::from_str(VECTORS).unwrap();
        let vectors: Vec<Self> =
            json["vectors"].as_array().unwrap().iter().map(|v| Self { json: v.clone() }).collect();
        assert_eq!(vectors.len(), 2);
        vectors
    }

    fn text(&self, pointer: &str) -> &str {
        self.json.pointer(pointer).and_then(Value::as_str).unwrap_or_else(|| panic!("no {pointer}"))
    }

    fn header(&self, header: KgHeader) -> &str {
        self.text(&format!("/request/headers/{}", header.name()))
    }

    fn key(&self) -> DeviceKey {
        let der = STANDARD.decode(self.text("/privateKey/pkcs8Base64")).unwrap();
        DeviceKey::from_pkcs8(&der).expect("a PKCS#8 P-256 key")
    }

    fn signer(&self) -> Signer {
        Signer::new(self.key(), self.header(KgHeader::ApiKey)).unwrap()
    }

    fn method(&self) -> &str {
        self.text("/request/method")
    }

    fn path(&self) -> &str {
        self.text("/request/pathAndQuery")
    }

    fn body(&self) -> &[u8] {
        self.text("/request/body").as_bytes()
    }

    fn timestamp(&self) -> Timestamp {
        Timestamp::parse(self.header(KgHeader::Timestamp)).unwrap()
    }

    fn signed_by_sdk(&self) -> keyguard_sdk::SignedRequest {
        let nonce = Nonce::parse(self.header(KgHeader::Nonce)).unwrap();
        self.signer().sign_at(self.timestamp(), nonce, self.method(), self.path(), self.body()).unwrap()
    }

    fn received(&self) -> ReceivedRequest<'_> {
        ReceivedRequest { method: self.method(), path_and_query: self.path(), body: self.body() }
    }

    fn now(&self) -> DateTime<Utc> {
        self.timestamp().datetime() + TimeDelta::seconds(1)
    }
}

#[test]
fn key_id_and_public_key_match_the_vectors() {
    for v in Vector::all() {
        let key = v.key();
        assert_eq!(key.public_key().as_str(), v.text("/enrollment/publicKey"));
        assert_eq!(key.key_id().as_str(), v.text("/enrollment/keyId"));
        assert_eq!(key.key_id().as_str(), v.header(KgHeader::KeyId));
    }
}

#[test]
fn canonical_string_body_hash_and_headers_match_the_vectors() {
    for v in Vector::all() {
        let signed = v.signed_by_sdk();
        assert_eq!(signed.canonical_string(), v.text("/canonicalString"));
        assert_eq!(signed.header(KgHeader::BodySha256), v.header(KgHeader::BodySha256));
        // Every header but the (randomised in the SDK) signature is byte-identical.
        for (name, value) in signed.header_pairs() {
            if name != KgHeader::Signature.name() {
                assert_eq!(value, v.text(&format!("/request/headers/{name}")), "{name}");
            }
        }
    }
}

#[test]
fn the_typescript_signatures_verify_over_the_sdks_canonical_string() {
    for v in Vector::all() {
        let signed = v.signed_by_sdk();
        let canonical = CanonicalRequest::new(signed.headers(), v.method(), v.path()).unwrap();
        let theirs = SignatureP1363::parse(v.header(KgHeader::Signature)).unwrap();
        assert_eq!(verify_signature(v.key().signing_key().verifying_key(), &canonical, &theirs), Ok(()));
    }
}

#[test]
fn sdk_signatures_verify_with_the_servers_verifier() {
    for v in Vector::all() {
        // As the server does it: parse the headers off the wire, key from the enrolled public key.
        let signed = v.signed_by_sdk();
        let wire = SignedHeaders::parse_pairs(signed.header_pairs()).unwrap();
        let enrolled = PublicKeySpki::parse(v.text("/enrollment/publicKey")).unwrap();
        let window = FreshnessWindow::default();
        assert_eq!(wire.verify(&v.received(), &enrolled.verifying_key(), v.now(), window), Ok(()));

        // And a request signed now, with a fresh nonce.
        let fresh = v.signer().sign(v.method(), v.path(), v.body()).unwrap();
        let wire = SignedHeaders::parse_pairs(fresh.header_pairs()).unwrap();
        assert_eq!(wire.verify(&v.received(), &enrolled.verifying_key(), Utc::now(), window), Ok(()));
        assert_ne!(fresh.header(KgHeader::Nonce), v.header(KgHeader::Nonce));
    }
}

#[test]
fn the_verifier_refuses_what_the_sdk_did_not_sign() {
    let v = &Vector::all()[0];
    let signed = v.signed_by_sdk();
    let wire = SignedHeaders::parse_pairs(signed.header_pairs()).unwrap();
    let key = v.key();
    let vk = key.signing_key().verifying_key();
    let window = FreshnessWindow::default();
    let other_body = ReceivedRequest { body: b"{}", ..v.received() };
    assert_eq!(wire.verify(&other_body, vk, v.now(), window), Err(Rejection::BodyHashMismatch));
    let other_path = ReceivedRequest { path_and_query: "/api/v1/proxy/v1/chat/completions", ..v.received() };
    assert_eq!(wire.verify(&other_path, vk, v.now(), window), Err(Rejection::BadSignature));
    // The path without the /api/v1 prefix, as some old docs signed it, never verifies.
    let unprefixed = v.signer().sign(v.method(), "/keyguard/verify-test", v.body()).unwrap();
    let wire = SignedHeaders::parse_pairs(unprefixed.header_pairs()).unwrap();
    assert_eq!(wire.verify(&v.received(), vk, Utc::now(), window), Err(Rejection::BadSignature));
    let stranger = DeviceKey::generate().unwrap();
    let wire = SignedHeaders::parse_pairs(signed.header_pairs()).unwrap();
    assert_eq!(
        wire.verify(&v.received(), stranger.signing_key().verifying_key(), v.now(), window),
        Err(Rejection::BadSignature)
    );
}

#[test]
fn the_sdk_refuses_to_sign_what_the_server_would_refuse() {
    let signer = Vector::all()[0].signer();
    for (method, path) in [("GET", "/api/v1/a b"), ("GET", "/api/v1/x#frag"), ("GET", "api/v1"), ("G|T", "/")]
    {
        assert!(
            matches!(signer.sign(method, path, b""), Err(keyguard_sdk::Error::InvalidRequest(_))),
            "{method} {path}"
        );
    }
    assert!(matches!(
        Signer::new(DeviceKey::generate().unwrap(), "kg_short"),
        Err(keyguard_sdk::Error::InvalidProjectKey(_))
    ));
}

#[test]
fn enrollment_payload_is_the_typescript_sdks() {
    for v in Vector::all() {
        let expected = &v.json["enrollment"];
        let fingerprint = Fingerprint {
            visitor_id: v.text("/enrollment/deviceFingerprint").to_owned(),
            label: "Node.js Environment".to_owned(),
            metadata: expected["metadata"].clone(),
        };
        let payload = EnrollmentPayload::new(&v.key(), fingerprint, Some(v.text("/enrollment/label")));
        assert_eq!(&serde_json::to_value(&payload).unwrap(), expected);
        // Same field order as the SDK's object literal.
        let text = serde_json::to_string(&payload).unwrap();
        let order: Vec<usize> =
            ["\"publicKey\"", "\"keyId\"", "\"deviceFingerprint\"", "\"label\"", "\"metadata\""]
                .iter()
                .map(|field| text.find(field).unwrap())
                .collect();
        assert!(order.is_sorted(), "{text}");
    }
}
