//! The bookkeeping threads (the background runtime's and SQLite's) yield the CPU to requests
//! while they keep up, and get normal priority back when their heartbeat is late
//! (`server::priority`). Alone in its test binary: the scheduling policy is the process's.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use services::store::Database;
use support::events::eventually;
use support::{Backend, TestApp};

/// The bookkeeping threads by name, once every one of them is (or is not) in `SCHED_IDLE`.
async fn all_threads(idle: bool, what: &str) -> Vec<String> {
    eventually(what, Duration::from_secs(30), || async {
        let threads = server::priority::bookkeeping_threads();
        threads.iter().all(|(_, i)| *i == idle).then(|| threads.into_iter().map(|(name, _)| name).collect())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookkeeping_yields_while_it_keeps_up_and_gets_the_cpu_back_when_it_falls_behind() {
    let app = TestApp::spawn_with(Backend::Sqlite, |config| config.database_max_connections = 2).await;
    let Some(first) = server::priority::status() else {
        // This process may not return a thread from SCHED_IDLE, so nothing may have entered it.
        let idle: Vec<_> = server::priority::bookkeeping_threads().into_iter().filter(|(_, i)| *i).collect();
        assert!(idle.is_empty(), "threads left in SCHED_IDLE without a way back: {idle:?}");
        eprintln!("bookkeeping keeps normal priority here (no CAP_SYS_NICE or RLIMIT_NICE of 20)");
        return;
    };

    let names = all_threads(true, "every bookkeeping thread to yield").await;
    assert!(names.iter().any(|n| n == server::priority::BOOKS_THREAD_NAME), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with(services::store::SQLITE_THREAD_NAME)), "{names:?}");
    assert!(server::priority::status().unwrap().yielding);

    // Hold every connection of the node's pool: its bookkeeping cannot reach the database, so
    // its heartbeat stops.
    let Database::Sqlite(pool) = &app.db else { unreachable!("a SQLite node") };
    let held = [pool.acquire().await.unwrap(), pool.acquire().await.unwrap()];
    all_threads(false, "the bookkeeping threads to get normal priority back").await;
    let status = server::priority::status().unwrap();
    assert!(!status.yielding);
    assert!(status.fell_behind > first.fell_behind, "{status:?} after {first:?}");
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("keyguard_bookkeeping_yielding 0"), "{metrics}");

    // Once it answers again, it yields again (after the hold).
    drop(held);
    all_threads(true, "the bookkeeping threads to yield again").await;
    let second = server::priority::status().unwrap();
    assert!(second.yielding);

    // Threads of normal priority that keep every CPU busy leave the bookkeeping only a sliver of
    // CPU: its beats fall behind, and it gets normal priority back.
    let busy = Arc::new(AtomicBool::new(true));
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let hogs: Vec<_> = (0..cpus * 2)
        .map(|_| {
            let busy = busy.clone();
            std::thread::spawn(move || {
                while busy.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    all_threads(false, "the starved bookkeeping threads to get normal priority back").await;
    let status = server::priority::status().unwrap();
    busy.store(false, Ordering::Relaxed);
    for hog in hogs {
        hog.join().unwrap();
    }
    assert!(status.fell_behind > second.fell_behind, "{status:?} after {second:?}");
    all_threads(true, "the bookkeeping threads to yield once the CPUs are free").await;
}
