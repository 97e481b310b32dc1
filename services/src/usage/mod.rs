//! Usage accounting for the proxy: what one forwarded request cost (tokens, bytes, time), read
//! from the provider's answer as it streams past, and stored in batches as `RequestCompleted`
//! events without ever holding a request on the path to the database (unless strict mode asks).

mod tokens;
mod writer;

use chrono::{DateTime, Utc};
use domain::provider::Provider;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use tokens::{TokenCounts, TokenTap};
pub use writer::{AuditMode, USAGE_BATCH_TYPE, USAGE_RECORDS_DROPPED, UsageConfig, UsageWriter};

/// The event type of one usage record.
pub const REQUEST_COMPLETED: &str = "RequestCompleted";

/// One forwarded request, as the usage history keeps it. Holds no secret and no body: only who,
/// where to, how it ended and what it cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRecord {
    pub api_key_id: Uuid,
    pub device_id: Uuid,
    pub key_id: String,
    pub provider: Provider,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub method: String,
    /// The upstream path, without the query (which may carry client data).
    pub path: String,
    /// The upstream's status, or the status KeyGuard answered when the upstream failed (502/504),
    /// or 499 when the client went away before the upstream answered.
    pub status: u16,
    /// Why KeyGuard could not relay an answer (`upstream_unreachable`, `upstream_timeout`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether the whole answer reached the client (false when it disconnected or the upstream
    /// broke off mid-stream).
    pub completed: bool,
    pub streamed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_in: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_out: Option<u64>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// From receiving the request to the end of the answer's body.
    pub latency_ms: u64,
    pub at: DateTime<Utc>,
}

/// The stored form: internally tagged like domain events.
#[derive(Serialize)]
struct UsageEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    record: &'a UsageRecord,
}

impl UsageRecord {
    pub(crate) fn to_payload(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(&UsageEvent { kind: REQUEST_COMPLETED, record: self })
    }
}
