//! Faults around a `keyguard` node: NATS stopped under load, PostgreSQL stopped under load, and a
//! provider that hangs or resets connections. The services a test stops are its own (a private
//! nats-server, a private PostgreSQL cluster), never the shared ones.
//!
//! - NATS stopped: the nodes fall back to PostgreSQL for nonces and to their share of each rate
//!   limit, so signed requests keep passing (refused with 503 `unavailable` only while the nodes
//!   change over, a heartbeat or two); a nonce accepted through NATS
//!   before the outage is still refused on another node during it; the admin API keeps serving;
//!   the events committed meanwhile wait in the store, and once NATS is back every one of them is
//!   published, exactly once, with no restart.
//! - PostgreSQL stopped, strict audit mode: a signed request is refused with 503
//!   `audit_unavailable` before anything is forwarded; once PostgreSQL is back the node serves
//!   again by itself (the time it took is printed).
//! - A provider that never answers gets 504 `upstream_timeout`, one that resets gets 502
//!   `upstream_unreachable`; afterwards no connection to either is left open, and the server's
//!   task count returns to where it was before.
//!
//! The NATS outage lasts `KEYGUARD_FAULT_NATS_OUTAGE_SECS` (5 s by default, to keep the suite
//! short; the full figure is `KEYGUARD_FAULT_NATS_OUTAGE_SECS=60 cargo test -p server --test faults -- --nocapture`).

mod device_support;
mod nodes;
mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use device_support::{DeviceKey, Project, VERIFY, sign};
use nodes::upstream::{FaultyUpstream, Misbehaviour};
use nodes::{
    Api, COMPLETION_ANSWER, COMPLETIONS, Deployment, PrivateNats, PrivatePostgres, completion_request,
};
use reqwest::Method;
use support::events::eventually;
use support::upstream::{FakeUpstream, Reply};
use tokio::sync::watch;
use uuid::Uuid;

/// A node's first admin, a project on `upstream` and `devices` active devices.
async fn provision(api: &Api, upstream: &str, devices: usize) -> (String, Project, Vec<(DeviceKey, Uuid)>) {
    let token = api.setup_admin().await;
    let project = api.create_project(&token, upstream).await;
    let code = api.enrollment_code(&token, &project, devices as i64).await;
    let mut enrolled = Vec::new();
    for _ in 0..devices {
        enrolled.push(api.enroll(&project, &code).await);
    }
    (token, project, enrolled)
}

const BEFORE: u8 = 0;
const DURING: u8 = 1;
const AFTER: u8 = 2;

/// Answers by phase (before, during, after the outage) and by (route, status or error code).
type Tally = Arc<Mutex<BTreeMap<(u8, String), usize>>>;

fn tally(tally: &Tally, phase: &AtomicU8, what: String) {
    tally_in(tally, phase.load(Ordering::SeqCst), what);
}

fn tally_in(tally: &Tally, phase: u8, what: String) {
    *tally.lock().unwrap().entry((phase, what)).or_default() += 1;
}

fn count(tally: &Tally, phase: u8, what: &str) -> usize {
    counted(&tally.lock().unwrap(), phase, what)
}

fn counted(answers: &BTreeMap<(u8, String), usize>, phase: u8, what: &str) -> usize {
    answers.get(&(phase, what.to_owned())).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nats_stopped_events_wait_in_the_store_and_all_go_out_when_it_returns() {
    let outage = Duration::from_secs(
        std::env::var("KEYGUARD_FAULT_NATS_OUTAGE_SECS")
            .map_or(5, |s| s.parse().expect("a number of seconds")),
    );
    let postgres = PrivatePostgres::start().await;
    let mut nats = PrivateNats::start().await;
    let upstream = FakeUpstream::spawn(Reply::Json { status: 200, body: COMPLETION_ANSWER.to_owned() }).await;
    let deployment = Deployment::new(&postgres.url(), Some(&nats.url()));
    let node = deployment.start("nats-outage").await;
    let other = deployment.start("nats-outage-other").await;
    let api = node.api();
    let (token, project, mut devices) = provision(&api, &upstream.base_url(), 2).await;
    let (device, _) = devices.remove(0);
    let (checker, renamed) = devices.remove(0);
    let db = deployment.database().await;
    // Accepted through NATS on one node before the outage: a replay of it must fail everywhere.
    let accepted = sign(&checker, &project.raw, "POST", VERIFY, b"");
    let checking = project.clone();
    let first = api.send_signed("POST", VERIFY, &accepted, b"").await.unwrap();
    assert_eq!(first.status, 200, "{}", first.body);

    let phase = Arc::new(AtomicU8::new(BEFORE));
    let answers: Tally = Arc::default();
    let forwarded = Arc::new(Mutex::new(BTreeMap::<u8, usize>::new()));
    let (stop_tx, stop) = watch::channel(false);
    let completions = tokio::spawn({
        let (api, phase, answers, forwarded, stop) =
            (api.clone(), phase.clone(), answers.clone(), forwarded.clone(), stop.clone());
        let upstream_received = {
            let upstream = Arc::new(upstream);
            move || upstream.received().len()
        };
        async move {
            let mut n = 0;
            while !*stop.borrow() {
                n += 1;
                let before = upstream_received();
                let at = phase.load(Ordering::SeqCst);
                let body = completion_request(&format!("outage-{n}"));
                let answer = api.signed(&device, &project, "POST", COMPLETIONS, &body).await.unwrap();
                let what = answer.code().unwrap_or_else(|| answer.status.to_string());
                // A call that began in one phase and ended in the next belongs to neither: its answer
                // and what the provider received are both left out, so the two tallies stay comparable.
                if phase.load(Ordering::SeqCst) == at {
                    tally_in(&answers, at, format!("proxy {} {what}", answer.status));
                    // Only this task calls the provider: what it received meanwhile came from this call.
                    *forwarded.lock().unwrap().entry(at).or_default() += upstream_received() - before;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let renames = tokio::spawn({
        let (api, phase, answers, stop, token) =
            (api.clone(), phase.clone(), answers.clone(), stop.clone(), token.clone());
        async move {
            let mut n = 0;
            while !*stop.borrow() {
                n += 1;
                let body = serde_json::json!({ "label": format!("outage-{n}") });
                let (status, _) = api
                    .call(Method::PATCH, &format!("/api/v1/devices/{renamed}"), Some(&token), Some(body))
                    .await;
                tally(&answers, &phase, format!("admin {status}"));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    eventually("the load to run", Duration::from_secs(30), || async {
        (count(&answers, BEFORE, "proxy 200 200") > 0 && count(&answers, BEFORE, "admin 200") > 0)
            .then_some(())
    })
    .await;

    nats.stop();
    phase.store(DURING, Ordering::SeqCst);
    let stopped_at = Instant::now();
    let head_at_stop = head(&db).await;
    let other_api = other.api();
    let change_over = Duration::from_secs(30);
    let fallback =
        eventually("the other node to serve signed requests without NATS", change_over, || async {
            (other_api.verify(&checker, &checking).await.status == 200).then(|| stopped_at.elapsed())
        })
        .await;
    let replay_elsewhere = other_api.send_signed("POST", VERIFY, &accepted, b"").await.unwrap();
    let replay_here = api.send_signed("POST", VERIFY, &accepted, b"").await.unwrap();
    // The outage is the scenario, not a wait for a condition.
    tokio::time::sleep(outage.saturating_sub(stopped_at.elapsed())).await;
    let head_at_return = head(&db).await;
    let published_at_return = outbox_checkpoint(&db).await;
    nats.restart().await;
    let returned_at = Instant::now();
    phase.store(AFTER, Ordering::SeqCst);

    let recovered = eventually("signed requests to pass again", Duration::from_secs(60), || async {
        (count(&answers, AFTER, "proxy 200 200") > 0).then(|| returned_at.elapsed())
    })
    .await;
    stop_tx.send_replace(true);
    completions.await.unwrap();
    renames.await.unwrap();
    let delivery = nodes::wait_for_exactly_once(&db, &nats.url(), Duration::from_secs(120)).await;
    let drained = returned_at.elapsed();

    let answers = answers.lock().unwrap().clone();
    let forwarded = forwarded.lock().unwrap().clone();
    println!(
        "NATS outage of {:.1?}: signed requests served without NATS on the other node {fallback:.1?} after it \
         stopped; events {head_at_stop} → {head_at_return} committed during it, relay checkpoint at \
         {published_at_return} when NATS returned; all {} published exactly once ({} in the stream, {} missing, \
         {} duplicated) {drained:.1?} after its return; signed requests passed after its return within \
         {recovered:.1?}; answers {answers:?}; forwarded by phase {forwarded:?}",
        stopped_at.elapsed() - returned_at.elapsed(),
        delivery.stored,
        delivery.published,
        delivery.missing.len(),
        delivery.duplicated.len(),
    );
    let during: Vec<(&String, &usize)> =
        answers.iter().filter(|((phase, _), _)| *phase == DURING).map(|((_, what), n)| (what, n)).collect();
    assert!(
        during.iter().all(|(what, _)| ["proxy 200 200", "proxy 503 unavailable", "admin 200"].contains(&what.as_str())),
        "while NATS is down signed requests pass or, while the node changes over, are refused (503): {during:?}"
    );
    assert!(counted(&answers, DURING, "admin 200") > 0, "the admin API served during the outage");
    let served = counted(&answers, DURING, "proxy 200 200");
    assert!(
        served > counted(&answers, DURING, "proxy 503 unavailable"),
        "signed requests were served during the outage: {during:?}"
    );
    assert_eq!(forwarded.get(&DURING).copied().unwrap_or(0), served, "only admitted requests were forwarded");
    assert_eq!(
        (replay_elsewhere.status, replay_here.status),
        (401, 401),
        "a nonce NATS accepted before the outage is refused on every node during it"
    );
    assert!(head_at_return > head_at_stop, "events were committed during the outage");
    assert!(published_at_return < head_at_return, "the events of the outage waited in the store");
    assert!(delivery.exactly_once());
}

async fn head(db: &services::store::Database) -> i64 {
    services::events::EventLog::new(db.clone()).head().await.unwrap()
}

async fn outbox_checkpoint(db: &services::store::Database) -> i64 {
    let services::store::Database::Postgres(pool) = db else { unreachable!() };
    sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM outbox_checkpoints")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgres_stopped_strict_mode_refuses_before_forwarding_and_recovers_without_restart() {
    let mut postgres = PrivatePostgres::start().await;
    let upstream = FakeUpstream::spawn(Reply::Json { status: 200, body: COMPLETION_ANSWER.to_owned() }).await;
    let deployment = Deployment::new(&postgres.url(), None).with("KEYGUARD_AUDIT_MODE", "strict");
    let node = deployment.start("postgres-outage").await;
    let api = node.api();
    let (_, project, devices) = provision(&api, &upstream.base_url(), 1).await;
    let (device, _) = &devices[0];
    let project = &project;
    let complete = |n: usize| {
        let api = api.clone();
        let body = completion_request(&format!("pg-outage-{n}"));
        async move { api.signed(device, project, "POST", COMPLETIONS, &body).await.unwrap() }
    };
    assert_eq!(complete(0).await.status, 200);
    let forwarded_before = upstream.received().len();

    postgres.stop();
    let mut refused = BTreeMap::<String, usize>::new();
    for n in 1..=8 {
        let answer = complete(n).await;
        *refused.entry(format!("{} {}", answer.status, answer.code().unwrap_or_default())).or_default() += 1;
    }
    let (ready, _) = api.call(Method::GET, "/api/v1/ready", None, None).await;
    let forwarded_during = upstream.received().len() - forwarded_before;

    postgres.restart().await;
    let back = Instant::now();
    let recovered = eventually("the node to serve again", Duration::from_secs(60), || async {
        (complete(100).await.status == 200).then(|| back.elapsed())
    })
    .await;
    println!(
        "PostgreSQL stopped, strict mode: answers {refused:?}, ready {ready}, forwarded {forwarded_during}; \
         serving again {recovered:.1?} after PostgreSQL accepted connections (no restart)"
    );
    assert_eq!(
        refused.keys().collect::<Vec<_>>(),
        ["503 audit_unavailable"],
        "fail closed, clearly: {refused:?}"
    );
    assert_eq!(forwarded_during, 0, "nothing went to the provider unaudited");
    assert_eq!(ready, 503);
}

/// Client-side connections to `port` that are still established, from `/proc/net/tcp`.
fn established_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let remote_port = fields.get(2).and_then(|a| a.rsplit(':').next());
            remote_port.and_then(|p| u16::from_str_radix(p, 16).ok()) == Some(port)
                && fields.get(3) == Some(&"01")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_or_resetting_provider_gets_504_or_502_and_leaves_no_connection_open() {
    const CALLS: usize = 16;
    let hanging = FaultyUpstream::spawn(Misbehaviour::Hang).await;
    let resetting = FaultyUpstream::spawn(Misbehaviour::Reset).await;
    let healthy = FakeUpstream::spawn(Reply::Json { status: 200, body: COMPLETION_ANSWER.to_owned() }).await;
    let postgres = PrivatePostgres::start().await;
    let deployment = Deployment::new(&postgres.url(), None)
        .with("KEYGUARD_UPSTREAM_TIMEOUT_SECS", "1")
        .with("KEYGUARD_UPSTREAM_CONNECT_TIMEOUT_SECS", "1");
    let node = deployment.start("faulty-upstreams").await;
    let api = node.api();
    let token = api.setup_admin().await;
    let mut projects = Vec::new();
    for base in [hanging.base_url(), resetting.base_url(), healthy.base_url()] {
        let project = api.create_project(&token, &base).await;
        let code = api.enrollment_code(&token, &project, 1).await;
        let (device, _) = api.enroll(&project, &code).await;
        projects.push((project, Arc::new(device)));
    }

    // The resting task count, with one pooled connection to the healthy provider and one from
    // this client; the faulty calls go through a client of their own, dropped afterwards.
    let (project, device) = &projects[2];
    let before = api.signed(device, project, "POST", COMPLETIONS, &completion_request("warm")).await.unwrap();
    assert_eq!(before.status, 200, "{}", before.body);
    let resting = alive_tasks(&api).await;
    let faulty = node.api();
    let mut calls = tokio::task::JoinSet::new();
    for n in 0..CALLS {
        for (which, (project, device)) in projects.iter().enumerate().take(2) {
            let (api, device) = (faulty.clone(), device.clone());
            let project = Project { id: project.id, raw: project.raw.clone() };
            calls.spawn(async move {
                let body = completion_request(&format!("faulty-{n}"));
                let answer = api.signed(&device, &project, "POST", COMPLETIONS, &body).await.unwrap();
                (which, answer.status, answer.code().unwrap_or_default())
            });
        }
    }
    let mut answers = BTreeMap::<(usize, u16, String), usize>::new();
    while let Some(answer) = calls.join_next().await {
        *answers.entry(answer.unwrap()).or_default() += 1;
    }
    drop(faulty);
    let after =
        api.signed(device, project, "POST", COMPLETIONS, &completion_request("healthy")).await.unwrap();

    let closed = eventually("every upstream connection to be closed", Duration::from_secs(30), || async {
        let open = (hanging.open(), resetting.open(), established_to(hanging.addr.port()));
        (open == (0, 0, 0)).then_some(open)
    })
    .await;
    let tasks = eventually(
        "the server's tasks to return to their resting count",
        Duration::from_secs(30),
        || async {
            let alive = alive_tasks(&api).await;
            (alive <= resting).then_some(alive)
        },
    )
    .await;
    println!(
        "faulty providers: answers {answers:?}; connections accepted: hanging {}, resetting {}; open after: {closed:?}; \
         server tasks {resting} before, {tasks} after",
        hanging.accepted(),
        resetting.accepted(),
    );
    assert_eq!(answers.get(&(0, 504, "upstream_timeout".to_owned())), Some(&CALLS), "{answers:?}");
    assert_eq!(answers.get(&(1, 502, "upstream_unreachable".to_owned())), Some(&CALLS), "{answers:?}");
    assert_eq!(
        (after.status, after.body.as_str()),
        (200, COMPLETION_ANSWER),
        "a healthy provider still works"
    );
    assert!(hanging.accepted() >= 1 && resetting.accepted() >= 1);
}

/// `keyguard_runtime_alive_tasks` from the node's `/metrics`.
async fn alive_tasks(api: &Api) -> i64 {
    let text = api.text("/metrics").await;
    text.lines()
        .find_map(|line| line.strip_prefix("keyguard_runtime_alive_tasks "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no task count in /metrics:\n{text}"))
}
