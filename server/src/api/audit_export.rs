//! The audit log as a download (`/api/v1/audit/export`: CSV, JSON or NDJSON, streamed) and as
//! a live feed (`/api/v1/audit/stream`: server-sent events). Both walk the log by position in
//! batches, so a million entries export in bounded memory, and both take the list's filters.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde::Deserialize;
use services::audit_query::AuditTextQuery;
use services::error::ServiceError;
use services::read_models::audit::{self, AuditEntry, AuditFilter};
use services::store::Database;

use crate::api::ApiError;
use crate::api::audit::{AuditEntryResponse, AuditQuery};
use crate::api::auth::Authorized;
use crate::api::auth::perm::ReadAudit;
use crate::startup::AppState;

/// Entries read from the store per round trip.
const BATCH: i64 = 500;
/// How long the live stream waits for news before it looks at the store anyway (entries written
/// by another node reach the shared read models without this node being told).
const POLL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv,
    Json,
    Ndjson,
}

impl Format {
    fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        match raw.map(str::trim).unwrap_or("ndjson") {
            "csv" => Ok(Self::Csv),
            "json" => Ok(Self::Json),
            "ndjson" | "" => Ok(Self::Ndjson),
            other => Err(ApiError::bad_field("format", format!("`{other}` is not one of csv, json, ndjson"))),
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Csv => "text/csv; charset=utf-8",
            Self::Json => "application/json",
            Self::Ndjson => "application/x-ndjson",
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Json => "json",
            Self::Ndjson => "ndjson",
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct ExportQuery {
    /// `csv`, `json` or `ndjson` (the default).
    pub format: Option<String>,
    #[serde(flatten)]
    pub filters: AuditQuery,
}

/// Download the audit log (oldest first), filtered like the list.
#[utoipa::path(
    get,
    path = "/api/v1/audit/export",
    tag = "audit",
    params(("format" = Option<String>, Query, description = "`csv`, `json` or `ndjson` (the default)"), AuditQuery),
    responses(
        (status = 200, description = "The entries as a CSV, JSON or NDJSON file, streamed", content_type = "application/x-ndjson"),
        (status = 400, body = crate::api::error::ErrorBody),
    )
)]
pub async fn export(
    State(state): State<AppState>,
    _user: Authorized<ReadAudit>,
    Query(query): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    let format = Format::parse(query.format.as_deref())?;
    let filter = whole_log_filter(query.filters)?;
    let name =
        format!("keyguard-audit-{}.{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ"), format.extension());
    let body = Body::from_stream(export_stream(state.db.clone(), filter, format));
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The filters of a whole-log walk: paging parameters make no sense there.
fn whole_log_filter(query: AuditQuery) -> Result<AuditFilter, ApiError> {
    if query.limit.is_some() || query.offset.is_some() {
        return Err(ApiError::bad_field("limit", "exports and streams take no limit or offset"));
    }
    Ok(AuditTextQuery::from(query).into_filter()?)
}

struct Walk {
    db: Database,
    filter: AuditFilter,
    after: i64,
    format: Format,
    /// The header (CSV) or the opening bracket (JSON) is out.
    opened: bool,
    written: u64,
    done: bool,
}

fn export_stream(
    db: Database,
    filter: AuditFilter,
    format: Format,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
    let walk = Walk { db, filter, after: 0, format, opened: false, written: 0, done: false };
    futures::stream::unfold(walk, |mut walk| async move {
        if walk.done {
            return None;
        }
        let batch = match audit::after(&walk.db, &walk.filter, walk.after, BATCH).await {
            Ok(batch) => batch,
            Err(err) => {
                // The client sees a failed download (and a broken JSON array) rather than a
                // silently short file; the cause is in the logs.
                tracing::error!(error = %err, "audit export failed mid-stream");
                walk.done = true;
                return Some((Err(std::io::Error::other("the audit export failed")), walk));
            }
        };
        let mut out = Vec::new();
        if !walk.opened {
            match walk.format {
                Format::Csv => out.extend_from_slice(csv_header().as_bytes()),
                Format::Json => out.push(b'['),
                Format::Ndjson => {}
            }
            walk.opened = true;
        }
        match batch.last().map(|e| e.position) {
            Some(position) => walk.after = position,
            None => {
                walk.done = true;
                if walk.format == Format::Json {
                    out.extend_from_slice(b"]\n");
                }
            }
        }
        for entry in batch {
            write_entry(&mut out, walk.format, walk.written > 0, entry);
            walk.written += 1;
        }
        Some((Ok(Bytes::from(out)), walk))
    })
}

const CSV_COLUMNS: [&str; 17] = [
    "position",
    "at",
    "event_type",
    "outcome",
    "summary",
    "actor_type",
    "actor_id",
    "ip",
    "user_agent",
    "request_id",
    "aggregate_type",
    "aggregate_id",
    "sequence",
    "device_id",
    "api_key_id",
    "event_id",
    "payload",
];

fn csv_header() -> String {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let _ = writer.write_record(CSV_COLUMNS);
    String::from_utf8(writer.into_inner().unwrap_or_default()).unwrap_or_default()
}

fn write_entry(out: &mut Vec<u8>, format: Format, not_first: bool, entry: AuditEntry) {
    match format {
        Format::Csv => {
            let e = entry;
            let text = |v: Option<String>| v.unwrap_or_default();
            let record = [
                e.position.to_string(),
                e.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                e.event_type,
                e.outcome,
                e.summary,
                text(e.actor_type),
                text(e.actor_id),
                text(e.ip),
                text(e.user_agent),
                text(e.request_id),
                e.aggregate_type,
                e.aggregate_id,
                e.sequence.to_string(),
                text(e.device_id),
                text(e.api_key_id),
                e.event_id.to_string(),
                e.payload.to_string(),
            ];
            let mut writer = csv::Writer::from_writer(std::mem::take(out));
            let _ = writer.write_record(&record);
            *out = writer.into_inner().unwrap_or_default();
        }
        Format::Json | Format::Ndjson => {
            if format == Format::Json && not_first {
                out.push(b',');
            }
            if serde_json::to_writer(&mut *out, &AuditEntryResponse::from(entry)).is_ok()
                && format == Format::Ndjson
            {
                out.push(b'\n');
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct StreamQuery {
    /// Start after this position (a browser reconnecting sends `Last-Event-ID` instead). Without
    /// either, the stream starts with the next new entry.
    pub after: Option<String>,
    #[serde(flatten)]
    pub filters: AuditQuery,
}

/// New audit entries as server-sent events (`event: audit`, `id:` the position, `data:` the
/// entry as JSON), filtered like the list.
#[utoipa::path(
    get,
    path = "/api/v1/audit/stream",
    tag = "audit",
    params(("after" = Option<String>, Query, description = "Start after this position; without it (or `Last-Event-ID`), at the next new entry"), AuditQuery),
    responses(
        (status = 200, description = "An endless text/event-stream of entries", content_type = "text/event-stream"),
        (status = 400, body = crate::api::error::ErrorBody),
    )
)]
pub async fn stream(
    State(state): State<AppState>,
    _user: Authorized<ReadAudit>,
    headers: HeaderMap,
    Query(query): Query<StreamQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let resume = headers.get("last-event-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let after = match query.after.or(resume).as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        Some(raw) => raw.parse::<i64>().ok().filter(|p| *p >= 0).ok_or_else(|| {
            ApiError::bad_field("after", format!("`{raw}` is not a position (a whole number from 0)"))
        })?,
        None => audit::last_position(&state.db).await.map_err(ServiceError::from)?,
    };
    let filter = whole_log_filter(query.filters)?;
    let follow = Follow {
        db: state.db.clone(),
        filter,
        after,
        reached: state.platform.projections.watch_reached(),
        closing: state.closing.clone(),
        pending: VecDeque::new(),
    };
    let events = futures::stream::unfold(follow, |mut follow| async move {
        loop {
            if let Some(entry) = follow.pending.pop_front() {
                return Some((Ok::<_, Infallible>(sse_event(entry)), follow));
            }
            match audit::after(&follow.db, &follow.filter, follow.after, BATCH).await {
                Ok(batch) if !batch.is_empty() => {
                    follow.after = batch.last().map_or(follow.after, |e| e.position);
                    follow.pending.extend(batch);
                    continue;
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "audit stream cannot read the log; retrying"),
            }
            if !follow.wait().await {
                return None;
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

struct Follow {
    db: Database,
    filter: AuditFilter,
    after: i64,
    reached: tokio::sync::watch::Receiver<i64>,
    closing: tokio::sync::watch::Receiver<bool>,
    pending: VecDeque<AuditEntry>,
}

impl Follow {
    /// Until this node's read models move on, or [`POLL`] passes; false once the server is
    /// shutting down, which ends the stream.
    async fn wait(&mut self) -> bool {
        if *self.closing.borrow() {
            return false;
        }
        tokio::select! {
            _ = self.closing.changed() => false,
            _ = tokio::time::timeout(POLL, self.reached.changed()) => true,
        }
    }
}

fn sse_event(entry: AuditEntry) -> Event {
    let id = entry.position.to_string();
    let event = Event::default().event("audit").id(id);
    match event.json_data(AuditEntryResponse::from(entry)) {
        Ok(event) => event,
        Err(err) => Event::default().event("error").data(err.to_string()),
    }
}
