//! A cluster's nonces and limits through a NATS outage.
//!
//! Normally every check goes to the NATS KV buckets every node shares ([`SharedStores`]). When a
//! node cannot reach NATS it neither lets requests through unchecked nor refuses them all: the
//! cluster falls back to the database every node shares anyway for nonces, and each node takes
//! its share of every rate limit in memory. The nonce fallback stays sound — no nonce is accepted
//! twice anywhere in the cluster — by this protocol:
//!
//! 1. Every node announces itself in `gate_nodes` every [`HEARTBEAT`]. A node that has not managed
//!    to for [`FENCE`] refuses signed requests; the others take it for gone after [`STALE`].
//! 2. A node that cannot reach NATS starts a fallback (raises the epoch in `gate_fallback`) unless
//!    one is under way, and records on each heartbeat that it still cannot.
//! 3. A node that sees a new epoch checks every nonce in `gate_nonces` too (and still in NATS while
//!    NATS answers it), waits for the checks already under way, copies in the nonces it accepted
//!    through NATS that are still within their retention (it keeps them in memory for this), and
//!    only then announces that it has joined the epoch.
//! 4. A nonce that only the database has seen (NATS unreachable) is accepted once every live node
//!    has joined the epoch: from then on the database holds every nonce any node accepted within
//!    its retention, and every node checks it.
//! 5. The fallback lasts until [`LINGER`] (twice the largest freshness window, and a margin) after
//!    the last moment a node could not reach NATS: by then no nonce accepted without NATS is fresh
//!    enough to be accepted again, so NATS alone suffices once more.
//!
//! Limits need no such care, only an upper bound: a node that cannot reach NATS allows each
//! requests-per-minute limit divided by the live nodes (rounded up), and a tokens-per-day limit
//! only as far as the day's count last read from NATS, plus what this node counted since times
//! the live nodes, stays under it. A scope whose count was never read is refused meanwhile, and the
//! tokens counted are added to NATS once it answers again.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use domain::protocol::MAX_WINDOW;
use tokio::sync::{Notify, RwLock};
use uuid::Uuid;

use super::limits::{LimitScope, RequestLimiter, until_tomorrow};
use super::nonces::NonceRefusal;
use super::shared::{SharedStores, Unavailable, nonce_digest};
use crate::read_models::sql::{self, Arg, args};
use crate::store::Database;

/// How often a node announces itself, probes NATS and looks at the fallback.
pub(crate) const HEARTBEAT: Duration = Duration::from_millis(500);
/// A node that could not announce itself for this long refuses signed requests.
const FENCE: Duration = Duration::from_secs(2);
/// A node that has not announced itself for this long is taken for gone.
const STALE: Duration = Duration::from_secs(3);
/// How long a fallback lasts after the last moment a node could not reach NATS.
pub(crate) const LINGER: Duration = Duration::from_secs(2 * MAX_WINDOW.as_secs() + 60);
/// A nonce only the database has seen is accepted only while the fallback has at least this long
/// to run, so that the node's next heartbeat extends it well before it could end.
const LINGER_MARGIN: Duration = Duration::from_secs(30);
/// Nonces per statement when a node hands its nonces over.
const HANDOVER_CHUNK: usize = 500;
/// How often expired nonces and long-gone nodes are deleted.
const HOUSEKEEPING: Duration = Duration::from_secs(30);
/// A node's row is deleted after this long without an announcement.
const FORGET_NODE: Duration = Duration::from_secs(86_400);

/// How a node checks nonces at the moment, as its readiness report tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceChecks {
    /// In this node's memory (a single node without NATS).
    Memory,
    /// In NATS.
    Nats,
    /// In NATS and the database, during a fallback some node needed.
    NatsAndDatabase,
    /// In the database only: NATS does not answer this node, and every live node has joined.
    Database,
    /// Not at all for now: NATS does not answer and the fallback is not in place yet.
    Unavailable,
}

impl NonceChecks {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Nats => "nats",
            Self::NatsAndDatabase => "nats_and_database",
            Self::Database => "database",
            Self::Unavailable => "unavailable",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// NATS decides alone.
    Shared,
    /// The database decides too, since this fallback epoch began.
    Fallback { epoch: i64 },
}

/// Nonces and limits through NATS, falling back as described in the module documentation.
pub(crate) struct ClusterStores {
    shared: SharedStores,
    db: Database,
    node_id: String,
    /// Held for reading by a check in the shared mode, for writing to leave it.
    mode: RwLock<Mode>,
    /// The last epoch this node joined (its nonces handed over), 0 for none.
    joined: AtomicI64,
    /// The epoch every live node has joined, 0 for none.
    all_joined: AtomicI64,
    /// Until when (µs since the epoch) the current fallback lasts, 0 for none.
    fallback_until: AtomicI64,
    /// NATS did not answer; only the heartbeat's probe clears it.
    nats_down: AtomicBool,
    live_nodes: AtomicU64,
    /// Wakes the heartbeat early.
    wake: Arc<Notify>,
    /// When this node last announced itself (the moment before the write).
    announced: Mutex<Option<Instant>>,
    last_housekeeping: Mutex<Option<Instant>>,
    /// The nonces accepted through NATS in the shared mode, oldest first, until they expire.
    accepted: Mutex<VecDeque<(i64, [u8; 32])>>,
    max_accepted: usize,
    requests: RequestLimiter,
    tokens: Mutex<TokenCounts>,
}

#[derive(Default)]
struct TokenCounts {
    /// The day's count as last read from NATS, by (scope, day).
    read: HashMap<(LimitScope, i64), u64>,
    /// Tokens counted by this node that NATS does not have yet, by (scope, day).
    pending: HashMap<(LimitScope, i64), u64>,
}

impl std::fmt::Debug for ClusterStores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterStores").field("node_id", &self.node_id).finish_non_exhaustive()
    }
}

fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

fn span(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

fn day(now: DateTime<Utc>) -> i64 {
    now.timestamp().div_euclid(86_400)
}

impl ClusterStores {
    pub(crate) fn new(shared: SharedStores, db: Database, max_accepted: usize) -> Self {
        Self {
            shared,
            db,
            node_id: Uuid::new_v4().to_string(),
            mode: RwLock::new(Mode::Shared),
            joined: AtomicI64::new(0),
            all_joined: AtomicI64::new(0),
            fallback_until: AtomicI64::new(0),
            nats_down: AtomicBool::new(false),
            live_nodes: AtomicU64::new(1),
            wake: Arc::new(Notify::new()),
            announced: Mutex::new(None),
            last_housekeeping: Mutex::new(None),
            accepted: Mutex::new(VecDeque::new()),
            max_accepted,
            requests: RequestLimiter::default(),
            tokens: Mutex::new(TokenCounts::default()),
        }
    }

    /// How this node checks nonces now.
    pub(crate) async fn nonce_checks(&self) -> NonceChecks {
        let mode = *self.mode.read().await;
        match mode {
            Mode::Shared if self.nats_down() => NonceChecks::Unavailable,
            Mode::Shared => NonceChecks::Nats,
            Mode::Fallback { .. } if !self.nats_down() => NonceChecks::NatsAndDatabase,
            Mode::Fallback { epoch } if self.all_joined.load(Ordering::SeqCst) == epoch => {
                NonceChecks::Database
            }
            Mode::Fallback { .. } => NonceChecks::Unavailable,
        }
    }

    fn nats_down(&self) -> bool {
        self.nats_down.load(Ordering::SeqCst)
    }

    fn lost_nats(&self) {
        if !self.nats_down.swap(true, Ordering::SeqCst) {
            tracing::warn!("NATS does not answer: the gate falls back to the database for nonces");
            // The next heartbeat starts the fallback now rather than at its turn.
            self.wake.notify_one();
        }
    }

    fn live_nodes(&self) -> u64 {
        self.live_nodes.load(Ordering::SeqCst).max(1)
    }

    fn announced_recently(&self) -> bool {
        lock(&self.announced).is_some_and(|at| at.elapsed() < FENCE)
    }

    /// Records the nonce if no node has seen it within `retention`.
    pub(crate) async fn record_nonce(
        &self,
        api_key_id: Uuid,
        key_id: &str,
        nonce: [u8; 16],
        retention: Duration,
    ) -> Result<(), NonceRefusal> {
        if !self.announced_recently() {
            return Err(NonceRefusal::Unavailable);
        }
        let digest = nonce_digest(api_key_id, key_id, &nonce);
        let now = micros(Utc::now());
        let expires = now.saturating_add(span(retention));
        let mode = self.mode.read().await;
        let epoch = match *mode {
            Mode::Shared => {
                if self.nats_down() {
                    // The heartbeat starts (or joins) the fallback; until then, refuse.
                    return Err(NonceRefusal::Unavailable);
                }
                return match self.shared.create_nonce(&hex::encode(digest)).await {
                    Ok(true) => self.remember(now, expires, digest),
                    Ok(false) => Err(NonceRefusal::Replayed),
                    Err(Unavailable) => {
                        self.lost_nats();
                        Err(NonceRefusal::Unavailable)
                    }
                };
            }
            Mode::Fallback { epoch } => epoch,
        };
        drop(mode);
        let key = hex::encode(digest);
        // In a task of its own: a client that leaves abandons the wait, not the exchange.
        let insert = tokio::spawn({
            let (db, key) = (self.db.clone(), key.clone());
            async move { insert_nonce(&db, &key, now, expires).await }
        });
        match insert.await.unwrap_or_else(|e| Err(sqlx::Error::Io(std::io::Error::other(e)))) {
            Ok(true) => {}
            Ok(false) => return Err(NonceRefusal::Replayed),
            Err(e) => {
                tracing::warn!(error = %e, "the database refused a nonce during the NATS fallback");
                return Err(NonceRefusal::Unavailable);
            }
        }
        if !self.nats_down() {
            match self.shared.create_nonce(&key).await {
                Ok(true) => return Ok(()),
                Ok(false) => return Err(NonceRefusal::Replayed),
                Err(Unavailable) => self.lost_nats(),
            }
        }
        let joined = self.all_joined.load(Ordering::SeqCst) == epoch;
        let lasting = self.fallback_until.load(Ordering::SeqCst) > now.saturating_add(span(LINGER_MARGIN));
        if joined && lasting { Ok(()) } else { Err(NonceRefusal::Unavailable) }
    }

    /// Keeps a nonce NATS accepted, for the hand-over should a fallback begin within its retention.
    fn remember(&self, now: i64, expires: i64, digest: [u8; 32]) -> Result<(), NonceRefusal> {
        let mut accepted = lock(&self.accepted);
        while accepted.front().is_some_and(|(until, _)| *until <= now) {
            accepted.pop_front();
        }
        if accepted.len() >= self.max_accepted {
            // Accepted by NATS but not kept: a fallback could not be sound about it.
            return Err(NonceRefusal::StoreFull);
        }
        accepted.push_back((expires, digest));
        Ok(())
    }

    /// Takes one request from the (scope, limit) bucket: NATS's, or this node's share meanwhile.
    pub(crate) async fn take_request(
        &self,
        scope: LimitScope,
        per_minute: u32,
        now: DateTime<Utc>,
        instant: Instant,
    ) -> Result<Result<(), Duration>, Unavailable> {
        if !self.nats_down() {
            match self.shared.take_request(scope, per_minute, now).await {
                Ok(decision) => return Ok(decision),
                Err(Unavailable) => self.lost_nats(),
            }
        }
        if !self.announced_recently() {
            return Err(Unavailable);
        }
        let share = u32::try_from(u64::from(per_minute).div_ceil(self.live_nodes())).unwrap_or(per_minute);
        Ok(self.requests.check(scope, share, instant))
    }

    /// Refuses once the day's tokens reached `limit`, counting conservatively while NATS is away.
    pub(crate) async fn check_tokens(
        &self,
        scope: LimitScope,
        limit: u64,
        now: DateTime<Utc>,
    ) -> Result<Result<(), Duration>, Unavailable> {
        let used = self.tokens_used(scope, now).await?;
        Ok(if used >= limit { Err(until_tomorrow(now)) } else { Ok(()) })
    }

    /// The day's tokens for `scope`: NATS's count and what this node has not added to it yet, or
    /// while NATS is away an upper bound (see the module documentation).
    pub(crate) async fn tokens_used(
        &self,
        scope: LimitScope,
        now: DateTime<Utc>,
    ) -> Result<u64, Unavailable> {
        let key = (scope, day(now));
        if !self.nats_down() {
            match self.shared.tokens_used(scope, now).await {
                Ok(used) => {
                    let mut counts = lock(&self.tokens);
                    counts.read.insert(key, used);
                    return Ok(used.saturating_add(counts.pending.get(&key).copied().unwrap_or(0)));
                }
                Err(Unavailable) => self.lost_nats(),
            }
        }
        let counts = lock(&self.tokens);
        let read = counts.read.get(&key).copied().ok_or(Unavailable)?;
        let pending = counts.pending.get(&key).copied().unwrap_or(0);
        Ok(read.saturating_add(pending.saturating_mul(self.live_nodes())))
    }

    /// Counts tokens a forwarded request used: in NATS, or kept until NATS answers again.
    pub(crate) fn add_tokens(self: &Arc<Self>, scope: LimitScope, tokens: u64, now: DateTime<Utc>) {
        if self.nats_down() {
            self.keep_tokens(scope, tokens, now);
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.keep_tokens(scope, tokens, now);
            return;
        };
        let this = self.clone();
        runtime.spawn(async move {
            if this.shared.add_tokens(scope, tokens, now).await.is_err() {
                this.lost_nats();
                this.keep_tokens(scope, tokens, now);
            }
        });
    }

    /// Drops this node's fallback buckets that have fully refilled.
    pub(crate) fn sweep(&self, now: Instant) {
        self.requests.sweep(now);
    }

    fn keep_tokens(&self, scope: LimitScope, tokens: u64, now: DateTime<Utc>) {
        let mut counts = lock(&self.tokens);
        let pending = counts.pending.entry((scope, day(now))).or_default();
        *pending = pending.saturating_add(tokens);
    }

    /// Adds the tokens counted while NATS was away; what fails stays for the next heartbeat.
    async fn flush_tokens(&self) {
        let pending: Vec<_> = lock(&self.tokens).pending.drain().collect();
        let today = day(Utc::now());
        for ((scope, on), tokens) in pending {
            // A day that is over no longer limits anything.
            if on < today {
                continue;
            }
            let at = DateTime::from_timestamp(on * 86_400, 0).unwrap_or_else(Utc::now);
            if self.shared.add_tokens(scope, tokens, at).await.is_err() {
                self.lost_nats();
                self.keep_tokens(scope, tokens, at);
            }
        }
    }

    /// One heartbeat: probe NATS, start or extend the fallback, join a new epoch, announce this
    /// node, count the live nodes. Logged and retried at the next heartbeat when the database fails.
    pub(crate) async fn heartbeat(&self) {
        let started = Instant::now();
        let now = micros(Utc::now());
        // While NATS is away its probe waits out the whole bound: meanwhile the heartbeat goes on.
        let (nats_ok, stepped) = if self.nats_down() {
            tokio::join!(self.shared.probe(), self.step(now, true))
        } else {
            let nats_ok = self.shared.probe().await;
            if !nats_ok {
                self.lost_nats();
            }
            (nats_ok, self.step(now, !nats_ok).await)
        };
        if nats_ok {
            if self.nats_down.swap(false, Ordering::SeqCst) {
                tracing::info!("NATS answers again");
            }
            self.flush_tokens().await;
        }
        if let Err(e) = stepped {
            tracing::warn!(error = %e, "the gate's cluster heartbeat failed; retrying");
            return;
        }
        *lock(&self.announced) = Some(started);
        self.housekeeping(now).await;
    }

    async fn step(&self, now: i64, nats_down: bool) -> Result<(), sqlx::Error> {
        if nats_down {
            sql::execute(
                &self.db,
                "INSERT INTO gate_fallback (id, epoch, last_fallback_at) VALUES (1, 1, $1) \
                 ON CONFLICT (id) DO UPDATE SET \
                 epoch = CASE WHEN gate_fallback.last_fallback_at < $2 THEN gate_fallback.epoch + 1 \
                 ELSE gate_fallback.epoch END, \
                 last_fallback_at = CASE WHEN gate_fallback.last_fallback_at < $1 THEN $1 \
                 ELSE gate_fallback.last_fallback_at END",
                args![now, now - span(LINGER)],
            )
            .await?;
        }
        let last =
            sql::fetch_i64(&self.db, "SELECT COALESCE(MAX(last_fallback_at), 0) FROM gate_fallback", vec![])
                .await?;
        let until = if last > 0 { last.saturating_add(span(LINGER)) } else { 0 };
        let epoch = if until > now {
            sql::fetch_i64(&self.db, "SELECT COALESCE(MAX(epoch), 0) FROM gate_fallback", vec![]).await?
        } else {
            0
        };
        self.fallback_until.store(if epoch > 0 { until } else { 0 }, Ordering::SeqCst);
        if epoch > 0 && self.joined.load(Ordering::SeqCst) != epoch {
            self.join(epoch, now).await?;
        } else if epoch == 0 {
            let mut mode = self.mode.write().await;
            if *mode != Mode::Shared {
                tracing::info!("the NATS fallback is over: NATS alone checks nonces again");
                *mode = Mode::Shared;
            }
        }
        sql::execute(
            &self.db,
            "INSERT INTO gate_nodes (node_id, seen_at, epoch_seen) VALUES ($1, $2, $3) \
             ON CONFLICT (node_id) DO UPDATE SET seen_at = excluded.seen_at, epoch_seen = excluded.epoch_seen",
            args![self.node_id.as_str(), now, self.joined.load(Ordering::SeqCst)],
        )
        .await?;
        let cutoff = now - span(STALE);
        let live =
            sql::fetch_i64(&self.db, "SELECT COUNT(*) FROM gate_nodes WHERE seen_at > $1", args![cutoff])
                .await?;
        self.live_nodes.store(u64::try_from(live).unwrap_or(1).max(1), Ordering::SeqCst);
        if epoch > 0 {
            let joined = sql::fetch_i64(
                &self.db,
                "SELECT COUNT(*) FROM gate_nodes WHERE seen_at > $1 AND epoch_seen >= $2",
                args![cutoff, epoch],
            )
            .await?;
            self.all_joined.store(if joined >= live { epoch } else { 0 }, Ordering::SeqCst);
        } else {
            self.all_joined.store(0, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Joins a fallback epoch: checks in the database from now on, then hands over the nonces
    /// NATS accepted that are still within their retention.
    async fn join(&self, epoch: i64, now: i64) -> Result<(), sqlx::Error> {
        {
            // Taking the lock for writing waits for the checks NATS alone is deciding.
            let mut mode = self.mode.write().await;
            if *mode == Mode::Shared {
                tracing::warn!(epoch, "the cluster falls back to the database for nonces");
            }
            *mode = Mode::Fallback { epoch };
        }
        let live: Vec<(i64, [u8; 32])> = {
            let accepted = lock(&self.accepted);
            accepted.iter().filter(|(until, _)| *until > now).copied().collect()
        };
        for chunk in live.chunks(HANDOVER_CHUNK) {
            let mut values = Vec::with_capacity(chunk.len());
            let mut bound: Vec<Arg> = Vec::with_capacity(chunk.len() * 2);
            for (i, (until, digest)) in chunk.iter().enumerate() {
                values.push(format!("(${}, ${})", 2 * i + 1, 2 * i + 2));
                bound.push(hex::encode(digest).into());
                bound.push((*until).into());
            }
            let statement = format!(
                "INSERT INTO gate_nonces (nonce_key, expires_at) VALUES {} ON CONFLICT (nonce_key) DO NOTHING",
                values.join(", ")
            );
            sql::execute(&self.db, &statement, bound).await?;
        }
        tracing::info!(epoch, handed_over = live.len(), "joined the NATS fallback");
        self.joined.store(epoch, Ordering::SeqCst);
        Ok(())
    }

    async fn housekeeping(&self, now: i64) {
        {
            let mut last = lock(&self.last_housekeeping);
            if last.is_some_and(|at| at.elapsed() < HOUSEKEEPING) {
                return;
            }
            *last = Some(Instant::now());
        }
        let nonces = sql::execute(&self.db, "DELETE FROM gate_nonces WHERE expires_at <= $1", args![now]);
        if let Err(e) = nonces.await {
            tracing::debug!(error = %e, "cannot delete expired fallback nonces");
        }
        let nodes = sql::execute(
            &self.db,
            "DELETE FROM gate_nodes WHERE seen_at < $1",
            args![now - span(FORGET_NODE)],
        );
        if let Err(e) = nodes.await {
            tracing::debug!(error = %e, "cannot forget long-gone nodes");
        }
        let mut tokens = lock(&self.tokens);
        let today = day(Utc::now());
        tokens.read.retain(|(_, on), _| *on >= today);
    }
}

/// Records a nonce in the database, or says it is there and unexpired. An expired row is reused.
async fn insert_nonce(db: &Database, key: &str, now: i64, expires: i64) -> Result<bool, sqlx::Error> {
    let changed = sql::execute(
        db,
        "INSERT INTO gate_nonces (nonce_key, expires_at) VALUES ($1, $2) \
         ON CONFLICT (nonce_key) DO UPDATE SET expires_at = excluded.expires_at \
         WHERE gate_nonces.expires_at <= $3",
        args![key, expires, now],
    )
    .await?;
    Ok(changed == 1)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs the heartbeat until the stores are dropped.
pub(crate) async fn run(stores: Weak<ClusterStores>) {
    let mut ticker = tokio::time::interval(HEARTBEAT);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let Some(wake) = stores.upgrade().map(|cluster| cluster.wake.clone()) else { return };
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = wake.notified() => {}
        }
        let Some(cluster) = stores.upgrade() else { return };
        cluster.heartbeat().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::shared::SharedStoresConfig;
    use crate::store::DatabaseConfig;

    const PROJECT: Uuid = Uuid::from_u128(7);

    /// A fresh store (its directory lives as long as the returned guard) and buckets of its own.
    async fn scene() -> (tempfile::TempDir, Database, SharedStoresConfig) {
        let dir = tempfile::tempdir().unwrap();
        let config = DatabaseConfig::Sqlite { path: dir.path().join("keyguard.db") };
        let db = Database::connect(&config, 4).await.unwrap();
        db.migrate().await.unwrap();
        (dir, db, buckets())
    }

    fn buckets() -> SharedStoresConfig {
        let id = Uuid::new_v4().simple();
        SharedStoresConfig {
            nonce_bucket: format!("fallback_nonces_{id}"),
            limit_bucket: format!("fallback_limits_{id}"),
            timeout: Duration::from_millis(300),
        }
    }

    async fn nats(url: &str) -> async_nats::Client {
        async_nats::ConnectOptions::new().retry_on_initial_connect().connect(url).await.unwrap()
    }

    /// A node whose NATS is the test server (`KEYGUARD_TEST_NATS_URL`, which `scripts/test.sh` starts).
    async fn reachable(db: &Database, buckets: &SharedStoresConfig) -> Arc<ClusterStores> {
        let url = std::env::var("KEYGUARD_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
        let shared = SharedStores::new(nats(&url).await, buckets.clone());
        Arc::new(ClusterStores::new(shared, db.clone(), 1000))
    }

    /// A node that cannot reach NATS: nothing listens on loopback port 9.
    async fn cut_off(db: &Database, buckets: &SharedStoresConfig) -> Arc<ClusterStores> {
        let shared = SharedStores::new(nats("nats://127.0.0.1:9").await, buckets.clone());
        Arc::new(ClusterStores::new(shared, db.clone(), 1000))
    }

    async fn record(node: &ClusterStores, nonce: u8) -> Result<(), NonceRefusal> {
        node.record_nonce(PROJECT, "device", [nonce; 16], Duration::from_secs(600)).await
    }

    async fn remove(buckets: &SharedStoresConfig) {
        let url = std::env::var("KEYGUARD_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
        let jetstream = async_nats::jetstream::new(nats(&url).await);
        for bucket in [&buckets.nonce_bucket, &buckets.limit_bucket] {
            let _ = jetstream.delete_stream(format!("KV_{bucket}")).await;
        }
    }

    #[tokio::test]
    async fn a_node_that_has_not_announced_itself_refuses() {
        let (_dir, db, buckets) = scene().await;
        let node = cut_off(&db, &buckets).await;
        assert_eq!(record(&node, 1).await, Err(NonceRefusal::Unavailable));
    }

    #[tokio::test]
    async fn nodes_without_nats_share_their_nonces_through_the_database() {
        let (_dir, db, buckets) = scene().await;
        let (a, b) = (cut_off(&db, &buckets).await, cut_off(&db, &buckets).await);
        a.heartbeat().await;
        b.heartbeat().await;
        assert_eq!(
            (a.nonce_checks().await, b.nonce_checks().await),
            (NonceChecks::Database, NonceChecks::Database)
        );
        assert_eq!(record(&a, 1).await, Ok(()));
        assert_eq!(record(&b, 1).await, Err(NonceRefusal::Replayed));
        assert_eq!(record(&b, 2).await, Ok(()));
        assert_eq!(record(&a, 2).await, Err(NonceRefusal::Replayed));
    }

    #[tokio::test]
    async fn a_fallback_waits_for_every_live_node_to_hand_over_what_nats_accepted() {
        let (_dir, db, buckets) = scene().await;
        let a = reachable(&db, &buckets).await;
        a.heartbeat().await;
        assert_eq!(a.nonce_checks().await, NonceChecks::Nats);
        assert_eq!(record(&a, 1).await, Ok(()), "accepted through NATS alone");

        // B cannot reach NATS: it starts a fallback, but A has not joined it yet.
        let b = cut_off(&db, &buckets).await;
        b.heartbeat().await;
        assert_eq!(b.nonce_checks().await, NonceChecks::Unavailable);
        assert_eq!(record(&b, 2).await, Err(NonceRefusal::Unavailable));

        // A joins (handing over nonce 1) and checks both stores from now on.
        a.heartbeat().await;
        assert_eq!(a.nonce_checks().await, NonceChecks::NatsAndDatabase);
        b.heartbeat().await;
        assert_eq!(b.nonce_checks().await, NonceChecks::Database);
        assert_eq!(record(&b, 1).await, Err(NonceRefusal::Replayed), "NATS's nonce was handed over");
        assert_eq!(record(&b, 3).await, Ok(()));
        assert_eq!(record(&a, 3).await, Err(NonceRefusal::Replayed), "A checks the database too");
        assert_eq!(record(&a, 4).await, Ok(()));
        assert_eq!(record(&b, 4).await, Err(NonceRefusal::Replayed));
        remove(&buckets).await;
    }

    #[tokio::test]
    async fn the_fallback_ends_only_long_after_the_last_node_without_nats() {
        let (_dir, db, buckets) = scene().await;
        let a = reachable(&db, &buckets).await;
        let b = cut_off(&db, &buckets).await;
        b.heartbeat().await;
        a.heartbeat().await;
        assert_eq!(a.nonce_checks().await, NonceChecks::NatsAndDatabase);
        let last = micros(Utc::now());
        a.step(last + span(LINGER) - span(Duration::from_secs(60)), false).await.unwrap();
        assert_eq!(
            a.nonce_checks().await,
            NonceChecks::NatsAndDatabase,
            "a nonce of the fallback may still be fresh"
        );
        a.step(last + span(LINGER) + span(Duration::from_secs(1)), false).await.unwrap();
        assert_eq!(a.nonce_checks().await, NonceChecks::Nats);
        remove(&buckets).await;
    }

    #[tokio::test]
    async fn without_nats_a_node_takes_its_share_of_limits_and_refuses_unknown_budgets() {
        let (_dir, db, buckets) = scene().await;
        let (a, b) = (cut_off(&db, &buckets).await, cut_off(&db, &buckets).await);
        a.heartbeat().await;
        b.heartbeat().await;
        a.heartbeat().await;
        let scope = LimitScope::Device(Uuid::new_v4());
        let (now, instant) = (Utc::now(), Instant::now());
        // Two live nodes: each may take half of 3 a minute, rounded up.
        assert_eq!(a.take_request(scope, 3, now, instant).await, Ok(Ok(())));
        assert_eq!(a.take_request(scope, 3, now, instant).await, Ok(Ok(())));
        assert!(matches!(a.take_request(scope, 3, now, instant).await, Ok(Err(_))));
        // A day's count never read from NATS cannot be bounded: refused, not guessed.
        assert_eq!(a.check_tokens(scope, 1000, now).await, Err(Unavailable));
        // One that was read is bounded by what this node counted since, times the live nodes.
        lock(&a.tokens).read.insert((scope, day(now)), 900);
        assert_eq!(a.check_tokens(scope, 1000, now).await, Ok(Ok(())));
        a.add_tokens(scope, 40, now);
        assert_eq!(a.tokens_used(scope, now).await, Ok(980));
        a.add_tokens(scope, 10, now);
        assert_eq!(a.check_tokens(scope, 1000, now).await, Ok(Err(until_tomorrow(now))));
    }
}
