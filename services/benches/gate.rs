//! The gate's in-memory stores on the request path: recording a fresh nonce (rule 7) and taking a
//! request from a rate-limit bucket. `cargo bench -p services --bench gate`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use services::gate::{LimitScope, MemoryNonces, RequestLimiter};
use uuid::Uuid;

const KEY_ID: &str = "5f28758eb139cb43769d731f803d4d6c";

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("gate");
    group.throughput(Throughput::Elements(1));

    // As in production: up to 4 M nonces, kept 240 s (twice the default window). Every nonce is
    // new, so the store grows through the run as it does under load.
    let nonces = MemoryNonces::new(4_000_000);
    let api_key = Uuid::new_v4();
    let keep = Duration::from_secs(240);
    let mut counter = 0u128;
    group.bench_function("nonce_insert", |b| {
        b.iter(|| {
            counter += 1;
            let nonce = counter.to_le_bytes();
            nonces.record(api_key, KEY_ID, black_box(nonce), keep, Instant::now()).unwrap()
        })
    });

    // A device's bucket and its key's bucket, as every admitted request takes one from each.
    let limiter = RequestLimiter::default();
    let device = LimitScope::Device(Uuid::new_v4());
    let key = LimitScope::ApiKey(Uuid::new_v4());
    group.bench_function("rate_limit_check", |b| {
        b.iter(|| {
            let now = Instant::now();
            limiter.check(black_box(device), 100_000_000, now).unwrap();
            limiter.check(black_box(key), 100_000_000, now).unwrap();
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
