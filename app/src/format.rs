//! Numbers and dates in the reader's language: numbers grouped by ICU's rules for the locale,
//! month names and the date's word order from the locale files. Times are shown in UTC on every
//! page, so that what the server renders and what the browser hydrates agree, and auditors
//! compare like with like.

use chrono::{DateTime, Datelike as _, Timelike as _, Utc};
use leptos_i18n::td_format_string;

use crate::i18n::{Locale, td_string};

/// `n` with the locale's digits and grouping.
pub fn number(locale: Locale, n: i64) -> String {
    td_format_string!(locale, n, formatter: number)
}

/// Digits without grouping, zero-padded, for days, hours and minutes. Western digits in both
/// languages, as ICU's number formatting chooses for `ar` (CLDR's default numbering system).
fn digits(n: u32, width: usize) -> String {
    format!("{n:0width$}")
}

fn month(locale: Locale, month: u32) -> String {
    let months = td_string!(locale, format.months);
    months.split(',').nth(month.saturating_sub(1) as usize).unwrap_or_default().trim().to_owned()
}

/// Date and time to the minute, e.g. `30 Nov 2026, 08:45 UTC` / `٣٠ نوفمبر ٢٠٢٦، ٠٨:٤٥ UTC`.
pub fn datetime(locale: Locale, at: DateTime<Utc>) -> String {
    with_time(locale, at, format!("{}:{}", digits(at.hour(), 2), digits(at.minute(), 2)))
}

/// Date and time to the second, for audit entries.
pub fn precise(locale: Locale, at: DateTime<Utc>) -> String {
    let time = format!("{}:{}:{}", digits(at.hour(), 2), digits(at.minute(), 2), digits(at.second(), 2));
    with_time(locale, at, time)
}

/// The date of `at` with `time` as the locale writes them together.
fn with_time(locale: Locale, at: DateTime<Utc>, time: String) -> String {
    td_string!(
        locale,
        format.datetime,
        day = digits(at.day(), 1),
        month = month(locale, at.month()),
        year = digits(at.year().unsigned_abs(), 4),
        time = time,
    )
    .to_string()
}

/// An optional date, or the locale's dash for "never".
pub fn maybe_datetime(locale: Locale, at: Option<DateTime<Utc>>) -> String {
    at.map(|at| datetime(locale, at)).unwrap_or_else(|| td_string!(locale, format.never).to_string())
}
