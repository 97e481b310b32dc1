//! The `x-keyguard-timestamp` and the freshness window it is checked against.
//!
//! The original parsed timestamps with JavaScript's `new Date(text)`, so any date-like text
//! passed, and one verifier accepted unparsable text outright (NaN comparisons are false). Here
//! exactly the `toISOString()` layout is accepted, and the window is a type that cannot exceed
//! the protocol's 15-minute ceiling.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Datelike as _, NaiveDate, NaiveTime, TimeDelta, Timelike as _, Utc};

use super::rejection::{FieldError, Rejection};
use super::strict_base64::check_visible_ascii;

/// The window when the policy says nothing.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(120);
/// No policy may allow more skew than this.
pub const MAX_WINDOW: Duration = Duration::from_secs(15 * 60);

/// A UTC instant in the exact form `YYYY-MM-DDTHH:MM:SS.sssZ`. Keeps the text as sent, since
/// the canonical string signs the text, not the instant.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Timestamp {
    text: String,
    at: DateTime<Utc>,
}

impl Timestamp {
    pub const LEN: usize = 24;

    /// Parses exactly what JavaScript's `Date.prototype.toISOString()` produces for years
    /// 0000–9999: 24 characters, milliseconds, a literal upper-case `T` and `Z`.
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        if s.len() != Self::LEN {
            return Err(FieldError::WrongLength { expected: Self::LEN, actual: s.len() });
        }
        check_visible_ascii(s)?;
        let b = s.as_bytes();
        let layout_ok = b.iter().enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 | 16 => c == b':',
            19 => c == b'.',
            23 => c == b'Z',
            _ => c.is_ascii_digit(),
        });
        if !layout_ok {
            return Err(FieldError::TimestampLayout);
        }
        // Only ASCII digits remain in these ranges, so the sums cannot overflow.
        let num =
            |from: usize, to: usize| b[from..to].iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
        let date = NaiveDate::from_ymd_opt(num(0, 4) as i32, num(5, 7), num(8, 10));
        // A seconds field of 60 is refused here: toISOString never emits a leap second.
        let time = NaiveTime::from_hms_milli_opt(num(11, 13), num(14, 16), num(17, 19), num(20, 23));
        match (date, time) {
            (Some(date), Some(time)) => Ok(Self { text: s.to_owned(), at: date.and_time(time).and_utc() }),
            _ => Err(FieldError::TimestampOutOfRange),
        }
    }

    /// For signers: formats an instant as `toISOString()` would, truncated to milliseconds.
    pub fn from_datetime(at: DateTime<Utc>) -> Result<Self, FieldError> {
        if !(0..=9999).contains(&at.year()) {
            return Err(FieldError::TimestampOutOfRange);
        }
        // chrono encodes a leap second as a nanosecond count past one second; clamp into the
        // last millisecond like JavaScript's Date (which has no leap seconds) would.
        let millis = at.timestamp_subsec_millis().min(999);
        let text = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            at.year(),
            at.month(),
            at.day(),
            at.hour(),
            at.minute(),
            at.second(),
            millis
        );
        Self::parse(&text)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn datetime(&self) -> DateTime<Utc> {
        self.at
    }

    /// Server rule 4: `|now − timestamp| ≤ window`, symmetric, bounds included.
    pub fn check_freshness(&self, now: DateTime<Utc>, window: FreshnessWindow) -> Result<(), Rejection> {
        let skew = now.signed_duration_since(self.at);
        if skew.abs() <= window.delta {
            Ok(())
        } else {
            Err(Rejection::TimestampOutsideWindow { skew_ms: skew.num_milliseconds() })
        }
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({})", self.text)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// How far a request's timestamp may be from server time, in either direction: more than zero
/// and at most [`MAX_WINDOW`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreshnessWindow {
    window: Duration,
    delta: TimeDelta,
}

/// Why a freshness window was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("the timestamp window must be longer than zero")]
    Zero,
    #[error("the timestamp window may not exceed 15 minutes (asked for {requested:?})")]
    AboveMax { requested: Duration },
}

impl FreshnessWindow {
    pub fn new(window: Duration) -> Result<Self, WindowError> {
        if window.is_zero() {
            return Err(WindowError::Zero);
        }
        if window > MAX_WINDOW {
            return Err(WindowError::AboveMax { requested: window });
        }
        let delta = TimeDelta::from_std(window).map_err(|_| WindowError::AboveMax { requested: window })?;
        Ok(Self { window, delta })
    }

    pub fn as_duration(self) -> Duration {
        self.window
    }

    /// How long a nonce must be kept after it is recorded: a request stamped `t` is fresh until
    /// `t + window` and may arrive as early as `t − window`, so twice the window covers every
    /// replay that could still pass the freshness check (the original kept it for one window,
    /// leaving future-dated requests replayable).
    pub fn nonce_retention(self) -> Duration {
        self.window * 2
    }
}

impl Default for FreshnessWindow {
    fn default() -> Self {
        Self { window: DEFAULT_WINDOW, delta: TimeDelta::seconds(DEFAULT_WINDOW.as_secs() as i64) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn parses_to_iso_string_output() {
        let ts = Timestamp::parse("2025-01-15T10:30:05.123Z").unwrap();
        assert_eq!(ts.datetime(), utc("2025-01-15T10:30:05.123Z"));
        assert_eq!(ts.as_str(), "2025-01-15T10:30:05.123Z");
        assert!(Timestamp::parse("2024-02-29T23:59:59.999Z").is_ok());
        assert!(Timestamp::parse("0000-01-01T00:00:00.000Z").is_ok());
    }

    #[test]
    fn rejects_other_layouts() {
        let wrong_len = |actual| Err(FieldError::WrongLength { expected: 24, actual });
        // no milliseconds, offset instead of Z, microseconds, date only, epoch millis
        assert_eq!(Timestamp::parse("2025-01-15T10:30:00Z"), wrong_len(20));
        assert_eq!(Timestamp::parse("2025-01-15T10:30:00.000+00:00"), wrong_len(29));
        assert_eq!(Timestamp::parse("2025-01-15T10:30:00+00:00"), wrong_len(25));
        assert_eq!(Timestamp::parse("2025-01-15T10:30:00.000000Z"), wrong_len(27));
        assert_eq!(Timestamp::parse("2025-01-15"), wrong_len(10));
        assert_eq!(Timestamp::parse("1736937000000"), wrong_len(13));
        assert_eq!(Timestamp::parse(""), wrong_len(0));
        for same_length in [
            "2025-01-15t10:30:00.000Z",
            "2025-01-15T10:30:00.000z",
            "2025-01-15 10:30:00.000Z",
            "2025/01/15T10:30:00.000Z",
            "2025-01-15T10:30:00,000Z",
            "2025-01-15T10:30:00.000+",
            "+025-01-15T10:30:00.000Z",
            "2025-1-15T10:30:00.0000Z",
            "Wed, 15 Jan 2025 10:30:0",
        ] {
            let got = Timestamp::parse(same_length);
            assert!(
                matches!(got, Err(FieldError::TimestampLayout | FieldError::ContainsWhitespaceOrControl)),
                "{same_length}: {got:?}"
            );
        }
        assert_eq!(Timestamp::parse("2025-01-15T10:30:00.000|"), Err(FieldError::ContainsSeparator));
    }

    #[test]
    fn rejects_impossible_dates_and_times() {
        for bad in [
            "2025-13-15T10:30:00.000Z",
            "2025-00-15T10:30:00.000Z",
            "2025-02-29T10:30:00.000Z",
            "2025-04-31T10:30:00.000Z",
            "2025-01-00T10:30:00.000Z",
            "2025-01-15T24:00:00.000Z",
            "2025-01-15T10:60:00.000Z",
            "2025-12-31T23:59:60.000Z",
        ] {
            assert_eq!(Timestamp::parse(bad), Err(FieldError::TimestampOutOfRange), "{bad}");
        }
    }

    #[test]
    fn from_datetime_round_trips_at_millisecond_precision() {
        let at = utc("2025-01-15T10:30:05.123456789Z");
        let ts = Timestamp::from_datetime(at).unwrap();
        assert_eq!(ts.as_str(), "2025-01-15T10:30:05.123Z");
        assert_eq!(Timestamp::parse(ts.as_str()), Ok(ts));
        assert_eq!(
            Timestamp::from_datetime(
                NaiveDate::from_ymd_opt(10_000, 1, 1).unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc()
            ),
            Err(FieldError::TimestampOutOfRange)
        );
    }

    #[test]
    fn window_is_symmetric_and_inclusive() {
        let ts = Timestamp::parse("2025-01-15T10:30:00.000Z").unwrap();
        let window = FreshnessWindow::default();
        for ok in ["2025-01-15T10:28:00.000Z", "2025-01-15T10:30:00.000Z", "2025-01-15T10:32:00.000Z"] {
            assert_eq!(ts.check_freshness(utc(ok), window), Ok(()), "{ok}");
        }
        assert_eq!(
            ts.check_freshness(utc("2025-01-15T10:32:00.001Z"), window),
            Err(Rejection::TimestampOutsideWindow { skew_ms: 120_001 })
        );
        assert_eq!(
            ts.check_freshness(utc("2025-01-15T10:27:59.999Z"), window),
            Err(Rejection::TimestampOutsideWindow { skew_ms: -120_001 })
        );
    }

    #[test]
    fn window_is_bounded() {
        assert_eq!(FreshnessWindow::default().as_duration(), DEFAULT_WINDOW);
        assert_eq!(FreshnessWindow::new(DEFAULT_WINDOW), Ok(FreshnessWindow::default()));
        assert!(FreshnessWindow::new(MAX_WINDOW).is_ok());
        assert_eq!(
            FreshnessWindow::new(MAX_WINDOW + Duration::from_millis(1)),
            Err(WindowError::AboveMax { requested: MAX_WINDOW + Duration::from_millis(1) })
        );
        assert_eq!(FreshnessWindow::new(Duration::ZERO), Err(WindowError::Zero));
        assert_eq!(FreshnessWindow::default().nonce_retention(), Duration::from_secs(240));
    }
}
