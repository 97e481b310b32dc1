//! Every response carries the security headers, whichever route answered it (API, proxy, pages,
//! static files, errors, 404s); a page's inline scripts carry the nonce its CSP names; HSTS only
//! behind TLS; CORS closed unless origins are configured; oversized headers and bodies are
//! refused with JSON errors.

mod support;

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use support::{Backend, TestApp};

/// A site root with one stylesheet, so that static files are served.
fn site_root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("pkg")).unwrap();
    std::fs::write(dir.path().join("pkg/keyguard.css"), "body { margin: 0 }").unwrap();
    dir
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

fn assert_hardened(what: &str, headers: &HeaderMap) {
    assert_eq!(header(headers, "x-content-type-options"), "nosniff", "{what}");
    assert_eq!(header(headers, "x-frame-options"), "DENY", "{what}");
    assert_eq!(header(headers, "referrer-policy"), "no-referrer", "{what}");
    let csp = header(headers, "content-security-policy");
    for directive in ["frame-ancestors 'none'", "base-uri 'none'"] {
        assert!(csp.contains(directive), "{what}: {directive} missing from {csp:?}");
    }
    assert!(!csp.contains("unsafe-inline") && !csp.contains("'unsafe-eval'"), "{what}: {csp}");
    assert!(!headers.contains_key("strict-transport-security"), "{what}: HSTS over plain HTTP");
    assert!(!headers.contains_key("access-control-allow-origin"), "{what}: CORS is closed by default");
}

/// The nonce a page's CSP allows scripts with.
fn script_nonce(csp: &str) -> &str {
    let start = csp.find("'nonce-").unwrap_or_else(|| panic!("no nonce in {csp}")) + "'nonce-".len();
    let len = csp[start..].find('\'').unwrap();
    &csp[start..start + len]
}

/// Checks that each `<script` tag of `html` carries `nonce`, and returns how many there are.
/// An empty `<script></script>` (the translations' placeholder) is left out: browsers neither run
/// nor check a script without source text.
fn scripts_carry(html: &str, nonce: &str) -> usize {
    let scripts: Vec<&str> =
        html.split("<script").skip(1).filter(|script| !script.starts_with("></script>")).collect();
    for script in &scripts {
        let tag = &script[..script.find('>').unwrap()];
        let start: String = script.chars().take(160).collect();
        assert!(tag.contains(&format!("nonce=\"{nonce}\"")), "a script without the nonce: <script{start}");
    }
    scripts.len()
}

async fn every_response_is_hardened(backend: Backend) {
    let site = site_root();
    let root = site.path().display().to_string();
    let app = TestApp::spawn_with(backend, |config| config.site_root = root).await;
    let requests: [(&str, Method, &str, StatusCode); 9] = [
        ("health", Method::GET, "/api/v1/health", StatusCode::OK),
        ("API 404", Method::GET, "/api/v1/no-such-thing", StatusCode::NOT_FOUND),
        ("API 401", Method::GET, "/api/v1/keys", StatusCode::UNAUTHORIZED),
        ("proxy 401", Method::POST, "/api/v1/proxy/v1/chat/completions", StatusCode::UNAUTHORIZED),
        ("enroll 401", Method::POST, "/api/v1/keyguard/enroll", StatusCode::UNAUTHORIZED),
        ("page", Method::GET, "/setup", StatusCode::OK),
        ("page 404", Method::GET, "/no-such-page", StatusCode::NOT_FOUND),
        ("static file", Method::GET, "/pkg/keyguard.css", StatusCode::OK),
        ("metrics", Method::GET, "/metrics", StatusCode::OK),
    ];
    for (what, method, path, status) in requests {
        let response = app.client.request(method, app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), status, "{what}");
        assert_hardened(what, response.headers());
        let csp = header(response.headers(), "content-security-policy").to_owned();
        let is_html = header(response.headers(), "content-type").starts_with("text/html");
        let body = response.text().await.unwrap();
        if is_html {
            assert!(
                csp.contains("script-src 'self' 'nonce-") && csp.contains("'wasm-unsafe-eval'"),
                "{what}: {csp}"
            );
            assert!(scripts_carry(&body, script_nonce(&csp)) >= 1, "{what}: the hydration scripts: {body}");
        } else {
            assert!(csp.starts_with("default-src 'none'"), "{what}: {csp}");
        }
    }
}

async fn each_page_gets_its_own_nonce_and_only_its_scripts_run(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut nonces = Vec::new();
    for _ in 0..2 {
        let response = app.client.get(app.url("/login")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let csp = header(response.headers(), "content-security-policy").to_owned();
        let html = response.text().await.unwrap();
        let nonce = script_nonce(&csp).to_owned();
        assert!(nonce.len() >= 16, "{nonce}");
        // The module that loads the WASM, and the inline hydration data.
        assert!(scripts_carry(&html, &nonce) >= 2, "{html}");
        assert!(html.contains("/pkg/keyguard.js"), "{html}");
        assert!(!html.contains(" style=\""), "an inline style the CSP would block: {html}");
        nonces.push(nonce);
    }
    assert_ne!(nonces[0], nonces[1], "a nonce is used once");
}

async fn hsts_only_behind_tls(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| config.security.hsts = true).await;
    let response = app.client.get(app.url("/api/v1/health")).send().await.unwrap();
    assert_eq!(
        header(response.headers(), "strict-transport-security"),
        "max-age=63072000; includeSubDomains"
    );

    // Not configured: only when a trusted proxy says the client used HTTPS.
    let app = TestApp::spawn_with(backend, |config| {
        config.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let get = |proto: Option<&'static str>| {
        let request = app.client.get(app.url("/setup"));
        match proto {
            Some(proto) => request.header("x-forwarded-proto", proto),
            None => request,
        }
    };
    let tls = get(Some("https")).send().await.unwrap();
    assert!(tls.headers().contains_key("strict-transport-security"));
    for plain in [get(Some("http")), get(None)] {
        let response = plain.send().await.unwrap();
        assert!(!response.headers().contains_key("strict-transport-security"));
    }
    // From an untrusted peer the header means nothing.
    let app = TestApp::spawn(backend).await;
    let response =
        app.client.get(app.url("/setup")).header("x-forwarded-proto", "https").send().await.unwrap();
    assert!(!response.headers().contains_key("strict-transport-security"));
}

async fn cors_is_closed_unless_origins_are_configured(backend: Backend) {
    let preflight = |app: &TestApp, origin: &str| {
        app.client
            .request(Method::OPTIONS, app.url("/api/v1/proxy/v1/chat/completions"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "x-keyguard-signature, content-type")
            .send()
    };
    let closed = TestApp::spawn(backend).await;
    let response = preflight(&closed, "https://app.example.com").await.unwrap();
    assert!(!response.headers().contains_key("access-control-allow-origin"));
    assert_hardened("preflight", response.headers());
    let response = closed
        .client
        .get(closed.url("/api/v1/health"))
        .header("origin", "https://app.example.com")
        .send()
        .await;
    assert!(!response.unwrap().headers().contains_key("access-control-allow-origin"));

    let open = TestApp::spawn_with(backend, |config| {
        config.security.cors_origins = vec![HeaderValue::from_static("https://app.example.com")];
    })
    .await;
    let response = preflight(&open, "https://app.example.com").await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    assert_eq!(header(response.headers(), "access-control-allow-origin"), "https://app.example.com");
    let allowed = header(response.headers(), "access-control-allow-headers").to_ascii_lowercase();
    assert!(allowed.contains("x-keyguard-signature"), "{allowed}");
    let response = preflight(&open, "https://evil.example.com").await.unwrap();
    assert!(!response.headers().contains_key("access-control-allow-origin"));
}

async fn oversized_headers_and_bodies_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let response = app
        .client
        .get(app.url("/api/v1/health"))
        .header("x-padding", "a".repeat(20 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_hardened("431", response.headers());
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "headers_too_large");

    // The admin API, a server function and the enrollment route: all bounded, all JSON.
    let huge = vec![b'a'; 3 * 1024 * 1024];
    for (path, content_type) in [
        ("/api/v1/auth/login", "application/json"),
        ("/api/auth/login", "application/x-www-form-urlencoded"),
        ("/api/v1/keyguard/enroll", "application/json"),
    ] {
        let response = app
            .client
            .post(app.url(path))
            .header("content-type", content_type)
            .header("x-keyguard-api-key", "kg_1733668200000_abcdefghijklmnopqrstuvwxyz012345")
            .body(huge.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE, "{path}");
        assert_hardened(path, response.headers());
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"], "payload_too_large", "{path}");
    }

    // The limit is configurable.
    let app = TestApp::spawn_with(backend, |config| config.security.max_api_body_bytes = 4096).await;
    let response = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header("content-type", "application/json")
        .body(vec![b' '; 5000])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

/// A client that sends a whole oversized body before reading gets its 413: the server reads the
/// refused body to its end instead of closing on unread data (which resets the connection).
async fn a_refused_body_is_read_before_the_413_so_the_client_gets_it(backend: Backend) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let app = TestApp::spawn(backend).await;
    let body = vec![b' '; 3 * 1024 * 1024];
    for path in ["/api/v1/auth/login", "/api/v1/keyguard/enroll"] {
        let mut socket = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
             x-keyguard-api-key: kg_1733668200000_abcdefghijklmnopqrstuvwxyz012345\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n",
            app.addr,
            body.len()
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        // A client on a slow link: the body arrives in pieces, with pauses (the scenario, not a
        // wait for a condition), so the server cannot find it all there when it refuses.
        for piece in body.chunks(64 * 1024) {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            socket
                .write_all(piece)
                .await
                .unwrap_or_else(|e| panic!("{path}: the server stopped reading: {e}"));
        }
        let mut answer = Vec::new();
        socket.read_to_end(&mut answer).await.unwrap_or_else(|e| panic!("{path}: {e}"));
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 413"), "{path}: {answer}");
        assert!(answer.contains("payload_too_large"), "{path}: {answer}");
    }
}

on_both_backends!(
    a_refused_body_is_read_before_the_413_so_the_client_gets_it,
    every_response_is_hardened,
    each_page_gets_its_own_nonce_and_only_its_scripts_run,
    hsts_only_behind_tls,
    cors_is_closed_unless_origins_are_configured,
    oversized_headers_and_bodies_are_refused,
);
