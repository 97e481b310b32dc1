//! Security records that are not aggregate commands (a failed login, a rejected signature),
//! appended to the event store so that they travel like every other event: into the global log,
//! the audit-log read model and the outbox.
//!
//! Each call to [`AuditRecorder::record_all`] is one small aggregate of type `audit_record` with a
//! fresh UUID as its id and its records at sequences 1, 2, …; nothing ever appends to it again,
//! so it never conflicts with anything.

use domain::metadata::EventMetadata;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::store::{BatchEvent, Database};

/// The aggregate type under which audit records are stored.
pub const AUDIT_RECORD_TYPE: &str = "audit_record";
const EVENT_VERSION: &str = "1.0";
/// Longest event type name accepted (it becomes part of no subject, but is shown and filtered on).
const MAX_KIND_CHARS: usize = 64;

/// How the audited attempt ended. Domain events are `success` in the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    Success,
    /// The attempt was refused because it failed (wrong password, bad signature).
    Failure,
    /// The attempt was well-formed but not allowed (policy, role, lock-out).
    Denied,
}

impl AuditOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Success => "success",
            AuditOutcome::Failure => "failure",
            AuditOutcome::Denied => "denied",
        }
    }
}

/// One security record. Never put a secret (password, key, code) in `summary` or `details`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// The event type, PascalCase like domain events: `LoginFailed`, `SignatureRejected`.
    #[serde(rename = "type")]
    pub kind: String,
    pub outcome: AuditOutcome,
    /// One line for people, shown in the audit log.
    pub summary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Uuid>,
    /// Anything else worth keeping (the rejection code, the email that was tried, …).
    #[serde(default)]
    pub details: serde_json::Value,
}

impl AuditRecord {
    pub fn new(kind: impl Into<String>, outcome: AuditOutcome, summary: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            outcome,
            summary: summary.into(),
            device_id: None,
            api_key_id: None,
            user_id: None,
            details: serde_json::Value::Null,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("an audit record's type must be 1 to {MAX_KIND_CHARS} ASCII letters and digits, got {0:?}")]
    InvalidKind(String),
    #[error("cannot store an audit record: {0}")]
    Database(#[from] sqlx::Error),
    #[error("cannot serialize an audit record: {0}")]
    Serialize(#[from] serde_json::Error),
}

/// Appends audit records to the event store.
#[derive(Clone, Debug)]
pub struct AuditRecorder {
    db: Database,
}

impl AuditRecorder {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Stores one record; returns the id of the aggregate it was stored under.
    pub async fn record(&self, record: AuditRecord, metadata: &EventMetadata) -> Result<Uuid, AuditError> {
        self.record_all(vec![record], metadata).await
    }

    /// Stores several records atomically, in order, under one fresh aggregate id (e.g. a batch
    /// of proxy rejections flushed together). Storing none is a no-op.
    pub async fn record_all(
        &self,
        records: Vec<AuditRecord>,
        metadata: &EventMetadata,
    ) -> Result<Uuid, AuditError> {
        let aggregate_id = Uuid::new_v4();
        if records.is_empty() {
            return Ok(aggregate_id);
        }
        let metadata = serde_json::to_string(&metadata.to_map())?;
        let mut rows = Vec::with_capacity(records.len());
        for record in &records {
            let valid = (1..=MAX_KIND_CHARS).contains(&record.kind.len())
                && record.kind.bytes().all(|b| b.is_ascii_alphanumeric());
            if !valid {
                return Err(AuditError::InvalidKind(record.kind.clone()));
            }
            rows.push((record.kind.clone(), serde_json::to_string(record)?));
        }
        let id = aggregate_id.to_string();
        let events: Vec<BatchEvent> = rows
            .into_iter()
            .map(|(kind, payload_json)| BatchEvent {
                event_type: kind,
                event_version: EVENT_VERSION.to_owned(),
                payload_json,
            })
            .collect();
        self.db.append_batch(AUDIT_RECORD_TYPE, &id, &events, &metadata).await?;
        tracing::debug!(aggregate_id = %id, records = events.len(), "audit records stored");
        Ok(aggregate_id)
    }
}
