//! Wiring: builds the whole application from a [`Config`]. `main` and the tests both use it.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context as _;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::FromRef;
use axum::http::HeaderName;
use leptos::config::LeptosOptions;
use leptos_axum::{AxumRouteListing, LeptosRoutes as _, generate_route_list};
use tokio::net::TcpListener;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use std::sync::Arc;

use crate::config::{AuditMode, BookkeepingPriority, Config, SecurityConfig};
use crate::metrics::Metrics;
use crate::security::ResponseHardening;
use services::events::EventBus;
use services::gate::GateConfig;
use services::gate::{GateStores, SharedStores};
use services::outbox::{NatsTarget, OutboxConfig, OutboxRelay};
use services::platform::Platform;
use services::projections::ProjectionsTask;
use services::secrets::MasterKeys;
use services::store::Database;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What every request handler can reach. Every handler and middleware of a request takes its own
/// copy, so the state is shared behind one `Arc`: a copy costs a counter, not a clone of each field.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The fields of [`AppState`].
#[derive(Debug)]
pub struct Shared {
    pub db: Database,
    pub leptos_options: LeptosOptions,
    /// Connected when `KEYGUARD_NATS_URL` is set (reconnecting in the background if it drops).
    pub nats: Option<async_nats::Client>,
    pub trusted_proxies: Arc<[ipnet::IpNet]>,
    pub metrics: Metrics,
    pub platform: Arc<Platform>,
    /// The proxy's pooled upstream client and provider settings.
    pub proxy: crate::proxy::forward::Forwarder,
    /// Whether session cookies carry `Secure` (off only when serving on a loopback address).
    pub secure_cookies: bool,
    /// Turns true when the server starts shutting down, so endless responses (the audit live
    /// stream) end and graceful shutdown can finish.
    pub closing: tokio::sync::watch::Receiver<bool>,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}

/// A server that is bound and ready to run.
pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
    projections: ProjectionsTask,
    outbox: tokio::task::JoinHandle<()>,
    checkpoints: Option<tokio::task::JoinHandle<()>>,
    retention: Option<tokio::task::JoinHandle<()>>,
    /// Renews the bookkeeping's heartbeat while it yields the CPU to requests.
    heartbeat: Option<tokio::task::JoinHandle<()>>,
    closing: tokio::sync::watch::Sender<bool>,
    background: Background,
}

impl Application {
    /// Connects to the database, applies pending migrations and binds the listen address.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let db = Database::connect(&config.database, config.database_max_connections).await?;
        db.migrate().await?;
        let master_keys =
            Arc::new(MasterKeys::load(&config.master_key).context("cannot load the master key")?);
        let nats = match &config.nats_url {
            None => None,
            Some(url) => Some(
                async_nats::ConnectOptions::new()
                    .retry_on_initial_connect()
                    .connection_timeout(std::time::Duration::from_secs(5))
                    .connect(url.as_str())
                    .await
                    .with_context(|| format!("cannot connect to NATS at {url} (KEYGUARD_NATS_URL)"))?,
            ),
        };
        let background = Background::start().context("cannot start the background runtime")?;
        let Bookkeeping { platform, projections, outbox, checkpoints, retention } = background
            .spawn({
                let (db, config, nats) = (db.clone(), config.clone(), nats.clone());
                async move { Bookkeeping::start(db, &config, master_keys, nats).await }
            })
            .await
            .context("the background start-up panicked")??;
        let heartbeat = yield_bookkeeping(config, &background, &db, &platform.usage);
        let listener = TcpListener::bind(config.listen_addr)
            .await
            .with_context(|| format!("cannot listen on {} (LEPTOS_SITE_ADDR)", config.listen_addr))?;
        let (closing, closing_rx) = tokio::sync::watch::channel(false);
        let state = AppState::new(Shared {
            closing: closing_rx,
            db,
            leptos_options: config.leptos_options(),
            nats,
            trusted_proxies: config.trusted_proxies.clone().into(),
            metrics: Metrics::new(platform.usage.clone()),
            secure_cookies: !config.listen_addr.ip().is_loopback(),
            platform,
            proxy: crate::proxy::forward::Forwarder::new(&config.upstream)
                .context("cannot build the proxy's HTTP client")?,
        });
        let router = router(state.clone(), &config.security);
        Ok(Self {
            listener,
            router,
            state,
            projections,
            outbox,
            checkpoints,
            retention,
            heartbeat,
            closing,
            background,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then lets requests in flight finish.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        tracing::info!(addr = %self.local_addr(), database = self.state.db.backend(), "serving");
        let closing = self.closing.clone();
        let shutdown = async move {
            shutdown.await;
            closing.send_replace(true);
        };
        // TCP_NODELAY: a streamed answer's events are small writes; with Nagle's algorithm the
        // first event waits for the client to acknowledge the headers (its delayed ACK, up to
        // 40 ms), which showed as ~20 ms added to the time to first token in keyguard-bench.
        let listener = axum::serve::ListenerExt::tap_io(self.listener, |tcp| {
            if let Err(err) = tcp.set_nodelay(true) {
                tracing::debug!(error = %err, "cannot set TCP_NODELAY");
            }
        });
        axum::serve(listener, self.router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(shutdown)
            .await
            .context("the server stopped with an error")?;
        // Requests have finished: store the usage records still queued.
        self.state.platform.usage.shutdown().await;
        self.projections.shutdown().await;
        self.outbox.abort();
        for job in [self.checkpoints, self.retention, self.heartbeat].into_iter().flatten() {
            job.abort();
        }
        self.state.db.close().await;
        drop(self.background);
        Ok(())
    }
}

/// The node's bookkeeping, started on the [`Background`] runtime: everything that
/// `tokio::spawn`s while it starts (the usage writer, the gate's audit writer and cache
/// followers, the projections, the outbox relay, checkpoints and retention) runs there.
struct Bookkeeping {
    platform: Arc<Platform>,
    projections: ProjectionsTask,
    outbox: tokio::task::JoinHandle<()>,
    checkpoints: Option<tokio::task::JoinHandle<()>>,
    retention: Option<tokio::task::JoinHandle<()>>,
}

impl Bookkeeping {
    async fn start(
        db: Database,
        config: &Config,
        master_keys: Arc<MasterKeys>,
        nats: Option<async_nats::Client>,
    ) -> anyhow::Result<Self> {
        // With NATS, every node shares one nonce store and one set of limits.
        let gate_stores = match &nats {
            None => GateStores::InMemory,
            Some(client) => GateStores::Shared(SharedStores::new(client.clone(), config.gate_stores.clone())),
        };
        let platform = Arc::new(Platform::with_gate(
            db.clone(),
            master_keys,
            GateConfig { max_body_bytes: config.max_body_bytes, ..GateConfig::default() },
            gate_stores,
        )?);
        // Bring the read models up to date before the first request reads them.
        platform.projections.catch_up().await.context("cannot bring the read models up to date")?;
        platform
            .gate
            .start(&platform.bus, platform.projections.clone())
            .await
            .context("cannot load the proxy gate's caches")?;
        platform.usage.start(config.usage.clone());
        let projections = platform.projections.clone().spawn(&platform.bus);
        let outbox = spawn_outbox(db.clone(), platform.bus.clone(), config.nats_url.clone());
        // Registered before the first signature, so that what this key signs stays verifiable
        // once it is rotated out.
        if let Err(err) = platform.integrity.register_key().await {
            tracing::warn!(error = %err, "cannot register the audit signing key");
        }
        let checkpoints = config
            .audit_checkpoint_interval
            .map(|every| spawn_checkpoints(platform.integrity.clone(), every));
        let retention = config.usage_retention_days.map(|days| {
            spawn_retention(platform.integrity.clone(), platform.projections.clone(), days, RETENTION_EVERY)
        });
        Ok(Self { platform, projections, outbox, checkpoints, retention })
    }
}

/// A runtime of its own, on one thread, for the node's bookkeeping: storing usage batches,
/// updating the read models and the gate's caches, relaying events. On the proxy's runtime the
/// usage writer was one task among hundreds of requests under overload and got a turn in that
/// proportion: its queue filled and records were dropped (7 463 and 7 738 in two 5-second runs at
/// 5 000 req/s; none in five runs on a thread of its own). Its own thread gets the kernel's share instead.
pub struct Background(Option<tokio::runtime::Runtime>);

impl Background {
    pub fn start() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(crate::priority::BOOKS_THREAD_NAME)
            .enable_all()
            .build()?;
        Ok(Self(Some(runtime)))
    }

    pub fn spawn<F>(&self, future: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.0.as_ref().expect("the background runtime runs until dropped").spawn(future)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        // Dropping a runtime waits for its threads, which an async context must not do.
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Lets the bookkeeping threads yield the CPU to requests while they keep up, followed by the
/// watchdog of [`crate::priority`]; returns the task renewing this node's heartbeat.
fn yield_bookkeeping(
    config: &Config,
    background: &Background,
    db: &Database,
    usage: &services::usage::UsageWriter,
) -> Option<tokio::task::JoinHandle<()>> {
    if config.bookkeeping_priority != BookkeepingPriority::Yield {
        return None;
    }
    if config.usage.mode == AuditMode::Strict {
        tracing::info!("bookkeeping keeps normal priority: in the strict audit mode requests wait for it");
        return None;
    }
    if config.nats_url.is_some() {
        // The gate's cluster heartbeat (which decides, from NATS and the database, how nonces are
        // checked) runs with the bookkeeping, and requests wait on its decisions.
        tracing::info!(
            "bookkeeping keeps normal priority: in a cluster requests wait on the gate's heartbeat"
        );
        return None;
    }
    let usage = usage.clone();
    // The writer empties the queue every flush interval, so a quarter of it waiting means it is
    // well behind (with the default 10 000, half a second's records at 5 000 requests/s).
    let piling_up = move || usage.backlog().is_some_and(|(waiting, capacity)| waiting * 4 > capacity);
    match crate::priority::follow(piling_up) {
        Ok(heartbeat) => Some(background.spawn(crate::priority::beat(db.clone(), heartbeat))),
        Err(why) => {
            tracing::info!("bookkeeping keeps normal priority: {why}");
            None
        }
    }
}

/// Records a signed checkpoint of the event history every `every` (the first one `every` after
/// start). A failure is logged and the next period tries again; a history that does not verify is
/// an alert, not something to sign.
fn spawn_checkpoints(
    integrity: services::integrity::Integrity,
    every: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match integrity.checkpoint().await {
                Ok(c) => tracing::info!(
                    number = c.number,
                    events = c.events,
                    chains = c.chains,
                    "audit checkpoint signed"
                ),
                Err(services::integrity::CheckpointError::Tampered(problem)) => {
                    tracing::error!(?problem, "the event history does not verify; no checkpoint signed")
                }
                Err(err) => tracing::warn!(error = %err, "cannot record an audit checkpoint"),
            }
        }
    })
}

/// How often the retention policy for usage events runs.
const RETENTION_EVERY: std::time::Duration = std::time::Duration::from_secs(60 * 60);

/// Applies the retention policy for usage events at start and then every `every`. A failure is
/// logged and the next period tries again.
fn spawn_retention(
    integrity: services::integrity::Integrity,
    projections: std::sync::Arc<services::projections::Projections>,
    days: u32,
    every: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match integrity.apply_retention(days, chrono::Utc::now()).await {
                Ok(runs) => {
                    for run in &runs {
                        tracing::info!(
                            batches = run.batches,
                            events = run.events,
                            kept = run.kept.len(),
                            cutoff = %run.cutoff,
                            "usage retention applied"
                        );
                    }
                    if !runs.is_empty()
                        && let Err(err) = projections.catch_up().await
                    {
                        tracing::warn!(error = %err, "read models did not catch up after retention");
                    }
                }
                Err(err) => tracing::warn!(error = %err, "cannot apply the usage retention policy"),
            }
        }
    })
}

/// The dashboard's routes, listed once per process. Listing them runs the app with data loading
/// switched off for the whole process (a global flag of `leptos_server`): a page that started
/// loading its data meanwhile in another router of the same process (several nodes in one
/// process, as the tests run them) would wait for it forever.
fn dashboard_routes() -> Vec<AxumRouteListing> {
    static ROUTES: std::sync::OnceLock<Vec<AxumRouteListing>> = std::sync::OnceLock::new();
    ROUTES.get_or_init(|| generate_route_list(app::App)).clone()
}

/// The HTTP routes: the REST API, server functions, the dashboard pages and its static files,
/// all behind the security headers, CORS and size limits of `security`.
pub fn router(state: AppState, security: &SecurityConfig) -> Router {
    let routes = dashboard_routes();
    let options = state.leptos_options.clone();
    let backend =
        app::backend::Backend { platform: state.platform.clone(), secure_cookies: state.secure_cookies };
    // Pages and server functions: each learns who is asking from the scope middleware, and
    // reaches the application services through the backend in its context.
    let dashboard = Router::new()
        .leptos_routes_with_context(
            &state,
            routes,
            move || {
                leptos::context::provide_context(backend.clone());
                crate::security::provide_csp_nonce();
            },
            move || app::shell(options.clone()),
        )
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::dashboard::scope))
        .layer(axum::middleware::from_fn(run_to_completion));
    // The device-facing routes bound their bodies themselves (`KEYGUARD_MAX_BODY_BYTES`), so that
    // an oversized signed request is audited; everything else that reads a body is bounded here.
    let body_limit = (
        DefaultBodyLimit::max(security.max_api_body_bytes),
        RequestBodyLimitLayer::new(security.max_api_body_bytes),
    );
    let hardening = ResponseHardening::new(security, state.trusted_proxies.clone());
    let router = Router::new()
        .nest(
            "/api/v1",
            crate::api::router(state.clone())
                .layer(body_limit)
                .layer(axum::middleware::from_fn(run_to_completion))
                .merge(crate::proxy::router(state.clone())),
        )
        .route("/metrics", axum::routing::get(crate::metrics::endpoint))
        .merge(dashboard.layer(body_limit))
        .fallback(leptos_axum::file_and_error_handler_with_context::<AppState, _>(
            crate::security::provide_csp_nonce,
            app::shell,
        ))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(TraceLayer::new_for_http())
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(state);
    let router = match crate::security::cors(security) {
        Some(cors) => router.layer(cors),
        None => router,
    };
    router.layer(axum::middleware::from_fn_with_state(hardening, crate::security::harden))
}

/// Carries a request through once it has reached its handler, even if the client leaves: an
/// admin command or a sign-in is then either done or not, and never abandoned half-way through a
/// database exchange. (The signed proxy is not run this way: a client that leaves should stop its
/// upstream call, and that path touches the database only from tasks of its own.)
pub async fn run_to_completion(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    match tokio::spawn(next.run(request)).await {
        Ok(response) => response,
        Err(err) => {
            tracing::error!(error = %err, "a request handler panicked");
            axum::response::IntoResponse::into_response(axum::http::StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

/// Runs the outbox relay: every committed event goes to the in-process bus and, when configured,
/// to NATS JetStream. NATS being down at start-up does not stop the node: the relay keeps trying,
/// events wait in the store meanwhile, and `/api/v1/ready` says the node is not ready.
fn spawn_outbox(db: Database, bus: EventBus, nats_url: Option<String>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let config = OutboxConfig { nats: nats_url.map(NatsTarget::new), ..OutboxConfig::default() };
        let mut backoff = std::time::Duration::from_millis(200);
        let relay = loop {
            match OutboxRelay::connect(db.clone(), bus.clone(), config.clone()).await {
                Ok(relay) => break relay,
                Err(err) => {
                    tracing::warn!(error = %err, retry_in = ?backoff, "outbox relay cannot start yet");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
                }
            }
        };
        // Dropping the task handle stops the relay, so hold it for as long as this task lives.
        let task = relay.spawn();
        std::future::pending::<()>().await;
        drop(task);
    })
}

/// Resolves on Ctrl-C or SIGTERM, for graceful shutdown.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
