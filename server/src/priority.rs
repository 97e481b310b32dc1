//! The node's bookkeeping runs on CPU time the proxy does not want.
//!
//! Requests are answered on the main runtime; the bookkeeping (storing usage batches, updating
//! the read models and the gate's caches, relaying events) runs on the background runtime's
//! threads and, with SQLite, on the database's worker threads. At the same priority, a request
//! thread woken while bookkeeping holds its CPU waits for the end of the bookkeeping's time slice
//! (1.4 ms on the two-core machine of the README's Performance section; the other core was often
//! idle meanwhile): at concurrency 1 that was most of the added p99. With the bookkeeping threads in
//! `SCHED_IDLE`, which the kernel preempts for a normal thread woken on their CPU, it went from
//! 0.63–0.85 ms to 0.26–0.28 ms. (A woken thread queued on the other CPU can still wait: a CPU with a
//! `SCHED_IDLE` thread to run does not pull it over; see the README's Performance section.)
//!
//! `SCHED_IDLE` threads only get CPU time nothing else wants, so a node whose requests keep every
//! CPU busy would starve its bookkeeping: usage records would pile up until dropped, and a
//! revocation would wait to reach the gate. A watchdog thread at normal priority therefore follows
//! each node's bookkeeping: a heartbeat (a timer on the background runtime, then a round trip to
//! the database, every 50 ms) and the usage records waiting to be stored. When a beat is late by
//! 250 ms, or three in a row took more than 10 ms, or a quarter of the usage queue is waiting, it
//! returns the bookkeeping threads to normal priority and holds them there (1 s, doubled each time
//! they fall behind again soon after, up to a minute) before yielding again. (Whether beats arrive at all
//! would not do: a beat needs so little CPU that `SCHED_IDLE`'s small share keeps them coming
//! even with every CPU busy, while anything bigger on the same threads, like the dashboard's
//! queries, would wait.)
//!
//! Until the watchdog sees it (some 0.2 s on a saturated machine), the bookkeeping's work waits for
//! idle CPU: usage batches, the dashboard's queries on SQLite, and changes made through other
//! nodes reaching this node's gate.
//!
//! Returning from `SCHED_IDLE` needs `CAP_SYS_NICE` or an `RLIMIT_NICE` of 20 (`LimitNICE=20`
//! under systemd, `--ulimit nice=20` in Docker); where the process may not, the bookkeeping keeps
//! normal priority. The threads are found by name, so the policy is the process's: one node per
//! process in production (tests run several, which share it).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

/// The name of the background runtime's threads.
pub const BOOKS_THREAD_NAME: &str = "keyguard-books";

/// How often each node's bookkeeping proves it is running.
const BEAT: Duration = Duration::from_millis(50);
/// A heartbeat older than this means the bookkeeping is not getting the CPU (or the database) it needs.
const LATE: Duration = Duration::from_millis(250);
/// A beat that took longer than this, from its scheduled time to the database's answer (well under
/// a millisecond when the bookkeeping gets the idle CPU it waits for), means that there is little
/// idle CPU: `SCHED_IDLE`'s small share still keeps beats on time, but anything bigger (an
/// administrator's query, a usage batch) would crawl.
const PROMPT: Duration = Duration::from_millis(10);
/// Slow beats in a row that mean the bookkeeping is short of CPU (one alone is a busy moment).
const SLOW_BEATS: u32 = 3;
/// How often the watchdog looks.
const LOOK: Duration = Duration::from_millis(25);
/// How often, while yielding, it looks for bookkeeping threads started since (database connections
/// opened later).
const RESCAN: Duration = Duration::from_secs(1);
const MIN_HOLD: Duration = Duration::from_secs(1);
const MAX_HOLD: Duration = Duration::from_secs(60);
/// Falling behind again within this long of yielding doubles the next hold.
const CALM: Duration = Duration::from_secs(10);

/// How the bookkeeping threads are scheduled (`KEYGUARD_BOOKKEEPING_PRIORITY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BookkeepingPriority {
    /// `SCHED_IDLE` while the bookkeeping keeps up, normal priority while it does not. Only in
    /// the `async` audit mode and without NATS: in `strict` mode requests wait for the
    /// bookkeeping, and in a cluster the gate's heartbeat, which decides how requests check
    /// nonces, runs with it (with the bookkeeping yielding, a test cluster under load once let a
    /// request wait past the shared stores' 1 s bound and answer 503).
    #[default]
    Yield,
    /// Always the requests' priority.
    Normal,
}

impl BookkeepingPriority {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "yield" => Ok(Self::Yield),
            "normal" => Ok(Self::Normal),
            other => Err(format!("must be `yield` or `normal`, got `{other}`")),
        }
    }
}

/// Proof that one node's bookkeeping runs: [`beat`] renews it.
pub struct Heartbeat {
    epoch: Instant,
    /// Milliseconds from `epoch` to the last beat.
    last: AtomicU64,
    /// Beats in a row that took longer than [`PROMPT`].
    slow: AtomicU32,
    /// Whether work waits for the bookkeeping longer than it should.
    piling_up: Box<dyn Fn() -> bool + Send + Sync>,
}

impl std::fmt::Debug for Heartbeat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Heartbeat").field("last", &self.last).finish_non_exhaustive()
    }
}

impl Heartbeat {
    fn renew(&self, took: Duration) {
        self.last.store(millis(self.epoch.elapsed()), Ordering::Relaxed);
        if took > PROMPT {
            self.slow.fetch_add(1, Ordering::Relaxed);
        } else {
            self.slow.store(0, Ordering::Relaxed);
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Renews `heartbeat` every 50 ms while the bookkeeping's runtime and `db` answer, noting how
/// long each beat took. Spawn it on the background runtime; it runs until aborted.
pub async fn beat(db: services::store::Database, heartbeat: Arc<Heartbeat>) {
    let mut ticks = tokio::time::interval(BEAT);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let scheduled = ticks.tick().await;
        if db.ping().await.is_ok() {
            heartbeat.renew(scheduled.elapsed());
        }
    }
}

/// What the watchdog is doing, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// Whether the bookkeeping threads are in `SCHED_IDLE` now.
    pub yielding: bool,
    /// How many times they got normal priority back because they fell behind.
    pub fell_behind: u64,
}

/// The watchdog's status, if it runs in this process.
pub fn status() -> Option<Status> {
    let watchdog = WATCHDOG.get()?.as_ref().ok()?;
    Some(Status {
        yielding: watchdog.yielding.load(Ordering::Relaxed),
        fell_behind: watchdog.fell_behind.load(Ordering::Relaxed),
    })
}

/// Starts following a node's bookkeeping, which is behind when its heartbeat is late or slow, or
/// when `piling_up` says its work waits: the heartbeat to renew with [`beat`], or why the
/// bookkeeping keeps normal priority in this process.
pub fn follow(piling_up: impl Fn() -> bool + Send + Sync + 'static) -> Result<Arc<Heartbeat>, &'static str> {
    let watchdog = WATCHDOG.get_or_init(Watchdog::start).as_ref().map_err(|why| *why)?;
    let heartbeat = Arc::new(Heartbeat {
        epoch: watchdog.epoch,
        last: AtomicU64::new(0),
        slow: AtomicU32::new(0),
        piling_up: Box::new(piling_up),
    });
    heartbeat.renew(Duration::ZERO);
    watchdog.heartbeats.lock().unwrap_or_else(|e| e.into_inner()).push(Arc::downgrade(&heartbeat));
    Ok(heartbeat)
}

static WATCHDOG: OnceLock<Result<Watchdog, &'static str>> = OnceLock::new();

struct Watchdog {
    epoch: Instant,
    heartbeats: Mutex<Vec<Weak<Heartbeat>>>,
    yielding: AtomicBool,
    fell_behind: AtomicU64,
}

impl Watchdog {
    fn start() -> Result<Self, &'static str> {
        sched::may_return()?;
        let watchdog = Self {
            epoch: Instant::now(),
            heartbeats: Mutex::default(),
            yielding: AtomicBool::new(false),
            fell_behind: AtomicU64::new(0),
        };
        std::thread::Builder::new()
            .name("keyguard-watch".to_owned())
            .spawn(watch)
            .map_err(|_| "the watchdog thread could not be started")?;
        Ok(watchdog)
    }

    /// Why a followed node's bookkeeping is behind, if one is (forgetting nodes that stopped).
    fn behind(&self) -> Option<Behind> {
        let (now, late) = (millis(self.epoch.elapsed()), millis(LATE));
        let mut heartbeats = self.heartbeats.lock().unwrap_or_else(|e| e.into_inner());
        heartbeats.retain(|h| h.strong_count() > 0);
        heartbeats.iter().filter_map(Weak::upgrade).find_map(|h| {
            if now.saturating_sub(h.last.load(Ordering::Relaxed)) > late {
                Some(Behind::Late)
            } else if h.slow.load(Ordering::Relaxed) >= SLOW_BEATS {
                Some(Behind::Slow)
            } else if (h.piling_up)() {
                Some(Behind::PilingUp)
            } else {
                None
            }
        })
    }
}

/// Why a node's bookkeeping is behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behind {
    /// Its heartbeat is older than [`LATE`].
    Late,
    /// [`SLOW_BEATS`] beats in a row took longer than [`PROMPT`].
    Slow,
    /// Its work piles up (the usage queue).
    PilingUp,
}

impl Behind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Late => "its heartbeat is late",
            Self::Slow => "its heartbeats are slow",
            Self::PilingUp => "its work piles up",
        }
    }
}

/// The watchdog thread's loop.
fn watch() {
    let Ok(watchdog) = WATCHDOG.wait() else { return };
    let mut control = Control::new(Instant::now());
    let mut scanned = Instant::now();
    loop {
        std::thread::sleep(LOOK);
        let now = Instant::now();
        let behind = watchdog.behind();
        let yielding = match control.look(now, behind.is_some()) {
            Some(Change::Yield) => {
                scanned = now;
                sched::set_all(true);
                true
            }
            Some(Change::Return { hold }) => {
                sched::set_all(false);
                watchdog.fell_behind.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    hold_secs = hold.as_secs(),
                    why = behind.map_or("", Behind::as_str),
                    "bookkeeping fell behind; it has normal priority again for a while"
                );
                false
            }
            None => {
                let yielding = control.yielding();
                if yielding && now.duration_since(scanned) >= RESCAN {
                    scanned = now;
                    sched::set_all(true);
                }
                yielding
            }
        };
        watchdog.yielding.store(yielding, Ordering::Relaxed);
    }
}

/// What the watchdog changes after a look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// Into `SCHED_IDLE`.
    Yield,
    /// Back to normal priority for `hold`.
    Return { hold: Duration },
}

/// When to yield and when to return: the watchdog's decisions, apart from the system calls.
#[derive(Debug)]
struct Control {
    state: State,
    /// The hold of the last return, if any.
    last_hold: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Yielding { since: Instant },
    Holding { until: Instant },
}

impl Control {
    /// Starts at normal priority, yielding at the first look that finds every heartbeat on time.
    fn new(now: Instant) -> Self {
        Self { state: State::Holding { until: now }, last_hold: None }
    }

    fn yielding(&self) -> bool {
        matches!(self.state, State::Yielding { .. })
    }

    fn look(&mut self, now: Instant, late: bool) -> Option<Change> {
        match self.state {
            State::Holding { until } if now >= until && !late => {
                self.state = State::Yielding { since: now };
                Some(Change::Yield)
            }
            State::Holding { .. } => None,
            State::Yielding { since } if late => {
                let hold = match self.last_hold {
                    Some(last) if now.duration_since(since) < CALM => (last * 2).min(MAX_HOLD),
                    _ => MIN_HOLD,
                };
                self.last_hold = Some(hold);
                self.state = State::Holding { until: now + hold };
                Some(Change::Return { hold })
            }
            State::Yielding { .. } => None,
        }
    }
}

#[cfg(target_os = "linux")]
mod sched {
    use std::io;

    use super::BOOKS_THREAD_NAME;
    use services::store::SQLITE_THREAD_NAME;

    /// Sets the scheduling policy of thread `tid` (0: the calling thread).
    fn set_policy(tid: libc::pid_t, idle: bool) -> io::Result<()> {
        let policy = if idle { libc::SCHED_IDLE } else { libc::SCHED_OTHER };
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` is a valid `sched_param` that outlives the call, which only reads it.
        match unsafe { libc::sched_setscheduler(tid, policy, &param) } {
            0 => Ok(()),
            _ => Err(io::Error::last_os_error()),
        }
    }

    /// Whether this process may return a thread from `SCHED_IDLE`, tried on a thread of its own.
    pub(super) fn may_return() -> Result<(), &'static str> {
        let tried = std::thread::spawn(|| set_policy(0, true).and_then(|()| set_policy(0, false))).join();
        match tried {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) if e.kind() == io::ErrorKind::PermissionDenied => {
                Err("returning a thread from SCHED_IDLE needs CAP_SYS_NICE or an RLIMIT_NICE of 20 \
                 (LimitNICE=20 under systemd, --ulimit nice=20 in Docker)")
            }
            _ => Err("the scheduling policy of threads cannot be changed here"),
        }
    }

    /// The process's bookkeeping threads (id and name), found by name.
    pub(super) fn bookkeeping_threads() -> Vec<(libc::pid_t, String)> {
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return Vec::new() };
        tasks
            .filter_map(|task| {
                let task = task.ok()?;
                let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
                let comm = comm.trim_end();
                // The kernel keeps 15 bytes of a thread's name.
                let ours = [BOOKS_THREAD_NAME, SQLITE_THREAD_NAME]
                    .iter()
                    .any(|name| comm.starts_with(&name[..name.len().min(15)]));
                let tid = task.file_name().to_str()?.parse().ok()?;
                ours.then(|| (tid, comm.to_owned()))
            })
            .collect()
    }

    pub(super) fn set_all(idle: bool) {
        for (tid, _) in bookkeeping_threads() {
            // A thread that ended meanwhile is no longer there to set.
            if let Err(e) = set_policy(tid, idle)
                && e.raw_os_error() != Some(libc::ESRCH)
            {
                tracing::warn!(tid, idle, error = %e, "cannot set a bookkeeping thread's scheduling policy");
            }
        }
    }

    /// Whether thread `tid` is in `SCHED_IDLE` (for tests).
    pub fn is_idle(tid: libc::pid_t) -> io::Result<bool> {
        // SAFETY: no pointers; the call only reads the thread's policy.
        match unsafe { libc::sched_getscheduler(tid) } {
            -1 => Err(io::Error::last_os_error()),
            policy => Ok(policy == libc::SCHED_IDLE),
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod sched {
    pub(super) fn may_return() -> Result<(), &'static str> {
        Err("scheduling bookkeeping threads apart is only done on Linux")
    }

    pub(super) fn set_all(_idle: bool) {}
}

/// The process's bookkeeping threads by name, and whether each is in `SCHED_IDLE`, for tests.
#[cfg(target_os = "linux")]
pub fn bookkeeping_threads() -> Vec<(String, bool)> {
    sched::bookkeeping_threads()
        .into_iter()
        .filter_map(|(tid, name)| sched::is_idle(tid).ok().map(|idle| (name, idle)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yields_once_every_heartbeat_is_on_time() {
        let t0 = Instant::now();
        let mut control = Control::new(t0);
        assert_eq!(control.look(t0, true), None, "a late heartbeat keeps normal priority");
        assert_eq!(control.look(t0 + LOOK, false), Some(Change::Yield));
        assert!(control.yielding());
        assert_eq!(control.look(t0 + LOOK * 2, false), None);
    }

    #[test]
    fn returns_when_late_and_holds_before_yielding_again() {
        let t0 = Instant::now();
        let mut control = Control::new(t0);
        control.look(t0, false);
        let t1 = t0 + CALM * 2;
        assert_eq!(control.look(t1, true), Some(Change::Return { hold: MIN_HOLD }));
        assert!(!control.yielding());
        assert_eq!(control.look(t1 + MIN_HOLD / 2, false), None, "still holding");
        assert_eq!(control.look(t1 + MIN_HOLD, true), None, "held while late");
        assert_eq!(control.look(t1 + MIN_HOLD * 2, false), Some(Change::Yield));
    }

    #[test]
    fn falling_behind_again_soon_doubles_the_hold_up_to_a_limit_and_calm_resets_it() {
        let mut now = Instant::now();
        let mut control = Control::new(now);
        control.look(now, false);
        let mut holds = Vec::new();
        for _ in 0..9 {
            now += LOOK;
            let Some(Change::Return { hold }) = control.look(now, true) else { panic!("no return") };
            holds.push(hold.as_secs());
            now += hold;
            assert_eq!(control.look(now, false), Some(Change::Yield));
        }
        assert_eq!(holds, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        now += CALM;
        assert_eq!(control.look(now, true), Some(Change::Return { hold: MIN_HOLD }));
    }

    #[test]
    fn a_node_is_behind_when_its_heartbeat_is_late_or_its_work_piles_up() {
        let watchdog = Watchdog {
            epoch: Instant::now() - LATE * 4,
            heartbeats: Mutex::default(),
            yielding: AtomicBool::new(false),
            fell_behind: AtomicU64::new(0),
        };
        let piling_up = Arc::new(AtomicBool::new(false));
        let heartbeat = Arc::new(Heartbeat {
            epoch: watchdog.epoch,
            last: AtomicU64::new(0),
            slow: AtomicU32::new(0),
            piling_up: Box::new({
                let piling_up = piling_up.clone();
                move || piling_up.load(Ordering::Relaxed)
            }),
        });
        watchdog.heartbeats.lock().unwrap().push(Arc::downgrade(&heartbeat));
        assert_eq!(watchdog.behind(), Some(Behind::Late), "last beat four times LATE ago");
        for _ in 1..SLOW_BEATS {
            heartbeat.renew(PROMPT * 2);
            assert_eq!(watchdog.behind(), None, "a slow beat alone is a busy moment");
        }
        heartbeat.renew(PROMPT * 2);
        assert_eq!(watchdog.behind(), Some(Behind::Slow), "on time, but slow beat after beat");
        heartbeat.renew(PROMPT / 2);
        assert_eq!(watchdog.behind(), None);
        piling_up.store(true, Ordering::Relaxed);
        assert_eq!(watchdog.behind(), Some(Behind::PilingUp), "on time, but work piles up");
        drop(heartbeat);
        assert_eq!(watchdog.behind(), None, "a node that stopped is forgotten");
        assert!(watchdog.heartbeats.lock().unwrap().is_empty());
    }

    #[test]
    fn the_setting_names_its_values() {
        assert_eq!(BookkeepingPriority::parse("yield"), Ok(BookkeepingPriority::Yield));
        assert_eq!(BookkeepingPriority::parse("normal"), Ok(BookkeepingPriority::Normal));
        let err = BookkeepingPriority::parse("idle").unwrap_err();
        assert!(err.contains("`yield` or `normal`") && err.contains("`idle`"), "{err}");
    }
}
