//! The traffic rollup: per UTC hour and provider, the forwarded requests, their errors and tokens,
//! and the signed requests the gate refused, so that the overview's charts read a few hundred rows
//! whatever the traffic.
//!
//! A forwarded request is a `RequestCompleted` usage event, counted in the hour the request was
//! made (its own `at`, not when its batch was stored), with the devices projection's rule for
//! what is an error.
//!
//! A rejection is a signed request the gate refused, whatever the reason: a bad or replayed
//! signature, an unknown key or device, a policy denial, a rate limit, an oversized body, a store
//! that did not answer (on the proxy and on the signature test route alike). The gate audits them
//! as `ProxyRequestRejected` records, coalescing repeats into one record with
//! `details.repeated = n` (which stands for those n), and stores what its flood control did not
//! record one by one as `ProxyRejectionsSuppressed` with `details.count`. Refused enrollments and
//! sign-ins are not proxied requests and are left out; the suppressed count cannot tell them apart
//! and includes the few refused enrollments a flood may have swept into it. Audit records do not
//! name the provider, so rejections are counted under provider `""`, in the hour they were
//! recorded.

use chrono::{DateTime, Utc};
use domain::metadata::EventMetadata;
use serde_json::Value;

use super::ProjectionError;
use crate::audit::AUDIT_RECORD_TYPE;
use crate::events::StoredEvent;
use crate::gate::{REJECTED_KIND, SUPPRESSED_KIND};
use crate::read_models::sql::{Tx, args};
use crate::read_models::traffic::hour_start;

pub(super) const TABLES: &[&str] = &["traffic_hourly"];

/// The refusals one audit record adds to the rollup (under provider `""`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Delta {
    hour: DateTime<Utc>,
    rejections: i64,
}

/// Counts the gate's refusals; forwarded requests are counted in runs by
/// `Projection::apply_all` (`UsageTotals`).
pub(super) async fn apply(tx: &mut Tx, event: &StoredEvent) -> Result<(), ProjectionError> {
    let Some(delta) = delta(event) else {
        return Ok(());
    };
    tx.execute(
        "INSERT INTO traffic_hourly (hour, provider, requests, errors, rejections, tokens_in, tokens_out) \
         VALUES ($1, '', 0, 0, $2, 0, 0) \
         ON CONFLICT (hour, provider) DO UPDATE SET rejections = traffic_hourly.rejections + excluded.rejections",
        args![delta.hour, delta.rejections],
    )
    .await?;
    Ok(())
}

fn delta(event: &StoredEvent) -> Option<Delta> {
    let rejections = rejections(event)?;
    // When the record was made, as the audit log shows it.
    let at = EventMetadata::from_map(&event.metadata).map(|m| m.at).unwrap_or(event.recorded_at);
    Some(Delta { hour: hour_start(at), rejections })
}

/// How many refused signed requests an audit record stands for (see the module's docs).
fn rejections(event: &StoredEvent) -> Option<i64> {
    if event.aggregate_type != AUDIT_RECORD_TYPE {
        return None;
    }
    let count_field = match event.event_type.as_str() {
        REJECTED_KIND => "repeated",
        SUPPRESSED_KIND => "count",
        _ => return None,
    };
    // A record without its count still stands for at least one refusal.
    let n = event.payload["details"].get(count_field).and_then(Value::as_u64).unwrap_or(1);
    Some(i64::try_from(n).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use domain::metadata::Actor;
    use serde_json::json;
    use uuid::Uuid;

    use super::*;
    use crate::gate::ENROLLMENT_REJECTED_KIND;
    use crate::projections::devices::Usage;
    use crate::projections::retained::{Counts, UsageTotals};
    use crate::usage::{REQUEST_COMPLETED, USAGE_BATCH_TYPE};

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn event(
        aggregate_type: &str,
        event_type: &str,
        payload: Value,
        recorded_at: DateTime<Utc>,
    ) -> StoredEvent {
        StoredEvent {
            position: 1,
            event_id: Uuid::new_v4(),
            aggregate_type: aggregate_type.to_owned(),
            aggregate_id: Uuid::new_v4().to_string(),
            sequence: 1,
            event_type: event_type.to_owned(),
            event_version: "1.0".to_owned(),
            payload,
            metadata: HashMap::new(),
            recorded_at,
        }
    }

    fn usage(status: u16, completed: bool, request_at: &str, stored_at: &str) -> StoredEvent {
        let payload = json!({
            "type": REQUEST_COMPLETED,
            "api_key_id": Uuid::new_v4(), "device_id": Uuid::new_v4(), "key_id": "k",
            "provider": "anthropic", "method": "POST", "path": "/v1/messages",
            "status": status, "completed": completed, "streamed": false,
            "tokens_in": 30, "tokens_out": 4, "bytes_in": 10, "bytes_out": 20, "latency_ms": 5,
            "at": request_at,
        });
        event(USAGE_BATCH_TYPE, REQUEST_COMPLETED, payload, at(stored_at))
    }

    fn audit(kind: &str, details: Value, recorded_at: &str) -> StoredEvent {
        let payload = json!({ "type": kind, "outcome": "failure", "summary": "s", "details": details });
        event(AUDIT_RECORD_TYPE, kind, payload, at(recorded_at))
    }

    /// The rollup row a single usage event adds to.
    fn counted(event: &StoredEvent) -> (String, Counts) {
        let mut totals = UsageTotals::default();
        totals.count(&Usage::of("traffic", event).unwrap());
        totals.traffic.into_iter().next().unwrap()
    }

    #[test]
    fn a_request_counts_in_the_hour_it_was_made_not_when_it_was_stored() {
        let (row, counts) =
            counted(&usage(200, true, "2024-05-06T13:59:59.900Z", "2024-05-06T14:00:00.100Z"));
        assert_eq!(row, "2024-05-06T13:00:00+00:00|anthropic");
        assert_eq!(
            counts,
            Counts {
                requests: 1,
                errors: 0,
                tokens_in: 30,
                tokens_out: 4,
                last_at: Some(at("2024-05-06T13:59:59.900Z")),
            }
        );
    }

    #[test]
    fn errors_follow_the_devices_rule() {
        let when = "2024-05-06T13:00:00Z";
        assert_eq!(counted(&usage(399, true, when, when)).1.errors, 0);
        assert_eq!(counted(&usage(400, true, when, when)).1.errors, 1);
        assert_eq!(counted(&usage(502, true, when, when)).1.errors, 1);
        assert_eq!(counted(&usage(200, false, when, when)).1.errors, 1);
    }

    #[test]
    fn usage_records_are_not_rejections() {
        let when = "2024-05-06T13:00:00Z";
        assert_eq!(delta(&usage(200, true, when, when)), None);
    }

    #[test]
    fn gate_refusals_count_as_many_rejections_as_they_stand_for() {
        let when = "2024-05-06T08:30:00Z";
        let single = delta(&audit(REJECTED_KIND, json!({ "reason": "bad_signature" }), when)).unwrap();
        assert_eq!(single.rejections, 1);
        assert_eq!(single.hour, at("2024-05-06T08:00:00Z"));
        let coalesced = audit(REJECTED_KIND, json!({ "reason": "bad_signature", "repeated": 41 }), when);
        assert_eq!(delta(&coalesced).unwrap().rejections, 41);
        let suppressed = audit(SUPPRESSED_KIND, json!({ "count": 900 }), when);
        assert_eq!(delta(&suppressed).unwrap().rejections, 900);
    }

    #[test]
    fn other_records_and_events_are_not_traffic() {
        let when = "2024-05-06T08:30:00Z";
        for kind in ["LoginFailed", ENROLLMENT_REJECTED_KIND] {
            assert_eq!(delta(&audit(kind, json!({}), when)), None, "{kind}");
        }
        let device = event("device", "DeviceApproved", json!({ "type": "DeviceApproved" }), at(when));
        assert_eq!(delta(&device), None);
    }

    #[test]
    fn a_rejection_counts_when_it_was_recorded() {
        let mut record = audit(REJECTED_KIND, json!({}), "2024-05-06T10:00:00Z");
        record.metadata = EventMetadata::new(Actor::system("proxy"), at("2024-05-06T09:59:59Z")).to_map();
        assert_eq!(delta(&record).unwrap().hour, at("2024-05-06T09:00:00Z"));
    }
}
