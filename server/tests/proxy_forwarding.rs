//! Forwarding to the four providers over real HTTP: fake upstreams on loopback record what they
//! received (exact body bytes, the injected key in the provider's header, nothing of KeyGuard's),
//! the client gets the provider's answer unchanged and streamed, failures are 502/504, and every
//! request leaves a `RequestCompleted` usage event with its token counts.
//!
//! Clients that go away cancel the upstream call; strict audit mode stores a record before its
//! answer ends; queued records survive a graceful shutdown; a full queue's losses are counted
//! and written down.
//!
//! Most tests drive the forwarder behind a minimal front route with a constructed `Admitted`
//! (the gate's verdict), so that they exercise forwarding alone; the last goes end to end through
//! `/api/v1/proxy` with a key made over the API, an enrolled device and a kg-v1 signed request.

mod device_support;
mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::response::Response;
use domain::protocol::KeyId;
use domain::provider::Provider;
use futures::StreamExt as _;
use secrecy::zeroize::Zeroizing;
use serde_json::Value;
use server::config::{AuditMode, Config};
use server::proxy::forward::{Forwarder, ProxyRequest, split_provider};
use services::events::{EventLog, StoredEvent};
use services::gate::{Admitted, Upstream};
use services::platform::Platform;
use services::usage::{USAGE_BATCH_TYPE, USAGE_RECORDS_DROPPED, UsageConfig, UsageRecord, UsageWriter};
use support::upstream::{FakeUpstream, Reply, closed_port_url};
use support::{Backend, TestApp};
use uuid::Uuid;

const SECRET: &str = "sk-provider-secret-0123456789";

/// The real app (for its store and usage writer) plus a front route that forwards every request
/// as if the gate had admitted it for `upstream`.
struct Harness {
    app: TestApp,
    front: SocketAddr,
    admitted: Admitted,
    client: reqwest::Client,
}

#[derive(Clone)]
struct Front {
    forwarder: Forwarder,
    platform: Arc<Platform>,
    admitted: Admitted,
}

async fn front(State(front): State<Front>, request: Request) -> Response {
    let received_at = Instant::now();
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let (explicit, path) = split_provider(parts.uri.path());
    let request = ProxyRequest {
        method: parts.method,
        path,
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body,
        received_at,
    };
    front.forwarder.forward(&front.platform, &front.admitted, explicit, request).await
}

fn upstream(provider: Provider, base_url: String) -> Upstream {
    Upstream {
        provider,
        base_url: Some(base_url),
        azure_deployment: None,
        azure_api_version: None,
        secret: Arc::new(Zeroizing::new(SECRET.to_owned())),
    }
}

impl Harness {
    async fn start(backend: Backend, upstream: Upstream) -> Self {
        Self::start_with(backend, upstream, |_| {}).await
    }

    /// With the app's configuration adjusted by `adjust` (after the harness's own settings).
    async fn start_with(backend: Backend, upstream: Upstream, adjust: impl FnOnce(&mut Config)) -> Self {
        let mut upstream_config = None;
        let app = TestApp::spawn_with(backend, |config| {
            config.upstream.connect_timeout = Duration::from_secs(2);
            config.upstream.timeout = Duration::from_secs(30);
            adjust(config);
            upstream_config = Some(config.upstream.clone());
        })
        .await;
        let forwarder = Forwarder::new(&upstream_config.unwrap()).unwrap();
        let admitted = Admitted {
            api_key_id: Uuid::new_v4(),
            device_id: Uuid::new_v4(),
            key_id: KeyId::parse("0123456789abcdef0123456789abcdef").unwrap(),
            upstream,
            model: Some("test-model".to_owned()),
        };
        let state = Front { forwarder, platform: app.platform.clone(), admitted: admitted.clone() };
        let router = axum::Router::new().fallback(front).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { app, front: addr, admitted, client: reqwest::Client::new() }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.front)
    }

    /// A request carrying the headers a signed client sends, which must not reach the provider.
    fn request(&self, method: reqwest::Method, path: &str, body: &'static [u8]) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .header("content-type", "application/json")
            .header("x-keyguard-api-key", "kg_project_key")
            .header("x-keyguard-signature", "c2lnbmF0dXJl")
            .header("authorization", "Bearer client-token")
            .header("cookie", "session=abc")
            .header("x-trace", "kept")
            .body(body)
    }

    /// The usage events stored so far, waiting (with a deadline) until there are `count`.
    async fn usage_events(&self, count: usize) -> Vec<StoredEvent> {
        let log = EventLog::new(self.app.db.clone());
        support::events::eventually("the usage events", Duration::from_secs(10), || async {
            let events: Vec<StoredEvent> = log
                .read_after(0, 10_000)
                .await
                .unwrap()
                .into_iter()
                .filter(|e| e.aggregate_type == USAGE_BATCH_TYPE)
                .collect();
            (events.len() >= count).then_some(events)
        })
        .await
    }
}

fn assert_nothing_of_keyguard(received: &support::upstream::Received) {
    for name in received.headers.keys() {
        assert!(!name.as_str().starts_with("x-keyguard-"), "{name} reached the provider");
    }
    assert!(received.headers.get("cookie").is_none());
    assert_eq!(received.headers["x-trace"], "kept");
}

fn assert_usage(event: &StoredEvent, harness: &Harness, status: u64, tokens: (u64, u64)) {
    let p = &event.payload;
    assert_eq!(event.event_type, "RequestCompleted");
    assert_eq!(p["type"], "RequestCompleted");
    assert_eq!(p["api_key_id"], harness.admitted.api_key_id.to_string());
    assert_eq!(p["device_id"], harness.admitted.device_id.to_string());
    assert_eq!(p["status"], status);
    assert_eq!(p["tokens_in"], tokens.0, "{p}");
    assert_eq!(p["tokens_out"], tokens.1, "{p}");
    assert_eq!(p["completed"], true, "{p}");
    assert!(p["bytes_out"].as_u64().unwrap() > 0, "{p}");
    let text = p.to_string();
    assert!(!text.contains(SECRET), "the provider key is in a usage record: {text}");
    assert!(!text.contains("Hello"), "a body is in a usage record: {text}");
}

const OPENAI_REQUEST: &[u8] =
    b"{ \"model\" : \"gpt-4o\",\n  \"messages\": [{\"role\":\"user\",\"content\":\"Hello\"}] }";
const OPENAI_ANSWER: &str = r#"{"id":"chatcmpl-1","choices":[{"message":{"content":"Hello there"}}],"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19}}"#;

async fn openai_json_passes_through_with_the_bearer_key(backend: Backend) {
    let fake = FakeUpstream::spawn(Reply::Json { status: 201, body: OPENAI_ANSWER.to_owned() }).await;
    let harness = Harness::start(backend, upstream(Provider::OpenAi, fake.base_url())).await;

    let response = harness
        .request(reqwest::Method::POST, "/v1/chat/completions?limit=5&x=%2F", OPENAI_REQUEST)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["x-request-id"], "upstream-req-1");
    assert_eq!(response.text().await.unwrap(), OPENAI_ANSWER);

    let received = fake.single();
    assert_eq!(received.method, "POST");
    assert_eq!(received.target, "/v1/chat/completions?limit=5&x=%2F");
    assert_eq!(&received.body[..], OPENAI_REQUEST, "the body bytes are forwarded exactly");
    assert_eq!(received.headers["authorization"], format!("Bearer {SECRET}"));
    assert_eq!(received.headers["content-type"], "application/json");
    assert_nothing_of_keyguard(&received);

    let events = harness.usage_events(1).await;
    assert_usage(&events[0], &harness, 201, (12, 7));
    assert_eq!(events[0].payload["bytes_in"], OPENAI_REQUEST.len());
    assert_eq!(events[0].payload["path"], "/v1/chat/completions");
}

async fn a_get_keeps_its_method_and_an_upstream_error_its_status(backend: Backend) {
    let error = r#"{"error":{"message":"quota","type":"insufficient_quota"}}"#;
    let fake = FakeUpstream::spawn(Reply::Json { status: 429, body: error.to_owned() }).await;
    let harness = Harness::start(backend, upstream(Provider::OpenAi, fake.base_url())).await;
    let response = harness.client.get(harness.url("/openai/v1/models")).send().await.unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.text().await.unwrap(), error);
    let received = fake.single();
    assert_eq!(received.method, "GET");
    assert_eq!(received.target, "/v1/models");
    assert!(received.body.is_empty());
    let events = harness.usage_events(1).await;
    assert_eq!(events[0].payload["status"], 429);
}

async fn anthropic_google_and_azure_get_their_own_headers(backend: Backend) {
    // Anthropic: x-api-key and a default anthropic-version; no Authorization.
    let answer = r#"{"content":[{"text":"Hi"}],"usage":{"input_tokens":9,"output_tokens":4}}"#;
    let fake = FakeUpstream::spawn(Reply::Json { status: 200, body: answer.to_owned() }).await;
    let harness = Harness::start(backend, upstream(Provider::Anthropic, fake.base_url())).await;
    let body: &[u8] = br#"{"model":"claude","max_tokens":5,"messages":[]}"#;
    let response =
        harness.request(reqwest::Method::POST, "/anthropic/v1/messages", body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), answer);
    let received = fake.single();
    assert_eq!(received.target, "/v1/messages");
    assert_eq!(&received.body[..], body);
    assert_eq!(received.headers["x-api-key"], SECRET);
    assert_eq!(received.headers["anthropic-version"], "2023-06-01");
    assert!(received.headers.get("authorization").is_none());
    assert_nothing_of_keyguard(&received);
    assert_usage(&harness.usage_events(1).await[0], &harness, 200, (9, 4));

    // Google Gemini: x-goog-api-key, never in the URL.
    let answer = r#"{"candidates":[],"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":3}}"#;
    let fake = FakeUpstream::spawn(Reply::Json { status: 200, body: answer.to_owned() }).await;
    let harness = Harness::start(backend, upstream(Provider::Google, fake.base_url())).await;
    let path = "/v1beta/models/gemini-2.0-flash:generateContent?alt=json";
    let response = harness.request(reqwest::Method::POST, path, body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let received = fake.single();
    assert_eq!(received.target, path);
    assert!(!received.target.contains(SECRET) && !received.target.contains("key="), "{}", received.target);
    assert_eq!(received.headers["x-goog-api-key"], SECRET);
    assert!(received.headers.get("authorization").is_none());
    assert_nothing_of_keyguard(&received);
    assert_usage(&harness.usage_events(1).await[0], &harness, 200, (5, 3));

    // Azure OpenAI: api-key, the key's deployment and api-version, the client's query kept.
    let fake = FakeUpstream::spawn(Reply::Json { status: 200, body: OPENAI_ANSWER.to_owned() }).await;
    let mut azure = upstream(Provider::Azure, fake.base_url());
    azure.azure_deployment = Some("gpt4o-prod".to_owned());
    azure.azure_api_version = Some("2024-06-01".to_owned());
    let harness = Harness::start(backend, azure).await;
    let response = harness
        .request(reqwest::Method::POST, "/azure/chat/completions?api-version=1999-01-01&user=7", body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let received = fake.single();
    assert_eq!(
        received.target,
        "/openai/deployments/gpt4o-prod/chat/completions?user=7&api-version=2024-06-01"
    );
    assert_eq!(received.headers["api-key"], SECRET);
    assert!(received.headers.get("authorization").is_none());
    assert_nothing_of_keyguard(&received);
    assert_usage(&harness.usage_events(1).await[0], &harness, 200, (12, 7));
}

const ANTHROPIC_FIRST: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n";
const ANTHROPIC_REST: &str = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"Hello\"}}\n\n\
    event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":15}}\n\n\
    event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

/// A fake `provider` that sends `first` at once and `rest` only when released, behind a harness.
async fn paused_stream(
    backend: Backend,
    provider: Provider,
    first: &str,
    rest: &str,
    adjust: impl FnOnce(&mut Config),
) -> (FakeUpstream, Harness) {
    let fake =
        FakeUpstream::spawn(Reply::Sse { first: first.to_owned(), rest: rest.to_owned(), paused: true })
            .await;
    let harness = Harness::start_with(backend, upstream(provider, fake.base_url()), adjust).await;
    (fake, harness)
}

/// Reads the body until at least `len` bytes have arrived.
async fn read_at_least(
    body: &mut (impl futures::Stream<Item = reqwest::Result<axum::body::Bytes>> + Unpin),
    len: usize,
) -> Vec<u8> {
    let mut seen = Vec::new();
    while seen.len() < len {
        seen.extend_from_slice(&body.next().await.expect("more of the body").expect("a chunk"));
    }
    seen
}

async fn a_stream_reaches_the_client_before_the_upstream_finishes(backend: Backend) {
    let (fake, harness) =
        paused_stream(backend, Provider::Anthropic, ANTHROPIC_FIRST, ANTHROPIC_REST, |_| {}).await;
    let response = harness
        .request(reqwest::Method::POST, "/v1/messages", br#"{"stream":true}"#)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.bytes_stream();
    // The upstream holds back everything after its first event until released below, so this
    // only completes if the proxy passed the first event on without waiting for the rest.
    let mut seen = read_at_least(&mut body, ANTHROPIC_FIRST.len()).await;
    assert_eq!(seen, ANTHROPIC_FIRST.as_bytes());
    fake.release();
    while let Some(chunk) = body.next().await {
        seen.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(String::from_utf8(seen).unwrap(), format!("{ANTHROPIC_FIRST}{ANTHROPIC_REST}"));
    let event = &harness.usage_events(1).await[0];
    assert_usage(event, &harness, 200, (25, 15));
    assert_eq!(event.payload["streamed"], true);
}

const OPENAI_FIRST: &str = "data: {\"choices\":[{\"delta\":{\"content\":\"Hello\"}}],\"usage\":null}\n\n";
const OPENAI_REST: &str =
    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":30,\"completion_tokens\":11}}\n\ndata: [DONE]\n\n";

async fn openai_stream_usage_comes_from_the_last_chunk(backend: Backend) {
    let fake = FakeUpstream::spawn(Reply::Sse {
        first: OPENAI_FIRST.to_owned(),
        rest: OPENAI_REST.to_owned(),
        paused: false,
    })
    .await;
    let harness = Harness::start(backend, upstream(Provider::OpenAi, fake.base_url())).await;
    let body: &[u8] = br#"{"stream":true,"stream_options":{"include_usage":true}}"#;
    let response = harness.request(reqwest::Method::POST, "/v1/chat/completions", body).send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), format!("{OPENAI_FIRST}{OPENAI_REST}"));
    assert_usage(&harness.usage_events(1).await[0], &harness, 200, (30, 11));
}

async fn an_unreachable_upstream_is_502_and_a_slow_one_504(backend: Backend) {
    let harness = Harness::start(backend, upstream(Provider::OpenAi, closed_port_url().await)).await;
    let response =
        harness.request(reqwest::Method::POST, "/v1/chat/completions", b"{}").send().await.unwrap();
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "upstream_unreachable");
    let event = &harness.usage_events(1).await[0];
    assert_eq!(event.payload["status"], 502);
    assert_eq!(event.payload["error"], "upstream_unreachable");

    let fake = FakeUpstream::spawn(Reply::Hang).await;
    let harness = Harness::start_with(backend, upstream(Provider::OpenAi, fake.base_url()), |config| {
        config.upstream.timeout = Duration::from_millis(300)
    })
    .await;
    let response =
        harness.request(reqwest::Method::POST, "/v1/chat/completions", b"{}").send().await.unwrap();
    assert_eq!(response.status(), 504);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "upstream_timeout");
    assert_eq!(fake.received().len(), 1);
    assert_eq!(harness.usage_events(1).await[0].payload["error"], "upstream_timeout");
}

/// The usage events committed so far, read once (no waiting for more to arrive).
async fn stored_usage(db: &services::store::Database) -> Vec<StoredEvent> {
    support::events::read_all(db).await.into_iter().filter(|e| e.aggregate_type == USAGE_BATCH_TYPE).collect()
}

fn strict(config: &mut Config) {
    config.usage.mode = AuditMode::Strict;
}

async fn strict_mode_stores_the_record_before_the_answer_ends(backend: Backend) {
    // A JSON answer: its last bytes wait for the record.
    let fake = FakeUpstream::spawn(Reply::Json { status: 200, body: OPENAI_ANSWER.to_owned() }).await;
    let harness = Harness::start_with(backend, upstream(Provider::OpenAi, fake.base_url()), strict).await;
    let response =
        harness.request(reqwest::Method::POST, "/v1/chat/completions", b"{}").send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), OPENAI_ANSWER);
    // Everything committed up to now, without waiting for more: strict mode stored the record
    // before the last byte was sent.
    let events = stored_usage(&harness.app.db).await;
    assert_eq!(events.len(), 1);
    assert_usage(&events[0], &harness, 200, (12, 7));

    // A stream: its events pass at once, its end waits for the record.
    let (fake, harness) = paused_stream(backend, Provider::OpenAi, OPENAI_FIRST, OPENAI_REST, strict).await;
    let body: &[u8] = br#"{"stream":true,"stream_options":{"include_usage":true}}"#;
    let response = harness.request(reqwest::Method::POST, "/v1/chat/completions", body).send().await.unwrap();
    let mut stream = response.bytes_stream();
    // The upstream is paused after its first event: strict mode must not hold that back.
    let mut seen = read_at_least(&mut stream, OPENAI_FIRST.len()).await;
    fake.release();
    while let Some(chunk) = stream.next().await {
        seen.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(String::from_utf8(seen).unwrap(), format!("{OPENAI_FIRST}{OPENAI_REST}"));
    let events = stored_usage(&harness.app.db).await;
    assert_eq!(events.len(), 1, "the stream ended before its record was stored");
    assert_usage(&events[0], &harness, 200, (30, 11));
    assert_eq!(events[0].payload["streamed"], true);
}

async fn strict_mode_cuts_off_an_answer_whose_record_cannot_be_stored(backend: Backend) {
    // The store goes away while the provider answers: the stream is cut off at its end.
    let (fake, harness) = paused_stream(backend, Provider::OpenAi, OPENAI_FIRST, OPENAI_REST, strict).await;
    let response =
        harness.request(reqwest::Method::POST, "/v1/chat/completions", b"{}").send().await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    read_at_least(&mut body, OPENAI_FIRST.len()).await;
    harness.app.db.close().await;
    fake.release();
    let mut rest = Ok(());
    while let Some(chunk) = body.next().await {
        if let Err(e) = chunk {
            rest = Err(e);
            break;
        }
    }
    assert!(rest.is_err(), "a complete answer without a stored record");
    assert_eq!(fake.received().len(), 1);

    // The store is already gone: nothing is forwarded at all.
    let fake = FakeUpstream::spawn(Reply::Json { status: 200, body: OPENAI_ANSWER.to_owned() }).await;
    let harness = Harness::start_with(backend, upstream(Provider::OpenAi, fake.base_url()), strict).await;
    harness.app.db.close().await;
    let response =
        harness.request(reqwest::Method::POST, "/v1/chat/completions", b"{}").send().await.unwrap();
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "audit_unavailable");
    assert!(fake.received().is_empty(), "a request that cannot be recorded must not be forwarded");
}

async fn a_client_that_goes_away_cancels_the_upstream_call(backend: Backend) {
    // Mid-stream: the client drops the answer after the first event.
    let (fake, harness) =
        paused_stream(backend, Provider::Anthropic, ANTHROPIC_FIRST, ANTHROPIC_REST, |_| {}).await;
    let response =
        harness.request(reqwest::Method::POST, "/v1/messages", br#"{"stream":true}"#).send().await.unwrap();
    let mut body = response.bytes_stream();
    read_at_least(&mut body, ANTHROPIC_FIRST.len()).await;
    drop(body);
    tokio::time::timeout(Duration::from_secs(10), fake.abandoned())
        .await
        .expect("the upstream stream is still being read after the client left");
    let event = &harness.usage_events(1).await[0];
    assert_eq!(event.payload["completed"], false, "{}", event.payload);
    assert_eq!(event.payload["error"], "client_disconnected");
    assert_eq!(event.payload["status"], 200);
    assert_eq!(event.payload["tokens_in"], 25, "the tokens seen before the client left are kept");
    assert_eq!(event.payload["bytes_out"], ANTHROPIC_FIRST.len());

    // Before any answer: the client gives up while the provider is still thinking.
    let fake = FakeUpstream::spawn(Reply::Hang).await;
    let harness = Harness::start(backend, upstream(Provider::OpenAi, fake.base_url())).await;
    let call = tokio::spawn(harness.request(reqwest::Method::POST, "/v1/chat/completions", b"{}").send());
    support::events::eventually("the upstream to receive the request", Duration::from_secs(10), || async {
        (!fake.received().is_empty()).then_some(())
    })
    .await;
    call.abort();
    tokio::time::timeout(Duration::from_secs(10), fake.abandoned())
        .await
        .expect("the upstream request is still open after the client left");
    let event = &harness.usage_events(1).await[0];
    assert_eq!(event.payload["status"], 499, "{}", event.payload);
    assert_eq!(event.payload["error"], "client_disconnected");
    assert_eq!(event.payload["completed"], false);
    assert_eq!(fake.received().len(), 1);
}

async fn queued_usage_is_stored_when_the_node_shuts_down(backend: Backend) {
    let fake = FakeUpstream::spawn(Reply::Json { status: 200, body: OPENAI_ANSWER.to_owned() }).await;
    let mut harness = Harness::start_with(backend, upstream(Provider::OpenAi, fake.base_url()), |config| {
        // Far longer than the test: only shutting down can write these records.
        config.usage.flush_interval = Duration::from_secs(3600);
    })
    .await;
    for _ in 0..3 {
        let response = harness
            .request(reqwest::Method::POST, "/v1/chat/completions", OPENAI_REQUEST)
            .send()
            .await
            .unwrap();
        assert_eq!(response.text().await.unwrap(), OPENAI_ANSWER);
    }
    assert!(stored_usage(&harness.app.db).await.is_empty(), "the records were not waiting in the queue");

    harness.app.stop().await;
    let events = stored_usage(&harness.app.reopen_store().await).await;
    assert_eq!(events.len(), 3, "{events:#?}");
    for event in &events {
        assert_usage(event, &harness, 200, (12, 7));
    }
}

async fn a_signed_request_goes_through_the_gate_to_the_provider(backend: Backend) {
    let fake = FakeUpstream::spawn(Reply::Json { status: 200, body: OPENAI_ANSWER.to_owned() }).await;
    let app = TestApp::spawn(backend).await;
    let admin = app.bootstrap_admin().await;
    let provider_key = "sk-e2e-provider-secret-0123456789";
    let body = serde_json::json!({
        // The base URL as the OpenAI SDKs spell it, version included; the client sends the
        // version too (`/v1/chat/completions`), and it reaches the provider once.
        "name": "e2e", "provider": "openai", "environment": "production",
        "providerKey": provider_key, "baseUrl": format!("{}/v1", fake.base_url()),
    });
    let (status, created) = app.call(reqwest::Method::POST, "/api/v1/keys", Some(&admin), Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let project = device_support::Project {
        id: created["key"]["id"].as_str().unwrap().parse().unwrap(),
        raw: created["rawKey"].as_str().unwrap().to_owned(),
    };
    let code = device_support::issue_code(&app, &project, true, None).await;
    let device = device_support::DeviceKey::generate();
    let (status, enrolled) =
        device_support::enroll(&app, &project.raw, &device.enrollment(Some(&code))).await;
    assert_eq!(status, 201, "{enrolled}");
    assert_eq!(enrolled["status"], "ACTIVE");

    let path = "/api/v1/proxy/v1/chat/completions?trace=1";
    let mut headers = device_support::sign(&device, &project.raw, "POST", path, OPENAI_REQUEST);
    headers.push(("content-type".to_owned(), "application/json".to_owned()));
    let answer = device_support::send(&app, "POST", path, &headers, OPENAI_REQUEST.to_vec()).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body, OPENAI_ANSWER);
    let received = fake.single();
    assert_eq!(received.target, "/v1/chat/completions?trace=1");
    assert_eq!(&received.body[..], OPENAI_REQUEST);
    assert_eq!(received.headers["authorization"], format!("Bearer {provider_key}"));
    for name in received.headers.keys() {
        assert!(!name.as_str().starts_with("x-keyguard-"), "{name} reached the provider");
    }

    // The same signed request again is a replay: refused before anything is forwarded.
    let replay = device_support::send(&app, "POST", path, &headers, OPENAI_REQUEST.to_vec()).await;
    assert_eq!(replay.status, 401);
    assert_eq!(fake.received().len(), 1);

    let log = EventLog::new(app.db.clone());
    let event = support::events::eventually("the usage event", Duration::from_secs(10), || async {
        log.read_after(0, 10_000).await.unwrap().into_iter().find(|e| e.aggregate_type == USAGE_BATCH_TYPE)
    })
    .await;
    assert_eq!(event.payload["api_key_id"], project.id.to_string());
    assert_eq!(event.payload["key_id"], device.key_id);
    assert_eq!(
        (event.payload["tokens_in"].as_u64(), event.payload["tokens_out"].as_u64()),
        (Some(12), Some(7))
    );
    assert!(!event.payload.to_string().contains(provider_key));
}

fn usage_record(n: u64) -> UsageRecord {
    UsageRecord {
        api_key_id: Uuid::new_v4(),
        device_id: Uuid::new_v4(),
        key_id: "0123456789abcdef0123456789abcdef".to_owned(),
        provider: Provider::OpenAi,
        model: None,
        method: "POST".to_owned(),
        path: "/v1/chat/completions".to_owned(),
        status: 200,
        error: None,
        completed: true,
        streamed: false,
        tokens_in: Some(n),
        tokens_out: Some(n),
        bytes_in: 2,
        bytes_out: 2,
        latency_ms: 1,
        at: chrono::Utc::now(),
    }
}

/// Async mode never waits for the store: a record that finds the queue full is dropped, and the
/// loss is counted and written into the usage history with the next batch. Runs on one thread,
/// so the writer task cannot take anything off the queue until the test first waits.
async fn a_full_queue_drops_records_and_says_so(backend: Backend) {
    let test_db = support::TestDb::new(backend).await;
    let writer = UsageWriter::new(test_db.db.clone());
    writer.start(UsageConfig {
        capacity: 2,
        flush_interval: Duration::from_millis(10),
        ..UsageConfig::default()
    });
    let queued: Vec<bool> = (1..=5).map(|n| writer.record_now(usage_record(n))).collect();
    assert_eq!(queued, [true, true, false, false, false]);
    assert_eq!(writer.dropped(), 3);
    assert_eq!(writer.backlog(), Some((2, 2)), "two waiting of two that may");

    let batch = support::events::eventually("the first batch", Duration::from_secs(10), || async {
        let events = stored_usage(&test_db.db).await;
        (events.len() >= 3).then_some(events)
    })
    .await;
    let types: Vec<&str> = batch.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, [USAGE_RECORDS_DROPPED, "RequestCompleted", "RequestCompleted"]);
    assert_eq!(batch[0].payload["count"], 3);
    assert_eq!(batch[0].payload["total"], 3);
    assert_eq!(writer.backlog(), Some((0, 2)), "the writer took them");
    assert!(batch.iter().all(|e| e.aggregate_id == batch[0].aggregate_id), "one atomic batch");
    assert_eq!(
        (batch[1].payload["tokens_in"].as_u64(), batch[2].payload["tokens_in"].as_u64()),
        (Some(1), Some(2))
    );

    // The loss is told once: the next batch carries only its record.
    assert!(writer.record_now(usage_record(6)));
    let all = support::events::eventually("the second batch", Duration::from_secs(10), || async {
        let events = stored_usage(&test_db.db).await;
        (events.len() >= 4).then_some(events)
    })
    .await;
    assert_eq!(all.len(), 4);
    assert_eq!(all[3].event_type, "RequestCompleted");
    writer.shutdown().await;

    // /metrics shows the node's count: here a record that arrives after the writer stopped.
    let app = TestApp::spawn(backend).await;
    app.platform.usage.shutdown().await;
    assert!(!app.platform.usage.record_now(usage_record(7)));
    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("keyguard_usage_records_dropped_total 1\n"), "{text}");
}

mod a_full_queue_drops_records_and_says_so {
    #[tokio::test]
    async fn sqlite() {
        super::a_full_queue_drops_records_and_says_so(crate::support::Backend::Sqlite).await;
    }
    #[tokio::test]
    async fn postgres() {
        super::a_full_queue_drops_records_and_says_so(crate::support::Backend::Postgres).await;
    }
}

on_both_backends!(
    a_signed_request_goes_through_the_gate_to_the_provider,
    openai_json_passes_through_with_the_bearer_key,
    a_get_keeps_its_method_and_an_upstream_error_its_status,
    anthropic_google_and_azure_get_their_own_headers,
    a_stream_reaches_the_client_before_the_upstream_finishes,
    openai_stream_usage_comes_from_the_last_chunk,
    an_unreachable_upstream_is_502_and_a_slow_one_504,
    strict_mode_stores_the_record_before_the_answer_ends,
    strict_mode_cuts_off_an_answer_whose_record_cannot_be_stored,
    a_client_that_goes_away_cancels_the_upstream_call,
    queued_usage_is_stored_when_the_node_shuts_down,
);
