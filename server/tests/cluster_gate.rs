//! Two `keyguard` nodes on one database and one NATS: a device suspended on one node is refused
//! on the other within the relay's polling interval, a nonce used on one node is a replay on
//! the other, a requests-per-minute limit counts both nodes' requests, and a node whose NATS
//! does not answer checks nonces in its database instead: it serves, and still refuses replays.
//!
//! Needs the NATS server of `support::nats_url()` (`scripts/test.sh` starts it); each test uses
//! buckets of its own so tests run in parallel.

mod device_support;
mod support;

use device_support::*;
use domain::policy::PolicyScope;
use server::config::Config;
use services::caller::Caller;
use services::gate::{REJECTED_KIND, SharedStoresConfig};
use services::policies::{self, SettingsInput};
use support::upstream::{FakeUpstream, Reply};
use support::{Backend, TestApp};

/// Buckets no other test uses.
fn private_buckets() -> SharedStoresConfig {
    let id = uuid::Uuid::new_v4().simple();
    SharedStoresConfig {
        nonce_bucket: format!("test_nonces_{id}"),
        limit_bucket: format!("test_limits_{id}"),
        ..SharedStoresConfig::default()
    }
}

fn on_nats(url: String, buckets: SharedStoresConfig) -> impl FnOnce(&mut Config) {
    move |config| {
        config.nats_url = Some(url);
        config.gate_stores = buckets;
    }
}

/// Node A and node B, sharing the database, the master key, NATS and the buckets.
async fn cluster(backend: Backend, buckets: &SharedStoresConfig) -> (TestApp, TestApp) {
    let a = TestApp::spawn_with(backend, on_nats(support::nats_url(), buckets.clone())).await;
    let b = a.spawn_beside(on_nats(support::nats_url(), buckets.clone())).await;
    (a, b)
}

/// A cluster with a project and an active device, made on A; B's caches know them.
async fn cluster_with_device(
    backend: Backend,
    buckets: &SharedStoresConfig,
) -> (TestApp, TestApp, Project, DeviceKey, String) {
    let (a, b) = cluster(backend, buckets).await;
    let admin = a.bootstrap_admin().await;
    let project = create_project(&a, &admin).await;
    let (device, device_id) = active_device(&a, &project).await;
    sync_caches(&b).await;
    (a, b, project, device, device_id)
}

/// B learns what A wrote (keys, devices, policies) without waiting for its periodic refresh.
async fn sync_caches(node: &TestApp) {
    node.platform.projections.catch_up().await.unwrap();
    node.platform.gate.refresh().await.unwrap();
}

async fn active_device(app: &TestApp, project: &Project) -> (DeviceKey, String) {
    let code = issue_code(app, project, true, None).await;
    let device = DeviceKey::generate();
    let (status, body) = enroll(app, &project.raw, &device.enrollment(Some(&code))).await;
    assert_eq!((status, body["status"].as_str()), (201, Some("ACTIVE")), "{body}");
    (device, body["id"].as_str().unwrap().to_owned())
}

async fn remove_buckets(buckets: &SharedStoresConfig) {
    let client = async_nats::connect(support::nats_url()).await.expect("NATS for the cleanup");
    let jetstream = async_nats::jetstream::new(client);
    for bucket in [&buckets.nonce_bucket, &buckets.limit_bucket] {
        let _ = jetstream.delete_key_value(bucket).await;
    }
}

async fn a_nonce_used_on_one_node_is_a_replay_on_the_other(backend: Backend) {
    let buckets = private_buckets();
    let (a, b, project, device, _) = cluster_with_device(backend, &buckets).await;

    let first = sign(&device, &project.raw, "POST", VERIFY, b"");
    assert_eq!(send(&a, "POST", VERIFY, &first, vec![]).await.status, 200);
    let replay = send(&b, "POST", VERIFY, &first, vec![]).await;
    assert_eq!((replay.status, replay.body.as_str()), (401, r#"{"error":"unauthorized"}"#));

    let second = sign(&device, &project.raw, "POST", VERIFY, b"");
    assert_eq!(send(&b, "POST", VERIFY, &second, vec![]).await.status, 200);
    assert_eq!(send(&a, "POST", VERIFY, &second, vec![]).await.status, 401);
    assert_eq!(send(&b, "POST", VERIFY, &second, vec![]).await.status, 401);

    wait_for_reasons(&a, REJECTED_KIND, &["replayed_nonce"]).await;
    remove_buckets(&buckets).await;
}

async fn a_requests_per_minute_limit_holds_across_nodes(backend: Backend) {
    const LIMIT: u32 = 10;
    let buckets = private_buckets();
    let (a, b, project, device, device_id) = cluster_with_device(backend, &buckets).await;
    let input = SettingsInput { requests_per_minute: Some(LIMIT), ..Default::default() };
    policies::set(
        &a.platform,
        &Caller::system("test"),
        PolicyScope::Device(device_id.parse().unwrap()),
        input,
    )
    .await
    .unwrap();
    sync_caches(&b).await;

    // Alternate nodes, twice the limit in all; each node alone would admit up to LIMIT.
    let mut admitted = [0u32; 2];
    let mut limited = [0u32; 2];
    for i in 0..2 * LIMIT {
        let node = if i % 2 == 0 { &a } else { &b };
        let answer =
            send(node, "POST", VERIFY, &sign(&device, &project.raw, "POST", VERIFY, b""), vec![]).await;
        match answer.status {
            200 => admitted[(i % 2) as usize] += 1,
            429 => {
                assert_eq!(answer.body, r#"{"error":"rate_limited"}"#);
                assert!(answer.retry_after.is_some(), "a 429 says when to retry");
                limited[(i % 2) as usize] += 1;
            }
            other => panic!("unexpected {other}: {}", answer.body),
        }
    }
    let total = admitted[0] + admitted[1];
    // GCRA refills one request every 6 s; the loop may span one refill, never more than 10%.
    assert!((LIMIT..=LIMIT + LIMIT / 10).contains(&total), "admitted {admitted:?}, limited {limited:?}");
    assert!(limited[0] > 0 && limited[1] > 0, "both nodes enforce the shared limit: {limited:?}");
    wait_for_reasons(&a, REJECTED_KIND, &["rate_limited_requests"]).await;
    remove_buckets(&buckets).await;
}

async fn without_nats_a_node_checks_nonces_in_its_database_and_still_refuses_replays(backend: Backend) {
    let fake = FakeUpstream::spawn(Reply::Json { status: 200, body: r#"{"ok":true}"#.to_owned() }).await;
    // Port 9 (discard) has no NATS behind it.
    let app = TestApp::spawn_with(backend, on_nats("nats://127.0.0.1:9".to_owned(), private_buckets())).await;
    let admin = app.bootstrap_admin().await;
    let body = serde_json::json!({
        "name": "cluster", "provider": "openai", "environment": "production",
        "providerKey": "sk-cluster-provider-secret-0123456789", "baseUrl": fake.base_url(),
    });
    let (status, created) = app.call(reqwest::Method::POST, "/api/v1/keys", Some(&admin), Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let project = Project {
        id: created["key"]["id"].as_str().unwrap().parse().unwrap(),
        raw: created["rawKey"].as_str().unwrap().to_owned(),
    };
    let (device, _) = active_device(&app, &project).await;

    let path = "/api/v1/proxy/v1/chat/completions";
    let request = br#"{"model":"gpt-4o","messages":[]}"#;
    let headers = sign(&device, &project.raw, "POST", path, request);
    let answer = send(&app, "POST", path, &headers, request.to_vec()).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let replay = send(&app, "POST", path, &headers, request.to_vec()).await;
    assert_eq!(replay.status, 401, "{}", replay.body);
    let verify = send(&app, "POST", VERIFY, &sign(&device, &project.raw, "POST", VERIFY, b""), vec![]).await;
    assert_eq!(verify.status, 200, "{}", verify.body);
    assert_eq!(fake.received().len(), 1, "only the first request reached the provider");
    wait_for_reasons(&app, REJECTED_KIND, &["replayed_nonce"]).await;
}

async fn a_device_suspended_on_one_node_is_refused_on_the_other(backend: Backend) {
    let buckets = private_buckets();
    let (a, b, project, device, device_id) = cluster_with_device(backend, &buckets).await;
    let on_b = || async {
        send(&b, "POST", VERIFY, &sign(&device, &project.raw, "POST", VERIFY, b""), vec![]).await
    };
    assert_eq!(on_b().await.status, 200);

    let suspended_at = std::time::Instant::now();
    services::devices::suspend(
        &a.platform,
        &Caller::system("test"),
        device_id.parse().unwrap(),
        "lost".into(),
        None,
    )
    .await
    .unwrap();
    // B learns of A's write from its own relay, which reads the shared store: well within this
    // deadline, unlike the caches' periodic refresh (60 s), which must not be what brings it.
    support::events::eventually(
        "B to refuse the suspended device",
        std::time::Duration::from_secs(10),
        || async { (on_b().await.status == 401).then_some(()) },
    )
    .await;
    // The figure, for `cargo test -p server --test cluster_gate -- suspended --nocapture`; not
    // asserted.
    eprintln!("suspend on A enforced on B after {:?} ({backend:?})", suspended_at.elapsed());
    remove_buckets(&buckets).await;
}

on_both_backends!(
    a_device_suspended_on_one_node_is_refused_on_the_other,
    a_nonce_used_on_one_node_is_a_replay_on_the_other,
    a_requests_per_minute_limit_holds_across_nodes,
    without_nats_a_node_checks_nonces_in_its_database_and_still_refuses_replays,
);
