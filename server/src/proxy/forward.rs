//! Forwarding an admitted request to its provider with one pooled client, and streaming the
//! answer back untouched while its usage is metered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::provider::Provider;
use services::gate::Admitted;
use services::platform::Platform;
use services::usage::{AuditMode, TokenTap, UsageRecord, UsageWriter};

use super::gate_http;
use super::metered::{Metered, metered_body};
use super::providers::{PROVIDER_KEY_HEADERS, inject_key, upstream_url};
use crate::api::error::ErrorBody;
use crate::config::UpstreamConfig;
use crate::startup::AppState;

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded in either direction.
const HOP_BY_HOP: [&str; 7] =
    ["connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "host"];

/// Client headers that are KeyGuard's or the client's business, not the provider's.
/// `accept-encoding` goes too: the answer must arrive as plain bytes for usage to be read from
/// it (and a client asking for gzip still gets a correct, uncompressed answer).
const NOT_FORWARDED: [&str; 9] = [
    "authorization",
    "cookie",
    "content-length",
    "accept-encoding",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
];

/// `ANY /api/v1/proxy/{path}` and `/api/v1/proxy/{provider}/{path}`: through the gate, then
/// to the provider.
pub async fn proxy(State(state): State<AppState>, request: Request) -> Response {
    let received_at = Instant::now();
    let method = request.method().clone();
    let headers = request.headers().clone();
    // The nested router sees `/proxy/...`; the raw (still percent-encoded) path goes upstream.
    let uri = request.uri();
    let rest = uri.path().strip_prefix("/proxy").unwrap_or(uri.path()).to_owned();
    let query = uri.query().map(str::to_owned);
    let (admitted, read) = match gate_http::admit(&state, request).await {
        Ok(admitted) => admitted,
        Err(refused) => return refused,
    };
    let (explicit, path) = split_provider(&rest);
    let request = ProxyRequest { method, path, query, headers, body: read.body, received_at };
    let response = state.proxy.forward(&state.platform, &admitted, explicit, request).await;
    if let Some(AddedLatency(added)) = response.extensions().get::<AddedLatency>() {
        state.metrics.observe_proxy_added(*added);
    }
    response
}

/// On a relayed answer: the time the proxy itself spent on the request, before sending it
/// upstream and after the upstream's response headers arrived (its wait for the provider left out).
#[derive(Debug, Clone, Copy)]
pub struct AddedLatency(pub Duration);

/// A request on its way to the provider, as the proxy route received it.
#[derive(Debug)]
pub struct ProxyRequest {
    pub method: Method,
    /// The upstream path exactly as received (still percent-encoded), starting with `/`.
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub received_at: Instant,
}

/// Splits what follows `/proxy` into the provider the client chose (the first segment, when it
/// names one) and the upstream path.
pub fn split_provider(rest: &str) -> (Option<Provider>, String) {
    let trimmed = rest.strip_prefix('/').unwrap_or(rest);
    let (first, tail) = trimmed.split_once('/').unwrap_or((trimmed, ""));
    match first.parse::<Provider>() {
        Ok(provider) => (Some(provider), format!("/{tail}")),
        Err(_) => (None, format!("/{trimmed}")),
    }
}

/// Why the proxy answered in the provider's place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyFailure {
    /// The provider could not be reached (refused, DNS, TLS, connect timeout).
    Unreachable,
    /// The provider did not answer in time.
    Timeout,
    /// The key is missing what its provider needs (Azure deployment, a base URL).
    NotConfigured,
    /// The client named a provider the key is not for.
    ProviderMismatch,
}

impl ProxyFailure {
    pub fn code(self) -> &'static str {
        match self {
            Self::Unreachable => "upstream_unreachable",
            Self::Timeout => "upstream_timeout",
            Self::NotConfigured => "upstream_not_configured",
            Self::ProviderMismatch => "provider_mismatch",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Self::Unreachable | Self::NotConfigured => StatusCode::BAD_GATEWAY,
            Self::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Self::ProviderMismatch => StatusCode::BAD_REQUEST,
        }
    }

    fn message(self) -> &'static str {
        match self {
            Self::Unreachable => "the provider could not be reached",
            Self::Timeout => "the provider did not answer in time",
            Self::NotConfigured => "the API key's provider settings are incomplete",
            Self::ProviderMismatch => "the provider in the path is not the API key's provider",
        }
    }
}

impl IntoResponse for ProxyFailure {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code().to_owned(),
            message: self.message().to_owned(),
            fields: Default::default(),
        };
        (self.status(), Json(body)).into_response()
    }
}

/// Idle upstream connections kept per provider host: enough for the steady state of a busy node
/// (5 000 requests/s answered in 20 ms keep about 100 busy).
const MAX_IDLE_PER_HOST: usize = 256;

/// The proxy's HTTP client and upstream settings, built once per process.
#[derive(Debug, Clone)]
pub struct Forwarder {
    client: reqwest::Client,
    upstream: UpstreamConfig,
}

impl Forwarder {
    pub fn new(upstream: &UpstreamConfig) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(upstream.connect_timeout)
            .timeout(upstream.timeout)
            // A redirect is the client's to follow (or not), with its own credentials.
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            // After a burst, every connection it opened would otherwise stay pooled (with its
            // buffers) for the idle timeout; beyond this many per provider host they are closed.
            .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
            .build()?;
        Ok(Self { client, upstream: upstream.clone() })
    }

    /// Most proxied requests in flight at once (`KEYGUARD_MAX_IN_FLIGHT`).
    pub fn max_in_flight(&self) -> usize {
        self.upstream.max_in_flight
    }

    /// Sends the request to the admitted key's provider and streams its answer back. Failures to
    /// reach it are answered 502/504; every outcome leaves a usage record.
    pub async fn forward(
        &self,
        platform: &Arc<Platform>,
        admitted: &Admitted,
        explicit: Option<Provider>,
        request: ProxyRequest,
    ) -> Response {
        let usage = &platform.usage;
        // Strict mode promises that no request goes out without its record: with the store
        // unreachable that promise cannot be kept, so nothing is forwarded.
        if usage.mode() == AuditMode::Strict && !store_answers(&platform.db).await {
            return audit_unavailable();
        }
        let provider = admitted.upstream.provider;
        let record = UsageRecord {
            api_key_id: admitted.api_key_id,
            device_id: admitted.device_id,
            key_id: admitted.key_id.as_str().to_owned(),
            provider,
            model: admitted.model.clone(),
            method: request.method.as_str().to_owned(),
            path: request.path.chars().take(512).collect(),
            status: 0,
            error: None,
            completed: false,
            streamed: false,
            tokens_in: None,
            tokens_out: None,
            bytes_in: request.body.len() as u64,
            bytes_out: 0,
            latency_ms: 0,
            at: chrono::Utc::now(),
        };
        if explicit.is_some_and(|p| p != provider) {
            return fail(usage, record, request.received_at, ProxyFailure::ProviderMismatch).await;
        }
        let url = match upstream_url(
            &admitted.upstream,
            &self.upstream,
            &request.path,
            request.query.as_deref(),
        ) {
            Ok(url) => url,
            Err(err) => {
                tracing::warn!(api_key_id = %admitted.api_key_id, error = %err, "cannot address the provider");
                return fail(usage, record, request.received_at, ProxyFailure::NotConfigured).await;
            }
        };
        let mut headers = request_headers(&request.headers);
        if inject_key(provider, &admitted.upstream.secret, &mut headers).is_err() {
            tracing::warn!(api_key_id = %admitted.api_key_id, "the provider key cannot be sent as a header");
            return fail(usage, record, request.received_at, ProxyFailure::NotConfigured).await;
        }
        // Until the provider answers, a client that goes away drops this future (and with it the
        // upstream request, which closes that connection); the guard still leaves a record.
        let waiting = AwaitingAnswer { usage, record: Some(record), received_at: request.received_at };
        let before_sending = request.received_at.elapsed();
        let sent = self.client.request(request.method, url).headers(headers).body(request.body).send().await;
        let answered_at = Instant::now();
        let record = waiting.answered();
        let response = match sent {
            Ok(response) => response,
            Err(err) => {
                let failure = if err.is_connect() {
                    ProxyFailure::Unreachable
                } else if err.is_timeout() {
                    ProxyFailure::Timeout
                } else {
                    ProxyFailure::Unreachable
                };
                // reqwest's error names the URL, never the headers that carry the key.
                tracing::warn!(api_key_id = %admitted.api_key_id, %provider, error = %err, "upstream request failed");
                return fail(usage, record, request.received_at, failure).await;
            }
        };
        let status = response.status();
        let content_length = response.content_length();
        let mut out_headers = response.headers().clone();
        strip_hop_by_hop(&mut out_headers);
        let content_type = out_headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        let tap = TokenTap::new(provider, content_type);
        let record = UsageRecord { status: status.as_u16(), streamed: tap.is_event_stream(), ..record };
        let body = metered_body(
            response.bytes_stream(),
            Metered {
                tap,
                record,
                platform: platform.clone(),
                received_at: request.received_at,
                content_length,
            },
        );
        let mut reply = Response::new(Body::from_stream(body));
        *reply.status_mut() = status;
        *reply.headers_mut() = out_headers;
        reply.extensions_mut().insert(AddedLatency(before_sending + answered_at.elapsed()));
        reply
    }
}

/// The usage record of a request sent upstream and not yet answered.
struct AwaitingAnswer<'a> {
    usage: &'a UsageWriter,
    record: Option<UsageRecord>,
    received_at: Instant,
}

impl AwaitingAnswer<'_> {
    /// The provider answered (or failed): the record goes on with the response.
    fn answered(mut self) -> UsageRecord {
        self.record.take().expect("the record is taken once")
    }
}

impl Drop for AwaitingAnswer<'_> {
    fn drop(&mut self) {
        if let Some(mut record) = self.record.take() {
            // The client went away first (or the server is stopping); no one was answered.
            record.status = CLIENT_CLOSED_REQUEST;
            record.error = Some("client_disconnected".to_owned());
            record.latency_ms = self.received_at.elapsed().as_millis().try_into().unwrap_or(u64::MAX);
            self.usage.record_now(record);
        }
    }
}

/// The status a usage record keeps when the client left before any answer (nginx's 499).
pub const CLIENT_CLOSED_REQUEST: u16 = 499;

/// Answers in the provider's place and records that it did (durably first, in strict mode).
async fn fail(
    usage: &UsageWriter,
    mut record: UsageRecord,
    received_at: Instant,
    failure: ProxyFailure,
) -> Response {
    record.status = failure.status().as_u16();
    record.error = Some(failure.code().to_owned());
    record.completed = true;
    record.latency_ms = received_at.elapsed().as_millis().try_into().unwrap_or(u64::MAX);
    if usage.mode() == AuditMode::Strict {
        if !usage.record(record).await {
            return audit_unavailable();
        }
    } else {
        usage.record_now(record);
    }
    failure.into_response()
}

/// How long the store may take to answer before a strict-mode request is refused.
const STORE_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// The check runs in a task of its own: when it takes too long, or the client leaves, only the
/// wait is abandoned, never a database exchange half-way.
async fn store_answers(db: &services::store::Database) -> bool {
    let db = db.clone();
    let check = tokio::spawn(async move { db.ping().await });
    matches!(tokio::time::timeout(STORE_CHECK_TIMEOUT, check).await, Ok(Ok(Ok(()))))
}

/// Strict mode cannot record the request: 503, and the request is not (or no further) served.
fn audit_unavailable() -> Response {
    let body = ErrorBody {
        error: "audit_unavailable".to_owned(),
        message: "the request could not be recorded".to_owned(),
        fields: Default::default(),
    };
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

/// The client's headers minus KeyGuard's own, credentials, hop-by-hop and forwarding headers.
fn request_headers(incoming: &HeaderMap) -> HeaderMap {
    let mut headers = incoming.clone();
    strip_hop_by_hop(&mut headers);
    let ours: Vec<HeaderName> =
        headers.keys().filter(|name| name.as_str().starts_with("x-keyguard-")).cloned().collect();
    for name in ours.iter().map(HeaderName::as_str).chain(NOT_FORWARDED).chain(PROVIDER_KEY_HEADERS) {
        headers.remove(name);
    }
    headers
}

/// Removes hop-by-hop headers, `proxy-*`, and whatever `Connection` lists.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect();
    let proxy: Vec<HeaderName> =
        headers.keys().filter(|name| name.as_str().starts_with("proxy-")).cloned().collect();
    for name in
        listed.iter().map(String::as_str).chain(HOP_BY_HOP).chain(proxy.iter().map(HeaderName::as_str))
    {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn the_first_segment_names_a_provider_or_belongs_to_the_path() {
        assert_eq!(
            split_provider("/openai/v1/chat/completions"),
            (Some(Provider::OpenAi), "/v1/chat/completions".to_owned())
        );
        assert_eq!(
            split_provider("/azure/chat/completions"),
            (Some(Provider::Azure), "/chat/completions".to_owned())
        );
        assert_eq!(split_provider("/v1/models"), (None, "/v1/models".to_owned()));
        assert_eq!(split_provider("/google"), (Some(Provider::Google), "/".to_owned()));
        assert_eq!(split_provider("/OpenAI/v1"), (None, "/OpenAI/v1".to_owned()));
    }

    #[test]
    fn keyguard_credentials_and_hop_by_hop_headers_stay_behind() {
        let mut incoming = HeaderMap::new();
        for (name, value) in [
            ("x-keyguard-signature", "sig"),
            ("X-KeyGuard-Api-Key", "kg_x"),
            ("authorization", "Bearer mine"),
            ("cookie", "a=b"),
            ("host", "keyguard.example"),
            ("connection", "keep-alive, x-custom-hop"),
            ("x-custom-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("trailer", "x"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic x"),
            ("x-api-key", "client-supplied"),
            ("content-length", "12"),
            ("content-type", "application/json"),
            ("accept", "text/event-stream"),
            ("openai-organization", "org-1"),
            ("anthropic-beta", "tools"),
        ] {
            incoming
                .append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_static(value));
        }
        let forwarded = request_headers(&incoming);
        let mut names: Vec<&str> = forwarded.keys().map(HeaderName::as_str).collect();
        names.sort();
        assert_eq!(names, ["accept", "anthropic-beta", "content-type", "openai-organization"]);
    }
}
