//! Every environment variable KeyGuard reads, with its default and its validation.
//!
//! Nothing else in the server reads the environment. Bad configuration stops start-up with one
//! sentence that names the variable and says what is expected.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use domain::provider::Provider;

use leptos::config::LeptosOptions;
use secrecy::SecretString;
use services::gate::SharedStoresConfig;
use services::secrets::MasterKeySource;
pub use services::store::DatabaseConfig;
use services::store::redact_url;
pub use services::usage::{AuditMode, UsageConfig};

pub use crate::priority::BookkeepingPriority;
pub use crate::security::SecurityConfig;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The server's whole configuration, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub database: DatabaseConfig,
    /// NATS with JetStream for the event bus and shared nonce/limit stores; `None` runs on one
    /// node with in-process equivalents.
    pub nats_url: Option<String>,
    pub master_key: MasterKeySource,
    /// Peers whose `X-Forwarded-For` is believed (load balancers); everyone else's address is
    /// taken from the socket, so a client cannot choose the IP that policies and audits see.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Largest signed request body the device-facing routes accept (413 above it).
    pub max_body_bytes: usize,
    pub database_max_connections: u32,
    pub data_dir: PathBuf,
    pub listen_addr: SocketAddr,
    pub log_filter: String,
    pub log_format: LogFormat,
    pub site_root: String,
    pub site_pkg_dir: String,
    pub reload_port: u32,
    pub upstream: UpstreamConfig,
    /// The usage writer: whether a proxied request waits until its record is durable
    /// (`KEYGUARD_AUDIT_MODE`), how many records may wait (`KEYGUARD_USAGE_QUEUE_CAPACITY`) and
    /// for how long at most (`KEYGUARD_USAGE_FLUSH_MS`).
    pub usage: UsageConfig,
    /// Whether the bookkeeping threads yield the CPU to requests while they keep up
    /// (`KEYGUARD_BOOKKEEPING_PRIORITY`: `yield`, the default, or `normal`; see [`crate::priority`]).
    pub bookkeeping_priority: BookkeepingPriority,
    /// How often a signed checkpoint of the event history is recorded
    /// (`KEYGUARD_AUDIT_CHECKPOINT_MINUTES`, default 60; 0 turns it off, leaving
    /// `keyguard audit checkpoint` to a scheduler).
    pub audit_checkpoint_interval: Option<Duration>,
    /// How many days of usage events to keep (`KEYGUARD_USAGE_RETENTION_DAYS`; unset or 0 keeps
    /// them forever). An hourly job removes older usage batches; nothing else is ever removed.
    pub usage_retention_days: Option<u32>,
    /// The NATS KV buckets of the shared nonce store and limits, used when `nats_url` is set.
    /// Not read from the environment: the defaults suit every deployment, tests isolate theirs.
    pub gate_stores: SharedStoresConfig,
    /// Security headers, CORS and request size limits (`KEYGUARD_HSTS`, `KEYGUARD_CORS_ORIGINS`,
    /// `KEYGUARD_MAX_HEADER_BYTES`, `KEYGUARD_MAX_API_BODY_BYTES`).
    pub security: SecurityConfig,
}

/// How the proxy reaches the providers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// `KEYGUARD_<PROVIDER>_BASE_URL`, without a trailing `/`; a key's own `baseUrl` wins over it.
    pub openai_base_url: Option<String>,
    pub anthropic_base_url: Option<String>,
    pub google_base_url: Option<String>,
    pub azure_base_url: Option<String>,
    /// Establishing the connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// The whole exchange, until the last byte of a streamed answer.
    pub timeout: Duration,
    /// `KEYGUARD_MAX_IN_FLIGHT`: proxied requests waiting for the gate or for their provider's
    /// answer at once; past it a request is refused with 503 instead of queued (see
    /// `proxy::overload`). Allow for the providers' answer times: at 100 requests/s with answers
    /// taking 10 s, 1 000 are in flight.
    pub max_in_flight: usize,
}

impl UpstreamConfig {
    /// The configured base URL for a provider, if any.
    pub fn base_url(&self, provider: Provider) -> Option<&str> {
        match provider {
            Provider::OpenAi => self.openai_base_url.as_deref(),
            Provider::Anthropic => self.anthropic_base_url.as_deref(),
            Provider::Google => self.google_base_url.as_deref(),
            Provider::Azure => self.azure_base_url.as_deref(),
        }
    }
}

/// A configuration mistake, phrased for the person who made it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

impl ConfigError {
    fn new(variable: &'static str, problem: impl Into<String>) -> Self {
        Self { variable, problem: problem.into() }
    }
}

/// The name cargo-leptos gives the WASM/JS/CSS bundle; fixed at build time.
pub const OUTPUT_NAME: &str = match option_env!("LEPTOS_OUTPUT_NAME") {
    Some(name) => name,
    None => "keyguard",
};

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Reads the given variables (the process environment in production, a map in tests).
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let vars: HashMap<String, String> = vars.into_iter().collect();
        let get = |name: &str| vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());

        let data_dir = PathBuf::from(get("KEYGUARD_DATA_DIR").unwrap_or("./data"));
        let database = match get("KEYGUARD_DATABASE_URL") {
            None => DatabaseConfig::Sqlite { path: data_dir.join("keyguard.db") },
            Some(url) => parse_database_url(url)?,
        };
        let nats_url = match get("KEYGUARD_NATS_URL") {
            None => None,
            Some(url) if ["nats://", "tls://", "ws://", "wss://"].iter().any(|s| url.starts_with(s)) => {
                Some(url.to_owned())
            }
            Some(url) => {
                return Err(ConfigError::new(
                    "KEYGUARD_NATS_URL",
                    format!("must start with `nats://` or `tls://`, got `{}`", redact_url(url)),
                ));
            }
        };
        let master_key = master_key_source(&get, &database, &data_dir)?;
        let trusted_proxies = match get("KEYGUARD_TRUSTED_PROXIES") {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| {
                    p.parse::<ipnet::IpNet>()
                        .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                        .map_err(|_| {
                            ConfigError::new(
                                "KEYGUARD_TRUSTED_PROXIES",
                                format!("`{p}` is not an IP address or CIDR range (e.g. 10.0.0.0/8, ::1)"),
                            )
                        })
                })
                .collect::<Result<_, _>>()?,
        };
        let max_body_bytes =
            parse_or("KEYGUARD_MAX_BODY_BYTES", get("KEYGUARD_MAX_BODY_BYTES"), 10 * 1024 * 1024usize)?;
        if !(1024..=100 * 1024 * 1024).contains(&max_body_bytes) {
            return Err(ConfigError::new(
                "KEYGUARD_MAX_BODY_BYTES",
                format!("must be between 1024 and 104857600 (100 MiB), got {max_body_bytes}"),
            ));
        }
        let database_max_connections =
            parse_or("KEYGUARD_DATABASE_MAX_CONNECTIONS", get("KEYGUARD_DATABASE_MAX_CONNECTIONS"), 10u32)?;
        if !(1..=1000).contains(&database_max_connections) {
            return Err(ConfigError::new(
                "KEYGUARD_DATABASE_MAX_CONNECTIONS",
                format!("must be between 1 and 1000, got {database_max_connections}"),
            ));
        }
        let listen_addr =
            parse_or("LEPTOS_SITE_ADDR", get("LEPTOS_SITE_ADDR"), SocketAddr::from(([127, 0, 0, 1], 3000)))?;
        let log_format = match get("KEYGUARD_LOG_FORMAT").unwrap_or("text") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(ConfigError::new(
                    "KEYGUARD_LOG_FORMAT",
                    format!("must be `text` or `json`, got `{other}`"),
                ));
            }
        };
        let log_filter = get("KEYGUARD_LOG").unwrap_or("info,keyguard=info,server=info").to_owned();
        tracing_subscriber::EnvFilter::try_new(&log_filter)
            .map_err(|e| ConfigError::new("KEYGUARD_LOG", format!("is not a valid log filter ({e})")))?;
        let upstream = UpstreamConfig {
            openai_base_url: base_url("KEYGUARD_OPENAI_BASE_URL", get("KEYGUARD_OPENAI_BASE_URL"))?,
            anthropic_base_url: base_url("KEYGUARD_ANTHROPIC_BASE_URL", get("KEYGUARD_ANTHROPIC_BASE_URL"))?,
            google_base_url: base_url("KEYGUARD_GOOGLE_BASE_URL", get("KEYGUARD_GOOGLE_BASE_URL"))?,
            azure_base_url: base_url("KEYGUARD_AZURE_BASE_URL", get("KEYGUARD_AZURE_BASE_URL"))?,
            connect_timeout: seconds(
                "KEYGUARD_UPSTREAM_CONNECT_TIMEOUT_SECS",
                get("KEYGUARD_UPSTREAM_CONNECT_TIMEOUT_SECS"),
                10,
            )?,
            timeout: seconds("KEYGUARD_UPSTREAM_TIMEOUT_SECS", get("KEYGUARD_UPSTREAM_TIMEOUT_SECS"), 600)?,
            max_in_flight: parse_or("KEYGUARD_MAX_IN_FLIGHT", get("KEYGUARD_MAX_IN_FLIGHT"), 1_024usize)?,
        };
        if upstream.max_in_flight == 0 {
            return Err(ConfigError::new("KEYGUARD_MAX_IN_FLIGHT", "must be at least 1".to_owned()));
        }
        let mode = match get("KEYGUARD_AUDIT_MODE").unwrap_or("async") {
            "async" => AuditMode::Async,
            "strict" => AuditMode::Strict,
            other => {
                return Err(ConfigError::new(
                    "KEYGUARD_AUDIT_MODE",
                    format!("must be `async` or `strict`, got `{other}`"),
                ));
            }
        };

        let checkpoint_minutes: u64 =
            parse_or("KEYGUARD_AUDIT_CHECKPOINT_MINUTES", get("KEYGUARD_AUDIT_CHECKPOINT_MINUTES"), 60)?;
        if checkpoint_minutes > 7 * 24 * 60 {
            return Err(ConfigError::new(
                "KEYGUARD_AUDIT_CHECKPOINT_MINUTES",
                format!("must be at most a week (10080 minutes), got {checkpoint_minutes}"),
            ));
        }
        let audit_checkpoint_interval =
            (checkpoint_minutes > 0).then(|| Duration::from_secs(checkpoint_minutes * 60));

        let retention_days: u32 =
            parse_or("KEYGUARD_USAGE_RETENTION_DAYS", get("KEYGUARD_USAGE_RETENTION_DAYS"), 0)?;
        if retention_days > 36_500 {
            return Err(ConfigError::new(
                "KEYGUARD_USAGE_RETENTION_DAYS",
                format!("must be a number of days up to 36500 (0 keeps usage forever), got {retention_days}"),
            ));
        }
        let usage_retention_days = (retention_days > 0).then_some(retention_days);
        let security = security_config(&get)?;
        let bookkeeping_priority =
            BookkeepingPriority::parse(get("KEYGUARD_BOOKKEEPING_PRIORITY").unwrap_or("yield"))
                .map_err(|problem| ConfigError::new("KEYGUARD_BOOKKEEPING_PRIORITY", problem))?;

        Ok(Self {
            database,
            nats_url,
            master_key,
            trusted_proxies,
            max_body_bytes,
            database_max_connections,
            data_dir,
            listen_addr,
            log_filter,
            log_format,
            site_root: get("LEPTOS_SITE_ROOT").unwrap_or("target/site").to_owned(),
            site_pkg_dir: get("LEPTOS_SITE_PKG_DIR").unwrap_or("pkg").to_owned(),
            reload_port: parse_or("LEPTOS_RELOAD_PORT", get("LEPTOS_RELOAD_PORT"), 3001u32)?,
            upstream,
            usage: usage_config(&get, mode)?,
            bookkeeping_priority,
            audit_checkpoint_interval,
            usage_retention_days,
            gate_stores: SharedStoresConfig::default(),
            security,
        })
    }

    /// The options Leptos needs to render pages and serve the hydration bundle.
    pub fn leptos_options(&self) -> LeptosOptions {
        LeptosOptions::builder()
            .output_name(OUTPUT_NAME)
            .site_root(self.site_root.as_str())
            .site_pkg_dir(self.site_pkg_dir.as_str())
            .site_addr(self.listen_addr)
            .reload_port(self.reload_port)
            .build()
    }
}

/// The master key wraps every data key that encrypts provider secrets. A single node on SQLite
/// gets one generated under the data directory; PostgreSQL means several nodes may share the store,
/// so they must be given the same key explicitly.
fn master_key_source<'a>(
    get: &impl Fn(&str) -> Option<&'a str>,
    database: &DatabaseConfig,
    data_dir: &std::path::Path,
) -> Result<MasterKeySource, ConfigError> {
    const INLINE: &str = "KEYGUARD_MASTER_KEY";
    const FILE: &str = "KEYGUARD_MASTER_KEY_FILE";
    const PREVIOUS: &str = "KEYGUARD_PREVIOUS_MASTER_KEYS";
    let previous = match get(PREVIOUS) {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(|k| check_master_key(PREVIOUS, k))
            .collect::<Result<_, _>>()?,
    };
    match (get(INLINE), get(FILE)) {
        (Some(_), Some(_)) => {
            Err(ConfigError::new(INLINE, format!("set either {INLINE} or {FILE}, not both")))
        }
        (Some(key), None) => {
            Ok(MasterKeySource::Inline { current: check_master_key(INLINE, key)?, previous })
        }
        (None, Some(path)) => {
            Ok(MasterKeySource::File { path: PathBuf::from(path), create_if_missing: false, previous })
        }
        (None, None) => match database {
            DatabaseConfig::Sqlite { .. } => Ok(MasterKeySource::File {
                path: data_dir.join("master.key"),
                create_if_missing: true,
                previous,
            }),
            DatabaseConfig::Postgres { .. } => Err(ConfigError::new(
                INLINE,
                format!(
                    "is required with PostgreSQL (or {FILE}), so that every node decrypts the same secrets; \
                     generate one with `head -c 32 /dev/urandom | base64`"
                ),
            )),
        },
    }
}

fn check_master_key(variable: &'static str, key: &str) -> Result<SecretString, ConfigError> {
    use base64::Engine as _;
    match base64::engine::general_purpose::STANDARD.decode(key) {
        Ok(bytes) if bytes.len() == 32 => Ok(SecretString::from(key.to_owned())),
        _ => Err(ConfigError::new(variable, "must be standard base64 of exactly 32 random bytes")),
    }
}

fn parse_database_url(url: &str) -> Result<DatabaseConfig, ConfigError> {
    const VAR: &str = "KEYGUARD_DATABASE_URL";
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        if url.split_once("://").is_some_and(|(_, rest)| rest.is_empty()) {
            return Err(ConfigError::new(VAR, "names no PostgreSQL host"));
        }
        return Ok(DatabaseConfig::Postgres { url: url.to_owned() });
    }
    if let Some(rest) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
        let path = rest.split('?').next().unwrap_or_default();
        if path.is_empty() || path == ":memory:" {
            return Err(ConfigError::new(
                VAR,
                "must name a SQLite file (an in-memory database would lose every event at exit)",
            ));
        }
        return Ok(DatabaseConfig::Sqlite { path: PathBuf::from(path) });
    }
    Err(ConfigError::new(
        VAR,
        format!("must start with `postgres://`, `postgresql://` or `sqlite://`, got `{}`", redact_url(url)),
    ))
}

/// An upstream base URL: http(s), a host, no credentials, query or fragment; kept without a
/// trailing `/` so that the upstream path can be appended.
fn base_url(variable: &'static str, raw: Option<&str>) -> Result<Option<String>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    let url = reqwest::Url::parse(raw).map_err(|e| {
        ConfigError::new(variable, format!("is not a URL ({e}), e.g. https://api.openai.com"))
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ConfigError::new(variable, "must be an http:// or https:// URL with a host"));
    }
    if !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(ConfigError::new(variable, "must not carry credentials, a query or a fragment"));
    }
    Ok(Some(raw.trim_end_matches('/').to_owned()))
}

fn usage_config<'a>(
    get: &impl Fn(&str) -> Option<&'a str>,
    mode: AuditMode,
) -> Result<UsageConfig, ConfigError> {
    let defaults = UsageConfig::default();
    let capacity =
        parse_or("KEYGUARD_USAGE_QUEUE_CAPACITY", get("KEYGUARD_USAGE_QUEUE_CAPACITY"), defaults.capacity)?;
    if !(1..=1_000_000).contains(&capacity) {
        return Err(ConfigError::new(
            "KEYGUARD_USAGE_QUEUE_CAPACITY",
            format!("must be between 1 and 1000000 records, got {capacity}"),
        ));
    }
    let default_ms = u64::try_from(defaults.flush_interval.as_millis()).unwrap_or(u64::MAX);
    let flush_ms = parse_or("KEYGUARD_USAGE_FLUSH_MS", get("KEYGUARD_USAGE_FLUSH_MS"), default_ms)?;
    if !(1..=60_000).contains(&flush_ms) {
        return Err(ConfigError::new(
            "KEYGUARD_USAGE_FLUSH_MS",
            format!("must be between 1 and 60000 milliseconds, got {flush_ms}"),
        ));
    }
    Ok(UsageConfig { mode, capacity, flush_interval: Duration::from_millis(flush_ms), ..defaults })
}

fn security_config<'a>(get: &impl Fn(&str) -> Option<&'a str>) -> Result<SecurityConfig, ConfigError> {
    let defaults = SecurityConfig::default();
    let hsts = match get("KEYGUARD_HSTS").map(str::to_ascii_lowercase).as_deref() {
        None | Some("false" | "0" | "off") => false,
        Some("true" | "1" | "on") => true,
        Some(other) => {
            return Err(ConfigError::new(
                "KEYGUARD_HSTS",
                format!("must be `true` or `false`, got `{other}`"),
            ));
        }
    };
    let cors_origins = match get("KEYGUARD_CORS_ORIGINS") {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(cors_origin)
            .collect::<Result<_, _>>()?,
    };
    let max_header_bytes =
        parse_or("KEYGUARD_MAX_HEADER_BYTES", get("KEYGUARD_MAX_HEADER_BYTES"), defaults.max_header_bytes)?;
    if !(4096..=256 * 1024).contains(&max_header_bytes) {
        return Err(ConfigError::new(
            "KEYGUARD_MAX_HEADER_BYTES",
            format!("must be between 4096 and 262144 (256 KiB), got {max_header_bytes}"),
        ));
    }
    let max_api_body_bytes = parse_or(
        "KEYGUARD_MAX_API_BODY_BYTES",
        get("KEYGUARD_MAX_API_BODY_BYTES"),
        defaults.max_api_body_bytes,
    )?;
    if !(1024..=100 * 1024 * 1024).contains(&max_api_body_bytes) {
        return Err(ConfigError::new(
            "KEYGUARD_MAX_API_BODY_BYTES",
            format!("must be between 1024 and 104857600 (100 MiB), got {max_api_body_bytes}"),
        ));
    }
    Ok(SecurityConfig { hsts, cors_origins, max_header_bytes, max_api_body_bytes })
}

/// A web origin as browsers send it: scheme, host and optional port, nothing else.
fn cors_origin(raw: &str) -> Result<axum::http::HeaderValue, ConfigError> {
    const VAR: &str = "KEYGUARD_CORS_ORIGINS";
    let problem = || ConfigError::new(VAR, format!("`{raw}` is not an origin like https://app.example.com"));
    let url = reqwest::Url::parse(raw).map_err(|_| problem())?;
    let bare =
        url.path() == "/" && url.query().is_none() && url.fragment().is_none() && url.username().is_empty();
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() || !bare || raw.ends_with('/') {
        return Err(problem());
    }
    axum::http::HeaderValue::from_str(&url.origin().ascii_serialization()).map_err(|_| problem())
}

/// A whole number of seconds between 1 and one hour.
fn seconds(variable: &'static str, raw: Option<&str>, default: u64) -> Result<Duration, ConfigError> {
    let secs = parse_or(variable, raw, default)?;
    if !(1..=3600).contains(&secs) {
        return Err(ConfigError::new(variable, format!("must be between 1 and 3600 seconds, got {secs}")));
    }
    Ok(Duration::from_secs(secs))
}

fn parse_or<T: FromStr>(variable: &'static str, raw: Option<&str>, default: T) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match raw {
        None => Ok(default),
        Some(raw) => {
            raw.parse().map_err(|e| ConfigError::new(variable, format!("cannot parse `{raw}` ({e})")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn defaults_need_no_services() {
        let config = config(&[]).unwrap();
        assert_eq!(config.database, DatabaseConfig::Sqlite { path: PathBuf::from("./data/keyguard.db") });
        assert_eq!(config.upstream.max_in_flight, 1_024);
        assert_eq!(config.listen_addr, "127.0.0.1:3000".parse().unwrap());
        assert_eq!(config.log_format, LogFormat::Text);
    }

    #[test]
    fn data_dir_moves_the_default_database() {
        let config = config(&[("KEYGUARD_DATA_DIR", "/var/lib/keyguard")]).unwrap();
        assert_eq!(
            config.database,
            DatabaseConfig::Sqlite { path: PathBuf::from("/var/lib/keyguard/keyguard.db") }
        );
    }

    #[test]
    fn database_url_chooses_the_backend() {
        let pg = config(&[
            ("KEYGUARD_DATABASE_URL", "postgres://kg:secret@db:5432/kg"),
            ("KEYGUARD_MASTER_KEY", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="),
        ])
        .unwrap();
        assert!(matches!(pg.database, DatabaseConfig::Postgres { .. }));
        assert!(!pg.database.describe().contains("secret"), "{}", pg.database.describe());
        let lite = config(&[("KEYGUARD_DATABASE_URL", "sqlite:///tmp/kg.db?mode=rwc")]).unwrap();
        assert_eq!(lite.database, DatabaseConfig::Sqlite { path: PathBuf::from("/tmp/kg.db") });
    }

    #[test]
    fn each_mistake_names_its_variable() {
        let cases: &[(&str, &str)] = &[
            ("KEYGUARD_DATABASE_URL", "mysql://db/kg"),
            ("KEYGUARD_DATABASE_URL", "sqlite::memory:"),
            ("KEYGUARD_DATABASE_URL", "postgres://"),
            ("KEYGUARD_DATABASE_MAX_CONNECTIONS", "0"),
            ("KEYGUARD_DATABASE_MAX_CONNECTIONS", "many"),
            ("KEYGUARD_MAX_IN_FLIGHT", "0"),
            ("KEYGUARD_MAX_IN_FLIGHT", "-1"),
            ("LEPTOS_SITE_ADDR", "localhost"),
            ("KEYGUARD_LOG_FORMAT", "xml"),
            ("KEYGUARD_LOG", "info,[[["),
            ("LEPTOS_RELOAD_PORT", "-1"),
            ("KEYGUARD_NATS_URL", "http://127.0.0.1:4222"),
            ("KEYGUARD_TRUSTED_PROXIES", "10.0.0.0/8, proxy.internal"),
            ("KEYGUARD_MAX_BODY_BYTES", "10"),
            ("KEYGUARD_MAX_BODY_BYTES", "lots"),
            ("KEYGUARD_MASTER_KEY", "c2hvcnQ="),
            ("KEYGUARD_PREVIOUS_MASTER_KEYS", "not base64!"),
            ("KEYGUARD_OPENAI_BASE_URL", "api.openai.com"),
            ("KEYGUARD_ANTHROPIC_BASE_URL", "ftp://api.anthropic.com"),
            ("KEYGUARD_GOOGLE_BASE_URL", "https://user:pw@example.com"),
            ("KEYGUARD_AZURE_BASE_URL", "https://example.openai.azure.com/?x=1"),
            ("KEYGUARD_UPSTREAM_CONNECT_TIMEOUT_SECS", "0"),
            ("KEYGUARD_UPSTREAM_TIMEOUT_SECS", "soon"),
            ("KEYGUARD_AUDIT_MODE", "sync"),
            ("KEYGUARD_USAGE_QUEUE_CAPACITY", "0"),
            ("KEYGUARD_USAGE_FLUSH_MS", "never"),
            ("KEYGUARD_USAGE_FLUSH_MS", "600000"),
            ("KEYGUARD_HSTS", "maybe"),
            ("KEYGUARD_CORS_ORIGINS", "https://app.example.com/path"),
            ("KEYGUARD_CORS_ORIGINS", "*"),
            ("KEYGUARD_CORS_ORIGINS", "app.example.com"),
            ("KEYGUARD_MAX_HEADER_BYTES", "100"),
            ("KEYGUARD_MAX_API_BODY_BYTES", "big"),
            ("KEYGUARD_BOOKKEEPING_PRIORITY", "idle"),
        ];
        for (variable, value) in cases {
            let err = config(&[(variable, value)]).unwrap_err();
            assert_eq!(err.variable, *variable, "{value}");
            assert!(err.to_string().starts_with(variable), "{err}");
        }
    }

    #[test]
    fn upstreams_default_to_the_public_providers_and_async_audit() {
        let defaults = config(&[]).unwrap();
        for provider in Provider::ALL {
            assert_eq!(defaults.upstream.base_url(provider), None);
        }
        assert_eq!(defaults.upstream.connect_timeout, Duration::from_secs(10));
        assert_eq!(defaults.upstream.timeout, Duration::from_secs(600));
        assert_eq!(defaults.usage.mode, AuditMode::Async);
        assert_eq!(defaults.usage.capacity, 10_000);
        assert_eq!(defaults.usage.flush_interval, Duration::from_millis(50));
        assert_eq!(defaults.bookkeeping_priority, BookkeepingPriority::Yield);
        let normal = config(&[("KEYGUARD_BOOKKEEPING_PRIORITY", "normal")]).unwrap();
        assert_eq!(normal.bookkeeping_priority, BookkeepingPriority::Normal);
    }

    #[test]
    fn upstream_settings_are_read() {
        let config = config(&[
            ("KEYGUARD_OPENAI_BASE_URL", "http://127.0.0.1:8080/"),
            ("KEYGUARD_ANTHROPIC_BASE_URL", "https://anthropic.internal"),
            ("KEYGUARD_GOOGLE_BASE_URL", "https://gemini.internal/base"),
            ("KEYGUARD_AZURE_BASE_URL", "https://contoso.openai.azure.com"),
            ("KEYGUARD_UPSTREAM_CONNECT_TIMEOUT_SECS", "3"),
            ("KEYGUARD_UPSTREAM_TIMEOUT_SECS", "90"),
            ("KEYGUARD_AUDIT_MODE", "strict"),
            ("KEYGUARD_USAGE_QUEUE_CAPACITY", "64"),
            ("KEYGUARD_USAGE_FLUSH_MS", "250"),
        ])
        .unwrap();
        assert_eq!(config.upstream.base_url(Provider::OpenAi), Some("http://127.0.0.1:8080"));
        assert_eq!(config.upstream.base_url(Provider::Anthropic), Some("https://anthropic.internal"));
        assert_eq!(config.upstream.base_url(Provider::Google), Some("https://gemini.internal/base"));
        assert_eq!(config.upstream.base_url(Provider::Azure), Some("https://contoso.openai.azure.com"));
        assert_eq!(config.upstream.connect_timeout, Duration::from_secs(3));
        assert_eq!(config.upstream.timeout, Duration::from_secs(90));
        assert_eq!(config.usage.mode, AuditMode::Strict);
        assert_eq!(config.usage.capacity, 64);
        assert_eq!(config.usage.flush_interval, Duration::from_millis(250));
    }

    #[test]
    fn usage_retention_is_off_unless_a_number_of_days_is_given() {
        assert_eq!(config(&[]).unwrap().usage_retention_days, None);
        assert_eq!(config(&[("KEYGUARD_USAGE_RETENTION_DAYS", "0")]).unwrap().usage_retention_days, None);
        assert_eq!(
            config(&[("KEYGUARD_USAGE_RETENTION_DAYS", "90")]).unwrap().usage_retention_days,
            Some(90)
        );
        for bad in ["-1", "ninety", "36501"] {
            let err = config(&[("KEYGUARD_USAGE_RETENTION_DAYS", bad)]).unwrap_err();
            assert!(err.to_string().contains("KEYGUARD_USAGE_RETENTION_DAYS"), "{bad}: {err}");
        }
    }

    #[test]
    fn security_settings_default_closed_and_are_read() {
        let defaults = config(&[]).unwrap().security;
        assert_eq!(defaults, SecurityConfig::default());
        assert!(!defaults.hsts && defaults.cors_origins.is_empty());
        let set = config(&[
            ("KEYGUARD_HSTS", "true"),
            ("KEYGUARD_CORS_ORIGINS", "https://app.example.com, http://localhost:5173"),
            ("KEYGUARD_MAX_HEADER_BYTES", "8192"),
            ("KEYGUARD_MAX_API_BODY_BYTES", "65536"),
        ])
        .unwrap()
        .security;
        assert!(set.hsts);
        assert_eq!(set.cors_origins, ["https://app.example.com", "http://localhost:5173"]);
        assert_eq!((set.max_header_bytes, set.max_api_body_bytes), (8192, 65536));
    }

    #[test]
    fn trusted_proxies_take_addresses_and_ranges() {
        let config = config(&[("KEYGUARD_TRUSTED_PROXIES", "10.0.0.0/8, ::1,192.0.2.7")]).unwrap();
        let expected: Vec<ipnet::IpNet> =
            vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap(), "192.0.2.7/32".parse().unwrap()];
        assert_eq!(config.trusted_proxies, expected);
    }

    #[test]
    fn postgres_needs_an_explicit_master_key() {
        let err = config(&[("KEYGUARD_DATABASE_URL", "postgres://db/kg")]).unwrap_err();
        assert_eq!(err.variable, "KEYGUARD_MASTER_KEY");
        let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let ok =
            config(&[("KEYGUARD_DATABASE_URL", "postgres://db/kg"), ("KEYGUARD_MASTER_KEY", key)]).unwrap();
        assert!(matches!(ok.master_key, MasterKeySource::Inline { .. }));
        assert!(!format!("{:?}", ok.master_key).contains(key), "the key never reaches Debug output");
    }

    #[test]
    fn sqlite_generates_its_master_key_under_the_data_dir() {
        let config = config(&[("KEYGUARD_DATA_DIR", "/srv/kg")]).unwrap();
        match config.master_key {
            MasterKeySource::File { path, create_if_missing: true, .. } => {
                assert_eq!(path, PathBuf::from("/srv/kg/master.key"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_database_error_never_echoes_a_password() {
        let err = config(&[("KEYGUARD_DATABASE_URL", "mysql://root:hunter2@db/kg")]).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
