//! The kg-v1 check the proxy runs on every request, piece by piece: parsing the seven headers,
//! rebuilding the canonical string, and the whole of rules 4–6 (window, body hash, ECDSA P-256
//! signature). `cargo bench -p domain --bench kg_v1`.

use std::hint::black_box;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use domain::protocol::{
    CanonicalRequest, FreshnessWindow, Nonce, ProjectKey, PublicKeySpki, ReceivedRequest, RequestToSign,
    SignedHeaders, Timestamp,
};
use p256::ecdsa::SigningKey;
use p256::pkcs8::DecodePrivateKey as _;

/// The TypeScript SDK's throwaway test key (`domain/tests/data/kg-v1-vectors.json`).
const PKCS8: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgra9SEdqZSIFmoHXkXpE4Cgsr7xmu4C5f0ptBGhbS9hehRANCAAQjOq8E/hvQhXOTgee9gTURrrRGdzI4ljHIj5CM8dlYpDJUFiPmCtrGEQl0xXkKHLA+F7+MMGzhtZYiM8qShfye";
const PATH: &str = "/api/v1/proxy/v1/chat/completions";
const BODY: &[u8] =
    br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello in one short sentence."}]}"#;

fn bench(c: &mut Criterion) {
    let key = SigningKey::from_pkcs8_der(&STANDARD.decode(PKCS8).unwrap()).unwrap();
    let verifying = *key.verifying_key();
    let signed = SignedHeaders::sign(
        &key,
        RequestToSign {
            project_key: ProjectKey::parse("kg_1733668200000_abcdefghijklmnopqrstuvwxyz012345").unwrap(),
            key_id: PublicKeySpki::from_verifying_key(&verifying).key_id(),
            timestamp: Timestamp::from_datetime(Utc::now()).unwrap(),
            nonce: Nonce::from_bytes([7; 16]),
            method: "POST",
            path_and_query: PATH,
            body: BODY,
        },
    )
    .unwrap();
    // What a request carries: the seven kg-v1 headers among the usual others.
    let mut pairs: Vec<(&str, &str)> = vec![
        ("host", "keyguard.example.com"),
        ("user-agent", "keyguard_sdk/0.1.0 (linux; x86_64)"),
        ("content-type", "application/json"),
        ("accept", "*/*"),
    ];
    pairs.extend(signed.to_pairs());
    let received = ReceivedRequest { method: "POST", path_and_query: PATH, body: BODY };
    let window = FreshnessWindow::new(Duration::from_secs(120)).unwrap();

    let mut group = c.benchmark_group("kg_v1");
    group.bench_function("parse_headers", |b| {
        b.iter(|| SignedHeaders::parse_pairs(black_box(&pairs).iter().copied()).unwrap())
    });
    group.bench_function("canonical_string", |b| {
        b.iter(|| CanonicalRequest::new(black_box(&signed), "POST", PATH).unwrap().render())
    });
    group.bench_function("verify", |b| {
        b.iter(|| black_box(&signed).verify(&received, &verifying, Utc::now(), window).unwrap())
    });
    group.bench_function("parse_canonical_verify", |b| {
        b.iter(|| {
            let headers = SignedHeaders::parse_pairs(black_box(&pairs).iter().copied()).unwrap();
            headers.verify(&received, &verifying, Utc::now(), window).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
