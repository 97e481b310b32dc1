//! The audit log: every event and security record, filtered and paged. The live tail and the
//! exports are plain HTTP (`/api/v1/audit/stream`, `/api/v1/audit/export`), which browsers
//! consume natively (`EventSource`, downloads).

use chrono::{DateTime, Utc};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use leptos::server_fn::codec::Json;

use crate::error::AppError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRow {
    pub position: i64,
    pub event_id: String,
    pub event_type: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// The event's number within its aggregate.
    pub sequence: i64,
    pub actor: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub outcome: String,
    pub summary: String,
    pub device_id: Option<String>,
    pub api_key_id: Option<String>,
    pub payload: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditPage {
    pub items: Vec<AuditRow>,
    pub total: i64,
}

/// The audit page's filters; every field may be empty. The same names are the query of the
/// export and the live tail.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditQuery {
    pub event_type: String,
    pub outcome: String,
    pub device_id: String,
    pub api_key_id: String,
    pub q: String,
}

impl AuditQuery {
    /// As a URL query string for `/api/v1/audit/export` and `/api/v1/audit/stream`.
    pub fn to_query_string(&self) -> String {
        let pairs = [
            ("eventType", &self.event_type),
            ("outcome", &self.outcome),
            ("deviceId", &self.device_id),
            ("apiKeyId", &self.api_key_id),
            ("q", &self.q),
        ];
        pairs
            .iter()
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(k, v)| format!("{k}={}", percent_encode(v.trim())))
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters (the same on the server,
/// where the page first renders, and in the browser).
fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

pub const AUDIT_PAGE: i64 = 25;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_string_names_only_set_filters_and_escapes_them() {
        let query = AuditQuery { outcome: "denied".into(), q: "a b&c=ü".into(), ..AuditQuery::default() };
        assert_eq!(query.to_query_string(), "outcome=denied&q=a%20b%26c%3D%C3%BC");
        assert_eq!(AuditQuery::default().to_query_string(), "");
    }
}

#[cfg(feature = "ssr")]
impl AuditQuery {
    fn to_text_query(&self) -> services::audit_query::AuditTextQuery {
        let text = |v: &String| Some(v.trim().to_owned()).filter(|v| !v.is_empty());
        services::audit_query::AuditTextQuery {
            event_type: text(&self.event_type),
            outcome: text(&self.outcome),
            device_id: text(&self.device_id),
            api_key_id: text(&self.api_key_id),
            q: text(&self.q),
            ..Default::default()
        }
    }
}

#[cfg(feature = "ssr")]
impl From<services::read_models::audit::AuditEntry> for AuditRow {
    fn from(e: services::read_models::audit::AuditEntry) -> Self {
        let actor = match (&e.actor_type, &e.actor_id) {
            (Some(t), Some(id)) => format!("{t}:{id}"),
            (Some(t), None) => t.clone(),
            _ => String::new(),
        };
        Self {
            position: e.position,
            event_id: e.event_id.to_string(),
            event_type: e.event_type,
            aggregate_type: e.aggregate_type,
            aggregate_id: e.aggregate_id,
            sequence: e.sequence,
            actor,
            ip: e.ip,
            user_agent: e.user_agent,
            request_id: e.request_id,
            outcome: e.outcome,
            summary: e.summary,
            device_id: e.device_id,
            api_key_id: e.api_key_id,
            payload: serde_json::to_string_pretty(&e.payload).unwrap_or_default(),
            at: e.at,
        }
    }
}

#[server(endpoint = "audit/list", input = Json)]
pub async fn list_audit(query: AuditQuery, offset: i64) -> Result<AuditPage, AppError> {
    use domain::user::Permission;
    use services::read_models::PageRequest;

    let allowed = crate::backend::authorize(Permission::ReadAudit)?;
    let mut filter = query.to_text_query().into_filter()?;
    filter.page = PageRequest::new(AUDIT_PAGE, offset.max(0));
    let page = services::read_models::audit::list(&allowed.platform.db, &filter)
        .await
        .map_err(services::error::ServiceError::from)?;
    Ok(AuditPage { total: page.total, items: page.items.into_iter().map(AuditRow::from).collect() })
}

/// One step of an aggregate's history: the event and the state it left.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryStep {
    pub sequence: i64,
    pub event_type: String,
    pub at: DateTime<Utc>,
    pub actor: String,
    /// The aggregate's state after this event, as pretty JSON (secrets redacted).
    pub state: String,
}

/// Every event of one device, key, policy or user with the state after it, oldest first.
#[server(endpoint = "audit/history")]
pub async fn aggregate_history(kind: String, id: String) -> Result<Vec<HistoryStep>, AppError> {
    use domain::user::Permission;
    use services::history::{self, AggregateKind};

    let allowed = crate::backend::authorize(Permission::ReadAudit)?;
    let kind = AggregateKind::parse(&kind)?;
    let found = history::history(&allowed.platform, kind, &id, None).await?;
    Ok(found
        .entries
        .into_iter()
        .map(|entry| {
            let e = entry.event;
            let actor = match (e.actor_type, e.actor_id) {
                (Some(t), Some(id)) => format!("{t}:{id}"),
                (Some(t), None) => t,
                _ => String::new(),
            };
            HistoryStep {
                sequence: e.sequence,
                event_type: e.event_type,
                at: e.at,
                actor,
                state: serde_json::to_string_pretty(&entry.state).unwrap_or_default(),
            }
        })
        .collect())
}
