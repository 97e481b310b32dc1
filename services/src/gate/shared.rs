//! The nonce store and rate limits of a cluster: NATS JetStream key-value buckets that every
//! `keyguard` node reads and writes, so that a nonce used on one node is refused on all of them
//! and a limit counts the requests of every node.
//!
//! - Nonces: one key per (project, keyId, nonce), written with `create`, which JetStream only
//!   accepts when the key holds no value: an atomic first use across nodes. The bucket keeps
//!   entries for twice the largest window, so every nonce outlives the window it was checked in.
//! - Requests per minute: the same GCRA as the in-memory limiter, its one number (the
//!   theoretical arrival time) per (scope, limit) stored in the bucket and advanced by
//!   compare-and-swap on the entry's revision, retried on conflict. Unlike fixed per-minute
//!   counters it has no window edge where twice the limit gets through.
//! - Tokens per day: one counter per (scope, UTC day), added to by compare-and-swap.
//!
//! Every call is bounded by [`SharedStoresConfig::timeout`]; a store that does not answer in
//! time makes the caller refuse the request (fail closed), never let it through unchecked.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use chrono::{DateTime, Utc};
use domain::protocol::MAX_WINDOW;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;
use uuid::Uuid;

use super::limits::LimitScope;

/// Compare-and-swap attempts before a contended update gives up (and the request is refused).
const CAS_ATTEMPTS: usize = 32;

/// Where the shared stores live and how long to wait for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedStoresConfig {
    /// The KV bucket of used nonces.
    pub nonce_bucket: String,
    /// The KV bucket of request and token counters.
    pub limit_bucket: String,
    /// How long one check may wait for NATS before the request is refused.
    pub timeout: Duration,
}

impl Default for SharedStoresConfig {
    fn default() -> Self {
        Self {
            nonce_bucket: "keyguard_nonces".into(),
            limit_bucket: "keyguard_limits".into(),
            timeout: Duration::from_secs(1),
        }
    }
}

/// The shared store did not answer, or answered with an error: the request must not pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unavailable;

/// The NATS-backed nonce store and limiters. Cheap to clone; clones share the buckets.
#[derive(Clone)]
pub struct SharedStores {
    inner: Arc<SharedInner>,
}

struct SharedInner {
    jetstream: jetstream::Context,
    config: SharedStoresConfig,
    // Opened on first use, so that a node starts while NATS is down (and refuses meanwhile).
    nonces: OnceCell<kv::Store>,
    limits: OnceCell<kv::Store>,
}

impl std::fmt::Debug for SharedStores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedStores").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

impl SharedStores {
    pub fn new(client: async_nats::Client, config: SharedStoresConfig) -> Self {
        Self {
            inner: Arc::new(SharedInner {
                jetstream: jetstream::new(client),
                config,
                nonces: OnceCell::new(),
                limits: OnceCell::new(),
            }),
        }
    }

    /// Records a nonce by its key (the hex of [`nonce_digest`]); `Ok(false)` when it was there already.
    pub(crate) async fn create_nonce(&self, key: &str) -> Result<bool, Unavailable> {
        self.bounded(async {
            let store = self.nonces().await?;
            match store.create(key, Vec::from([1u8]).into()).await {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
                Err(e) => {
                    tracing::warn!(error = %e, "the shared nonce store refused a write");
                    Err(Unavailable)
                }
            }
        })
        .await
    }

    /// Takes one request from the (scope, limit) bucket, or says how long until one is free.
    pub(crate) async fn take_request(
        &self,
        scope: LimitScope,
        per_minute: u32,
        now: DateTime<Utc>,
    ) -> Result<Result<(), Duration>, Unavailable> {
        if per_minute == 0 {
            return Ok(Err(Duration::from_secs(60)));
        }
        let key = format!("rpm.{}.{}.{per_minute}", scope.as_str(), scope_id(scope).simple());
        let now_us = now.timestamp_micros();
        self.bounded(async {
            let store = self.limits().await?;
            compare_and_swap(&Kv(store), &key, |current| {
                let tat = current.and_then(parse_i64);
                gcra_step(tat, now_us, per_minute).map(|next| next.to_string().into_bytes())
            })
            .await
        })
        .await
    }

    pub(crate) async fn tokens_used(
        &self,
        scope: LimitScope,
        now: DateTime<Utc>,
    ) -> Result<u64, Unavailable> {
        let key = token_key(scope, now);
        self.bounded(async {
            let store = self.limits().await?;
            let (value, _) = Kv(store).read(&key).await?;
            Ok(value.as_deref().and_then(parse_u64).unwrap_or(0))
        })
        .await
    }

    pub(crate) async fn add_tokens(
        &self,
        scope: LimitScope,
        tokens: u64,
        now: DateTime<Utc>,
    ) -> Result<(), Unavailable> {
        let key = token_key(scope, now);
        self.bounded(async {
            let store = self.limits().await?;
            compare_and_swap(&Kv(store), &key, |current| {
                let used = current.and_then(parse_u64).unwrap_or(0);
                Ok(used.saturating_add(tokens).to_string().into_bytes())
            })
            .await
            .map(|_| ())
        })
        .await
    }

    /// Whether JetStream answers for the nonce bucket now (within the usual bound).
    pub(crate) async fn probe(&self) -> bool {
        self.bounded(async {
            let store = self.nonces().await?;
            // A read of a key no one writes: a round trip (the bucket's status is cached).
            store.get("probe").await.map(|_| ()).map_err(|e| {
                tracing::debug!(error = %e, "the shared nonce bucket does not answer");
                Unavailable
            })
        })
        .await
        .is_ok()
    }

    async fn bounded<T>(&self, work: impl Future<Output = Result<T, Unavailable>>) -> Result<T, Unavailable> {
        match tokio::time::timeout(self.inner.config.timeout, work).await {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!(timeout = ?self.inner.config.timeout, "the shared gate store did not answer in time");
                Err(Unavailable)
            }
        }
    }

    async fn nonces(&self) -> Result<&kv::Store, Unavailable> {
        let config = &self.inner.config;
        // Twice the largest window any policy may set, so every nonce outlives its window.
        self.open(&self.inner.nonces, &config.nonce_bucket, MAX_WINDOW * 2).await
    }

    async fn limits(&self) -> Result<&kv::Store, Unavailable> {
        // A day's token counter must last until the day is over.
        self.open(&self.inner.limits, &self.inner.config.limit_bucket, Duration::from_secs(2 * 86_400)).await
    }

    async fn open<'a>(
        &self,
        cell: &'a OnceCell<kv::Store>,
        bucket: &str,
        max_age: Duration,
    ) -> Result<&'a kv::Store, Unavailable> {
        cell.get_or_try_init(|| async {
            // The stream `create_key_value` would make (history 1, rollups, direct gets), made
            // here because `create_key_value` first asks for the account's details, which
            // async-nats 0.51 cannot parse from a 2.9 server. Idempotent across nodes.
            let stream = jetstream::stream::Config {
                name: format!("KV_{bucket}"),
                subjects: vec![format!("$KV.{bucket}.>")],
                max_messages_per_subject: 1,
                max_age,
                allow_rollup: true,
                deny_delete: true,
                allow_direct: true,
                discard: jetstream::stream::DiscardPolicy::New,
                num_replicas: 1,
                ..Default::default()
            };
            if let Err(e) = self.inner.jetstream.get_or_create_stream(stream).await {
                tracing::warn!(bucket, error = %e, "cannot create a shared gate bucket");
                return Err(Unavailable);
            }
            self.inner.jetstream.get_key_value(bucket).await.map_err(|e| {
                tracing::warn!(bucket, error = %e, "cannot open a shared gate bucket");
                Unavailable
            })
        })
        .await
    }
}

#[cfg(test)]
fn nonce_key(api_key_id: Uuid, key_id: &str, nonce: &[u8; 16]) -> String {
    hex::encode(nonce_digest(api_key_id, key_id, nonce))
}

/// What identifies a nonce; its hex spelling is the nonce's KV key (and its database key during a
/// fallback). A hash, because KV keys allow only a few characters and a keyId is client text.
/// The fields are length-framed so that no two triples share an input.
pub(crate) fn nonce_digest(api_key_id: Uuid, key_id: &str, nonce: &[u8; 16]) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(b"keyguard-nonce-v1");
    hash.update(api_key_id.as_bytes());
    hash.update((key_id.len() as u64).to_be_bytes());
    hash.update(key_id.as_bytes());
    hash.update(nonce);
    hash.finalize().into()
}

fn token_key(scope: LimitScope, now: DateTime<Utc>) -> String {
    format!("tpd.{}.{}.{}", scope.as_str(), scope_id(scope).simple(), now.timestamp().div_euclid(86_400))
}

fn scope_id(scope: LimitScope) -> Uuid {
    match scope {
        LimitScope::Device(id) | LimitScope::ApiKey(id) => id,
    }
}

fn parse_i64(bytes: &[u8]) -> Option<i64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

fn parse_u64(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// One GCRA decision, in microseconds since the epoch: the new theoretical arrival time if the
/// request fits, or the wait until it would.
pub(crate) fn gcra_step(tat: Option<i64>, now: i64, per_minute: u32) -> Result<i64, Duration> {
    let interval = 60_000_000 / i64::from(per_minute.max(1));
    let burst = interval * i64::from(per_minute.max(1));
    let next = tat.unwrap_or(now).max(now) + interval;
    let allowed_from = next - burst;
    if allowed_from > now {
        Err(Duration::from_micros(u64::try_from(allowed_from - now).unwrap_or(u64::MAX)))
    } else {
        Ok(next)
    }
}

/// What a compare-and-swap write found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Write {
    Done,
    /// Someone wrote the key since it was read: read again.
    Conflict,
}

/// A store with revisions, as the compare-and-swap loop needs it.
pub(crate) trait Versioned {
    /// The current value (absent when never written or deleted) and the revision to expect
    /// (absent when the key was never written).
    fn read(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<(Option<Vec<u8>>, Option<u64>), Unavailable>> + Send;
    /// Writes if the key is still at `revision` (`None`: if it holds no value).
    fn write(
        &self,
        key: &str,
        value: Vec<u8>,
        revision: Option<u64>,
    ) -> impl Future<Output = Result<Write, Unavailable>> + Send;
}

/// Reads, lets `step` decide, writes at the read revision; retries on conflict. `step` may
/// refuse (a limit reached), which writes nothing.
pub(crate) async fn compare_and_swap<S: Versioned>(
    store: &S,
    key: &str,
    mut step: impl FnMut(Option<&[u8]>) -> Result<Vec<u8>, Duration>,
) -> Result<Result<(), Duration>, Unavailable> {
    for _ in 0..CAS_ATTEMPTS {
        let (value, revision) = store.read(key).await?;
        let next = match step(value.as_deref()) {
            Ok(next) => next,
            Err(wait) => return Ok(Err(wait)),
        };
        match store.write(key, next, revision).await? {
            Write::Done => return Ok(Ok(())),
            Write::Conflict => continue,
        }
    }
    tracing::warn!(key, "a shared counter stayed contended through every attempt");
    Err(Unavailable)
}

struct Kv<'a>(&'a kv::Store);

impl Versioned for Kv<'_> {
    async fn read(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u64>), Unavailable> {
        match self.0.entry(key).await {
            Ok(None) => Ok((None, None)),
            Ok(Some(entry)) => {
                let value = (entry.operation == kv::Operation::Put).then(|| entry.value.to_vec());
                Ok((value, Some(entry.revision)))
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the shared limit store");
                Err(Unavailable)
            }
        }
    }

    async fn write(&self, key: &str, value: Vec<u8>, revision: Option<u64>) -> Result<Write, Unavailable> {
        let written = match revision {
            Some(revision) => match self.0.update(key, value.into(), revision).await {
                Ok(_) => Ok(Write::Done),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(Write::Conflict),
                Err(e) => Err(e.to_string()),
            },
            None => match self.0.create(key, value.into()).await {
                Ok(_) => Ok(Write::Done),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(Write::Conflict),
                Err(e) => Err(e.to_string()),
            },
        };
        written.map_err(|error| {
            tracing::warn!(%error, "cannot write the shared limit store");
            Unavailable
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn nonce_keys_are_valid_kv_keys_and_separate_every_field() {
        let project = Uuid::new_v4();
        let key = nonce_key(project, "abc", &[7; 16]);
        assert_eq!(key.len(), 64);
        assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(key, nonce_key(project, "abc", &[7; 16]), "stable across nodes");
        assert_ne!(key, nonce_key(Uuid::new_v4(), "abc", &[7; 16]));
        assert_ne!(key, nonce_key(project, "abd", &[7; 16]));
        assert_ne!(key, nonce_key(project, "abc", &[8; 16]));
        // The keyId's length is framed, so bytes cannot move between keyId and nonce.
        assert_ne!(nonce_key(project, "", &[0; 16]), nonce_key(project, "\0", &[0; 16]));
    }

    #[test]
    fn gcra_step_allows_a_burst_then_one_per_interval() {
        let t0 = 1_700_000_000_000_000;
        let mut tat = None;
        for _ in 0..3 {
            tat = Some(gcra_step(tat, t0, 3).unwrap());
        }
        let wait = gcra_step(tat, t0, 3).unwrap_err();
        assert_eq!(wait, Duration::from_secs(20));
        assert!(gcra_step(tat, t0 + 20_000_000, 3).is_ok());
        // A state older than a minute is a full bucket again.
        assert_eq!(gcra_step(tat, t0 + 120_000_000, 3), Ok(t0 + 140_000_000));
    }

    /// A store that lets another writer in between each read and write, `conflicts` times.
    struct Contended {
        entries: Mutex<HashMap<String, (Vec<u8>, u64)>>,
        conflicts: Mutex<usize>,
        writes: Mutex<usize>,
    }

    impl Contended {
        fn new(conflicts: usize) -> Self {
            Self { entries: Mutex::default(), conflicts: Mutex::new(conflicts), writes: Mutex::new(0) }
        }
        fn value(&self, key: &str) -> Option<u64> {
            self.entries.lock().unwrap().get(key).and_then(|(v, _)| parse_u64(v))
        }
    }

    impl Versioned for Contended {
        async fn read(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u64>), Unavailable> {
            let entries = self.entries.lock().unwrap();
            Ok(entries.get(key).map(|(v, r)| (Some(v.clone()), Some(*r))).unwrap_or((None, None)))
        }

        async fn write(
            &self,
            key: &str,
            value: Vec<u8>,
            revision: Option<u64>,
        ) -> Result<Write, Unavailable> {
            *self.writes.lock().unwrap() += 1;
            let mut entries = self.entries.lock().unwrap();
            let mut conflicts = self.conflicts.lock().unwrap();
            if *conflicts > 0 {
                // Another node adds 1 first.
                *conflicts -= 1;
                let (old, rev) = entries.get(key).cloned().unwrap_or((b"0".to_vec(), 0));
                let bumped = parse_u64(&old).unwrap() + 1;
                entries.insert(key.to_owned(), (bumped.to_string().into_bytes(), rev + 1));
            }
            let current = entries.get(key).map(|(_, r)| *r);
            if current != revision {
                return Ok(Write::Conflict);
            }
            entries.insert(key.to_owned(), (value, revision.unwrap_or(0) + 1));
            Ok(Write::Done)
        }
    }

    fn add(n: u64) -> impl FnMut(Option<&[u8]>) -> Result<Vec<u8>, Duration> {
        move |current| Ok((current.and_then(parse_u64).unwrap_or(0) + n).to_string().into_bytes())
    }

    #[tokio::test]
    async fn compare_and_swap_retries_on_conflict_and_loses_no_update() {
        let store = Contended::new(3);
        assert_eq!(compare_and_swap(&store, "k", add(10)).await, Ok(Ok(())));
        // Three concurrent +1s got in first; the +10 was retried on top of them, not over them.
        assert_eq!(store.value("k"), Some(13));
        assert_eq!(*store.writes.lock().unwrap(), 4);
    }

    #[tokio::test]
    async fn compare_and_swap_gives_up_when_always_contended_and_writes_nothing_when_refused() {
        let store = Contended::new(usize::MAX);
        assert_eq!(compare_and_swap(&store, "k", add(1)).await, Err(Unavailable));
        assert_eq!(*store.writes.lock().unwrap(), CAS_ATTEMPTS);

        let store = Contended::new(0);
        let refused = compare_and_swap(&store, "k", |_| Err(Duration::from_secs(5))).await;
        assert_eq!(refused, Ok(Err(Duration::from_secs(5))));
        assert_eq!(*store.writes.lock().unwrap(), 0);
    }
}
