//! The event store behaves the same on SQLite and PostgreSQL: events persist with their metadata,
//! concurrent writers to one aggregate conflict instead of overwriting each other, and every event
//! gets a store-wide position that follows each aggregate's own order.

mod support;

use std::collections::HashMap;

use cqrs_es::persist::{PersistedEventRepository as _, PersistedEventStore};
use cqrs_es::{Aggregate, AggregateError, DomainEvent, EventStore as _};
use serde::{Deserialize, Serialize};
use services::store::Database;
use support::{Backend, TestDb};

/// A deliberately small aggregate: the suite is about the store, not about business rules.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Tally {
    opened: bool,
    total: i64,
}

#[derive(Debug)]
enum TallyCommand {
    Open,
    Add(i64),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum TallyEvent {
    Opened,
    Added { amount: i64 },
}

impl DomainEvent for TallyEvent {
    fn event_type(&self) -> String {
        match self {
            Self::Opened => "Opened".into(),
            Self::Added { .. } => "Added".into(),
        }
    }
    fn event_version(&self) -> String {
        "1.0".into()
    }
}

#[derive(Debug, PartialEq, thiserror::Error)]
enum TallyError {
    #[error("the tally is already open")]
    AlreadyOpen,
    #[error("the tally is not open")]
    NotOpen,
}

impl Aggregate for Tally {
    const TYPE: &'static str = "tally";
    type Command = TallyCommand;
    type Event = TallyEvent;
    type Error = TallyError;
    type Services = ();

    async fn handle(
        &mut self,
        command: TallyCommand,
        _: &(),
        sink: &cqrs_es::event_sink::EventSink<Self>,
    ) -> Result<(), TallyError> {
        match command {
            TallyCommand::Open if self.opened => Err(TallyError::AlreadyOpen),
            TallyCommand::Open => {
                sink.write(TallyEvent::Opened, self).await;
                Ok(())
            }
            TallyCommand::Add(_) if !self.opened => Err(TallyError::NotOpen),
            TallyCommand::Add(amount) => {
                sink.write(TallyEvent::Added { amount }, self).await;
                Ok(())
            }
        }
    }

    fn apply(&mut self, event: TallyEvent) {
        match event {
            TallyEvent::Opened => self.opened = true,
            TallyEvent::Added { amount } => self.total += amount,
        }
    }
}

fn metadata(request_id: &str) -> HashMap<String, String> {
    HashMap::from([
        ("actor_type".to_owned(), "user".to_owned()),
        ("request_id".to_owned(), request_id.to_owned()),
    ])
}

async fn events_persist_with_their_metadata(backend: Backend) {
    let test = TestDb::new(backend).await;
    let cqrs = test.db.cqrs::<Tally>(vec![], ());
    cqrs.execute_with_metadata("t-1", TallyCommand::Open, metadata("r-1")).await.unwrap();
    cqrs.execute_with_metadata("t-1", TallyCommand::Add(5), metadata("r-2")).await.unwrap();
    cqrs.execute_with_metadata("t-1", TallyCommand::Add(-2), metadata("r-3")).await.unwrap();

    let events = test.db.event_repository().get_events::<Tally>("t-1").await.unwrap();
    let sequences: Vec<usize> = events.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, [1, 2, 3]);
    assert_eq!(events[1].event_type, "Added");
    assert_eq!(events[1].event_version, "1.0");
    assert_eq!(events[1].payload, serde_json::json!({ "Added": { "amount": 5 } }));
    assert_eq!(events[2].metadata["request_id"], "r-3");
    assert_eq!(events[2].metadata["actor_type"], "user");

    let store = PersistedEventStore::<_, Tally>::new_event_store(test.db.event_repository());
    let reloaded = store.load_aggregate("t-1").await.unwrap();
    assert_eq!(reloaded.aggregate.total, 3);
    assert_eq!(reloaded.current_sequence, 3);
}

async fn a_rejected_command_stores_nothing(backend: Backend) {
    let test = TestDb::new(backend).await;
    let cqrs = test.db.cqrs::<Tally>(vec![], ());
    let err = cqrs.execute("t-2", TallyCommand::Add(1)).await.unwrap_err();
    assert!(matches!(err, AggregateError::UserError(TallyError::NotOpen)), "{err:?}");
    assert!(test.db.event_repository().get_events::<Tally>("t-2").await.unwrap().is_empty());
}

async fn concurrent_writers_conflict_instead_of_overwriting(backend: Backend) {
    let test = TestDb::new(backend).await;
    let cqrs = test.db.cqrs::<Tally>(vec![], ());
    cqrs.execute("t-3", TallyCommand::Open).await.unwrap();

    // Two writers load the same version, decide, and commit: only the first may succeed.
    let store = PersistedEventStore::<_, Tally>::new_event_store(test.db.event_repository());
    let first = store.load_aggregate("t-3").await.unwrap();
    let second = store.load_aggregate("t-3").await.unwrap();
    store
        .commit(vec![TallyEvent::Added { amount: 1 }], first, HashMap::new())
        .await
        .expect("the first writer commits");
    let err = store
        .commit(vec![TallyEvent::Added { amount: 100 }], second, HashMap::new())
        .await
        .expect_err("the second writer must not overwrite the first");
    assert!(matches!(err, AggregateError::AggregateConflict), "{err:?}");

    let reloaded = store.load_aggregate("t-3").await.unwrap();
    assert_eq!(reloaded.aggregate.total, 1);
}

async fn racing_commands_on_one_aggregate_lose_nothing(backend: Backend) {
    let test = TestDb::new(backend).await;
    let cqrs = std::sync::Arc::new(test.db.cqrs::<Tally>(vec![], ()));
    cqrs.execute("t-4", TallyCommand::Open).await.unwrap();

    let tasks: Vec<_> = (1..=16)
        .map(|amount| {
            let cqrs = cqrs.clone();
            tokio::spawn(async move { cqrs.execute("t-4", TallyCommand::Add(amount)).await })
        })
        .collect();
    let mut committed = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => committed += 1,
            Err(AggregateError::AggregateConflict) => {}
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert!(committed >= 1);
    let events = test.db.event_repository().get_events::<Tally>("t-4").await.unwrap();
    // Every success is stored exactly once, at consecutive sequences; no conflict left a trace.
    assert_eq!(events.len(), 1 + committed);
    let sequences: Vec<usize> = events.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, (1..=events.len()).collect::<Vec<_>>());
}

async fn global_positions_are_unique_and_follow_each_aggregate(backend: Backend) {
    let test = TestDb::new(backend).await;
    let cqrs = std::sync::Arc::new(test.db.cqrs::<Tally>(vec![], ()));
    let writers: Vec<_> = (0..8)
        .map(|n| {
            let cqrs = cqrs.clone();
            tokio::spawn(async move {
                let id = format!("g-{n}");
                cqrs.execute(&id, TallyCommand::Open).await.unwrap();
                for amount in 0..5 {
                    cqrs.execute(&id, TallyCommand::Add(amount)).await.unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }

    let rows = global_positions(&test.db).await;
    assert_eq!(rows.len(), 8 * 6);
    let mut positions: Vec<i64> = rows.iter().map(|(_, _, global)| *global).collect();
    positions.sort_unstable();
    positions.dedup();
    assert_eq!(positions.len(), rows.len(), "global positions are unique");
    assert!(positions[0] >= 1);
    if backend == Backend::Sqlite {
        // One writer at a time: positions are exactly 1..=n, in commit order.
        assert_eq!(positions, (1..=rows.len() as i64).collect::<Vec<_>>());
    }
    for n in 0..8 {
        let id = format!("g-{n}");
        let mut per_aggregate: Vec<(i64, i64)> =
            rows.iter().filter(|(agg, _, _)| *agg == id).map(|(_, seq, global)| (*seq, *global)).collect();
        per_aggregate.sort_unstable();
        assert!(
            per_aggregate.windows(2).all(|w| w[0].1 < w[1].1),
            "within {id}, the global order follows the aggregate's sequence: {per_aggregate:?}"
        );
    }
}

async fn migrations_can_run_again(backend: Backend) {
    let test = TestDb::new(backend).await;
    test.db.migrate().await.expect("a second run applies nothing and succeeds");
    test.db.ping().await.unwrap();
}

async fn global_positions(db: &Database) -> Vec<(String, i64, i64)> {
    const SQL: &str = "SELECT aggregate_id, sequence, global_seq FROM events ORDER BY global_seq";
    match db {
        Database::Postgres(pool) => sqlx::query_as(SQL).fetch_all(pool).await.unwrap(),
        Database::Sqlite(pool) => sqlx::query_as(SQL).fetch_all(pool).await.unwrap(),
    }
}

on_both_backends!(
    events_persist_with_their_metadata,
    a_rejected_command_stores_nothing,
    concurrent_writers_conflict_instead_of_overwriting,
    racing_commands_on_one_aggregate_lose_nothing,
    global_positions_are_unique_and_follow_each_aggregate,
    migrations_can_run_again,
);
