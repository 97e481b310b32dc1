//! The write and replay paths of the usage history:
//! - `usage_batch_write`: records per second the usage writer stores, on SQLite and PostgreSQL;
//! - `read_model_rebuild`: events per second a full rebuild of every read model replays, from a
//!   SQLite store of `KEYGUARD_BENCH_EVENTS` usage events (1 000 000 by default; seeding that
//!   many takes a few minutes the first time the benchmark runs).
//!
//! PostgreSQL is `KEYGUARD_TEST_DATABASE_URL` (default
//! `postgres://keyguard:keyguard@127.0.0.1:5432/keyguard_test`), in a schema of its own that is
//! dropped afterwards. `cargo bench -p services --bench usage`.

use std::str::FromStr as _;
use std::time::{Duration, Instant};

use chrono::Utc;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use domain::metadata::{Actor, EventMetadata};
use domain::provider::Provider;
use services::projections::{Projections, ProjectionsConfig};
use services::store::{BatchEvent, Database, DatabaseConfig};
use services::usage::{
    AuditMode, REQUEST_COMPLETED, USAGE_BATCH_TYPE, UsageConfig, UsageRecord, UsageWriter,
};
use sqlx::Connection as _;
use uuid::Uuid;

const DEFAULT_DATABASE_URL: &str = "postgres://keyguard:keyguard@127.0.0.1:5432/keyguard_test";
/// Records stored per measured write.
const WRITE_RECORDS: u64 = 5_000;

fn record(api_key_id: Uuid, device_id: Uuid) -> UsageRecord {
    UsageRecord {
        api_key_id,
        device_id,
        key_id: "5f28758eb139cb43769d731f803d4d6c".to_owned(),
        provider: Provider::OpenAi,
        model: Some("gpt-4o-mini".to_owned()),
        method: "POST".to_owned(),
        path: "/v1/chat/completions".to_owned(),
        status: 200,
        error: None,
        completed: true,
        streamed: false,
        tokens_in: Some(9),
        tokens_out: Some(7),
        bytes_in: 96,
        bytes_out: 310,
        latency_ms: 21,
        at: Utc::now(),
    }
}

async fn sqlite(dir: &tempfile::TempDir, name: &str) -> Database {
    let config = DatabaseConfig::Sqlite { path: dir.path().join(name) };
    let db = Database::connect(&config, 5).await.expect("open SQLite");
    db.migrate().await.expect("migrate SQLite");
    db
}

/// A PostgreSQL schema of its own, and the URL that uses it.
async fn postgres_schema() -> (String, String) {
    let base =
        std::env::var("KEYGUARD_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
    let options = sqlx::postgres::PgConnectOptions::from_str(&base).expect("a PostgreSQL URL");
    let mut conn = sqlx::PgConnection::connect_with(&options)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is needed at {base}: {e}"));
    let schema = format!("bench_{}", Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&mut conn).await.expect("create schema");
    conn.close().await.ok();
    let separator = if base.contains('?') { '&' } else { '?' };
    (format!("{base}{separator}options=-c%20search_path%3D{schema}"), schema)
}

async fn drop_schema(schema: &str) {
    let base =
        std::env::var("KEYGUARD_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
    let options = sqlx::postgres::PgConnectOptions::from_str(&base).expect("a PostgreSQL URL");
    if let Ok(mut conn) = sqlx::PgConnection::connect_with(&options).await {
        let _ = sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(&mut conn).await;
        conn.close().await.ok();
    }
}

/// Queues `WRITE_RECORDS` records and stops the writer, which stores them all in batches.
async fn write_all(db: &Database) -> Duration {
    let writer = UsageWriter::new(db.clone());
    writer.start(UsageConfig {
        mode: AuditMode::Async,
        capacity: WRITE_RECORDS as usize + 1,
        ..UsageConfig::default()
    });
    let (api_key_id, device_id) = (Uuid::new_v4(), Uuid::new_v4());
    let records: Vec<UsageRecord> = (0..WRITE_RECORDS).map(|_| record(api_key_id, device_id)).collect();
    let started = Instant::now();
    for record in records {
        assert!(writer.record_now(record), "the queue holds every record");
    }
    writer.shutdown().await;
    let elapsed = started.elapsed();
    assert_eq!(writer.dropped(), 0);
    elapsed
}

fn usage_batch_write(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let lite = runtime.block_on(sqlite(&dir, "write.db"));
    let (url, schema) = runtime.block_on(postgres_schema());
    let pg = runtime.block_on(async {
        let db = Database::connect(&DatabaseConfig::Postgres { url }, 5).await.expect("connect PostgreSQL");
        db.migrate().await.expect("migrate PostgreSQL");
        db
    });
    let mut group = c.benchmark_group("usage_batch_write");
    group.throughput(Throughput::Elements(WRITE_RECORDS)).sample_size(10);
    for (name, db) in [("sqlite", &lite), ("postgres", &pg)] {
        group.bench_function(name, |b| {
            b.to_async(&runtime).iter_custom(|iters| async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += write_all(db).await;
                }
                total
            })
        });
    }
    group.finish();
    runtime.block_on(async {
        pg.close().await;
        drop_schema(&schema).await;
    });
}

/// Fills a store with `count` usage events, in batches as the writer stores them.
async fn seed(db: &Database, count: u64) {
    const BATCH: u64 = 1_000;
    let metadata = serde_json::to_string(&EventMetadata::new(Actor::system("proxy"), Utc::now()).to_map())
        .expect("metadata");
    let (api_key_id, device_id) = (Uuid::new_v4(), Uuid::new_v4());
    let mut payload = serde_json::to_value(record(api_key_id, device_id)).expect("a record");
    payload["type"] = REQUEST_COMPLETED.into();
    let event = BatchEvent {
        event_type: REQUEST_COMPLETED.to_owned(),
        event_version: "1.0".to_owned(),
        payload_json: payload.to_string(),
    };
    let mut written = 0;
    while written < count {
        let n = BATCH.min(count - written);
        let events = vec![event.clone(); n as usize];
        db.append_batch(USAGE_BATCH_TYPE, &Uuid::new_v4().to_string(), &events, &metadata)
            .await
            .expect("append a batch");
        written += n;
    }
}

fn read_model_rebuild(c: &mut Criterion) {
    let count: u64 =
        std::env::var("KEYGUARD_BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = runtime.block_on(async {
        let db = sqlite(&dir, "rebuild.db").await;
        let started = Instant::now();
        seed(&db, count).await;
        eprintln!("seeded {count} events in {:?}", started.elapsed());
        db
    });
    let projections = Projections::new(db.clone(), ProjectionsConfig::default());
    let mut group = c.benchmark_group("read_model_rebuild");
    group.throughput(Throughput::Elements(count)).sample_size(10);
    group.bench_function(format!("sqlite_{count}_events"), |b| {
        b.to_async(&runtime).iter(|| async { projections.rebuild().await.expect("rebuild") })
    });
    group.finish();
}

criterion_group!(benches, usage_batch_write, read_model_rebuild);
criterion_main!(benches);
