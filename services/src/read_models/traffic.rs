//! The hourly traffic rollup: its rows over a span of time, and the hour a moment belongs to.

use chrono::{DateTime, DurationRound as _, TimeDelta, Utc};

use super::ReadModelError;
use super::sql::{self, args};
use crate::store::Database;

/// One UTC hour of proxy traffic for one provider. Gate refusals, whose provider is unknown, are
/// on the row with `provider` `""`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TrafficHour {
    /// The start of the hour.
    pub hour: DateTime<Utc>,
    pub provider: String,
    /// Forwarded requests, whatever their outcome.
    pub requests: i64,
    /// Forwarded requests answered with status 400 or above, or not delivered in full.
    pub errors: i64,
    /// Signed requests the gate refused.
    pub rejections: i64,
    pub tokens_in: i64,
    pub tokens_out: i64,
}

/// The start of the UTC hour `at` falls in.
pub fn hour_start(at: DateTime<Utc>) -> DateTime<Utc> {
    // Only fails for widths beyond the timestamp's range; an hour never is.
    at.duration_trunc(TimeDelta::hours(1)).unwrap_or(at)
}

/// The rows of the hours that start in `[from, to)`, oldest first, then by provider.
pub async fn between(
    db: &Database,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<TrafficHour>, ReadModelError> {
    Ok(sql::fetch_all(
        db,
        "SELECT hour, provider, requests, errors, rejections, tokens_in, tokens_out FROM traffic_hourly \
         WHERE hour >= $1 AND hour < $2 ORDER BY hour, provider",
        args![from, to],
    )
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_hour_starts_on_the_hour() {
        let at: DateTime<Utc> = "2024-05-06T13:59:59.999999Z".parse().unwrap();
        assert_eq!(hour_start(at), "2024-05-06T13:00:00Z".parse::<DateTime<Utc>>().unwrap());
        let exact: DateTime<Utc> = "2024-05-06T13:00:00Z".parse().unwrap();
        assert_eq!(hour_start(exact), exact);
    }
}
