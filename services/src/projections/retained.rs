//! What the usage counters keep of usage batches that the retention policy removed.
//!
//! The devices, API keys and traffic read models count every `RequestCompleted` event. When the
//! retention policy removes old usage batches, their events are gone, yet the counters must not
//! drop, and a rebuild must still give the same read models. So the retention event carries the
//! removed events' totals ([`UsageTotals`]), and:
//! - the retention run, in the transaction that removes the events, takes their totals off the
//!   counters (they were counted when the events were projected);
//! - projecting the retention event adds the totals back.
//!
//! Live, the two cancel out; a rebuild, which never sees the removed events, counts the totals
//! once. Both end with the same rows. Between the run's commit and the projection of its event
//! (the time it takes the projections to wake up), the counters read lower.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::devices::Usage;
use super::{Projection, ProjectionError};
use crate::events::StoredEvent;
use crate::integrity::retention::{USAGE_RETENTION_APPLIED, USAGE_RETENTION_TYPE};
use crate::read_models::sql::{Tx, args};
use crate::read_models::traffic::hour_start;

/// One subject's share of the removed requests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub requests: i64,
    pub errors: i64,
    pub tokens_in: i64,
    pub tokens_out: i64,
    /// The latest request among them (the counters' last seen / last used only move forward).
    pub last_at: Option<DateTime<Utc>>,
}

impl Counts {
    fn add(&mut self, usage: &Usage) {
        self.requests += 1;
        self.errors += usage.errors();
        self.tokens_in += usage.tokens_in();
        self.tokens_out += usage.tokens_out();
        self.last_at = self.last_at.max(Some(usage.at));
    }
}

/// The totals of the removed requests, per device, per API key and per hour and provider.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageTotals {
    pub devices: BTreeMap<Uuid, Counts>,
    pub api_keys: BTreeMap<Uuid, Counts>,
    /// Keyed `<hour RFC 3339>|<provider>`.
    pub traffic: BTreeMap<String, Counts>,
}

impl UsageTotals {
    /// Counts one removed event, if it is a usage record; returns whether it was.
    pub(crate) fn add(&mut self, event_type: &str, payload: &Value) -> bool {
        let Some(usage) = Usage::from_payload(event_type, payload) else {
            return false;
        };
        self.count(&usage);
        true
    }

    /// Counts one usage record.
    pub(super) fn count(&mut self, usage: &Usage) {
        self.devices.entry(usage.device_id).or_default().add(usage);
        self.api_keys.entry(usage.api_key_id).or_default().add(usage);
        let hour = hour_start(usage.at).to_rfc3339();
        self.traffic.entry(format!("{hour}|{}", usage.provider)).or_default().add(usage);
    }

    /// Adds the totals to `projection`'s counters and empties them; `false` (and nothing
    /// written) when the projection keeps no counters.
    pub(super) async fn add_to(&mut self, projection: Projection, tx: &mut Tx) -> Result<bool, sqlx::Error> {
        match projection {
            Projection::Devices => self.write_devices(tx, 1).await?,
            Projection::ApiKeys => self.write_api_keys(tx, 1).await?,
            Projection::Traffic => self.write_traffic(tx, 1).await?,
            _ => return Ok(false),
        }
        *self = Self::default();
        Ok(true)
    }

    /// Takes the totals off the counters (the removed events had been counted).
    pub(crate) async fn subtract(&self, tx: &mut Tx) -> Result<(), sqlx::Error> {
        self.write_devices(tx, -1).await?;
        self.write_api_keys(tx, -1).await?;
        self.write_traffic(tx, -1).await
    }

    async fn write_devices(&self, tx: &mut Tx, sign: i64) -> Result<(), sqlx::Error> {
        for (id, c) in &self.devices {
            tx.execute(
                "UPDATE devices SET request_count = request_count + $1, tokens_in = tokens_in + $2, \
                 tokens_out = tokens_out + $3, token_count = token_count + $2 + $3, \
                 error_count = error_count + $4, last_seen_at = CASE WHEN last_seen_at IS NULL OR \
                 last_seen_at < $5 THEN $5 ELSE last_seen_at END WHERE id = $6",
                args![
                    sign * c.requests,
                    sign * c.tokens_in,
                    sign * c.tokens_out,
                    sign * c.errors,
                    c.last_at,
                    *id
                ],
            )
            .await?;
        }
        Ok(())
    }

    async fn write_api_keys(&self, tx: &mut Tx, sign: i64) -> Result<(), sqlx::Error> {
        for (id, c) in &self.api_keys {
            tx.execute(
                "UPDATE api_keys SET request_count = request_count + $1, tokens_in = tokens_in + $2, \
                 tokens_out = tokens_out + $3, error_count = error_count + $4, \
                 last_used_at = CASE WHEN last_used_at IS NULL OR last_used_at < $5 THEN $5 \
                 ELSE last_used_at END WHERE id = $6",
                args![
                    sign * c.requests,
                    sign * c.tokens_in,
                    sign * c.tokens_out,
                    sign * c.errors,
                    c.last_at,
                    *id
                ],
            )
            .await?;
        }
        Ok(())
    }

    async fn write_traffic(&self, tx: &mut Tx, sign: i64) -> Result<(), sqlx::Error> {
        for (key, c) in &self.traffic {
            let Some((hour, provider)) = key.split_once('|') else { continue };
            let Ok(hour) = DateTime::parse_from_rfc3339(hour) else { continue };
            tx.execute(
                "INSERT INTO traffic_hourly (hour, provider, requests, errors, rejections, tokens_in, tokens_out) \
                 VALUES ($1, $2, $3, $4, 0, $5, $6) \
                 ON CONFLICT (hour, provider) DO UPDATE SET \
                 requests = traffic_hourly.requests + excluded.requests, \
                 errors = traffic_hourly.errors + excluded.errors, \
                 tokens_in = traffic_hourly.tokens_in + excluded.tokens_in, \
                 tokens_out = traffic_hourly.tokens_out + excluded.tokens_out",
                args![
                    hour.with_timezone(&Utc),
                    provider,
                    sign * c.requests,
                    sign * c.errors,
                    sign * c.tokens_in,
                    sign * c.tokens_out,
                ],
            )
            .await?;
        }
        Ok(())
    }
}

/// Projects a retention event for the counters: adds the totals it carries back. `false` when
/// the event is not one (or the projection keeps no counters), so it goes to the projection.
pub(super) async fn apply(
    projection: Projection,
    tx: &mut Tx,
    event: &StoredEvent,
) -> Result<bool, ProjectionError> {
    if !projection.counts_usage() {
        return Ok(false);
    }
    let Some(mut totals) = totals(event)? else {
        return Ok(false);
    };
    Ok(totals.add_to(projection, tx).await?)
}

/// The totals a retention event carries, if this is one.
fn totals(event: &StoredEvent) -> Result<Option<UsageTotals>, ProjectionError> {
    if event.aggregate_type != USAGE_RETENTION_TYPE || event.event_type != USAGE_RETENTION_APPLIED {
        return Ok(None);
    }
    let totals = event.payload.get("totals").cloned().unwrap_or(Value::Null);
    serde_json::from_value(totals).map(Some).map_err(|e| ProjectionError::Apply {
        projection: "usage totals",
        position: event.position,
        reason: format!("{USAGE_RETENTION_APPLIED} totals: {e}"),
    })
}
