//! The dashboard's overview: requests, errors and rejections over the last day (by hour) or week
//! (by UTC day), tokens by provider over the same span, the busiest devices, the latest security
//! events and the devices by status. Every figure comes from a read model that stays small as
//! traffic grows: the hourly traffic rollup, the devices' counters, the audit log's newest rows.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{DateTime, NaiveTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ServiceError;
use crate::platform::Platform;
use crate::read_models::traffic::{self, TrafficHour, hour_start};
use crate::read_models::{audit, devices};

pub use crate::read_models::audit::AuditEntry;
pub use crate::read_models::devices::{StatusCounts, TopDevice};

/// How many of the busiest devices the overview lists.
pub const TOP_DEVICES: i64 = 5;
/// How many security events the overview lists.
pub const RECENT_SECURITY: i64 = 8;

/// The span the overview's charts cover, ending now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OverviewRange {
    /// 24 hourly buckets, the last one the current hour.
    #[default]
    Day,
    /// 7 daily buckets (UTC days), the last one today.
    Week,
}

impl OverviewRange {
    pub fn as_str(self) -> &'static str {
        match self {
            OverviewRange::Day => "day",
            OverviewRange::Week => "week",
        }
    }

    /// How many buckets the charts have.
    pub fn buckets(self) -> usize {
        match self {
            OverviewRange::Day => 24,
            OverviewRange::Week => 7,
        }
    }

    /// How long one bucket is.
    pub fn bucket_width(self) -> TimeDelta {
        match self {
            OverviewRange::Day => TimeDelta::hours(1),
            OverviewRange::Week => TimeDelta::days(1),
        }
    }

    /// The start of the bucket `at` falls in: its hour, or its UTC day.
    pub fn bucket_start(self, at: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            OverviewRange::Day => hour_start(at),
            OverviewRange::Week => at.date_naive().and_time(NaiveTime::MIN).and_utc(),
        }
    }

    /// The start of the oldest bucket and the end (exclusive) of the newest, which holds `now`.
    pub fn span(self, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        let last = self.bucket_start(now);
        let count = i32::try_from(self.buckets()).unwrap_or(i32::MAX);
        (last - self.bucket_width() * (count - 1), last + self.bucket_width())
    }
}

/// `day` or `week`, as the query string spells them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown overview range {0:?}; expected day or week")]
pub struct UnknownRange(String);

impl FromStr for OverviewRange {
    type Err = UnknownRange;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "day" => Ok(OverviewRange::Day),
            "week" => Ok(OverviewRange::Week),
            other => Err(UnknownRange(other.chars().take(32).collect())),
        }
    }
}

/// One bar of the traffic chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficBucket {
    /// The start of the hour or UTC day.
    pub start: DateTime<Utc>,
    /// Forwarded requests, whatever their outcome.
    pub requests: i64,
    /// Forwarded requests answered with status 400 or above, or not delivered in full.
    pub errors: i64,
    /// Signed requests the gate refused (bad signature, policy, rate limit, …).
    pub rejections: i64,
}

/// One provider's share of the span's traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderTokens {
    /// `openai`, `anthropic`, `google` or `azure`.
    pub provider: String,
    pub requests: i64,
    pub tokens_in: i64,
    pub tokens_out: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Overview {
    pub range: OverviewRange,
    /// Exactly `range.buckets()` buckets, oldest first, the last one holding `now`; a bucket
    /// without traffic is there with zeros.
    pub buckets: Vec<TrafficBucket>,
    /// Providers with forwarded requests in the span, most tokens first.
    pub providers: Vec<ProviderTokens>,
    /// The busiest devices since they enrolled (at most [`TOP_DEVICES`]), most requests first.
    pub top_devices: Vec<TopDevice>,
    /// The newest audit entries that are not a success (at most [`RECENT_SECURITY`]).
    pub recent_security: Vec<AuditEntry>,
    pub devices: StatusCounts,
}

/// The overview for the `range` ending at `now`.
pub async fn overview(
    platform: &Platform,
    range: OverviewRange,
    now: DateTime<Utc>,
) -> Result<Overview, ServiceError> {
    let db = &platform.db;
    let (from, to) = range.span(now);
    let hours = traffic::between(db, from, to).await?;
    let (buckets, providers) = summarize(range, now, &hours);
    Ok(Overview {
        range,
        buckets,
        providers,
        top_devices: devices::most_active(db, TOP_DEVICES).await?,
        recent_security: audit::recent_security(db, RECENT_SECURITY).await?,
        devices: devices::counts_by_status(db).await?,
    })
}

/// Folds the rollup's rows into the range's buckets and the per-provider totals. Rows outside the
/// span are ignored.
fn summarize(
    range: OverviewRange,
    now: DateTime<Utc>,
    hours: &[TrafficHour],
) -> (Vec<TrafficBucket>, Vec<ProviderTokens>) {
    let (from, _) = range.span(now);
    let mut buckets: Vec<TrafficBucket> = (0..range.buckets())
        .map(|i| TrafficBucket {
            start: from + range.bucket_width() * i32::try_from(i).unwrap_or(i32::MAX),
            requests: 0,
            errors: 0,
            rejections: 0,
        })
        .collect();
    let mut providers: BTreeMap<&str, ProviderTokens> = BTreeMap::new();
    for row in hours {
        let start = range.bucket_start(row.hour);
        let Some(bucket) = buckets.iter_mut().find(|b| b.start == start) else {
            continue;
        };
        bucket.requests += row.requests;
        bucket.errors += row.errors;
        bucket.rejections += row.rejections;
        if row.provider.is_empty() {
            continue;
        }
        let totals = providers.entry(row.provider.as_str()).or_insert_with(|| ProviderTokens {
            provider: row.provider.clone(),
            requests: 0,
            tokens_in: 0,
            tokens_out: 0,
        });
        totals.requests += row.requests;
        totals.tokens_in += row.tokens_in;
        totals.tokens_out += row.tokens_out;
    }
    let mut providers: Vec<ProviderTokens> = providers.into_values().filter(|p| p.requests > 0).collect();
    // Stable for equal totals: the map already sorted them by name.
    providers.sort_by_key(|p| std::cmp::Reverse(p.tokens_in.saturating_add(p.tokens_out)));
    (buckets, providers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn row(hour: &str, provider: &str, counts: [i64; 5]) -> TrafficHour {
        let [requests, errors, rejections, tokens_in, tokens_out] = counts;
        TrafficHour {
            hour: at(hour),
            provider: provider.to_owned(),
            requests,
            errors,
            rejections,
            tokens_in,
            tokens_out,
        }
    }

    #[test]
    fn a_day_is_24_hours_ending_with_the_current_one() {
        let now = at("2024-05-06T13:25:00Z");
        assert_eq!(OverviewRange::Day.span(now), (at("2024-05-05T14:00:00Z"), at("2024-05-06T14:00:00Z")));
        let (buckets, providers) = summarize(OverviewRange::Day, now, &[]);
        assert_eq!(buckets.len(), 24);
        assert!(providers.is_empty());
        assert_eq!(buckets[0].start, at("2024-05-05T14:00:00Z"));
        assert_eq!(buckets[23].start, at("2024-05-06T13:00:00Z"));
        assert!(buckets.windows(2).all(|w| w[1].start - w[0].start == TimeDelta::hours(1)));
        assert!(buckets.iter().all(|b| (b.requests, b.errors, b.rejections) == (0, 0, 0)));
    }

    #[test]
    fn a_week_is_7_utc_days_ending_with_today() {
        let now = at("2024-05-06T00:00:00Z");
        assert_eq!(OverviewRange::Week.span(now), (at("2024-04-30T00:00:00Z"), at("2024-05-07T00:00:00Z")));
        let (buckets, _) = summarize(OverviewRange::Week, now, &[]);
        let starts: Vec<DateTime<Utc>> = buckets.iter().map(|b| b.start).collect();
        let expected: Vec<DateTime<Utc>> =
            (0..7).map(|d| at("2024-04-30T00:00:00Z") + TimeDelta::days(d)).collect();
        assert_eq!(starts, expected);
    }

    #[test]
    fn rows_land_in_their_bucket_and_providers_add_up() {
        let now = at("2024-05-06T13:25:00Z");
        let hours = [
            row("2024-05-05T13:00:00Z", "openai", [100, 0, 0, 1, 1]), // before the day's span
            row("2024-05-06T10:00:00Z", "", [0, 0, 3, 0, 0]),
            row("2024-05-06T10:00:00Z", "openai", [4, 1, 0, 40, 10]),
            row("2024-05-06T13:00:00Z", "anthropic", [2, 0, 0, 500, 70]),
            row("2024-05-06T13:00:00Z", "openai", [1, 1, 0, 5, 0]),
        ];
        let (buckets, providers) = summarize(OverviewRange::Day, now, &hours);
        assert_eq!(buckets.len(), 24);
        let three_hours_ago = &buckets[20];
        assert_eq!(three_hours_ago.start, at("2024-05-06T10:00:00Z"));
        assert_eq!((three_hours_ago.requests, three_hours_ago.errors, three_hours_ago.rejections), (4, 1, 3));
        assert_eq!((buckets[23].requests, buckets[23].errors, buckets[23].rejections), (3, 1, 0));
        assert_eq!(buckets.iter().map(|b| b.requests).sum::<i64>(), 7);
        assert_eq!(
            providers,
            [
                ProviderTokens { provider: "anthropic".into(), requests: 2, tokens_in: 500, tokens_out: 70 },
                ProviderTokens { provider: "openai".into(), requests: 5, tokens_in: 45, tokens_out: 10 },
            ]
        );

        // The same rows by day: the whole of yesterday and today.
        let (days, providers) = summarize(OverviewRange::Week, now, &hours);
        assert_eq!((days[5].start, days[5].requests), (at("2024-05-05T00:00:00Z"), 100));
        assert_eq!((days[6].requests, days[6].rejections), (7, 3));
        assert_eq!(providers.iter().map(|p| p.requests).sum::<i64>(), 107);
    }

    #[test]
    fn ranges_read_as_the_query_string_spells_them() {
        for range in [OverviewRange::Day, OverviewRange::Week] {
            assert_eq!(range.as_str().parse::<OverviewRange>(), Ok(range));
        }
        assert!("month".parse::<OverviewRange>().is_err());
    }
}
