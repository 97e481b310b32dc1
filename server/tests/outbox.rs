//! The outbox relay on both backends against a real NATS JetStream (`KEYGUARD_TEST_NATS_URL`,
//! default `nats://127.0.0.1:4222`; a missing server fails the tests): concurrent appends all
//! arrive exactly once and in order, a relay restarted behind its last acknowledgement
//! publishes nothing twice and loses nothing, and without NATS the in-process bus carries every
//! event even to a subscriber that lags.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use chrono::Utc;
use domain::device::{Device, DeviceCommand};
use domain::metadata::Actor;
use futures::StreamExt as _;
use services::events::{EventBus, EventLog, StoredEvent};
use services::outbox::{NatsTarget, OutboxConfig, OutboxRelay};
use services::store::Database;
use support::events::{enroll, eventually, metadata, nats_url, publish_to_head, read_all};
use support::{Backend, TestDb};
use uuid::Uuid;

/// A stream and subject prefix of this test's own, so tests sharing one NATS never meet.
fn target() -> NatsTarget {
    let tag = Uuid::new_v4().simple().to_string();
    NatsTarget {
        stream: format!("KG_TEST_{tag}"),
        subject_prefix: format!("kgtest.{tag}.events"),
        ..NatsTarget::new(nats_url())
    }
}

fn config(target: &NatsTarget) -> OutboxConfig {
    OutboxConfig {
        nats: Some(target.clone()),
        poll_interval: Duration::from_millis(20),
        batch_size: 25,
        ..Default::default()
    }
}

async fn jetstream() -> jetstream::Context {
    let url = nats_url();
    let client = async_nats::connect(url.as_str()).await.unwrap_or_else(|e| {
        panic!("NATS with JetStream is required for this test and is not reachable at {url} ({e}); run scripts/test.sh")
    });
    jetstream::new(client)
}

/// Every message in the stream, in stream order, decoded.
async fn read_stream(js: &jetstream::Context, target: &NatsTarget) -> Vec<(String, String, StoredEvent)> {
    let mut stream = js.get_stream(&target.stream).await.unwrap();
    let expected = stream.info().await.unwrap().state.messages as usize;
    let consumer: consumer::PullConsumer = stream
        .create_consumer(consumer::pull::Config {
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut out = Vec::with_capacity(expected);
    while out.len() < expected {
        let message = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .expect("the stream delivers every stored message")
            .unwrap()
            .unwrap();
        let msg_id = message.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")).unwrap().to_string();
        let event: StoredEvent = serde_json::from_slice(&message.payload).unwrap();
        out.push((message.subject.to_string(), msg_id, event));
    }
    out
}

async fn head(db: &Database) -> i64 {
    EventLog::new(db.clone()).head().await.unwrap()
}

/// Checks the stream holds exactly the store's events: each once, in global order, under its
/// own subject and message id.
async fn assert_stream_matches_store(js: &jetstream::Context, target: &NatsTarget, db: &Database) {
    let stored = read_all(db).await;
    let published = read_stream(js, target).await;
    assert_eq!(published.len(), stored.len(), "every event is published exactly once");
    let ids: HashSet<&str> = published.iter().map(|(_, id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), stored.len(), "no message id appears twice");
    for ((subject, msg_id, event), expected) in published.iter().zip(&stored) {
        assert_eq!(event, expected, "the stream follows the store's global order");
        assert_eq!(msg_id, &expected.event_id.to_string());
        assert_eq!(
            subject,
            &format!("{}.{}.{}", target.subject_prefix, expected.aggregate_type, expected.aggregate_id)
        );
    }
    let mut last_sequence: HashMap<&str, i64> = HashMap::new();
    for (_, _, event) in &published {
        let previous = last_sequence.insert(&event.aggregate_id, event.sequence).unwrap_or(0);
        assert_eq!(event.sequence, previous + 1, "per-aggregate order in {}", event.aggregate_id);
    }
}

async fn concurrent_appends_reach_nats_once_and_in_order(backend: Backend) {
    let test = TestDb::new(backend).await;
    let db = &test.db;
    let js = jetstream().await;
    let target = target();
    let relay = OutboxRelay::connect(db.clone(), EventBus::default(), config(&target)).await.unwrap();
    let task = relay.spawn();

    // Sixteen writers, each with a device of its own, plus four that fight over one device.
    let shared = Uuid::new_v4();
    enroll(db, shared, Uuid::new_v4(), None, "shared").await;
    let mut writers: Vec<_> = (0..16)
        .map(|n| {
            let db = db.clone();
            tokio::spawn(async move {
                let id = Uuid::new_v4();
                enroll(&db, id, Uuid::new_v4(), None, &format!("d{n}")).await;
                rename_many(&db, id, &format!("d{n}"), 6).await;
            })
        })
        .collect();
    writers.extend((0..4).map(|n| {
        let db = db.clone();
        tokio::spawn(async move { rename_many(&db, shared, &format!("s{n}"), 5).await })
    }));
    for writer in writers {
        writer.await.unwrap();
    }
    let events = head(db).await;
    let readable = read_all(db).await.len() as i64;
    assert_eq!(readable, 1 + 16 * 7 + 4 * 5);

    let checker = OutboxRelay::connect(db.clone(), EventBus::default(), config(&target)).await.unwrap();
    eventually("the relay to publish every event", Duration::from_secs(30), || async {
        (checker.checkpoint().await.unwrap() == events).then_some(())
    })
    .await;
    task.shutdown().await;
    assert_stream_matches_store(&js, &target, db).await;
    js.delete_stream(&target.stream).await.unwrap();
}

/// Renames a device `times` times, retrying when a concurrent writer got there first.
async fn rename_many(db: &Database, device: Uuid, prefix: &str, times: usize) {
    let cqrs = db.cqrs::<Device>(vec![], ());
    let admin = Actor::User { id: Uuid::from_u128(1) };
    for i in 0..times {
        loop {
            let rename =
                DeviceCommand::Rename { by: admin.clone(), label: format!("{prefix}-{i}"), at: Utc::now() };
            match cqrs.execute_with_metadata(&device.to_string(), rename, metadata(admin.clone(), "r")).await
            {
                Ok(()) => break,
                Err(cqrs_es::AggregateError::AggregateConflict) => continue,
                Err(other) => panic!("rename failed: {other:?}"),
            }
        }
    }
}

async fn a_restarted_relay_publishes_nothing_twice_and_loses_nothing(backend: Backend) {
    let test = TestDb::new(backend).await;
    let db = &test.db;
    let js = jetstream().await;
    let target = target();
    for n in 0..5 {
        enroll(db, Uuid::new_v4(), Uuid::new_v4(), None, &format!("before-{n}")).await;
    }
    let first = OutboxRelay::connect(db.clone(), EventBus::default(), config(&target)).await.unwrap();
    assert_eq!(publish_to_head(db, &first).await, head(db).await);
    drop(first);

    // The crash: JetStream acknowledged events the checkpoint never recorded.
    match db {
        Database::Postgres(pool) => {
            sqlx::query("UPDATE outbox_checkpoints SET position = 2").execute(pool).await.unwrap();
        }
        Database::Sqlite(pool) => {
            sqlx::query("UPDATE outbox_checkpoints SET position = 2").execute(pool).await.unwrap();
        }
    }
    for n in 0..5 {
        enroll(db, Uuid::new_v4(), Uuid::new_v4(), None, &format!("after-{n}")).await;
    }

    // Stream creation is idempotent, and the re-published events are dropped as duplicates.
    let restarted = OutboxRelay::connect(db.clone(), EventBus::default(), config(&target)).await.unwrap();
    assert_eq!(publish_to_head(db, &restarted).await, head(db).await);
    assert_eq!(restarted.checkpoint().await.unwrap(), head(db).await);
    assert_stream_matches_store(&js, &target, db).await;
    js.delete_stream(&target.stream).await.unwrap();
}

async fn without_nats_the_bus_carries_every_event_in_order(backend: Backend) {
    let test = TestDb::new(backend).await;
    let db = &test.db;
    // A tiny channel: the subscriber below falls behind and must re-read from the log.
    let bus = EventBus::with_capacity(2);
    let mut subscription = bus.subscribe_from(EventLog::new(db.clone()), 0);
    let relay = OutboxRelay::connect(
        db.clone(),
        bus.clone(),
        OutboxConfig { relay_name: "bus".into(), nats: None, batch_size: 3, ..Default::default() },
    )
    .await
    .unwrap();
    for n in 0..12 {
        enroll(db, Uuid::new_v4(), Uuid::new_v4(), None, &format!("bus-{n}")).await;
    }
    assert_eq!(publish_to_head(db, &relay).await, head(db).await);

    let stored = read_all(db).await;
    let mut received = Vec::new();
    while received.len() < stored.len() {
        let event = tokio::time::timeout(Duration::from_secs(10), subscription.next())
            .await
            .expect("the subscription delivers every event")
            .unwrap()
            .unwrap();
        received.push(event);
    }
    assert_eq!(received, stored);
    assert_eq!(subscription.position(), head(db).await);
}

async fn each_bus_gets_every_event_exactly_once(backend: Backend) {
    let test = TestDb::new(backend).await;
    let db = &test.db;
    let (js, target) = (jetstream().await, target());
    // Two nodes' relays sharing one checkpoint; each bus holds everything (no lag, no re-read),
    // so a duplicate or a gap shows in what its raw receiver got, and each event names the one
    // before it.
    let (here, there) = (EventBus::with_capacity(4096), EventBus::with_capacity(4096));
    let (mut here_rx, mut there_rx) = (here.receiver(), there.receiver());
    let relay = |bus: &EventBus| {
        let config = OutboxConfig { batch_size: 3, ..config(&target) };
        OutboxRelay::connect(db.clone(), bus.clone(), config)
    };
    let (near, far) = (relay(&here).await.unwrap(), relay(&there).await.unwrap());
    for round in 0..3 {
        for n in 0..4 {
            enroll(db, Uuid::new_v4(), Uuid::new_v4(), None, &format!("once-{round}-{n}")).await;
        }
        // The near node publishes to NATS first; the far one finds the checkpoint moved past
        // its bus and reads for its bus alone.
        assert_eq!(publish_to_head(db, &near).await, head(db).await);
        assert_eq!(publish_to_head(db, &far).await, head(db).await);
    }
    let stored = read_all(db).await;
    for receiver in [&mut here_rx, &mut there_rx] {
        let mut received = Vec::new();
        let mut previous = 0;
        while let Ok(published) = receiver.try_recv() {
            assert_eq!(published.after, previous, "the event at {}", published.event.position);
            previous = published.event.position;
            received.push(StoredEvent::clone(&published.event));
        }
        assert_eq!(received, stored);
    }
    assert_stream_matches_store(&js, &target, db).await;
    js.delete_stream(&target.stream).await.unwrap();
}

async fn an_unreachable_nats_is_an_error(backend: Backend) {
    let test = TestDb::new(backend).await;
    let target = NatsTarget::new("nats://127.0.0.1:1");
    let result = OutboxRelay::connect(test.db.clone(), EventBus::default(), config(&target)).await;
    assert!(result.is_err(), "connecting to a closed port must fail");
}

on_both_backends!(
    concurrent_appends_reach_nats_once_and_in_order,
    a_restarted_relay_publishes_nothing_twice_and_loses_nothing,
    without_nats_the_bus_carries_every_event_in_order,
    each_bus_gets_every_event_exactly_once,
    an_unreachable_nats_is_an_error,
);
