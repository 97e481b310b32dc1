//! Slows down and then locks out password guessing, per account and per client IP.
//!
//! Pure bookkeeping: the caller asks [`LoginThrottle::check`] before verifying a password and
//! answers 429 with `Retry-After` when told to wait, then reports the outcome. Failures beyond a
//! free allowance impose a doubling wait; enough of them lock the key for a while. A success
//! clears the account's record but not the IP's, so one valid account cannot launder an IP that
//! is guessing at others.
//!
//! State is in memory, which is right for one node. A cluster needs the counters in the shared
//! store (as the nonce store and rate limits will be), or each node grants its own allowance.
//! Memory is bounded: stale records are dropped, and at capacity the oldest one is evicted.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, TimeDelta, Utc};
use sha2::{Digest as _, Sha256};

use super::clock::Clock;

/// The thresholds for one kind of key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleLimits {
    /// Failures allowed without any wait.
    pub free_failures: u32,
    /// The wait after the first failure beyond the free ones; it doubles with each further one.
    pub base_delay: TimeDelta,
    /// The longest wait short of a lockout.
    pub max_delay: TimeDelta,
    /// Failures after which the key is locked.
    pub lockout_after: u32,
    /// How long a lockout lasts. After it, each further failure locks again at once, until the
    /// record is forgotten.
    pub lockout: TimeDelta,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleConfig {
    pub account: ThrottleLimits,
    /// Looser than per account: many people may sit behind one office NAT.
    pub ip: ThrottleLimits,
    /// A record with no failure for this long (and no lock running) is forgotten.
    pub forget_after: TimeDelta,
    /// Most records kept at once.
    pub max_entries: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            account: ThrottleLimits {
                free_failures: 3,
                base_delay: TimeDelta::seconds(1),
                max_delay: TimeDelta::seconds(30),
                lockout_after: 10,
                lockout: TimeDelta::minutes(15),
            },
            ip: ThrottleLimits {
                free_failures: 10,
                base_delay: TimeDelta::seconds(1),
                max_delay: TimeDelta::seconds(30),
                lockout_after: 50,
                lockout: TimeDelta::minutes(15),
            },
            forget_after: TimeDelta::hours(1),
            max_entries: 100_000,
        }
    }
}

/// Which key made the caller wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottledKey {
    Account,
    Ip,
}

/// The caller must wait `retry_after` before trying again (`locked` when it is a lockout rather
/// than a growing delay). Deliberately says nothing about whether the account exists: unknown
/// emails are counted like real ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many failed sign-in attempts; try again in {} seconds", retry_seconds(*.retry_after))]
pub struct Throttled {
    pub key: ThrottledKey,
    pub retry_after: TimeDelta,
    pub locked: bool,
}

impl Throttled {
    /// The `Retry-After` header value: whole seconds, rounded up.
    pub fn retry_after_seconds(&self) -> i64 {
        retry_seconds(self.retry_after)
    }
}

impl domain::ErrorCode for Throttled {
    fn code(&self) -> &'static str {
        if self.locked { "login_locked" } else { "login_throttled" }
    }
}

fn retry_seconds(wait: TimeDelta) -> i64 {
    let ms = wait.num_milliseconds().max(0);
    (ms + 999) / 1000
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    /// SHA-256 of the normalised email: fixed size whatever the input, and no address in memory.
    Account([u8; 32]),
    Ip(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last_failure: DateTime<Utc>,
    blocked_until: DateTime<Utc>,
}

/// The login throttle of one node.
pub struct LoginThrottle {
    config: ThrottleConfig,
    clock: Arc<dyn Clock>,
    records: Mutex<HashMap<Key, Record>>,
}

impl std::fmt::Debug for LoginThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginThrottle").field("config", &self.config).field("records", &self.len()).finish()
    }
}

impl LoginThrottle {
    pub fn new(config: ThrottleConfig, clock: Arc<dyn Clock>) -> Self {
        Self { config, clock, records: Mutex::new(HashMap::new()) }
    }

    /// Whether an attempt for `email` from `ip` may proceed now. Pass the email as typed: it is
    /// normalised here the way `Email::parse` does, and need not be valid.
    pub fn check(&self, email: &str, ip: IpAddr) -> Result<(), Throttled> {
        let now = self.clock.now();
        let mut records = self.lock();
        let mut longest: Option<Throttled> = None;
        for (key, kind) in [(account_key(email), ThrottledKey::Account), (ip_key(ip), ThrottledKey::Ip)] {
            let Some(record) = records.get(&key).copied() else { continue };
            if self.is_stale(&record, now) {
                records.remove(&key);
                continue;
            }
            if record.blocked_until > now {
                let throttled = Throttled {
                    key: kind,
                    retry_after: record.blocked_until - now,
                    locked: record.failures >= self.limits(kind).lockout_after,
                };
                if longest.is_none_or(|l| throttled.retry_after > l.retry_after) {
                    longest = Some(throttled);
                }
            }
        }
        longest.map_or(Ok(()), Err)
    }

    /// Counts a failed attempt against both keys, and returns the wait it now imposes, if any, so
    /// the failure response can already carry `Retry-After`.
    pub fn record_failure(&self, email: &str, ip: IpAddr) -> Option<Throttled> {
        let now = self.clock.now();
        let mut records = self.lock();
        let mut longest: Option<Throttled> = None;
        for (key, kind) in [(account_key(email), ThrottledKey::Account), (ip_key(ip), ThrottledKey::Ip)] {
            let previous = records.get(&key).copied().filter(|r| !self.is_stale(r, now));
            if previous.is_none() {
                self.make_room(&mut records, now);
            }
            let failures = previous.map_or(0, |r| r.failures).saturating_add(1);
            let limits = self.limits(kind);
            let (wait, locked) = wait_after(&limits, failures);
            let blocked_until = previous.map_or(now, |r| r.blocked_until).max(now + wait);
            records.insert(key, Record { failures, last_failure: now, blocked_until });
            if blocked_until > now {
                let throttled = Throttled { key: kind, retry_after: blocked_until - now, locked };
                if longest.is_none_or(|l| throttled.retry_after > l.retry_after) {
                    longest = Some(throttled);
                }
            }
        }
        longest
    }

    /// A correct password: the account starts afresh. The IP keeps its record (see module docs).
    pub fn record_success(&self, email: &str) {
        self.lock().remove(&account_key(email));
    }

    /// How many records are held (for metrics and tests).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn limits(&self, kind: ThrottledKey) -> ThrottleLimits {
        match kind {
            ThrottledKey::Account => self.config.account,
            ThrottledKey::Ip => self.config.ip,
        }
    }

    fn is_stale(&self, record: &Record, now: DateTime<Utc>) -> bool {
        record.blocked_until <= now && now - record.last_failure >= self.config.forget_after
    }

    /// Keeps the map under its bound before a new record goes in: drop stale records, and if
    /// that is not enough, the one whose last failure is oldest.
    fn make_room(&self, records: &mut HashMap<Key, Record>, now: DateTime<Utc>) {
        if records.len() < self.config.max_entries {
            return;
        }
        records.retain(|_, r| !self.is_stale(r, now));
        while records.len() >= self.config.max_entries.max(1) {
            let Some(oldest) = records.iter().min_by_key(|(_, r)| r.last_failure).map(|(k, _)| *k) else {
                break;
            };
            records.remove(&oldest);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Record>> {
        // Every update is a single insert or remove, so a panic cannot leave a record half-written.
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The wait imposed once a key has `failures` failures, and whether it is a lockout.
fn wait_after(limits: &ThrottleLimits, failures: u32) -> (TimeDelta, bool) {
    if failures >= limits.lockout_after {
        return (limits.lockout, true);
    }
    if failures <= limits.free_failures {
        return (TimeDelta::zero(), false);
    }
    let doublings = (failures - limits.free_failures - 1).min(30);
    let wait = limits.base_delay.checked_mul(1 << doublings).unwrap_or(limits.max_delay);
    (wait.min(limits.max_delay), false)
}

fn account_key(email: &str) -> Key {
    Key::Account(Sha256::digest(email.trim().to_ascii_lowercase().as_bytes()).into())
}

/// IPv6 clients are counted per /64: one subscriber usually holds a whole /64 and could otherwise
/// rotate through addresses for free. IPv4-mapped addresses count as the IPv4 address.
fn ip_key(ip: IpAddr) -> Key {
    let ip = match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    };
    Key::Ip(ip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::ManualClock;

    fn throttle(config: ThrottleConfig) -> (LoginThrottle, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::default());
        (LoginThrottle::new(config, clock.clone()), clock)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const EMAIL: &str = "alice@example.com";

    #[test]
    fn failures_beyond_the_allowance_impose_a_doubling_wait_then_a_lockout() {
        let (t, clock) = throttle(ThrottleConfig::default());
        let from = ip("192.0.2.1");
        for _ in 0..3 {
            assert_eq!(t.record_failure(EMAIL, from), None);
            assert_eq!(t.check(EMAIL, from), Ok(()));
        }
        let mut expected = 1;
        for _ in 4..10 {
            let wait = t.record_failure(EMAIL, from).expect("a wait after the free failures");
            assert_eq!((wait.key, wait.locked), (ThrottledKey::Account, false));
            assert_eq!(wait.retry_after, TimeDelta::seconds(expected));
            let refused = t.check(EMAIL, from).unwrap_err();
            assert_eq!(refused.retry_after_seconds(), expected);
            clock.advance(TimeDelta::seconds(expected) - TimeDelta::milliseconds(1));
            assert!(t.check(EMAIL, from).is_err(), "still waiting 1 ms before the end");
            clock.advance(TimeDelta::milliseconds(1));
            assert_eq!(t.check(EMAIL, from), Ok(()));
            expected = (expected * 2).min(30);
        }
        let locked = t.record_failure(EMAIL, from).unwrap();
        assert!(locked.locked);
        assert_eq!(locked.retry_after, TimeDelta::minutes(15));
        assert_eq!(t.check(EMAIL, from).unwrap_err().retry_after, TimeDelta::minutes(15));
        // The normalised email is the same account; another account from the same IP is not held up.
        assert!(t.check("  ALICE@Example.COM ", from).unwrap_err().locked);
        assert_eq!(t.check("bob@example.com", from), Ok(()));
        clock.advance(TimeDelta::minutes(15));
        assert_eq!(t.check(EMAIL, from), Ok(()));
        // Still on record: the next failure locks again at once.
        assert!(t.record_failure(EMAIL, from).unwrap().locked);
    }

    #[test]
    fn success_clears_the_account_but_not_the_ip() {
        let (t, _) = throttle(ThrottleConfig::default());
        let from = ip("198.51.100.7");
        for i in 0..12 {
            t.record_failure(&format!("user{i}@example.com"), from);
        }
        for _ in 0..5 {
            t.record_failure(EMAIL, from);
        }
        assert!(t.check(EMAIL, ip("203.0.113.9")).is_err(), "the account is held up from any IP");
        t.record_success(EMAIL);
        assert_eq!(t.check(EMAIL, ip("203.0.113.9")), Ok(()));
        let held = t.check(EMAIL, from).unwrap_err();
        assert_eq!(held.key, ThrottledKey::Ip, "17 failures from one IP, more than its 10 free ones");
    }

    #[test]
    fn an_ip_guessing_many_accounts_is_locked() {
        let (t, _) = throttle(ThrottleConfig::default());
        let from = ip("2001:db8:1:2:aaaa::1");
        for i in 0..50 {
            t.record_failure(&format!("victim{i}@example.com"), from);
        }
        let refused = t.check("someone-else@example.com", from).unwrap_err();
        assert_eq!((refused.key, refused.locked), (ThrottledKey::Ip, true));
        // The same /64 is the same client; another /64 is not.
        assert!(t.check("x@example.com", ip("2001:db8:1:2:ffff::9")).is_err());
        assert_eq!(t.check("x@example.com", ip("2001:db8:1:3::1")), Ok(()));
        assert_eq!(ip_key(ip("::ffff:192.0.2.1")), ip_key(ip("192.0.2.1")));
    }

    #[test]
    fn records_are_forgotten_and_memory_stays_bounded() {
        let config = ThrottleConfig { max_entries: 10, ..ThrottleConfig::default() };
        let (t, clock) = throttle(config);
        for _ in 0..5 {
            t.record_failure(EMAIL, ip("192.0.2.1"));
        }
        assert!(t.check(EMAIL, ip("192.0.2.1")).is_err());
        clock.advance(TimeDelta::hours(1));
        assert_eq!(t.check(EMAIL, ip("192.0.2.1")), Ok(()));
        assert_eq!(t.record_failure(EMAIL, ip("192.0.2.1")), None, "counting starts afresh");

        for i in 0..100u8 {
            clock.advance(TimeDelta::seconds(1));
            t.record_failure(&format!("u{i}@example.com"), IpAddr::from([10, 0, 0, i]));
            assert!(t.len() <= 10, "{} records", t.len());
        }
        // The newest records are the ones kept.
        assert!(t.check("u99@example.com", ip("10.0.0.99")).is_ok());
        assert_eq!(t.len(), 10);
    }
}
