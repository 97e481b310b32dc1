//! The proxy's gate: decides, from memory, whether a kg-v1 signed request may pass, and hands the
//! forwarder what it needs to call the provider. Nothing here forwards anything.
//!
//! [`Gate::admit`] runs protocol.md's server rules in order: strict header parsing, the project
//! key by the SHA-256 of its value, the device by (project, keyId), the policy's window, the
//! body hash, the signature (all from memory), the nonce (recorded only once the signature
//! verified), then the policy (IP allow-list, provider, model) and the rate limits. Nonces and
//! limits live in memory on one node, or in NATS KV shared by a cluster ([`GateStores`]). While
//! NATS does not answer, the cluster checks nonces in its database instead, by a protocol that
//! keeps every nonce single-use across nodes (see [`fallback`]); whatever cannot be checked
//! soundly is refused (503), never let through. Every
//! refusal is audited with its precise reason through a non-blocking, flood-controlled writer
//! (see [`audit`]); the HTTP layer answers the client a generic 401, or 413 / 429 / 503.
//!
//! The caches are loaded by [`Gate::start`], kept current by the projections (synchronously,
//! before an admin command's response is sent, so a suspension holds from the next request),
//! by the event bus (events committed by other nodes) and by a periodic full refresh.

mod audit;
mod cache;
mod fallback;
mod limits;
mod nonces;
mod shared;

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use domain::protocol::{FreshnessWindow, KeyId, ReceivedRequest, Rejection, SignedHeaders};
use domain::provider::Provider;
use tokio::sync::broadcast;
use uuid::Uuid;
use zeroize::Zeroizing;

pub use audit::{AuditSinkConfig, ENROLLMENT_REJECTED_KIND, REJECTED_KIND, SUPPRESSED_KIND};
pub use cache::CacheStats;
pub use limits::{LimitScope, RequestLimiter};
// The in-memory stores on their own, for the micro-benchmarks.
pub use nonces::{MemoryNonces, NonceRefusal};
pub use shared::{SharedStores, SharedStoresConfig};

use crate::audit::{AuditOutcome, AuditRecorder};
use crate::events::{BusEvent, EventBus, StoredEvent};
use crate::projections::{AppliedListener, Projections};
use crate::read_models::ReadModelError;
use crate::secrets::Envelope;
use crate::store::Database;
use audit::{AuditSink, RejectionEvent};
use cache::Cache;
use fallback::ClusterStores;
pub use fallback::NonceChecks;
use limits::Limits;
use nonces::NonceStore;

/// A request as received, before any check: what the verifier reads.
#[derive(Debug, Clone, Copy)]
pub struct IncomingRequest<'a> {
    /// Upper- or lower-case; the canonical string upper-cases it.
    pub method: &'a str,
    /// The request target exactly as received, including `/api/v1` and the query.
    pub path_and_query: &'a str,
    /// Every header as (name, value); names in any case. Non-UTF-8 values are left out.
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
    /// The client address (socket peer, or trusted proxy's `X-Forwarded-For`).
    pub client_ip: IpAddr,
}

/// Where and how to reach the provider for an admitted request.
#[derive(Clone)]
pub struct Upstream {
    pub provider: Provider,
    /// The key's `baseUrl`, or `None` for the provider's default (or its configured override).
    pub base_url: Option<String>,
    pub azure_deployment: Option<String>,
    pub azure_api_version: Option<String>,
    /// The decrypted provider key, shared with the cache and wiped when the last copy drops.
    pub secret: Arc<Zeroizing<String>>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("provider", &self.provider)
            .field("base_url", &self.base_url)
            .field("azure_deployment", &self.azure_deployment)
            .field("azure_api_version", &self.azure_api_version)
            .field("secret", &"[REDACTED]")
            .finish()
    }
}

/// A request that passed every check.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub api_key_id: Uuid,
    pub device_id: Uuid,
    pub key_id: KeyId,
    pub upstream: Upstream,
    /// The model named in the JSON body, when there is one (for policy and usage).
    pub model: Option<String>,
}

/// The aggregate types whose events change what the gate holds.
const CACHED_AGGREGATES: [&str; 3] = ["api_key", "device", "policy"];

#[derive(Debug, Clone)]
pub struct GateConfig {
    /// Largest request body accepted (413 above it).
    pub max_body_bytes: usize,
    /// How often every cache is reloaded from the read models, in case an event was missed.
    pub refresh_interval: Duration,
    /// Most nonces remembered at once; beyond it requests are refused (fail closed).
    pub max_nonces: usize,
    pub audit: AuditSinkConfig,
}

impl Default for GateConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 10 * 1024 * 1024,
            refresh_interval: Duration::from_secs(60),
            max_nonces: 4_000_000,
            audit: AuditSinkConfig::default(),
        }
    }
}

/// Where the gate keeps nonces and rate limits.
#[derive(Debug, Clone, Default)]
pub enum GateStores {
    /// This node's memory: one node only.
    #[default]
    InMemory,
    /// NATS KV buckets every node shares (`KEYGUARD_NATS_URL` is set), with the database as the
    /// nonce store's fallback while NATS does not answer.
    Shared(SharedStores),
}

/// A shared store the gate could not reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedStore {
    Nonces,
    RateLimits,
}

/// Which limit a rate-limited request hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimit {
    RequestsPerMinute(LimitScope),
    TokensPerDay(LimitScope),
}

/// Why the gate refused a request. The client sees only the status (and `Retry-After`); the
/// audit trail gets [`GateRejection::code`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateRejection {
    /// A protocol check failed: 401.
    Unauthorized(Rejection),
    /// The key's provider is not allowed by the policy, or the path names another provider: 401.
    ProviderNotAllowed,
    /// The body's `model` is not on the policy's list: 401.
    ModelNotAllowed,
    /// 413.
    BodyTooLarge { limit: usize },
    /// 429 with `Retry-After`.
    RateLimited { retry_after: Duration, limit: RateLimit },
    /// The provider secret cannot be opened (destroyed data key, missing master key): 503.
    CredentialUnavailable,
    /// The nonce store is full of live nonces: 503, fail closed.
    Overloaded,
    /// The cluster's shared nonce or limit store did not answer: 503, fail closed.
    StoreUnavailable(SharedStore),
}

impl GateRejection {
    /// The stable audit code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized(r) => r.code(),
            Self::ProviderNotAllowed => "provider_not_allowed",
            Self::ModelNotAllowed => "model_not_allowed",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::RateLimited { limit: RateLimit::RequestsPerMinute(_), .. } => "rate_limited_requests",
            Self::RateLimited { limit: RateLimit::TokensPerDay(_), .. } => "rate_limited_tokens",
            Self::CredentialUnavailable => "credential_unavailable",
            Self::Overloaded => "nonce_store_full",
            Self::StoreUnavailable(SharedStore::Nonces) => "nonce_store_unavailable",
            Self::StoreUnavailable(SharedStore::RateLimits) => "rate_limit_store_unavailable",
        }
    }

    /// The HTTP status the client gets.
    pub fn status(&self) -> u16 {
        match self {
            Self::Unauthorized(_) | Self::ProviderNotAllowed | Self::ModelNotAllowed => 401,
            Self::BodyTooLarge { .. } => 413,
            Self::RateLimited { .. } => 429,
            Self::CredentialUnavailable | Self::Overloaded | Self::StoreUnavailable(_) => 503,
        }
    }

    /// Whole seconds to put in `Retry-After` (rounded up), for 429 and 503.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after, .. } => {
                Some(retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0))
            }
            Self::Overloaded | Self::CredentialUnavailable | Self::StoreUnavailable(_) => Some(1),
            _ => None,
        }
    }

    fn outcome(&self) -> AuditOutcome {
        match self {
            Self::Unauthorized(Rejection::IpNotAllowed)
            | Self::ProviderNotAllowed
            | Self::ModelNotAllowed
            | Self::RateLimited { .. }
            | Self::BodyTooLarge { .. } => AuditOutcome::Denied,
            _ => AuditOutcome::Failure,
        }
    }

    fn message(&self) -> String {
        match self {
            Self::Unauthorized(r) => r.to_string(),
            Self::ProviderNotAllowed => "the provider is not allowed for this key".into(),
            Self::ModelNotAllowed => "the model is not allowed by the policy".into(),
            Self::BodyTooLarge { limit } => format!("the body is larger than {limit} bytes"),
            Self::RateLimited { retry_after, limit } => {
                format!("{limit:?} exceeded; retry after {retry_after:?}")
            }
            Self::CredentialUnavailable => "the provider secret cannot be opened".into(),
            Self::Overloaded => "the nonce store is full".into(),
            Self::StoreUnavailable(store) => format!("the shared {store:?} store did not answer"),
        }
    }
}

impl From<Rejection> for GateRejection {
    fn from(r: Rejection) -> Self {
        Self::Unauthorized(r)
    }
}

/// The proxy's gate. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Gate {
    inner: Arc<Inner>,
}

struct Inner {
    cache: Cache,
    nonces: NonceStore,
    limits: Limits,
    recorder: AuditRecorder,
    audit: OnceLock<AuditSink>,
    config: GateConfig,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate").field("cache", &self.inner.cache.stats()).finish_non_exhaustive()
    }
}

/// What the gate knows about a request so far, for the audit record of a refusal.
#[derive(Default)]
struct Known<'a> {
    api_key_id: Option<Uuid>,
    device_id: Option<Uuid>,
    key_id: Option<&'a str>,
}

impl Gate {
    pub fn new(db: Database, envelope: Envelope, config: GateConfig, stores: GateStores) -> Self {
        let (nonces, limits) = match stores {
            GateStores::InMemory => {
                (NonceStore::Memory(MemoryNonces::new(config.max_nonces)), Limits::memory())
            }
            GateStores::Shared(shared) => {
                let cluster = Arc::new(ClusterStores::new(shared, db.clone(), config.max_nonces));
                (NonceStore::Cluster(cluster.clone()), Limits::Cluster(cluster))
            }
        };
        Self {
            inner: Arc::new(Inner {
                cache: Cache::new(db.clone(), envelope),
                nonces,
                limits,
                recorder: AuditRecorder::new(db),
                audit: OnceLock::new(),
                config,
            }),
        }
    }

    /// Where nonces are being checked now: memory, NATS, or the database while NATS is away.
    pub async fn nonce_checks(&self) -> NonceChecks {
        match &self.inner.nonces {
            NonceStore::Memory(_) => NonceChecks::Memory,
            NonceStore::Cluster(cluster) => cluster.nonce_checks().await,
        }
    }

    pub fn config(&self) -> &GateConfig {
        &self.inner.config
    }

    pub fn cache_stats(&self) -> CacheStats {
        self.inner.cache.stats()
    }

    /// Loads the caches and keeps them current: registers with the projections (this node's
    /// writes), follows the bus (everyone's), and reloads everything every `refresh_interval`.
    /// The background tasks end when the last clone of the gate is dropped.
    pub async fn start(&self, bus: &EventBus, projections: Arc<Projections>) -> Result<(), ReadModelError> {
        self.inner.cache.load_all().await?;
        if let Limits::Cluster(cluster) = &self.inner.limits {
            // Announced before the first request, which is refused until this node is.
            cluster.heartbeat().await;
            tokio::spawn(fallback::run(Arc::downgrade(cluster)));
        }
        self.audit_sink();
        projections.set_listener(Arc::new(Listener(Arc::downgrade(&self.inner))));
        tokio::spawn(follow_bus(Arc::downgrade(&self.inner), bus.receiver(), projections));
        tokio::spawn(refresh_periodically(Arc::downgrade(&self.inner), self.inner.config.refresh_interval));
        Ok(())
    }

    /// Reloads every cache from the read models now.
    pub async fn refresh(&self) -> Result<(), ReadModelError> {
        self.inner.cache.load_all().await
    }

    /// Reloads one aggregate's entry from the read models (which must already hold its latest
    /// events). A failure is logged; the periodic refresh retries.
    pub async fn reload(&self, aggregate_type: &str, aggregate_id: &str) {
        if !CACHED_AGGREGATES.contains(&aggregate_type) {
            return;
        }
        if let Err(e) = self.inner.cache.reload(aggregate_type, aggregate_id).await {
            tracing::warn!(aggregate_type, aggregate_id, error = %e, "gate cache reload failed; the periodic refresh will retry");
        }
    }

    /// Counts tokens a forwarded request used, for the tokens-per-day limits of its device and
    /// key. Called by the forwarder once it knows the usage.
    pub fn record_tokens(&self, api_key_id: Uuid, device_id: Uuid, tokens: u64) {
        let now = Utc::now();
        self.inner.limits.add_tokens(LimitScope::Device(device_id), tokens, now);
        self.inner.limits.add_tokens(LimitScope::ApiKey(api_key_id), tokens, now);
    }

    /// Tokens counted today for a device or key; `None` when the shared store does not answer.
    pub async fn tokens_used_today(&self, scope: LimitScope) -> Option<u64> {
        self.inner.limits.tokens_used(scope, Utc::now()).await.ok()
    }

    /// Audits a refusal raised outside [`Gate::admit`] (e.g. a body over the limit, refused
    /// by the HTTP layer while reading it).
    pub fn audit_refusal(&self, request: &IncomingRequest<'_>, rejection: &GateRejection) {
        self.refused(request, rejection.clone(), Known::default());
    }

    /// Audits a refused enrollment through the same flood-controlled writer as the proxy's
    /// refusals. `code` is the precise reason; never pass secrets in `message`.
    pub fn audit_enrollment_refusal(
        &self,
        ip: IpAddr,
        code: &'static str,
        message: String,
        api_key_id: Option<Uuid>,
        key_id: Option<&str>,
    ) {
        if let Some(sink) = self.audit_sink() {
            sink.submit(RejectionEvent {
                kind: ENROLLMENT_REJECTED_KIND,
                code,
                message,
                outcome: AuditOutcome::Failure,
                api_key_id,
                device_id: None,
                key_id: key_id.filter(|k| KeyId::parse(k).is_ok()).map(str::to_owned),
                ip,
                method: "POST".into(),
                path: "/api/v1/keyguard/enroll".into(),
            });
        }
    }

    /// Decides whether a signed request may pass. Verification is from memory; only the nonce
    /// and the limits may wait, on the shared store (bounded by its timeout), and no lock is
    /// held across that wait.
    pub async fn admit(&self, request: IncomingRequest<'_>) -> Result<Admitted, GateRejection> {
        self.admit_at(request, Utc::now(), Instant::now()).await
    }

    async fn admit_at(
        &self,
        request: IncomingRequest<'_>,
        now: DateTime<Utc>,
        instant: Instant,
    ) -> Result<Admitted, GateRejection> {
        let mut known = Known::default();
        match self.check(&request, now, instant, &mut known).await {
            Ok(admitted) => Ok(admitted),
            Err(rejection) => Err(self.refused(&request, rejection, known)),
        }
    }

    async fn check<'r>(
        &self,
        request: &IncomingRequest<'r>,
        now: DateTime<Utc>,
        instant: Instant,
        known: &mut Known<'r>,
    ) -> Result<Admitted, GateRejection> {
        let inner = &self.inner;
        if request.body.len() > inner.config.max_body_bytes {
            return Err(GateRejection::BodyTooLarge { limit: inner.config.max_body_bytes });
        }
        // Rule 1: every header present once and well-formed.
        let headers = SignedHeaders::parse_pairs(request.headers.iter().copied())?;
        known.key_id = request
            .headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("x-keyguard-key-id"))
            .map(|(_, value)| *value);
        // Rule 2: the project key, by the hash of its value.
        let hash = headers.project_key().sha256_hex();
        let key = inner.cache.key_by_hash(&hash).ok_or(Rejection::UnknownProjectKey)?;
        known.api_key_id = Some(key.id);
        if key.revoked {
            return Err(Rejection::ProjectKeyInactive.into());
        }
        if key.expires_at.is_some_and(|at| at <= now) {
            return Err(Rejection::ProjectKeyExpired.into());
        }
        if key.current_hash != hash && key.grace_until.is_none_or(|until| now >= until) {
            return Err(Rejection::ProjectKeyInactive.into());
        }
        // Rule 3: the device, within this project, active.
        let device = inner.cache.device(key.id, headers.key_id().as_str()).ok_or(Rejection::UnknownDevice)?;
        known.device_id = Some(device.id);
        if device.status != domain::device::DeviceStatus::Active {
            return Err(Rejection::DeviceNotActive.into());
        }
        // Rules 4–6: window from the policy, body hash, signature over the rebuilt string.
        let (policy, key_policy) = inner.cache.policies(key.id, device.id);
        let window = FreshnessWindow::new(Duration::from_secs(u64::from(policy.timestamp_window_seconds)))
            .unwrap_or_default();
        let received = ReceivedRequest {
            method: request.method,
            path_and_query: request.path_and_query,
            body: request.body,
        };
        headers.verify(&received, &device.verifying_key, now, window)?;
        // Rule 7: the nonce, only now that the request is known to be signed.
        match inner
            .nonces
            .record(key.id, &device.key_id, *headers.nonce().as_bytes(), window.nonce_retention(), instant)
            .await
        {
            Ok(()) => {}
            Err(NonceRefusal::Replayed) => return Err(Rejection::ReplayedNonce.into()),
            Err(NonceRefusal::StoreFull) => return Err(GateRejection::Overloaded),
            Err(NonceRefusal::Unavailable) => {
                return Err(GateRejection::StoreUnavailable(SharedStore::Nonces));
            }
        }
        // Policy on the path.
        if !policy.allows_ip(request.client_ip) {
            return Err(Rejection::IpNotAllowed.into());
        }
        if explicit_provider(request.path_and_query).is_some_and(|named| named != key.provider)
            || !policy.allows_provider(key.provider)
        {
            return Err(GateRejection::ProviderNotAllowed);
        }
        let model = model_of(request.body);
        if let Some(model) = &model
            && !policy.allows_model(model)
        {
            return Err(GateRejection::ModelNotAllowed);
        }
        // Limits: tokens first (counting only), then take a request from each bucket.
        let device_scope = LimitScope::Device(device.id);
        let key_scope = LimitScope::ApiKey(key.id);
        for (scope, limit) in [(device_scope, policy.tokens_per_day), (key_scope, key_policy.tokens_per_day)]
        {
            if let Some(limit) = limit {
                inner
                    .limits
                    .check_tokens(scope, limit, now)
                    .await
                    .map_err(|_| GateRejection::StoreUnavailable(SharedStore::RateLimits))?
                    .map_err(|retry_after| GateRejection::RateLimited {
                        retry_after,
                        limit: RateLimit::TokensPerDay(scope),
                    })?;
            }
        }
        for (scope, limit) in
            [(device_scope, policy.requests_per_minute), (key_scope, key_policy.requests_per_minute)]
        {
            if let Some(limit) = limit {
                inner
                    .limits
                    .take_request(scope, limit, now, instant)
                    .await
                    .map_err(|_| GateRejection::StoreUnavailable(SharedStore::RateLimits))?
                    .map_err(|retry_after| GateRejection::RateLimited {
                        retry_after,
                        limit: RateLimit::RequestsPerMinute(scope),
                    })?;
            }
        }
        let secret = key.secret.clone().ok_or(GateRejection::CredentialUnavailable)?;
        Ok(Admitted {
            api_key_id: key.id,
            device_id: device.id,
            key_id: headers.key_id().clone(),
            upstream: Upstream {
                provider: key.provider,
                base_url: key.base_url.clone(),
                azure_deployment: key.azure_deployment.clone(),
                azure_api_version: key.azure_api_version.clone(),
                secret,
            },
            model,
        })
    }

    fn refused(
        &self,
        request: &IncomingRequest<'_>,
        rejection: GateRejection,
        known: Known<'_>,
    ) -> GateRejection {
        tracing::info!(
            reason = rejection.code(),
            api_key_id = ?known.api_key_id,
            device_id = ?known.device_id,
            ip = %request.client_ip,
            "proxy request refused"
        );
        if let Some(sink) = self.audit_sink() {
            // Only a well-formed keyId is worth keeping; anything else is attacker text.
            let key_id = known.key_id.filter(|k| KeyId::parse(k).is_ok()).map(str::to_owned);
            sink.submit(RejectionEvent {
                kind: REJECTED_KIND,
                code: rejection.code(),
                message: rejection.message(),
                outcome: rejection.outcome(),
                api_key_id: known.api_key_id,
                device_id: known.device_id,
                key_id,
                ip: request.client_ip,
                method: request.method.chars().take(16).collect(),
                path: request
                    .path_and_query
                    .split('?')
                    .next()
                    .unwrap_or_default()
                    .chars()
                    .take(256)
                    .collect(),
            });
        }
        rejection
    }

    /// The writer task needs a runtime, which `Platform::new` may not run in; start it on first use.
    fn audit_sink(&self) -> Option<&AuditSink> {
        if let Some(sink) = self.inner.audit.get() {
            return Some(sink);
        }
        tokio::runtime::Handle::try_current().ok()?;
        Some(
            self.inner.audit.get_or_init(|| {
                AuditSink::spawn(self.inner.recorder.clone(), self.inner.config.audit.clone())
            }),
        )
    }
}

impl Inner {
    /// Brings the entries these events touch up to date (the read models must hold them).
    async fn apply(&self, events: &[Arc<StoredEvent>]) {
        let touched: HashSet<(&str, &str)> = events
            .iter()
            .filter(|e| CACHED_AGGREGATES.contains(&e.aggregate_type.as_str()))
            .map(|e| (e.aggregate_type.as_str(), e.aggregate_id.as_str()))
            .collect();
        for (aggregate_type, aggregate_id) in touched {
            if let Err(e) = self.cache.reload(aggregate_type, aggregate_id).await {
                tracing::warn!(aggregate_type, aggregate_id, error = %e, "gate cache reload failed; the periodic refresh will retry");
            }
        }
    }
}

/// Told by the projections which events they just committed to the read models.
struct Listener(Weak<Inner>);

impl AppliedListener for Listener {
    fn applied<'a>(&'a self, events: &'a [Arc<StoredEvent>]) -> futures::future::BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Some(inner) = self.0.upgrade() {
                inner.apply(events).await;
            }
        })
    }
}

/// Events committed on other nodes reach this one through the bus; the read models may not hold
/// them yet, so the projections catch up first.
async fn follow_bus(
    gate: Weak<Inner>,
    mut receiver: broadcast::Receiver<BusEvent>,
    projections: Arc<Projections>,
) {
    loop {
        let mut events = Vec::new();
        let mut lagged = false;
        match receiver.recv().await {
            Ok(published) => events.push(published.event),
            Err(broadcast::error::RecvError::Lagged(_)) => lagged = true,
            Err(broadcast::error::RecvError::Closed) => return,
        }
        loop {
            match receiver.try_recv() {
                Ok(published) => events.push(published.event),
                Err(broadcast::error::TryRecvError::Lagged(_)) => lagged = true,
                Err(_) => break,
            }
        }
        events.retain(|e| CACHED_AGGREGATES.contains(&e.aggregate_type.as_str()));
        if events.is_empty() && !lagged {
            continue;
        }
        let Some(inner) = gate.upgrade() else { return };
        if let Err(e) = projections.catch_up().await {
            tracing::warn!(error = %e, "gate: projections cannot catch up; reloading from what they hold");
        }
        if lagged {
            if let Err(e) = inner.cache.load_all().await {
                tracing::warn!(error = %e, "gate cache refresh failed");
            }
        } else {
            inner.apply(&events).await;
        }
    }
}

async fn refresh_periodically(gate: Weak<Inner>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let Some(inner) = gate.upgrade() else { return };
        if let Err(e) = inner.cache.load_all().await {
            tracing::warn!(error = %e, "periodic gate cache refresh failed");
        }
        inner.limits.sweep(Instant::now());
    }
}

/// The provider a `/api/v1/proxy/{provider}/...` path names, if it names one.
fn explicit_provider(path_and_query: &str) -> Option<Provider> {
    let path = path_and_query.split('?').next().unwrap_or_default();
    let rest = path.strip_prefix("/api/v1/proxy/")?;
    let (first, _) = rest.split_once('/')?;
    first.parse().ok()
}

/// The `model` field of a JSON object body, if there is one.
fn model_of(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Model {
        model: Option<serde_json::Value>,
    }
    let start = body.iter().position(|b| !b.is_ascii_whitespace())?;
    if body[start] != b'{' {
        return None;
    }
    // A `model` that is not a string is kept as its JSON text, so an allow-list refuses it
    // instead of letting it slip past unchecked.
    match serde_json::from_slice::<Model>(body).ok()?.model? {
        serde_json::Value::String(model) => Some(model),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_provider_is_the_first_segment_after_proxy() {
        assert_eq!(explicit_provider("/api/v1/proxy/anthropic/v1/messages"), Some(Provider::Anthropic));
        assert_eq!(explicit_provider("/api/v1/proxy/v1/chat/completions"), None);
        assert_eq!(explicit_provider("/api/v1/proxy/openai?x=1"), None);
        assert_eq!(explicit_provider("/api/v1/keyguard/verify-test"), None);
    }

    #[test]
    fn the_model_comes_from_a_json_object_body() {
        assert_eq!(model_of(br#" {"model":"gpt-4o","messages":[]}"#).as_deref(), Some("gpt-4o"));
        assert_eq!(model_of(b""), None);
        assert_eq!(model_of(b"[1]"), None);
        assert_eq!(model_of(br#"{"messages":[]}"#), None);
        assert_eq!(model_of(br#"{"model":["gpt-4o"]}"#).as_deref(), Some(r#"["gpt-4o"]"#));
    }
}
