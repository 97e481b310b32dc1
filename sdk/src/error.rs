//! Everything that can go wrong in the SDK, as one typed enum callers can match on.

use std::path::PathBuf;

use chrono::TimeDelta;
use domain::protocol::{FieldError, Rejection};

/// An SDK failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The operating system's random number generator failed; no key or nonce can be made safely.
    #[error("the operating system's random number generator failed")]
    Entropy,

    /// The key could not be encoded as PKCS#8.
    #[error("could not encode the device key as PKCS#8")]
    KeyEncoding,

    /// Reading, writing or deleting a stored device key failed.
    #[error(transparent)]
    Store(#[from] StoreError),

    /// The project API key cannot be sent (wrong length, whitespace, `|`, non-ASCII).
    #[error("the project API key {0}")]
    InvalidProjectKey(FieldError),

    /// The server URL is not an absolute `http`/`https` URL without query or fragment.
    #[error("invalid server URL {url:?}: {reason}")]
    InvalidServerUrl { url: String, reason: &'static str },

    /// The method or path cannot be signed (for example a space or `|` in the path, or a fragment).
    #[error("cannot sign this request: {0}")]
    InvalidRequest(Rejection),

    /// A header the caller added is not a valid HTTP header, or is one of the seven the signer sets.
    #[error(
        "cannot send header {name:?}: not a valid header, or one of the x-keyguard-* headers the signer sets"
    )]
    InvalidHeader { name: String },

    /// A JSON body could not be serialised.
    #[error("cannot serialise the request body: {0}")]
    InvalidBody(String),

    /// No connection could be made (refused, DNS failure, TLS failure, connect timeout).
    #[error("cannot reach the KeyGuard server at {server}")]
    Unreachable {
        server: String,
        #[source]
        source: reqwest::Error,
    },

    /// The connection was made but the exchange failed part-way (reset, timeout, bad body).
    #[error("the request to {server} failed")]
    Transport {
        server: String,
        #[source]
        source: reqwest::Error,
    },

    /// Enrollment was answered 401: the server knows no active, unexpired project with this key.
    #[error("the server refused the project API key: it is unknown, revoked or expired")]
    ProjectKeyRefused,

    /// Enrollment was answered 400: the payload or the enrollment code was refused.
    #[error("enrollment refused ({code}): {message}")]
    EnrollmentRefused { code: String, message: String },

    /// A signed request was answered 401. The server deliberately does not say why; the local
    /// clock is compared with the server's `Date` header to rule clock skew in or out.
    #[error("{}", unauthorized_message(*.clock_offset))]
    Unauthorized {
        /// Server time minus local time, when the server sent a `Date` header.
        clock_offset: Option<TimeDelta>,
    },

    /// The server throttled the request (429).
    #[error("the server is rate limiting this device; retry after {}", .retry_after.as_deref().unwrap_or("a while"))]
    RateLimited { retry_after: Option<String> },

    /// Any other unsuccessful status, with the body the server sent.
    #[error("the server answered {status}: {body}")]
    Status { status: u16, body: String },

    /// A successful status with a body this SDK does not understand.
    #[error("unexpected answer from the server: {0}")]
    UnexpectedResponse(String),
}

/// How far apart the clocks may be before a 401 is blamed on them. The server's window is 120 s
/// by default and configurable, so a smaller gap is already worth pointing out.
pub const CLOCK_SKEW_THRESHOLD: TimeDelta = TimeDelta::seconds(30);

impl Error {
    /// Whether a 401 is most likely explained by this machine's clock.
    pub fn is_clock_skew(&self) -> bool {
        matches!(self, Error::Unauthorized { clock_offset: Some(offset) } if offset.abs() >= CLOCK_SKEW_THRESHOLD)
    }
}

fn unauthorized_message(clock_offset: Option<TimeDelta>) -> String {
    match clock_offset {
        Some(offset) if offset.abs() >= CLOCK_SKEW_THRESHOLD => {
            let seconds = offset.num_seconds();
            let direction = if seconds > 0 { "behind" } else { "ahead of" };
            format!(
                "the server refused the signed request (401), and this machine's clock is {} s {direction} \
                 the server's: signed requests are only accepted within a short window (120 s by default). \
                 Fix the system clock (enable NTP) and try again",
                seconds.abs()
            )
        }
        _ => "the server refused the signed request (401). It does not say why; the possible causes are: \
              the device is still pending approval by an administrator, the device was suspended or revoked, \
              the project API key was revoked or has expired, or the device is enrolled on another server"
            .to_owned(),
    }
}

/// A failure of a [`KeyStore`](crate::KeyStore).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// An I/O operation on a key file failed.
    #[error("{action} {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The key file can be read or written by other users; it is not loaded.
    #[error(
        "{} is accessible by other users (mode {mode:03o}); refusing to use it. Run `chmod 600 {}` if the key \
         has not leaked, or forget this device and enroll a new key",
        .path.display(), .path.display()
    )]
    InsecurePermissions { path: PathBuf, mode: u32 },

    /// The stored bytes are not a PKCS#8 P-256 private key.
    #[error("{} does not hold a PKCS#8 P-256 private key", .path.display())]
    InvalidKey { path: PathBuf },

    /// A key is already stored and saving would replace it.
    #[error("a device key is already stored at {}", .path.display())]
    AlreadyExists { path: PathBuf },

    /// A store backend of another kind (an OS keychain, say) failed.
    #[error("key store: {0}")]
    Backend(String),
}
