//! The audit log's filters as people and URLs write them (text), checked into an
//! [`AuditFilter`]: shared by the REST API, the exports, the live stream and the dashboard, so a
//! filter means the same everywhere and a bad one names its parameter the same way.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::audit::AuditOutcome;
use crate::error::ServiceError;
use crate::read_models::PageRequest;
use crate::read_models::audit::AuditFilter;

/// Most event types one query may name.
const MAX_EVENT_TYPES: usize = 50;

/// Every field optional text; names are the REST query's (camelCase in URLs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditTextQuery {
    /// Entries at or after this instant (RFC 3339).
    pub from: Option<String>,
    /// Entries before this instant (RFC 3339).
    pub to: Option<String>,
    /// `user:<id>`, `device:<id>`, `system:<component>`, a bare type (`user`) or a bare id.
    pub actor: Option<String>,
    pub device_id: Option<String>,
    pub api_key_id: Option<String>,
    /// One event type, or several separated by commas (`LoginFailed,LoginThrottled`).
    pub event_type: Option<String>,
    /// `success`, `failure` or `denied`.
    pub outcome: Option<String>,
    /// Case-insensitive text in the summary, event type, actor, IP, user agent, request id or
    /// aggregate id.
    pub q: Option<String>,
    /// 1 to 500 (default 50).
    pub limit: Option<String>,
    pub offset: Option<String>,
}

impl AuditTextQuery {
    /// The filter, or the first parameter that is wrong (named as in the REST query).
    pub fn into_filter(self) -> Result<AuditFilter, ServiceError> {
        let from = time("from", self.from.as_deref())?;
        let to = time("to", self.to.as_deref())?;
        if let (Some(from), Some(to)) = (from, to)
            && from >= to
        {
            return Err(bad("to", "must be later than `from`".to_owned()));
        }
        let (actor_type, actor_id) = actor(self.actor.as_deref())?;
        let limit = integer("limit", self.limit.as_deref(), 1..=PageRequest::MAX_LIMIT)?;
        let offset = integer("offset", self.offset.as_deref(), 0..=i64::MAX)?;
        Ok(AuditFilter {
            from,
            to,
            actor_type,
            actor_id,
            device_id: uuid("deviceId", self.device_id.as_deref())?,
            api_key_id: uuid("apiKeyId", self.api_key_id.as_deref())?,
            event_types: event_types(self.event_type.as_deref())?,
            outcome: outcome(self.outcome.as_deref())?,
            search: non_empty(self.q.as_deref()).map(str::to_owned),
            page: PageRequest::new(limit.unwrap_or(PageRequest::DEFAULT_LIMIT), offset.unwrap_or(0)),
        })
    }
}

fn bad(field: &'static str, message: String) -> ServiceError {
    ServiceError::Invalid { field, code: "invalid_input", message }
}

fn non_empty(raw: Option<&str>) -> Option<&str> {
    raw.map(str::trim).filter(|v| !v.is_empty())
}

fn time(field: &'static str, raw: Option<&str>) -> Result<Option<DateTime<Utc>>, ServiceError> {
    non_empty(raw)
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| bad(field, format!("`{v}` is not an RFC 3339 time (e.g. 2025-01-31T12:00:00Z)")))
        })
        .transpose()
}

fn uuid(field: &'static str, raw: Option<&str>) -> Result<Option<Uuid>, ServiceError> {
    non_empty(raw)
        .map(|v| Uuid::parse_str(v).map_err(|_| bad(field, format!("`{v}` is not a UUID"))))
        .transpose()
}

fn integer(
    field: &'static str,
    raw: Option<&str>,
    range: std::ops::RangeInclusive<i64>,
) -> Result<Option<i64>, ServiceError> {
    let (low, high) = (*range.start(), *range.end());
    non_empty(raw)
        .map(|v| match v.parse::<i64>() {
            Ok(n) if range.contains(&n) => Ok(n),
            Ok(_) if high == i64::MAX => Err(bad(field, format!("must be at least {low}"))),
            Ok(_) => Err(bad(field, format!("must be from {low} to {high}"))),
            Err(_) => Err(bad(field, format!("`{v}` is not a whole number"))),
        })
        .transpose()
}

/// `type:id`, a bare type, or a bare id (of a user, a device or a system component).
fn actor(raw: Option<&str>) -> Result<(Option<String>, Option<String>), ServiceError> {
    const TYPES: [&str; 3] = ["user", "device", "system"];
    let Some(raw) = non_empty(raw) else { return Ok((None, None)) };
    let wrong = || {
        bad(
            "actor",
            format!("`{raw}` is not `user:<id>`, `device:<id>`, `system:<component>`, a type or an id"),
        )
    };
    match raw.split_once(':') {
        Some((kind, id)) => {
            let kind = kind.trim().to_ascii_lowercase();
            let id = id.trim();
            if !TYPES.contains(&kind.as_str()) || id.is_empty() {
                return Err(wrong());
            }
            if kind != "system" && Uuid::parse_str(id).is_err() {
                return Err(bad("actor", format!("`{id}` is not a {kind} id (a UUID)")));
            }
            // Ids are stored in their hyphenated lowercase form.
            let id = Uuid::parse_str(id).map(|u| u.to_string()).unwrap_or_else(|_| id.to_owned());
            Ok((Some(kind), Some(id)))
        }
        None if TYPES.contains(&raw.to_ascii_lowercase().as_str()) => {
            Ok((Some(raw.to_ascii_lowercase()), None))
        }
        None if raw.len() <= 64 && raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') => {
            Ok((None, Some(Uuid::parse_str(raw).map(|u| u.to_string()).unwrap_or_else(|_| raw.to_owned()))))
        }
        None => Err(wrong()),
    }
}

fn event_types(raw: Option<&str>) -> Result<Vec<String>, ServiceError> {
    let Some(raw) = non_empty(raw) else { return Ok(Vec::new()) };
    let types: Vec<String> =
        raw.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect();
    if types.len() > MAX_EVENT_TYPES {
        return Err(bad("eventType", format!("names more than {MAX_EVENT_TYPES} event types")));
    }
    match types.iter().find(|t| t.len() > 64 || !t.bytes().all(|b| b.is_ascii_alphanumeric())) {
        Some(wrong) => Err(bad("eventType", format!("`{wrong}` is not an event type (e.g. ApiKeyCreated)"))),
        None => Ok(types),
    }
}

fn outcome(raw: Option<&str>) -> Result<Option<AuditOutcome>, ServiceError> {
    match non_empty(raw) {
        None => Ok(None),
        Some("success") => Ok(Some(AuditOutcome::Success)),
        Some("failure") => Ok(Some(AuditOutcome::Failure)),
        Some("denied") => Ok(Some(AuditOutcome::Denied)),
        Some(other) => Err(bad("outcome", format!("`{other}` is not one of success, failure, denied"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(err: ServiceError) -> String {
        match err {
            ServiceError::Invalid { field, .. } => field.to_owned(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn actor_takes_a_pair_a_type_or_an_id() {
        let id = Uuid::new_v4();
        assert_eq!(actor(Some(&format!("user:{id}"))).unwrap(), (Some("user".into()), Some(id.to_string())));
        assert_eq!(actor(Some("system:cli")).unwrap(), (Some("system".into()), Some("cli".into())));
        assert_eq!(actor(Some("device")).unwrap(), (Some("device".into()), None));
        assert_eq!(
            actor(Some(&id.simple().to_string())).unwrap(),
            (None, Some(id.to_string())),
            "a UUID in any spelling matches the stored form"
        );
        assert_eq!(actor(Some(" ")).unwrap(), (None, None));
        for bad in ["robot:1", "user:not-a-uuid", "user:", "a b", "'; drop"] {
            assert_eq!(field_of(actor(Some(bad)).unwrap_err()), "actor", "{bad}");
        }
    }

    #[test]
    fn each_bad_filter_names_its_parameter() {
        let cases: Vec<(&str, AuditTextQuery)> = vec![
            ("from", AuditTextQuery { from: Some("yesterday".into()), ..Default::default() }),
            ("to", AuditTextQuery { to: Some("2025-13-01T00:00:00Z".into()), ..Default::default() }),
            (
                "to",
                AuditTextQuery {
                    from: Some("2025-02-01T00:00:00Z".into()),
                    to: Some("2025-01-01T00:00:00Z".into()),
                    ..Default::default()
                },
            ),
            ("deviceId", AuditTextQuery { device_id: Some("d1".into()), ..Default::default() }),
            ("apiKeyId", AuditTextQuery { api_key_id: Some("k1".into()), ..Default::default() }),
            ("eventType", AuditTextQuery { event_type: Some("Login Failed".into()), ..Default::default() }),
            ("outcome", AuditTextQuery { outcome: Some("ok".into()), ..Default::default() }),
            ("limit", AuditTextQuery { limit: Some("0".into()), ..Default::default() }),
            ("limit", AuditTextQuery { limit: Some("many".into()), ..Default::default() }),
            ("offset", AuditTextQuery { offset: Some("-1".into()), ..Default::default() }),
        ];
        for (field, query) in cases {
            let debug = format!("{query:?}");
            assert_eq!(field_of(query.into_filter().unwrap_err()), field, "{debug}");
        }
    }

    #[test]
    fn good_filters_parse() {
        let filter = AuditTextQuery {
            from: Some("2025-01-01T00:00:00+01:00".into()),
            event_type: Some("LoginFailed, ApiKeyCreated".into()),
            outcome: Some("failure".into()),
            q: Some("  ".into()),
            limit: Some("10".into()),
            ..Default::default()
        }
        .into_filter()
        .unwrap();
        assert_eq!(filter.from.unwrap().to_rfc3339(), "2024-12-31T23:00:00+00:00");
        assert_eq!(filter.event_types, ["LoginFailed", "ApiKeyCreated"]);
        assert_eq!(filter.outcome, Some(AuditOutcome::Failure));
        assert_eq!(filter.search, None);
        assert_eq!(filter.page, PageRequest::new(10, 0));
    }
}
