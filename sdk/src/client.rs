//! An HTTP client (reqwest) that signs every request it sends with kg-v1, and turns the
//! server's refusals into typed errors.
//!
//! The response is handed back unread, so a streamed (SSE) completion can be consumed chunk by
//! chunk as the proxy relays it.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use domain::protocol::KgHeader;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Response};
use serde::Deserialize;

use crate::enrollment::user_agent;
use crate::{Error, ServerUrl, Signer};

/// The route that checks a signature end to end and forwards nothing.
pub const VERIFY_TEST_PATH: &str = "/api/v1/keyguard/verify-test";

/// Longest error body kept in [`Error::Status`].
const MAX_ERROR_BODY: usize = 4096;

/// A client bound to one server and one enrolled device.
///
/// ```no_run
/// # async fn demo() -> Result<(), keyguard_sdk::Error> {
/// use keyguard_sdk::{DeviceKey, ServerUrl, SignedClient, Signer};
///
/// let key = DeviceKey::generate()?; // in practice: loaded from a KeyStore after enrolling
/// let signer = Signer::new(key, "kg_…project key…")?;
/// let client = SignedClient::new(ServerUrl::parse("https://keyguard.example.com")?, signer)?;
///
/// // Sign the full path the server receives, /api/v1 prefix included.
/// let response = client
///     .post("/api/v1/proxy/v1/chat/completions")
///     .json(&serde_json::json!({ "model": "gpt-4o-mini", "stream": true,
///                                "messages": [{ "role": "user", "content": "hello" }] }))
///     .send()
///     .await?;
/// let mut response = keyguard_sdk::check(response).await?;
/// while let Some(chunk) = response.chunk().await.map_err(|e| keyguard_sdk::Error::UnexpectedResponse(e.to_string()))? {
///     print!("{}", String::from_utf8_lossy(&chunk));
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SignedClient {
    http: reqwest::Client,
    server: ServerUrl,
    signer: Signer,
}

impl SignedClient {
    /// A client with this SDK's User-Agent and a 10 s connect timeout (no overall timeout, so
    /// long streams are not cut).
    pub fn new(server: ServerUrl, signer: Signer) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .user_agent(user_agent())
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Error::Transport { server: server.to_string(), source: e })?;
        Ok(Self::with_http_client(http, server, signer))
    }

    /// A client on a reqwest client configured by the caller (proxy, TLS roots, timeouts).
    pub fn with_http_client(http: reqwest::Client, server: ServerUrl, signer: Signer) -> Self {
        Self { http, server, signer }
    }

    pub fn server(&self) -> &ServerUrl {
        &self.server
    }

    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// Starts a request to `path_and_query` on the server: the full route with the `/api/v1`
    /// prefix and the query, e.g. `/api/v1/proxy/v1/models?limit=5`.
    pub fn request(&self, method: Method, path_and_query: &str) -> SignedRequestBuilder<'_> {
        SignedRequestBuilder {
            client: self,
            method,
            path_and_query: path_and_query.to_owned(),
            headers: HeaderMap::new(),
            body: Vec::new(),
            error: None,
        }
    }

    pub fn get(&self, path_and_query: &str) -> SignedRequestBuilder<'_> {
        self.request(Method::GET, path_and_query)
    }

    pub fn post(&self, path_and_query: &str) -> SignedRequestBuilder<'_> {
        self.request(Method::POST, path_and_query)
    }

    /// Asks the server to verify a signed request (`POST /api/v1/keyguard/verify-test`): succeeds
    /// only for an active device whose signatures, clock and project key are all good.
    pub async fn verify(&self) -> Result<Verified, Error> {
        let response = check(self.post(VERIFY_TEST_PATH).send().await?).await?;
        response.json().await.map_err(|e| Error::UnexpectedResponse(format!("verify-test answer: {e}")))
    }
}

/// The answer of the verify-test route.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verified {
    pub valid: bool,
    pub device_id: String,
    pub key_id: String,
}

/// A request being built; signed when sent.
pub struct SignedRequestBuilder<'a> {
    client: &'a SignedClient,
    method: Method,
    path_and_query: String,
    headers: HeaderMap,
    body: Vec<u8>,
    error: Option<Error>,
}

impl SignedRequestBuilder<'_> {
    /// Adds a header. The seven `x-keyguard-*` headers are the signer's and cannot be set.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        let parsed = HeaderName::from_bytes(name.as_bytes()).ok().zip(HeaderValue::from_str(value).ok());
        match parsed {
            Some((name, _)) if KgHeader::from_name(name.as_str()).is_some() => {
                self.error.get_or_insert(Error::InvalidHeader { name: name.to_string() });
            }
            Some((name, value)) => {
                self.headers.append(name, value);
            }
            None => {
                self.error.get_or_insert(Error::InvalidHeader { name: name.to_owned() });
            }
        }
        self
    }

    /// The exact body bytes to send (and hash).
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// A JSON body, with `Content-Type: application/json`.
    pub fn json<T: serde::Serialize + ?Sized>(mut self, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => {
                self.body = body;
                self.headers
                    .insert(reqwest::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
            Err(e) => {
                self.error.get_or_insert(Error::InvalidBody(e.to_string()));
            }
        }
        self
    }

    /// Signs and sends the request. Any HTTP status is returned as a response, unread; pass it
    /// to [`check`] to turn refusals into errors.
    pub async fn send(self) -> Result<Response, Error> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let client = self.client;
        let url = client.server.url_for(&self.path_and_query)?;
        // Sign what goes on the wire: the URL parser may have normalised the target.
        let target = &url[url::Position::BeforePath..url::Position::AfterQuery];
        let signed = client.signer.sign(self.method.as_str(), target, &self.body)?;
        let mut headers = self.headers;
        for (name, value) in signed.header_pairs() {
            let value = HeaderValue::from_str(value).expect("kg-v1 header values are visible ASCII");
            headers.insert(HeaderName::from_static(name), value);
        }
        client
            .http
            .request(self.method, url)
            .headers(headers)
            .body(self.body)
            .send()
            .await
            .map_err(|e| http_error(&client.server, e))
    }
}

/// Passes a successful (2xx) response through and turns any other into an [`Error`]: a 401 into
/// [`Error::Unauthorized`] (with the clock offset, from the server's `Date` header), a 429 into
/// [`Error::RateLimited`], anything else into [`Error::Status`] with the body.
pub async fn check(response: Response) -> Result<Response, Error> {
    if response.status().is_success() {
        Ok(response)
    } else {
        let server = response.url().origin().ascii_serialization();
        Err(failure_from(&server, response).await)
    }
}

pub(crate) async fn failure(server: &ServerUrl, response: Response) -> Error {
    failure_from(&server.to_string(), response).await
}

async fn failure_from(server: &str, response: Response) -> Error {
    let status = response.status().as_u16();
    match status {
        401 => Error::Unauthorized { clock_offset: clock_offset(response.headers(), Utc::now()) },
        429 => Error::RateLimited {
            retry_after: response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(|s| format!("{s} s")),
        },
        _ => match response.text().await {
            Ok(mut body) => {
                if body.len() > MAX_ERROR_BODY {
                    let mut end = MAX_ERROR_BODY;
                    while !body.is_char_boundary(end) {
                        end -= 1;
                    }
                    body.truncate(end);
                    body.push('…');
                }
                Error::Status { status, body }
            }
            Err(e) => Error::Transport { server: server.to_owned(), source: e },
        },
    }
}

/// Server time minus local time, from the `Date` header (one-second resolution).
pub fn clock_offset(headers: &HeaderMap, now: DateTime<Utc>) -> Option<TimeDelta> {
    let date = headers.get(reqwest::header::DATE)?.to_str().ok()?;
    let server = DateTime::parse_from_rfc2822(date).ok()?.with_timezone(&Utc);
    Some(server - now)
}

pub(crate) fn http_error(server: &ServerUrl, error: reqwest::Error) -> Error {
    let server = server.to_string();
    if error.is_connect() {
        Error::Unreachable { server, source: error }
    } else {
        Error::Transport { server, source: error }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_offset_reads_the_date_header() {
        let mut headers = HeaderMap::new();
        headers.insert(reqwest::header::DATE, HeaderValue::from_static("Wed, 15 Jan 2025 10:30:00 GMT"));
        let now: DateTime<Utc> = "2025-01-15T10:35:00Z".parse().unwrap();
        assert_eq!(clock_offset(&headers, now), Some(TimeDelta::minutes(-5)));
        let skewed = Error::Unauthorized { clock_offset: clock_offset(&headers, now) };
        assert!(skewed.is_clock_skew());
        assert!(skewed.to_string().contains("300 s ahead of the server's"), "{skewed}");

        let close: DateTime<Utc> = "2025-01-15T10:30:02Z".parse().unwrap();
        let fine = Error::Unauthorized { clock_offset: clock_offset(&headers, close) };
        assert!(!fine.is_clock_skew());
        assert!(fine.to_string().contains("pending approval"), "{fine}");

        headers.insert(reqwest::header::DATE, HeaderValue::from_static("yesterday"));
        assert_eq!(clock_offset(&headers, now), None);
    }

    #[test]
    fn the_signers_headers_cannot_be_overridden() {
        let signer = Signer::new(
            crate::DeviceKey::generate().unwrap(),
            "kg_1733668200000_abcdefghijklmnopqrstuvwxyz012345",
        )
        .unwrap();
        let client = SignedClient::new(ServerUrl::parse("http://127.0.0.1:9").unwrap(), signer).unwrap();
        let builder = client.get("/api/v1/x").header("X-KeyGuard-Nonce", "AAAAAAAAAAAAAAAAAAAAAA==");
        assert!(matches!(builder.error, Some(Error::InvalidHeader { .. })));
        let builder = client.get("/api/v1/x").header("bad header", "v");
        assert!(matches!(builder.error, Some(Error::InvalidHeader { .. })));
    }
}
