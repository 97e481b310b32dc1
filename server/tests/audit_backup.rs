//! `keyguard audit export` and `keyguard audit import`, the backup and restore path: a restored
//! store holds the very same events and rebuilds the very same read models; a store with events
//! is never overwritten; a cut or garbled backup restores nothing; CSV and JSON exports are
//! well-formed; and a large store is read page by page.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use services::backup::{self, EventPages, ExportFilter, ExportFormat};
use services::projections::{Projection, Projections, ProjectionsConfig};
use services::store::{BatchEvent, Database, DatabaseConfig};
use support::events::{READ_MODEL_TABLES, count, dump, read_all, scenario};
use support::{Backend, TestDb};

/// A master key for the PostgreSQL configuration, which requires one (these commands never use it).
const MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// Metadata with an unusual key order and spacing (the store adds its own chain link to it). A
/// restore must keep what was stored byte for byte.
const CHAINED_METADATA: &str = r#"{"hash": "9f86d081884c7d65", "prev_hash": "0000000000000000", "actor_type": "system", "actor_id": "tests", "at": "2025-01-31T12:00:00.123456789Z"}"#;

fn keyguard(database: &DatabaseConfig) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyguard"));
    command.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default());
    match database {
        DatabaseConfig::Sqlite { path } => {
            command.env("KEYGUARD_DATA_DIR", path.parent().expect("the database's directory"));
        }
        DatabaseConfig::Postgres { url } => {
            command.env("KEYGUARD_DATABASE_URL", url).env("KEYGUARD_MASTER_KEY", MASTER_KEY);
        }
    }
    command
}

fn run(database: &DatabaseConfig, args: &[&str]) -> Output {
    keyguard(database).args(args).output().expect("run keyguard")
}

fn succeeded(output: &Output) -> String {
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stdout}{stderr}");
    stdout
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn export_to(database: &DatabaseConfig, file: &Path, extra: &[&str]) -> String {
    let mut args = vec!["audit", "export", "--output", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    succeeded(&run(database, &args))
}

/// Two full scenarios and an audit record whose metadata carries a hash-chain link, with the
/// read models caught up.
async fn populated(backend: Backend) -> TestDb {
    let source = TestDb::new(backend).await;
    scenario(&source.db).await;
    let record = BatchEvent {
        event_type: "LoginFailed".into(),
        event_version: "1.0".into(),
        payload_json: r#"{"summary": "Sign-in failed for ada@example.com", "outcome": "failure"}"#.into(),
    };
    source
        .db
        .append_batch("audit_record", &uuid::Uuid::new_v4().to_string(), &[record], CHAINED_METADATA)
        .await
        .unwrap();
    scenario(&source.db).await;
    projections(&source.db).catch_up().await.unwrap();
    source
}

fn projections(db: &Database) -> Projections {
    Projections::new(db.clone(), ProjectionsConfig::default())
}

/// Every read-model table but the checkpoints (whose `updated_at` is the time of the rebuild).
async fn read_models(db: &Database) -> BTreeMap<String, Vec<String>> {
    let tables: Vec<&str> =
        READ_MODEL_TABLES.iter().copied().filter(|t| *t != "projection_checkpoints").collect();
    dump(db, &tables).await
}

async fn a_restored_store_has_the_same_events_and_read_models(backend: Backend) {
    let source = populated(backend).await;
    let events = count(&source.db, "events").await;
    let dir = tempfile::tempdir().unwrap();
    let backup_file = dir.path().join("backup.ndjson");

    let stdout = export_to(&source.config, &backup_file, &[]);
    assert!(stdout.contains(&format!("{events} event(s) exported")), "{stdout}");
    assert!(!dir.path().join("backup.ndjson.partial").exists(), "the partial file was renamed");
    let exported = std::fs::read_to_string(&backup_file).unwrap();
    assert_eq!(exported.lines().count() as i64, events);
    assert!(
        exported.lines().all(|line| line.contains("prev_hash")),
        "every event is exported with its chain link"
    );

    let target = TestDb::new(backend).await;
    let stdout = succeeded(&run(&target.config, &["audit", "import", backup_file.to_str().unwrap()]));
    let head = services::events::EventLog::new(source.db.clone()).head().await.unwrap();
    assert!(
        stdout.contains(&format!("{events} event(s) and 0 other record(s) restored, up to position {head}")),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("read models rebuilt up to event position {head}")), "{stdout}");

    // The event rows: exporting the restored store gives the same file, byte for byte (ids,
    // positions, sequences, payloads, metadata and times), and the log reads the same.
    let again = dir.path().join("again.ndjson");
    export_to(&target.config, &again, &[]);
    assert_eq!(std::fs::read_to_string(&again).unwrap(), exported);
    assert_eq!(read_all(&target.db).await, read_all(&source.db).await);

    // The read models, rebuilt from the restored events, are the ones the source had.
    let (before, after) = (read_models(&source.db).await, read_models(&target.db).await);
    for (table, rows) in &before {
        assert!(!rows.is_empty() || table == "traffic_hourly", "{table} has rows to compare");
        assert_eq!(rows, &after[table], "table {table} differs after the restore");
    }
    let checkpoints = projections(&target.db).checkpoints().await.unwrap();
    assert!(Projection::ALL.iter().all(|p| checkpoints[p] == head), "{checkpoints:?}");
    // The hash chains came across with the events: the restored history verifies.
    let verified = succeeded(&run(&target.config, &["audit", "verify"]));
    assert!(verified.contains(&format!("{events} event(s)")), "{verified}");

    // The restored store goes on: new events are numbered after the restored ones.
    scenario(&target.db).await;
    let appended = read_all(&target.db).await;
    assert!(appended.len() as i64 > events);
    assert!(appended[events as usize..].iter().all(|e| e.position > head));

    // A store that holds events is never overwritten.
    let before_refusal = count(&target.db, "events").await;
    let output = run(&target.config, &["audit", "import", backup_file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    // One sentence (after any log lines, which go to standard error too).
    let stderr = text(&output.stderr);
    let error = stderr.trim().lines().last().unwrap_or_default();
    assert!(error.starts_with("keyguard: nothing was restored"), "{stderr}");
    assert!(error.contains(&format!("already holds {before_refusal} event(s)")), "{stderr}");
    assert!(error.contains("empty store"), "{stderr}");
    assert_eq!(count(&target.db, "events").await, before_refusal);
}

async fn a_cut_or_garbled_backup_restores_nothing(backend: Backend) {
    let source = populated(backend).await;
    let all = read_all(&source.db).await;
    let mut whole = Vec::new();
    backup::export(&source.db, ExportFilter::default(), ExportFormat::Ndjson, 7, &mut whole).await.unwrap();

    // A filtered export holds what its window selects...
    let since = all[all.len() / 2].recorded_at;
    let mut window = Vec::new();
    let filter = ExportFilter { since: Some(since), until: None };
    let summary = backup::export(&source.db, filter, ExportFormat::Ndjson, 7, &mut window).await.unwrap();
    let expected = all.iter().filter(|e| e.recorded_at >= since).count() as u64;
    assert_eq!(summary.events, expected);
    assert_eq!(String::from_utf8(window).unwrap().lines().count() as u64, expected);

    // ...but a backup without the first events, whose histories then start in the middle (the
    // first device's approval without its enrollment), is refused whole.
    let text = String::from_utf8(whole.clone()).unwrap();
    let cut: Vec<&str> = text.lines().skip(5).collect();
    let target = TestDb::new(backend).await;
    let err = backup::import(&target.db, cut.join("\n").as_bytes()).await.unwrap_err();
    assert!(matches!(err, backup::BackupError::Incomplete { .. }), "{err}");
    assert!(err.to_string().contains("--since"), "{err}");
    assert_eq!(count(&target.db, "events").await, 0, "nothing of a refused backup stays");

    // A garbled third line: refused with its line number, nothing kept.
    let mut lines: Vec<&str> = text.lines().collect();
    lines[2] = "{\"position\": oops}";
    let garbled = lines.join("\n");
    let err = backup::import(&target.db, garbled.as_bytes()).await.unwrap_err();
    assert!(matches!(err, backup::BackupError::BadRecord { line: 3, .. }), "{err}");
    assert_eq!(count(&target.db, "events").await, 0);

    // Lines out of order are refused too.
    let mut swapped: Vec<&str> = text.lines().collect();
    swapped.swap(1, 2);
    let err = backup::import(&target.db, swapped.join("\n").as_bytes()).await.unwrap_err();
    assert!(matches!(err, backup::BackupError::OutOfOrder { record: 3, .. }), "{err}");
    assert_eq!(count(&target.db, "events").await, 0);

    // The whole backup, read through the library, restores.
    let restored = backup::import(&target.db, whole.as_slice()).await.unwrap();
    assert_eq!(restored.events, all.len() as u64);
    assert_eq!(read_all(&target.db).await, all);
}

async fn csv_and_json_exports_are_well_formed(backend: Backend) {
    let source = populated(backend).await;
    let all = read_all(&source.db).await;
    let dir = tempfile::tempdir().unwrap();

    let csv_file = dir.path().join("events.csv");
    export_to(&source.config, &csv_file, &["--format", "csv"]);
    let mut reader = csv::Reader::from_path(&csv_file).unwrap();
    let headers: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(headers, backup::CSV_COLUMNS);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), all.len());
    for (row, event) in rows.iter().zip(&all) {
        assert_eq!(row[0].parse::<i64>().unwrap(), event.position);
        assert_eq!(row[1].parse::<uuid::Uuid>().unwrap(), event.event_id);
        assert_eq!(row[2].parse::<chrono::DateTime<chrono::Utc>>().unwrap(), event.recorded_at);
        assert_eq!(
            (&row[3], &row[4], &row[6]),
            (&*event.aggregate_type, &*event.aggregate_id, &*event.event_type)
        );
        assert_eq!(row[5].parse::<i64>().unwrap(), event.sequence);
        assert_eq!(serde_json::from_str::<serde_json::Value>(&row[8]).unwrap(), event.payload);
        assert!(serde_json::from_str::<serde_json::Value>(&row[9]).unwrap().is_object());
    }

    let json_file = dir.path().join("events.json");
    export_to(&source.config, &json_file, &["--format", "json"]);
    let parsed: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&json_file).unwrap()).expect("a JSON array");
    assert_eq!(parsed.len(), all.len());
    for (value, event) in parsed.iter().zip(&all) {
        assert_eq!(value["position"], event.position);
        assert_eq!(value["event_type"], event.event_type.as_str());
        assert_eq!(value["payload"], event.payload);
        assert_eq!(value["metadata"]["actor_id"], event.metadata["actor_id"].as_str());
    }

    // An empty selection is still a well-formed document.
    let none = dir.path().join("none.json");
    export_to(&source.config, &none, &["--format", "json", "--since", "2999-01-01T00:00:00Z"]);
    let parsed: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&none).unwrap()).unwrap();
    assert!(parsed.is_empty());

    // On standard output, NDJSON by default, and the report on standard error.
    let output = run(&source.config, &["audit", "export", "--until", "2999-01-01T00:00:00Z"]);
    let stdout = succeeded(&output);
    let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), all.len());
    assert!(text(&output.stderr).contains(&format!("{} event(s) exported", all.len())));

    // Bad arguments are explained.
    let output = run(&source.config, &["audit", "export", "--since", "last tuesday"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("RFC 3339"), "{}", text(&output.stderr));
    let output = run(&source.config, &["audit", "export", "--format", "xml"]);
    assert_eq!(output.status.code(), Some(2));
}

async fn a_large_store_is_read_page_by_page(backend: Backend) {
    const EVENTS: usize = 20_000;
    const PAGE: i64 = 1_000;
    let source = TestDb::new(backend).await;
    let batch: Vec<BatchEvent> = (0..EVENTS)
        .map(|n| BatchEvent {
            event_type: "RequestCompleted".into(),
            event_version: "1.0".into(),
            payload_json: format!(r#"{{"note":"bulk {n}"}}"#),
        })
        .collect();
    let metadata = r#"{"actor_type":"system","actor_id":"tests","at":"2025-01-31T12:00:00Z"}"#;
    source.db.append_batch("bulk_test", "bulk", &batch, metadata).await.unwrap();

    // The walk never holds more than a page.
    let mut pages = EventPages::open(&source.db, ExportFilter::default(), PAGE).await.unwrap();
    let (mut seen, mut page_count, mut last) = (0, 0, 0);
    while let Some(page) = pages.next_page().await.unwrap() {
        assert!(page.len() as i64 <= PAGE && !page.is_empty(), "a page of {}", page.len());
        assert!(page[0].position > last, "pages follow each other");
        last = page.last().unwrap().position;
        seen += page.len();
        page_count += 1;
    }
    assert_eq!((seen, page_count), (EVENTS, EVENTS / PAGE as usize));

    // The export writes it all, one page per write.
    let mut out = CountingWriter::default();
    let summary = backup::export(&source.db, ExportFilter::default(), ExportFormat::Ndjson, PAGE, &mut out)
        .await
        .unwrap();
    assert_eq!((summary.events, summary.pages), (EVENTS as u64, (EVENTS / PAGE as usize) as u64));
    assert_eq!(out.newlines, EVENTS);
    assert_eq!(out.writes, EVENTS / PAGE as usize, "one write per page");

    // And it restores in batches, in one transaction.
    let mut whole = Vec::new();
    backup::export(&source.db, ExportFilter::default(), ExportFormat::Ndjson, PAGE, &mut whole)
        .await
        .unwrap();
    let target = TestDb::new(backend).await;
    let restored = backup::import(&target.db, whole.as_slice()).await.unwrap();
    assert_eq!(restored.events, EVENTS as u64);
    assert_eq!(count(&target.db, "events").await, EVENTS as i64);
}

/// Counts what an export writes, without keeping it.
#[derive(Default)]
struct CountingWriter {
    writes: usize,
    newlines: usize,
}

impl std::io::Write for CountingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !buf.is_empty() {
            self.writes += 1;
        }
        self.newlines += buf.iter().filter(|b| **b == b'\n').count();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A store from before the hash chain: its events carry no link. Restored, they remain that
/// store's history from before the chain, and the restored store verifies.
async fn a_backup_from_before_the_chain_restores_as_history_before_it(backend: Backend) {
    let source = populated(backend).await;
    let (strip, legacy) = (
        match &source.db {
            Database::Sqlite(_) => {
                "UPDATE events SET metadata = json_remove(metadata, '$.hash', '$.prev_hash')"
            }
            Database::Postgres(_) => {
                "UPDATE events SET metadata = (metadata::jsonb - 'hash' - 'prev_hash')::json"
            }
        },
        "UPDATE event_chain SET legacy_position = (SELECT MAX(global_seq) FROM events)",
    );
    for sql in [strip, legacy] {
        match &source.db {
            Database::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(drop),
            Database::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(drop),
        }
        .unwrap();
    }
    succeeded(&run(&source.config, &["audit", "verify"]));
    let dir = tempfile::tempdir().unwrap();
    let backup_file = dir.path().join("backup.ndjson");
    export_to(&source.config, &backup_file, &[]);
    assert!(!std::fs::read_to_string(&backup_file).unwrap().contains("prev_hash"));

    let target = TestDb::new(backend).await;
    succeeded(&run(&target.config, &["audit", "import", backup_file.to_str().unwrap()]));
    let verified = run(&target.config, &["audit", "verify"]);
    let report = succeeded(&verified);
    let events = count(&source.db, "events").await;
    assert!(report.contains(&format!("{events} unchained")), "{report}");
}

on_both_backends!(
    a_restored_store_has_the_same_events_and_read_models,
    a_cut_or_garbled_backup_restores_nothing,
    csv_and_json_exports_are_well_formed,
    a_large_store_is_read_page_by_page,
    a_backup_from_before_the_chain_restores_as_history_before_it,
);

/// The embedded SQLite store moves to PostgreSQL through a backup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_backup_restores_into_postgres() {
    let source = populated(Backend::Sqlite).await;
    let mut whole = Vec::new();
    backup::export(&source.db, ExportFilter::default(), ExportFormat::Ndjson, 50, &mut whole).await.unwrap();
    let target = TestDb::new(Backend::Postgres).await;
    backup::import(&target.db, whole.as_slice()).await.unwrap();
    projections(&target.db).rebuild().await.unwrap();
    assert_eq!(read_all(&target.db).await, read_all(&source.db).await);
    assert_eq!(count(&target.db, "audit_log").await, count(&source.db, "events").await);
    assert_eq!(count(&target.db, "devices").await, count(&source.db, "devices").await);
}
