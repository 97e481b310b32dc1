//! Rate limits on the proxy path: requests per minute and tokens per (UTC) day, each per device
//! and per project key. [`Limits`] keeps them in this node's memory (one node) or in the
//! cluster's shared NATS bucket (see [`super::shared`], and [`super::fallback`] for while NATS
//! is unreachable), chosen once at start-up.
//!
//! Requests per minute use GCRA (the generic cell rate algorithm `governor` implements): a
//! bucket of `n` requests that refills at `n` per minute, so a quiet device may burst `n`
//! requests and is then held to one every `60 s / n`. The state is one instant per bucket
//! behind its own small mutex; the map of buckets is only write-locked to add a new one.
//!
//! Tokens per day are counted from the usage the forwarder reports after a response
//! ([`super::Gate::record_tokens`]); a request is refused once the day's count has reached the
//! limit, and told to retry at the next UTC midnight.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Days, NaiveTime, Utc};
use uuid::Uuid;

use super::fallback::ClusterStores;
use super::shared::Unavailable;

/// Where this node counts requests and tokens.
pub(crate) enum Limits {
    Memory { requests: RequestLimiter, tokens: TokenCounter },
    Cluster(Arc<ClusterStores>),
}

impl Limits {
    pub fn memory() -> Self {
        Self::Memory { requests: RequestLimiter::default(), tokens: TokenCounter::default() }
    }

    /// Takes one request from the bucket, or says how long until one is available.
    pub async fn take_request(
        &self,
        scope: LimitScope,
        per_minute: u32,
        now: DateTime<Utc>,
        instant: Instant,
    ) -> Result<Result<(), Duration>, Unavailable> {
        match self {
            Self::Memory { requests, .. } => Ok(requests.check(scope, per_minute, instant)),
            Self::Cluster(cluster) => cluster.take_request(scope, per_minute, now, instant).await,
        }
    }

    /// Refuses once the day's tokens have reached `limit`.
    pub async fn check_tokens(
        &self,
        scope: LimitScope,
        limit: u64,
        now: DateTime<Utc>,
    ) -> Result<Result<(), Duration>, Unavailable> {
        match self {
            Self::Memory { tokens, .. } => Ok(tokens.check(scope, limit, now)),
            Self::Cluster(cluster) => cluster.check_tokens(scope, limit, now).await,
        }
    }

    /// Counts tokens a forwarded request used. The shared count is updated in the background:
    /// the response has already been sent and nothing waits on it.
    pub fn add_tokens(&self, scope: LimitScope, tokens: u64, now: DateTime<Utc>) {
        match self {
            Self::Memory { tokens: counter, .. } => counter.add(scope, tokens, now),
            Self::Cluster(cluster) => cluster.add_tokens(scope, tokens, now),
        }
    }

    pub async fn tokens_used(&self, scope: LimitScope, now: DateTime<Utc>) -> Result<u64, Unavailable> {
        match self {
            Self::Memory { tokens, .. } => Ok(tokens.used_today(scope, now)),
            Self::Cluster(cluster) => cluster.tokens_used(scope, now).await,
        }
    }

    /// Drops in-memory buckets that have fully refilled; the shared bucket expires its own.
    pub fn sweep(&self, now: Instant) {
        match self {
            Self::Memory { requests, .. } => requests.sweep(now),
            Self::Cluster(cluster) => cluster.sweep(now),
        }
    }
}

/// Which bucket a limit counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitScope {
    Device(Uuid),
    ApiKey(Uuid),
}

impl LimitScope {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitScope::Device(_) => "device",
            LimitScope::ApiKey(_) => "api_key",
        }
    }
}

struct Gcra {
    /// Theoretical arrival time of the next request.
    tat: Instant,
}

/// One bucket per scope and limit.
type Buckets = HashMap<(LimitScope, u32), Arc<Mutex<Gcra>>>;

/// Requests per minute in this node's memory, one GCRA bucket per scope and limit.
#[derive(Default)]
pub struct RequestLimiter {
    buckets: RwLock<Buckets>,
}

impl RequestLimiter {
    /// Takes one request from the bucket, or says how long until one is available.
    pub fn check(&self, scope: LimitScope, per_minute: u32, now: Instant) -> Result<(), Duration> {
        if per_minute == 0 {
            return Err(Duration::from_secs(60));
        }
        // Keyed by the limit too, so a changed policy starts a fresh bucket.
        let key = (scope, per_minute);
        let existing =
            self.buckets.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(&key).cloned();
        let bucket = match existing {
            Some(b) => b,
            None => self
                .buckets
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .entry(key)
                .or_insert_with(|| Arc::new(Mutex::new(Gcra { tat: now })))
                .clone(),
        };
        let interval = Duration::from_secs(60) / per_minute;
        let burst = interval * per_minute;
        let mut state = bucket.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let next_tat = state.tat.max(now) + interval;
        // Allowed when the bucket, after taking this request, would not hold more than `burst`.
        let allowed_from = next_tat.checked_sub(burst).unwrap_or(now);
        if allowed_from > now {
            return Err(allowed_from - now);
        }
        state.tat = next_tat;
        Ok(())
    }

    /// Drops buckets that have fully refilled (they behave exactly like new ones).
    pub fn sweep(&self, now: Instant) {
        self.buckets
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|_, b| b.lock().map(|g| g.tat > now).unwrap_or(false));
    }
}

struct DayCount {
    /// Days since the epoch (UTC) the count belongs to.
    day: AtomicU64,
    tokens: AtomicU64,
}

#[derive(Default)]
pub(crate) struct TokenCounter {
    counts: RwLock<HashMap<LimitScope, Arc<DayCount>>>,
}

fn day_of(now: DateTime<Utc>) -> u64 {
    u64::try_from(now.timestamp().div_euclid(86_400)).unwrap_or_default()
}

/// Time until the next UTC midnight.
pub(crate) fn until_tomorrow(now: DateTime<Utc>) -> Duration {
    let tomorrow =
        now.date_naive().checked_add_days(Days::new(1)).map(|d| d.and_time(NaiveTime::MIN).and_utc());
    tomorrow.and_then(|t| (t - now).to_std().ok()).unwrap_or(Duration::from_secs(86_400))
}

impl TokenCounter {
    pub fn add(&self, scope: LimitScope, tokens: u64, now: DateTime<Utc>) {
        let today = day_of(now);
        let existing =
            self.counts.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(&scope).cloned();
        let count = existing.unwrap_or_else(|| {
            self.counts
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .entry(scope)
                .or_insert_with(|| {
                    Arc::new(DayCount { day: AtomicU64::new(today), tokens: AtomicU64::new(0) })
                })
                .clone()
        });
        if count.day.swap(today, Ordering::AcqRel) != today {
            count.tokens.store(0, Ordering::Release);
        }
        count.tokens.fetch_add(tokens, Ordering::AcqRel);
    }

    pub fn used_today(&self, scope: LimitScope, now: DateTime<Utc>) -> u64 {
        let counts = self.counts.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        match counts.get(&scope) {
            Some(c) if c.day.load(Ordering::Acquire) == day_of(now) => c.tokens.load(Ordering::Acquire),
            _ => 0,
        }
    }

    /// Refuses when the day's usage has reached `limit`; says how long until the count resets.
    pub fn check(&self, scope: LimitScope, limit: u64, now: DateTime<Utc>) -> Result<(), Duration> {
        if self.used_today(scope, now) >= limit { Err(until_tomorrow(now)) } else { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_allows_a_burst_then_one_per_interval() {
        let limiter = RequestLimiter::default();
        let scope = LimitScope::Device(Uuid::new_v4());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check(scope, 3, t0), Ok(()));
        }
        let wait = limiter.check(scope, 3, t0).unwrap_err();
        assert!(wait > Duration::from_secs(19) && wait <= Duration::from_secs(20), "{wait:?}");
        assert_eq!(limiter.check(scope, 3, t0 + Duration::from_secs(20)), Ok(()));
        assert!(limiter.check(scope, 3, t0 + Duration::from_secs(20)).is_err());
        // Other buckets are independent.
        assert_eq!(limiter.check(LimitScope::ApiKey(Uuid::new_v4()), 3, t0), Ok(()));
    }

    #[test]
    fn tokens_count_per_day_and_reset_at_midnight() {
        let counter = TokenCounter::default();
        let scope = LimitScope::ApiKey(Uuid::new_v4());
        let noon: DateTime<Utc> = "2025-01-15T12:00:00Z".parse().unwrap();
        counter.add(scope, 600, noon);
        assert_eq!(counter.check(scope, 1000, noon), Ok(()));
        counter.add(scope, 400, noon);
        assert_eq!(counter.check(scope, 1000, noon), Err(Duration::from_secs(12 * 3600)));
        let next_day: DateTime<Utc> = "2025-01-16T00:00:01Z".parse().unwrap();
        assert_eq!(counter.check(scope, 1000, next_day), Ok(()));
        counter.add(scope, 1, next_day);
        assert_eq!(counter.used_today(scope, next_day), 1);
    }
}
