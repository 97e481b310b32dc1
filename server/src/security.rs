//! What every response gets, whichever route answered it: security headers, CORS closed unless
//! origins are configured, and limits on the size of request headers and bodies.
//!
//! The Content-Security-Policy allows no inline script but the dashboard's own: each request gets
//! a fresh nonce, which the page's hydration scripts carry (Leptos reads it from the context,
//! see [`provide_csp_nonce`]) and which the header names. WebAssembly needs `'wasm-unsafe-eval'`;
//! nothing needs `'unsafe-inline'` or `'unsafe-eval'`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use leptos::nonce::Nonce;
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer};

/// Two years, with subdomains: what browsers' preload lists ask for.
const HSTS: HeaderValue = HeaderValue::from_static("max-age=63072000; includeSubDomains");

/// Anything that is not a page (JSON, event streams, files) may load and embed nothing.
const NON_PAGE_POLICY: HeaderValue = HeaderValue::from_static(
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
);

/// The browser-facing settings, read by `config.rs` from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityConfig {
    /// `KEYGUARD_HSTS`: send `Strict-Transport-Security` on every response. Set it when clients
    /// reach KeyGuard over HTTPS only; it is sent anyway on requests that a trusted proxy
    /// (`KEYGUARD_TRUSTED_PROXIES`) marks `X-Forwarded-Proto: https`.
    pub hsts: bool,
    /// `KEYGUARD_CORS_ORIGINS`: the web origins (`https://app.example.com`) whose pages may call
    /// KeyGuard from a browser, e.g. the TypeScript SDK signing in a web application. Empty (the
    /// default) answers no cross-origin request.
    pub cors_origins: Vec<HeaderValue>,
    /// `KEYGUARD_MAX_HEADER_BYTES`: the request's header names and values together; 431 above.
    pub max_header_bytes: usize,
    /// `KEYGUARD_MAX_API_BODY_BYTES`: request bodies of the admin API, the dashboard and its
    /// server functions; 413 above. The device-facing routes have `KEYGUARD_MAX_BODY_BYTES`.
    pub max_api_body_bytes: usize,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            hsts: false,
            cors_origins: Vec::new(),
            max_header_bytes: 16 * 1024,
            max_api_body_bytes: 2 * 1024 * 1024,
        }
    }
}

/// What the header middleware needs per request.
#[derive(Debug, Clone)]
pub struct ResponseHardening {
    hsts: bool,
    max_header_bytes: usize,
    trusted_proxies: Arc<[ipnet::IpNet]>,
}

impl ResponseHardening {
    pub fn new(config: &SecurityConfig, trusted_proxies: Arc<[ipnet::IpNet]>) -> Self {
        Self { hsts: config.hsts, max_header_bytes: config.max_header_bytes, trusted_proxies }
    }

    /// Behind TLS: configured so, or a trusted proxy says the client used HTTPS.
    fn behind_tls(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> bool {
        self.hsts
            || peer.is_some_and(|ip| self.trusted_proxies.iter().any(|net| net.contains(&ip)))
                && headers
                    .get("x-forwarded-proto")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
    }
}

/// The nonce of this request's Content-Security-Policy, in the request's extensions.
#[derive(Debug, Clone)]
pub struct CspNonce(pub Nonce);

/// The policy of a dashboard page: its own scripts, styles and connections, the inline hydration
/// scripts that carry `nonce`, and WebAssembly.
pub fn page_policy(nonce: &str) -> String {
    format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; style-src 'self'; \
         img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; \
         frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )
}

/// Hands this request's CSP nonce to Leptos, so that the hydration scripts it renders carry the
/// nonce the header names. Call it from the context closure of the page and error handlers.
pub fn provide_csp_nonce() {
    let nonce = leptos::prelude::use_context::<axum::http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<CspNonce>().cloned());
    if let Some(CspNonce(nonce)) = nonce {
        leptos::prelude::provide_context(nonce);
    }
}

/// The outermost middleware: refuses oversized headers, and puts the security headers on every
/// response (and a JSON body on a 413 that some inner layer answered in plain text). A refused
/// body is read to its end (up to [`DRAIN_MAX_BYTES`]) before the 413 goes out: a server that
/// closes the connection on unread data resets it, and the client may then lose the answer.
pub async fn harden(State(hardening): State<ResponseHardening>, request: Request, next: Next) -> Response {
    let header_bytes: usize =
        request.headers().iter().map(|(name, value)| name.as_str().len() + value.len()).sum();
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip());
    let tls = hardening.behind_tls(peer, request.headers());
    let nonce = Nonce::new();
    // Kept within reach, so that what a refused body still holds can be read before answering.
    let (mut request, unread) = keep_body(request);
    let mut response = if header_bytes > hardening.max_header_bytes {
        error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!("the request headers are larger than {} bytes", hardening.max_header_bytes),
        )
    } else {
        request.extensions_mut().insert(CspNonce(nonce.clone()));
        next.run(request).await
    };
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE
        && let Some(unread) = unread
    {
        drain(unread).await;
    }
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && !is_json(response.headers()) {
        let extra = std::mem::take(response.headers_mut());
        response =
            error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the request body is too large".into());
        // Keep what the inner layer said besides its body (e.g. `Connection: close`).
        for (name, value) in extra.iter().filter(|(name, _)| !is_body_header(name)) {
            response.headers_mut().insert(name, value.clone());
        }
    }
    let headers = response.headers_mut();
    let policy = if is_html(headers) {
        HeaderValue::from_str(&page_policy(&nonce)).unwrap_or(NON_PAGE_POLICY)
    } else {
        NON_PAGE_POLICY
    };
    headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    if tls {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, HSTS);
    } else {
        // Only the TLS hop may pin the scheme; never relay an upstream's.
        headers.remove(header::STRICT_TRANSPORT_SECURITY);
    }
    response
}

/// CORS for the configured origins; `None` (no layer, so no `Access-Control-*` header at all)
/// when there are none.
pub fn cors(config: &SecurityConfig) -> Option<CorsLayer> {
    if config.cors_origins.is_empty() {
        return None;
    }
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(config.cors_origins.iter().cloned()))
            // The listed origins' pages sign whatever their provider calls need.
            .allow_methods(AllowMethods::mirror_request())
            .allow_headers(AllowHeaders::mirror_request())
            .expose_headers([HeaderName::from_static("x-request-id"), header::RETRY_AFTER])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

fn error(status: StatusCode, code: &str, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": code, "message": message }))).into_response()
}

fn content_type_starts_with(headers: &HeaderMap, prefix: &[u8]) -> bool {
    headers.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(prefix))
}

fn is_html(headers: &HeaderMap) -> bool {
    content_type_starts_with(headers, b"text/html")
}

fn is_json(headers: &HeaderMap) -> bool {
    content_type_starts_with(headers, b"application/json")
}

fn is_body_header(name: &HeaderName) -> bool {
    [header::CONTENT_TYPE, header::CONTENT_LENGTH, header::TRANSFER_ENCODING].contains(name)
}

/// Most of a refused body read (and discarded) before its 413 is sent; a larger body gets the
/// answer at once, and possibly a reset connection.
pub const DRAIN_MAX_BYTES: usize = 16 * 1024 * 1024;
/// Longest wait for a refused body's remaining bytes.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A request body the handler reads while this middleware keeps a hold on it.
struct Shared(Arc<std::sync::Mutex<axum::body::Body>>);

impl Shared {
    fn body(&self) -> std::sync::MutexGuard<'_, axum::body::Body> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl http_body::Body for Shared {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut *self.body()).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body().is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body().size_hint()
    }
}

/// The request with its body behind a [`Shared`] hold, and the hold; a request without a body
/// is left as it is.
fn keep_body(request: Request) -> (Request, Option<Arc<std::sync::Mutex<axum::body::Body>>>) {
    use http_body::Body as _;
    if request.body().size_hint().exact() == Some(0) {
        return (request, None);
    }
    let (parts, body) = request.into_parts();
    let hold = Arc::new(std::sync::Mutex::new(body));
    (Request::from_parts(parts, axum::body::Body::new(Shared(hold.clone()))), Some(hold))
}

/// Reads what a refused body still holds, within [`DRAIN_MAX_BYTES`] and [`DRAIN_TIMEOUT`].
async fn drain(hold: Arc<std::sync::Mutex<axum::body::Body>>) {
    use http_body::Body as _;
    let mut body = Shared(hold);
    let read = async {
        let mut total = 0usize;
        while total <= DRAIN_MAX_BYTES {
            match std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await {
                Some(Ok(frame)) => total += frame.data_ref().map_or(0, |data| data.len()),
                _ => return,
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, read).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hardening(hsts: bool, proxies: &[&str]) -> ResponseHardening {
        let config = SecurityConfig { hsts, ..SecurityConfig::default() };
        ResponseHardening::new(&config, proxies.iter().map(|p| p.parse().unwrap()).collect())
    }

    fn forwarded(proto: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-proto", HeaderValue::from_str(proto).unwrap());
        headers
    }

    #[test]
    fn hsts_only_behind_tls() {
        let proxy = Some(IpAddr::from([10, 0, 0, 5]));
        let stranger = Some(IpAddr::from([203, 0, 113, 9]));
        assert!(hardening(true, &[]).behind_tls(None, &HeaderMap::new()));
        assert!(!hardening(false, &[]).behind_tls(stranger, &forwarded("https")));
        assert!(hardening(false, &["10.0.0.0/8"]).behind_tls(proxy, &forwarded("HTTPS")));
        assert!(!hardening(false, &["10.0.0.0/8"]).behind_tls(proxy, &forwarded("http")));
        assert!(!hardening(false, &["10.0.0.0/8"]).behind_tls(stranger, &forwarded("https")));
    }

    #[test]
    fn the_page_policy_allows_no_inline_script_without_the_nonce() {
        let policy = page_policy("abc123");
        assert!(policy.contains("script-src 'self' 'nonce-abc123' 'wasm-unsafe-eval';"), "{policy}");
        assert!(!policy.contains("unsafe-inline") && !policy.contains("'unsafe-eval'"), "{policy}");
        assert!(policy.contains("frame-ancestors 'none'") && policy.contains("base-uri 'none'"), "{policy}");
        assert!(HeaderValue::from_str(&policy).is_ok());
    }

    #[test]
    fn cors_is_closed_without_origins() {
        assert!(cors(&SecurityConfig::default()).is_none());
        let open = SecurityConfig {
            cors_origins: vec![HeaderValue::from_static("https://app.example.com")],
            ..SecurityConfig::default()
        };
        assert!(cors(&open).is_some());
    }
}
