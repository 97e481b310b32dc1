//! Replay protection (server rule 7): every nonce a verified request carried, per (project,
//! keyId), kept for at least twice the window it was checked against.
//!
//! [`NonceStore`] is either this node's memory (one node) or the cluster's shared NATS bucket
//! (see [`super::shared`]), chosen once at start-up by configuration.
//!
//! The in-memory store keeps each nonce's digest (32 bytes), split into shards by that digest,
//! each behind its own mutex held for one probe and insert, so concurrent requests rarely meet.
//! Each shard also keeps its entries in arrival order and drops expired ones from the front on
//! every insert, so memory follows the request rate over the retention time. A hard cap bounds
//! it: when a shard is full of live nonces the request is refused (fail closed) rather than
//! forgetting a nonce that could then be replayed.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::fallback::ClusterStores;
use super::shared::nonce_digest;

const SHARDS: usize = 64;

/// A nonce as remembered: the digest of (project, keyId, nonce), [`nonce_digest`]. 32 bytes
/// whatever the length of the keyId, and no allocation; a collision would take a SHA-256 one.
type Entry = [u8; 32];

#[derive(Default)]
struct Shard {
    expiry: HashMap<Entry, Instant>,
    order: VecDeque<(Instant, Entry)>,
}

impl Shard {
    fn purge(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if *at > now {
                break;
            }
            let (at, entry) = self.order.pop_front().expect("front exists");
            // Only forget the entry if it was not recorded again later with a later expiry.
            if self.expiry.get(&entry).is_some_and(|e| *e <= at) {
                self.expiry.remove(&entry);
            }
        }
    }
}

/// Why a nonce was not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceRefusal {
    Replayed,
    StoreFull,
    /// The shared store did not answer: refuse rather than risk a replay.
    Unavailable,
}

/// Where the nonces of this node are recorded.
pub(crate) enum NonceStore {
    Memory(MemoryNonces),
    Cluster(std::sync::Arc<ClusterStores>),
}

impl NonceStore {
    /// Records the nonce if it was not seen within its retention; atomic per entry, across
    /// nodes for the cluster's store (whose bucket keeps every nonce for twice the largest window).
    pub async fn record(
        &self,
        api_key_id: Uuid,
        key_id: &str,
        nonce: [u8; 16],
        retention: Duration,
        now: Instant,
    ) -> Result<(), NonceRefusal> {
        match self {
            Self::Memory(memory) => memory.record(api_key_id, key_id, nonce, retention, now),
            Self::Cluster(cluster) => cluster.record_nonce(api_key_id, key_id, nonce, retention).await,
        }
    }
}

/// One node's nonces, in memory.
pub struct MemoryNonces {
    shards: Vec<Mutex<Shard>>,
    max_per_shard: usize,
}

impl MemoryNonces {
    pub fn new(max_entries: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            max_per_shard: (max_entries / SHARDS).max(1),
        }
    }

    /// Records the nonce if it was not seen within its retention; atomic per entry.
    pub fn record(
        &self,
        api_key_id: Uuid,
        key_id: &str,
        nonce: [u8; 16],
        retention: Duration,
        now: Instant,
    ) -> Result<(), NonceRefusal> {
        let entry: Entry = nonce_digest(api_key_id, key_id, &nonce);
        // The digest is uniform: its first bytes pick the shard.
        let pick = u64::from_le_bytes(entry[..8].try_into().expect("8 bytes"));
        let shard = &self.shards[(pick % SHARDS as u64) as usize];
        let mut shard = shard.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        shard.purge(now);
        if shard.expiry.get(&entry).is_some_and(|until| *until > now) {
            return Err(NonceRefusal::Replayed);
        }
        if shard.expiry.len() >= self.max_per_shard {
            return Err(NonceRefusal::StoreFull);
        }
        let until = now + retention;
        shard.expiry.insert(entry, until);
        shard.order.push_back((until, entry));
        Ok(())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(std::sync::PoisonError::into_inner).expiry.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_refused_until_its_retention_ends() {
        let store = MemoryNonces::new(1000);
        let key = Uuid::new_v4();
        let t0 = Instant::now();
        let keep = Duration::from_secs(240);
        assert_eq!(store.record(key, "k", [1; 16], keep, t0), Ok(()));
        assert_eq!(
            store.record(key, "k", [1; 16], keep, t0 + Duration::from_secs(239)),
            Err(NonceRefusal::Replayed)
        );
        // Another device or project may use the same bytes.
        assert_eq!(store.record(key, "other", [1; 16], keep, t0), Ok(()));
        assert_eq!(store.record(Uuid::new_v4(), "k", [1; 16], keep, t0), Ok(()));
        assert_eq!(store.record(key, "k", [1; 16], keep, t0 + keep), Ok(()));
    }

    #[test]
    fn expired_nonces_are_forgotten_and_live_ones_cap_the_store() {
        let store = MemoryNonces::new(SHARDS * 2);
        let key = Uuid::new_v4();
        let t0 = Instant::now();
        let keep = Duration::from_secs(1);
        let mut full = 0;
        for i in 0..(SHARDS * 4) as u32 {
            let mut n = [0; 16];
            n[..4].copy_from_slice(&i.to_le_bytes());
            if store.record(key, "k", n, keep, t0) == Err(NonceRefusal::StoreFull) {
                full += 1;
            }
        }
        assert!(full > 0 && store.len() <= SHARDS * 2);
        // Once they expire, the next inserts purge them.
        for i in 0..(SHARDS * 4) as u32 {
            let mut n = [1; 16];
            n[..4].copy_from_slice(&i.to_le_bytes());
            let _ = store.record(key, "k", n, keep, t0 + Duration::from_secs(2));
        }
        assert!(store.len() <= SHARDS * 2);
    }
}
