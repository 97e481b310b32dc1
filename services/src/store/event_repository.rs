//! One event repository type over both backends, so that the rest of the server is written once,
//! and the one place every aggregate's events pass on their way into the store: they are linked
//! into their aggregate's hash chain here (`crate::integrity::chain`).
//!
//! cqrs-es' repository trait uses `async fn` and so cannot be a trait object; an enum that
//! delegates is the simplest way to choose the backend at run time.

use cqrs_es::Aggregate;
use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlite_es::SqliteEventRepository;

use super::Database;
use crate::integrity::chain::{self, LinkError};

pub struct EventRepository {
    db: Database,
    backend: Backend,
}

enum Backend {
    Postgres(PostgresEventRepository),
    Sqlite(SqliteEventRepository),
}

impl EventRepository {
    pub(super) fn new(db: Database) -> Self {
        let backend = match &db {
            Database::Postgres(pool) => Backend::Postgres(PostgresEventRepository::new(pool.clone())),
            Database::Sqlite(pool) => Backend::Sqlite(SqliteEventRepository::new(pool.clone())),
        };
        Self { db, backend }
    }

    /// The events with `prev_hash` and `hash` added to their metadata. cqrs-es commits one
    /// aggregate's consecutive events at a time; anything else is still linked correctly, each
    /// run of consecutive events after the stored event that precedes it.
    async fn linked(&self, events: &[SerializedEvent]) -> Result<Vec<SerializedEvent>, LinkError> {
        let mut linked = Vec::with_capacity(events.len());
        let mut last: Option<(&str, &str, usize, crate::integrity::ChainHash)> = None;
        for event in events {
            let prev = match last {
                Some((aggregate_type, aggregate_id, sequence, hash))
                    if aggregate_type == event.aggregate_type
                        && aggregate_id == event.aggregate_id
                        && sequence + 1 == event.sequence =>
                {
                    hash
                }
                _ => {
                    let sequence = i64::try_from(event.sequence).unwrap_or(i64::MAX);
                    chain::previous_hash(&self.db, &event.aggregate_type, &event.aggregate_id, sequence)
                        .await?
                }
            };
            let mut event = event.clone();
            let Value::Object(metadata) = &mut event.metadata else {
                return Err(LinkError::Malformed {
                    aggregate_type: event.aggregate_type,
                    aggregate_id: event.aggregate_id,
                    sequence: i64::try_from(event.sequence).unwrap_or(i64::MAX),
                    reason: "its metadata is not a JSON object".to_owned(),
                });
            };
            let hash = chain::link(
                prev,
                &event.aggregate_type,
                &event.aggregate_id,
                event.sequence as u64,
                &event.event_type,
                &event.event_version,
                &event.payload,
                metadata,
            );
            linked.push(event);
            let event = &events[linked.len() - 1];
            last = Some((&event.aggregate_type, &event.aggregate_id, event.sequence, hash));
        }
        Ok(linked)
    }
}

impl PersistedEventRepository for EventRepository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        match &self.backend {
            Backend::Postgres(repo) => repo.get_events::<A>(aggregate_id).await,
            Backend::Sqlite(repo) => repo.get_events::<A>(aggregate_id).await,
        }
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        match &self.backend {
            Backend::Postgres(repo) => repo.get_last_events::<A>(aggregate_id, last_sequence).await,
            Backend::Sqlite(repo) => repo.get_last_events::<A>(aggregate_id, last_sequence).await,
        }
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        match &self.backend {
            Backend::Postgres(repo) => repo.get_snapshot::<A>(aggregate_id).await,
            Backend::Sqlite(repo) => repo.get_snapshot::<A>(aggregate_id).await,
        }
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        let events = self.linked(events).await.map_err(|e| match e {
            LinkError::Database(e) => PersistenceError::ConnectionError(Box::new(e)),
            malformed => PersistenceError::DeserializationError(Box::new(malformed)),
        })?;
        match &self.backend {
            Backend::Postgres(repo) => repo.persist::<A>(&events, snapshot_update).await,
            Backend::Sqlite(repo) => repo.persist::<A>(&events, snapshot_update).await,
        }
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        match &self.backend {
            Backend::Postgres(repo) => repo.stream_events::<A>(aggregate_id).await,
            Backend::Sqlite(repo) => repo.stream_events::<A>(aggregate_id).await,
        }
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        match &self.backend {
            Backend::Postgres(repo) => repo.stream_all_events::<A>().await,
            Backend::Sqlite(repo) => repo.stream_all_events::<A>().await,
        }
    }
}
