//! Crash safety: a `keyguard` node on PostgreSQL and NATS serves proxied completions and admin
//! changes under load and is killed with SIGKILL at random moments, then started again, over and
//! over. Afterwards:
//! - every proxied request that got a complete 200 has its usage record in the store, exactly
//!   once (the node runs in the strict audit mode, whose promise this is; the async mode may lose
//!   the records of the last flush interval by design), and every admin change that answered 200
//!   has its event;
//! - every committed event reached NATS JetStream exactly once (read back from the stream and
//!   compared with the store by event id: none missing, none twice, none unknown);
//! - the read models equal a rebuild from the store (`keyguard projections rebuild`);
//! - the audit hash chains verify (`keyguard audit verify`).
//!
//! The short form (`cargo test -p server --test crash_safety`) kills 20 times, each after 0.1 to
//! 1 s of load. The longer form sets the figures in the environment:
//! `KEYGUARD_CRASH_KILLS=100 KEYGUARD_CRASH_MAX_INTERVAL_MS=5000 cargo test -p server --release --test crash_safety -- --nocapture`.
//! The figures of a run are printed (`--nocapture`).
//!
//! PostgreSQL and NATS are private servers of this test: the event stream then holds this test's
//! events only, and no other suite's long transaction holds the store's readers back.

mod device_support;
mod nodes;
mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use device_support::{DeviceKey, Project};
use nodes::{
    Api, COMPLETION_ANSWER, COMPLETIONS, Deployment, PrivateNats, PrivatePostgres, completion_request,
};
use reqwest::Method;
use services::projections::{Projections, ProjectionsConfig};
use support::events::{READ_MODEL_TABLES, dump};
use support::upstream::{FakeUpstream, Reply};
use tokio::sync::watch;
use uuid::Uuid;

const PROXY_WORKERS: usize = 4;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name} is a number")))
}

/// What the load saw.
#[derive(Default)]
struct Outcomes {
    /// Models of completions answered 200 with the whole body.
    completed: Vec<String>,
    /// Labels of renames answered 200.
    renamed: Vec<String>,
    /// Every answer's status (0: no answer, the node was down or died mid-request).
    statuses: BTreeMap<u16, usize>,
}

struct Load {
    url: watch::Receiver<String>,
    client: reqwest::Client,
    stop: watch::Receiver<bool>,
    outcomes: Arc<Mutex<Outcomes>>,
}

impl Load {
    fn api(&self) -> Api {
        Api { base: self.url.borrow().clone(), client: self.client.clone() }
    }

    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    fn note(&self, status: u16) {
        *self.outcomes.lock().unwrap().statuses.entry(status).or_default() += 1;
    }

    async fn completions(self, worker: usize, device: DeviceKey, project: Project) {
        let mut n = 0u64;
        while !self.stopped() {
            n += 1;
            let model = format!("crash-{worker}-{n}");
            let body = completion_request(&model);
            match self.api().signed(&device, &project, "POST", COMPLETIONS, &body).await {
                Ok(answer) => {
                    self.note(answer.status);
                    if answer.status == 200 && answer.body == COMPLETION_ANSWER {
                        self.outcomes.lock().unwrap().completed.push(model);
                    }
                }
                Err(_) => {
                    self.note(0);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    /// Signs in, trying again while the node is down.
    async fn login(&self) -> Option<String> {
        let credentials =
            serde_json::json!({ "email": "admin@example.com", "password": support::ADMIN_PASSWORD });
        while !self.stopped() {
            match self
                .api()
                .try_call(Method::POST, "/api/v1/auth/login", None, Some(credentials.clone()))
                .await
            {
                Ok((200, body)) => return body["accessToken"].as_str().map(str::to_owned),
                Ok((status, body)) => panic!("sign-in refused ({status}): {body}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
        None
    }

    /// Signing in takes a while (argon2), long enough for a kill to land in it: the token of the
    /// start serves every node, as they share the master key its signing key derives from.
    async fn renames(self, device: Uuid, mut token: String) {
        let mut n = 0u64;
        while !self.stopped() {
            n += 1;
            let label = format!("crash-label-{n}");
            let path = format!("/api/v1/devices/{device}");
            let body = serde_json::json!({ "label": label });
            match self.api().try_call(Method::PATCH, &path, Some(&token), Some(body)).await {
                Ok((status, _)) => {
                    self.note(status);
                    match status {
                        200 => self.outcomes.lock().unwrap().renamed.push(label),
                        401 => match self.login().await {
                            Some(fresh) => token = fresh,
                            None => return,
                        },
                        _ => {}
                    }
                }
                Err(_) => {
                    self.note(0);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_nodes_lose_no_event_and_publish_each_once() {
    let kills = setting("KEYGUARD_CRASH_KILLS", 20);
    let max_interval = Duration::from_millis(setting("KEYGUARD_CRASH_MAX_INTERVAL_MS", 1000));
    let started = Instant::now();

    let postgres = PrivatePostgres::start().await;
    let nats = PrivateNats::start().await;
    let upstream = FakeUpstream::spawn(Reply::Json { status: 200, body: COMPLETION_ANSWER.to_owned() }).await;
    let deployment =
        Deployment::new(&postgres.url(), Some(&nats.url())).with("KEYGUARD_AUDIT_MODE", "strict");
    let mut node = deployment.start("crash").await;

    let api = node.api();
    let token = api.setup_admin().await;
    let project = api.create_project(&token, &upstream.base_url()).await;
    let code = api.enrollment_code(&token, &project, PROXY_WORKERS as i64 + 1).await;
    let mut devices = Vec::new();
    for _ in 0..=PROXY_WORKERS {
        devices.push(api.enroll(&project, &code).await);
    }

    let (url_tx, url) = watch::channel(node.url(""));
    let (stop_tx, stop) = watch::channel(false);
    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let load = || Load {
        url: url.clone(),
        client: reqwest::Client::new(),
        stop: stop.clone(),
        outcomes: outcomes.clone(),
    };
    let (renamed_device, renamed_id) = devices.pop().unwrap();
    drop(renamed_device);
    let mut workers = vec![tokio::spawn(load().renames(renamed_id, token.clone()))];
    for (worker, (device, _)) in devices.into_iter().enumerate() {
        let project = Project { id: project.id, raw: project.raw.clone() };
        workers.push(tokio::spawn(load().completions(worker, device, project)));
    }

    for _ in 0..kills {
        tokio::time::sleep(nodes::random_between(Duration::from_millis(100)..max_interval)).await;
        node.kill();
        node.restart().await;
        url_tx.send_replace(node.url(""));
    }
    // Some load on the last node too, then stop it.
    tokio::time::sleep(max_interval / 2).await;
    stop_tx.send_replace(true);
    for worker in workers {
        worker.await.expect("a load worker");
    }
    let load_done = started.elapsed();

    let db = deployment.database().await;
    let delivery = nodes::wait_for_exactly_once(&db, &nats.url(), Duration::from_secs(60)).await;
    node.terminate();

    // Every success has its event.
    let events = nodes::stored_events(&db).await;
    let mut usage: HashMap<String, usize> = HashMap::new();
    for (_, event_type, payload) in &events {
        if event_type == services::usage::REQUEST_COMPLETED {
            let payload: serde_json::Value = serde_json::from_str(payload).unwrap();
            if let Some(model) = payload["model"].as_str() {
                *usage.entry(model.to_owned()).or_default() += 1;
            }
        }
    }
    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    let lost: Vec<&String> = outcomes.completed.iter().filter(|m| !usage.contains_key(*m)).collect();
    let twice: Vec<(&String, &usize)> = usage.iter().filter(|(_, n)| **n > 1).collect();
    let labels: HashSet<String> = events
        .iter()
        .filter_map(|(_, _, payload)| serde_json::from_str::<serde_json::Value>(payload).ok())
        .filter_map(|payload| find_label(&payload))
        .collect();
    let lost_renames: Vec<&String> = outcomes.renamed.iter().filter(|l| !labels.contains(*l)).collect();

    // The read models as the crashed nodes left them (caught up, as a restart would) against a
    // replay of the whole store.
    Projections::new(db.clone(), ProjectionsConfig::default()).catch_up().await.unwrap();
    let tables: Vec<&str> =
        READ_MODEL_TABLES.iter().copied().filter(|t| *t != "projection_checkpoints").collect();
    let incremental = dump(&db, &tables).await;
    let rebuild = deployment.run(&["projections", "rebuild"]);
    assert!(rebuild.status.success(), "rebuild failed: {}", String::from_utf8_lossy(&rebuild.stderr));
    let rebuilt = dump(&db, &tables).await;
    let verify = deployment.run(&["audit", "verify"]);

    println!(
        "crash safety: {kills} SIGKILLs in {load_done:.1?} of load ({} starts); answers {:?}; \
         {} completions and {} renames answered 200; {} events stored, {} in JetStream, \
         {} missing, {} duplicated; lost usage records {}, usage recorded twice {}, lost renames {}",
        node.starts,
        outcomes.statuses,
        outcomes.completed.len(),
        outcomes.renamed.len(),
        delivery.stored,
        delivery.published,
        delivery.missing.len(),
        delivery.duplicated.len(),
        lost.len(),
        twice.len(),
        lost_renames.len(),
    );
    assert!(!outcomes.completed.is_empty() && !outcomes.renamed.is_empty(), "the load did something");
    assert!(lost.is_empty(), "completions answered 200 without a usage record: {lost:?}");
    assert!(twice.is_empty(), "usage recorded more than once: {twice:?}");
    assert!(lost_renames.is_empty(), "renames answered 200 without an event: {lost_renames:?}");
    for table in &tables {
        assert_eq!(incremental[*table], rebuilt[*table], "read model {table} differs from a rebuild");
    }
    assert!(
        verify.status.success(),
        "the audit chain does not verify:\n{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    println!(
        "crash safety: read models equal a rebuild; audit chain verified; took {:.1?}",
        started.elapsed()
    );
}

/// The label a rename event carries, wherever the payload keeps it.
fn find_label(payload: &serde_json::Value) -> Option<String> {
    match payload {
        serde_json::Value::Object(map) => map.iter().find_map(|(key, value)| match value {
            serde_json::Value::String(s) if key == "label" && s.starts_with("crash-label-") => {
                Some(s.clone())
            }
            other => find_label(other),
        }),
        _ => None,
    }
}
