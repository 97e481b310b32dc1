//! Linking events as they are written: each new event's metadata gets `prev_hash` (the hash of
//! the event before it in the same aggregate) and `hash` (its own), so that changing, removing or
//! slipping in an event breaks the chain.
//!
//! The chain is per aggregate: the event a new one follows is the one at `sequence - 1` of the
//! same aggregate, which cqrs-es has just loaded to decide the command, so it is already
//! committed and never changes again. Reading it outside the appending transaction is therefore
//! safe: the only race is two writers appending the same sequence, and the primary key lets only
//! one of them commit (the other sees an optimistic-lock conflict and retries with a fresh read).
//!
//! Events written before the chain existed have no `hash`. Their hashes are still defined (the
//! same formula, never stored), so the first chained event of such an aggregate points at the
//! computed hash of its unchained predecessor, and that history is covered from then on too.

use serde_json::Value;

use super::canonical::{ChainHash, EventContent, event_hash};
use super::rows::EventRow;
use crate::store::Database;
use domain::metadata::keys;

/// The stored hash of an event, if its metadata has a well-formed one.
pub fn stored_hash(metadata: &Value) -> Option<ChainHash> {
    metadata.get(keys::HASH)?.as_str().and_then(ChainHash::parse)
}

/// The `prev_hash` an event's metadata names, if it has a well-formed one.
pub fn stored_prev_hash(metadata: &Value) -> Option<ChainHash> {
    metadata.get(keys::PREV_HASH)?.as_str().and_then(ChainHash::parse)
}

/// Why an event cannot be linked.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot read the event before the one being appended: {0}")]
    Database(#[from] sqlx::Error),
    #[error("event {aggregate_type}/{aggregate_id} #{sequence} is malformed: {reason}")]
    Malformed { aggregate_type: String, aggregate_id: String, sequence: i64, reason: String },
}

/// Writes `prev_hash` and `hash` into `metadata` (a JSON object) for an event with this content,
/// following `prev`; returns the event's hash.
#[allow(clippy::too_many_arguments)]
pub fn link(
    prev: ChainHash,
    aggregate_type: &str,
    aggregate_id: &str,
    sequence: u64,
    event_type: &str,
    event_version: &str,
    payload: &Value,
    metadata: &mut serde_json::Map<String, Value>,
) -> ChainHash {
    metadata.remove(keys::HASH);
    metadata.insert(keys::PREV_HASH.to_owned(), Value::String(prev.to_hex()));
    let object = Value::Object(std::mem::take(metadata));
    let hash = event_hash(
        prev,
        &EventContent {
            aggregate_type,
            aggregate_id,
            sequence,
            event_type,
            event_version,
            payload,
            metadata: &object,
        },
    );
    let Value::Object(map) = object else { unreachable!("built as an object above") };
    *metadata = map;
    metadata.insert(keys::HASH.to_owned(), Value::String(hash.to_hex()));
    hash
}

/// The hash the event at `sequence` of this aggregate must point back to: genesis for the first,
/// the stored hash of the one before, or — when that one predates the chain — the hash computed
/// over the aggregate's whole unchained prefix.
pub async fn previous_hash(
    db: &Database,
    aggregate_type: &str,
    aggregate_id: &str,
    sequence: i64,
) -> Result<ChainHash, LinkError> {
    if sequence <= 1 {
        return Ok(ChainHash::GENESIS);
    }
    let before = EventRow::read_one(db, aggregate_type, aggregate_id, sequence - 1).await?;
    if let Some(row) = &before {
        let metadata = row.metadata().map_err(|reason| row.malformed(reason))?;
        if let Some(hash) = stored_hash(&metadata) {
            return Ok(hash);
        }
    }
    // Before the chain existed: compute what the stored hashes would have been.
    let mut running = ChainHash::GENESIS;
    for row in EventRow::read_before(db, aggregate_type, aggregate_id, sequence).await? {
        let (payload, metadata) = row.values().map_err(|reason| row.malformed(reason))?;
        running =
            stored_hash(&metadata).unwrap_or_else(|| event_hash(running, &row.content(&payload, &metadata)));
    }
    Ok(running)
}
