//! Three `keyguard` processes on their own loopback ports, sharing one PostgreSQL store, one NATS
//! and one master key, as a cluster behind a load balancer would:
//! - a nonce accepted by one node is a replay on the other two;
//! - a device revoked through node A is refused by nodes B and C; the time it takes is measured
//!   over `KEYGUARD_CLUSTER_REVOCATIONS` (100) revocations and its p50 / p99 / max printed
//!   (`cargo test -p server --test cluster -- --nocapture`), never asserted;
//! - a requests-per-minute limit holds within 10% when requests are spread over the three nodes;
//! - a node started after the others catches up and serves as they do;
//! - a relay hears of events committed elsewhere from PostgreSQL's notifications, not its polling.
//!
//! PostgreSQL and NATS are private servers of each test: the store's readers wait for the oldest
//! transaction in flight in the whole PostgreSQL cluster, so another suite's long transaction on
//! a shared server would hold these nodes back and blur the figures.

mod device_support;
mod nodes;
mod support;

use std::time::{Duration, Instant};

use device_support::{DeviceKey, Project, VERIFY, sign};
use nodes::{Api, Deployment, Node, PrivateNats, PrivatePostgres};
use reqwest::Method;
use services::events::EventBus;
use services::outbox::{OutboxConfig, OutboxRelay};
use services::store::Database;
use support::events::eventually;
use uuid::Uuid;

/// How long a change may take to reach another node before the test fails (the measured figure
/// is a few milliseconds; this only bounds a broken run).
const PROPAGATION_DEADLINE: Duration = Duration::from_secs(10);

struct Cluster {
    deployment: Deployment,
    nodes: Vec<Node>,
    token: String,
    project: Project,
    _nats: PrivateNats,
    _postgres: PrivatePostgres,
}

impl Cluster {
    /// A store, a NATS and `running` of the three nodes (the others can start later), with an
    /// admin and a project made through node A.
    async fn start(running: usize) -> Self {
        let postgres = PrivatePostgres::start().await;
        let nats = PrivateNats::start().await;
        let deployment = Deployment::new(&postgres.url(), Some(&nats.url()));
        // A applies the migrations; the others then start side by side.
        let mut nodes = vec![deployment.start("a").await];
        let others =
            futures::future::join_all(["b", "c"].iter().take(running - 1).map(|n| deployment.start(n)));
        nodes.extend(others.await);
        let api = nodes[0].api();
        let token = api.setup_admin().await;
        // Nothing is forwarded in these tests; verify-test needs no provider.
        let project = api.create_project(&token, "http://127.0.0.1:9").await;
        Self { deployment, nodes, token, project, _nats: nats, _postgres: postgres }
    }

    fn api(&self, node: usize) -> Api {
        self.nodes[node].api()
    }

    /// Enrolls `count` active devices through node A.
    async fn devices(&self, count: usize) -> Vec<(DeviceKey, Uuid)> {
        let api = self.api(0);
        let code = api.enrollment_code(&self.token, &self.project, count as i64).await;
        let mut devices = Vec::with_capacity(count);
        for _ in 0..count {
            devices.push(api.enroll(&self.project, &code).await);
        }
        devices
    }

    /// Waits until `node` answers verify-test for `device` with `status`.
    async fn until(&self, node: usize, device: &DeviceKey, status: u16) {
        let api = self.api(node);
        eventually(&format!("node {node} to answer {status}"), PROPAGATION_DEADLINE, || async {
            (api.verify(device, &self.project).await.status == status).then_some(())
        })
        .await;
    }

    async fn revoke(&self, node: usize, device: Uuid) {
        let (status, body) = self
            .api(node)
            .call(
                Method::DELETE,
                &format!("/api/v1/devices/{device}"),
                Some(&self.token),
                Some(serde_json::json!({ "reason": "lost" })),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonce_accepted_by_one_node_is_a_replay_on_the_others() {
    let cluster = Cluster::start(3).await;
    let (device, _) = cluster.devices(1).await.remove(0);
    for node in 0..3 {
        cluster.until(node, &device, 200).await;
    }
    for first in 0..3 {
        let headers = sign(&device, &cluster.project.raw, "POST", VERIFY, b"");
        let accepted = cluster.api(first).send_signed("POST", VERIFY, &headers, b"").await.unwrap();
        assert_eq!(accepted.status, 200, "{}", accepted.body);
        for other in (0..3).filter(|n| *n != first) {
            let replay = cluster.api(other).send_signed("POST", VERIFY, &headers, b"").await.unwrap();
            assert_eq!(
                (replay.status, replay.body.as_str()),
                (401, r#"{"error":"unauthorized"}"#),
                "a nonce used on node {first} replayed on node {other}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_revoked_through_one_node_is_refused_by_the_others() {
    let revocations: usize =
        std::env::var("KEYGUARD_CLUSTER_REVOCATIONS").map_or(100, |n| n.parse().expect("a number"));
    let cluster = Cluster::start(3).await;
    let devices = cluster.devices(revocations).await;
    // Signing is slow in a debug build: the probes below are signed ahead, so that they leave the
    // moment they are due, and the figures are round trips, not signing time.
    let presign = |device: &DeviceKey, n: usize| -> Vec<Vec<(String, String)>> {
        (0..n).map(|_| sign(device, &cluster.project.raw, "POST", VERIFY, b"")).collect()
    };
    // What one verify-test round trip costs: the resolution of the figures below.
    let (probe, _) = &devices[0];
    cluster.until(1, probe, 200).await;
    let mut round_trips = Vec::new();
    for headers in presign(probe, 20) {
        let sent = Instant::now();
        assert_eq!(cluster.api(1).send_signed("POST", VERIFY, &headers, b"").await.unwrap().status, 200);
        round_trips.push(sent.elapsed());
    }
    let (round_trip, ..) = nodes::percentiles(round_trips);
    let mut after_answer = Vec::with_capacity(revocations);
    // Revocations that B and C refused at the first request sent once A had answered.
    let mut first_probe_refused = 0;
    let mut after_request = Vec::with_capacity(revocations);
    for (device, id) in &devices {
        for node in 1..3 {
            cluster.until(node, device, 200).await;
        }
        let ahead = [presign(device, 4), presign(device, 4)];
        let requested = Instant::now();
        cluster.revoke(0, *id).await;
        let answered = Instant::now();
        // B and C are asked side by side, each again as soon as it answered.
        let refused = |node: usize, mut ahead: Vec<Vec<(String, String)>>| {
            let api = cluster.api(node);
            let project = &cluster.project;
            async move {
                let started = Instant::now();
                let mut probes = 0;
                loop {
                    probes += 1;
                    let headers =
                        ahead.pop().unwrap_or_else(|| sign(device, &project.raw, "POST", VERIFY, b""));
                    if api.send_signed("POST", VERIFY, &headers, b"").await.unwrap().status == 401 {
                        return (Instant::now(), probes);
                    }
                    assert!(
                        started.elapsed() < PROPAGATION_DEADLINE,
                        "node {node} still admits a revoked device"
                    );
                }
            }
        };
        let [b_ahead, c_ahead] = ahead;
        let ((b, b_probes), (c, c_probes)) = tokio::join!(refused(1, b_ahead), refused(2, c_ahead));
        if b_probes == 1 && c_probes == 1 {
            first_probe_refused += 1;
        }
        let last = b.max(c);
        after_answer.push(last - answered);
        after_request.push(last - requested);
    }
    let (p50, p99, max) = nodes::percentiles(after_answer);
    let (rp50, rp99, rmax) = nodes::percentiles(after_request);
    println!(
        "revocation through A refused by B and C, over {revocations} revocations: after A answered p50 {p50:.1?}, \
         p99 {p99:.1?}, max {max:.1?}; after the request was sent p50 {rp50:.1?}, p99 {rp99:.1?}, max {rmax:.1?} (one verify-test round \
         trip: p50 {round_trip:.1?}); B and C both refused the very first request sent once A had answered in \
         {first_probe_refused} of {revocations}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requests_per_minute_limit_holds_across_the_cluster() {
    const LIMIT: u32 = 60;
    let cluster = Cluster::start(3).await;
    // The key's policy comes before its device, so a node that knows the device knows the limit.
    let (status, body) = cluster
        .api(0)
        .call(
            Method::PUT,
            &format!("/api/v1/policies/keys/{}", cluster.project.id),
            Some(&cluster.token),
            Some(serde_json::json!({ "settings": { "requestsPerMinute": LIMIT } })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (device, _) = cluster.devices(1).await.remove(0);

    // Each node is asked LIMIT times, the three side by side, so the whole run takes a few
    // refills at most.
    let started = Instant::now();
    let per_node = (0..3).map(|node| {
        let (api, device, project) = (cluster.api(node), &device, &cluster.project);
        async move {
            let mut counts = [0u32; 3]; // admitted, limited, device not known yet
            for _ in 0..LIMIT {
                let answer = api.verify(device, project).await;
                let slot = match answer.status {
                    200 => 0,
                    429 => 1,
                    401 => 2,
                    other => panic!("unexpected {other}: {}", answer.body),
                };
                counts[slot] += 1;
            }
            counts
        }
    });
    let answers = futures::future::join_all(per_node).await;
    let elapsed = started.elapsed();
    let admitted: u32 = answers.iter().map(|a| a[0]).sum();
    // The limit refills one request every 60/LIMIT s while the loop runs.
    let refilled = (elapsed.as_secs_f64() * f64::from(LIMIT) / 60.0).ceil() as u32;
    println!(
        "{LIMIT}/min over three nodes: admitted {admitted} of {} in {elapsed:.1?} (refill meanwhile {refilled}); \
         per node [admitted, limited, device not known yet]: {answers:?}",
        3 * LIMIT
    );
    assert!(
        admitted >= LIMIT * 9 / 10 && admitted <= LIMIT * 11 / 10 + refilled,
        "admitted {admitted} for a limit of {LIMIT}"
    );
    assert!(answers.iter().all(|a| a[1] > 0), "every node enforces the shared limit: {answers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_later_catches_up_and_serves() {
    let mut cluster = Cluster::start(2).await;
    let mut devices = cluster.devices(3).await;
    let (kept, kept_id) = devices.remove(0);
    let (revoked, revoked_id) = devices.remove(0);
    let (later, later_id) = devices.remove(0);
    cluster.revoke(0, revoked_id).await;
    // Node 1 learns of the enrollments through the event stream, a moment later.
    cluster.until(1, &kept, 200).await;
    let used = sign(&kept, &cluster.project.raw, "POST", VERIFY, b"");
    assert_eq!(cluster.api(1).send_signed("POST", VERIFY, &used, b"").await.unwrap().status, 200);

    let joined = Instant::now();
    cluster.nodes.push(cluster.deployment.start("c").await);
    let started_in = joined.elapsed();
    let c = cluster.api(2);
    assert_eq!(c.verify(&kept, &cluster.project).await.status, 200, "C knows the devices made before it");
    assert_eq!(c.verify(&revoked, &cluster.project).await.status, 401, "C knows what was revoked before it");
    let replay = c.send_signed("POST", VERIFY, &used, b"").await.unwrap();
    assert_eq!(replay.status, 401, "C knows the nonces used before it");
    let (status, listed) = c.call(Method::GET, "/api/v1/devices?limit=100", Some(&cluster.token), None).await;
    assert_eq!(status, 200, "{listed}");
    let status_of = |id: Uuid| {
        listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == id.to_string())
            .map(|d| d["status"].clone())
    };
    assert_eq!(status_of(kept_id), Some("active".into()), "{listed}");
    assert_eq!(status_of(revoked_id), Some("revoked".into()), "{listed}");

    // And it follows what happens after it joined, both ways.
    cluster.revoke(1, later_id).await;
    cluster.until(2, &later, 401).await;
    let (status, body) = c
        .call(
            Method::PATCH,
            &format!("/api/v1/devices/{kept_id}/suspend"),
            Some(&cluster.token),
            Some(serde_json::json!({ "reason": "audit" })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    cluster.until(0, &kept, 401).await;
    cluster.until(1, &kept, 401).await;
    println!("a node started later served correctly {started_in:.1?} after it was launched");
}

/// With its polling turned off, a relay still hears at once of events committed through another
/// connection (another node's): every append notifies PostgreSQL's `keyguard_events` channel on
/// commit, and every relay listens to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_hears_of_another_nodes_commits_without_polling() {
    let store = support::TestDb::new(support::Backend::Postgres).await;
    let bus = EventBus::default();
    let mut received = bus.receiver();
    let config = OutboxConfig { poll_interval: Duration::from_secs(24 * 3600), ..OutboxConfig::default() };
    let _relay = OutboxRelay::connect(store.db.clone(), bus.clone(), config).await.unwrap().spawn();
    let other_node = Database::connect(&store.config, 2).await.unwrap();
    // Several rounds, so that most commits come after the relay started listening (one before
    // is found by the pass it makes once listening).
    for _ in 0..5 {
        let device = Uuid::new_v4();
        support::events::enroll(&other_node, device, Uuid::new_v4(), None, "elsewhere").await;
        tokio::time::timeout(PROPAGATION_DEADLINE, async {
            while received.recv().await.expect("the bus").event.aggregate_id != device.to_string() {}
        })
        .await
        .expect("the relay to hand over an event committed elsewhere, with polling off");
    }
}
