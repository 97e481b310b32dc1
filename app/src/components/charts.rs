//! Charts drawn as SVG by the dashboard itself (no script from elsewhere): a grouped bar chart
//! over time, a ring of parts of a whole, and ranked horizontal bars. Each has a text
//! alternative for screen readers.

use leptos::prelude::*;

use crate::format::number;
use crate::i18n::use_i18n;

/// One bucket of a time series: its label and two values drawn side by side.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    pub label: String,
    pub first: i64,
    pub second: i64,
}

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 220.0;
const PLOT_TOP: f64 = 10.0;
const PLOT_BOTTOM: f64 = 190.0;
const PLOT_START: f64 = 40.0;

/// Two series per bucket (e.g. requests and rejections), oldest bucket first. Time runs left to
/// right in both languages, as on a clock's axis.
#[component]
pub fn BarChart(
    buckets: Vec<Bucket>,
    #[prop(into)] label: String,
    #[prop(into)] first_name: String,
    #[prop(into)] second_name: String,
    /// Show every n-th bucket label, so they do not overlap.
    #[prop(default = 1)]
    label_every: usize,
) -> impl IntoView {
    let locale = use_i18n().get_locale_untracked();
    let max = buckets.iter().map(|b| b.first.max(b.second)).max().unwrap_or(0).max(1);
    let slot = (WIDTH - PLOT_START) / buckets.len().max(1) as f64;
    let bar = (slot * 0.38).max(1.0);
    let scale = |v: i64| (v as f64 / max as f64) * (PLOT_BOTTOM - PLOT_TOP);
    let bars = buckets
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let x = PLOT_START + i as f64 * slot + slot * 0.1;
            let (h1, h2) = (scale(b.first), scale(b.second));
            let text = (i % label_every.max(1) == 0).then(|| {
                view! {
                    <text x=format!("{:.1}", x + bar) y="208" class="chart-axis" text-anchor="middle">
                        {b.label.clone()}
                    </text>
                }
            });
            view! {
                <g>
                    <rect class="chart-first" x=format!("{x:.1}") y=format!("{:.1}", PLOT_BOTTOM - h1)
                        width=format!("{bar:.1}") height=format!("{h1:.1}")>
                        <title>{format!("{}: {} {}", b.label, first_name, number(locale, b.first))}</title>
                    </rect>
                    <rect class="chart-second" x=format!("{:.1}", x + bar) y=format!("{:.1}", PLOT_BOTTOM - h2)
                        width=format!("{bar:.1}") height=format!("{h2:.1}")>
                        <title>{format!("{}: {} {}", b.label, second_name, number(locale, b.second))}</title>
                    </rect>
                    {text}
                </g>
            }
        })
        .collect_view();
    let total_first: i64 = buckets.iter().map(|b| b.first).sum();
    let total_second: i64 = buckets.iter().map(|b| b.second).sum();
    let summary = format!(
        "{label}: {first_name} {}, {second_name} {}",
        number(locale, total_first),
        number(locale, total_second)
    );
    view! {
        <figure class="chart">
            <svg viewBox=format!("0 0 {WIDTH} {HEIGHT}") role="img" aria-label=summary dir="ltr">
                <line class="chart-grid" x1=PLOT_START y1=PLOT_BOTTOM x2=WIDTH y2=PLOT_BOTTOM />
                <line class="chart-grid" x1=PLOT_START y1=PLOT_TOP x2=WIDTH y2=PLOT_TOP />
                <text x="34" y="16" class="chart-axis" text-anchor="end">{number(locale, max)}</text>
                <text x="34" y=PLOT_BOTTOM class="chart-axis" text-anchor="end">{number(locale, 0)}</text>
                {bars}
            </svg>
            <figcaption class="legend">
                <span class="swatch chart-first"></span>{first_name.clone()}
                <span class="swatch chart-second"></span>{second_name.clone()}
            </figcaption>
        </figure>
    }
}

/// One part of a whole, for [`Ring`] and [`RankedBars`].
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub key: String,
    pub label: String,
    pub value: i64,
}

/// Parts of a whole as a ring, with the total in the middle.
#[component]
pub fn Ring(
    parts: Vec<Part>,
    #[prop(into)] label: String,
    #[prop(into)] total_text: String,
) -> impl IntoView {
    let locale = use_i18n().get_locale_untracked();
    let total: i64 = parts.iter().map(|p| p.value).sum();
    let circumference = 2.0 * std::f64::consts::PI * 40.0;
    let mut offset = 0.0;
    // One arc per part, empty ones included: the list is never empty, and its shape never depends
    // on the figures (an empty list inside SVG hydrates differently from how it renders).
    let arcs = parts
        .iter()
        .map(|p| {
            let length = p.value.max(0) as f64 / total.max(1) as f64 * circumference;
            let arc = view! {
                <circle class=format!("ring-part ring-{}", p.key) cx="50" cy="50" r="40"
                    stroke-dasharray=format!("{length:.2} {:.2}", circumference - length)
                    stroke-dashoffset=format!("{:.2}", -offset)>
                    <title>{format!("{}: {}", p.label, number(locale, p.value))}</title>
                </circle>
            };
            offset += length;
            arc
        })
        .collect_view();
    let summary = std::iter::once(label.clone())
        .chain(parts.iter().map(|p| format!("{} {}", p.label, number(locale, p.value))))
        .collect::<Vec<_>>()
        .join(", ");
    let legend = parts
        .into_iter()
        .map(|p| {
            view! {
                <li>
                    <span class=format!("swatch ring-{}", p.key)></span>
                    {p.label}
                    " "
                    <strong>{number(locale, p.value)}</strong>
                </li>
            }
        })
        .collect_view();
    view! {
        <figure class="chart ring">
            <svg viewBox="0 0 100 100" role="img" aria-label=summary>
                <circle class="ring-track" cx="50" cy="50" r="40" />
                <g transform="rotate(-90 50 50)">{arcs}</g>
                <text x="50" y="54" text-anchor="middle" class="ring-total">{total_text}</text>
            </svg>
            <ul class="legend-list">{legend}</ul>
        </figure>
    }
}

/// Ranked values as horizontal bars (longest first); they grow from the start edge, so they
/// mirror in Arabic.
#[component]
pub fn RankedBars(
    parts: Vec<Part>,
    #[prop(into)] label: String,
    #[prop(into)] empty: String,
) -> impl IntoView {
    let locale = use_i18n().get_locale_untracked();
    let max = parts.iter().map(|p| p.value).max().unwrap_or(0).max(1);
    if parts.is_empty() {
        return view! { <p class="muted">{empty}</p> }.into_any();
    }
    let rows = parts
        .into_iter()
        .map(|p| {
            let width = (p.value as f64 / max as f64 * 100.0).max(1.0);
            view! {
                <li>
                    <span class="ranked-label">{p.label}</span>
                    <svg class="ranked-bar" viewBox="0 0 100 10" preserveAspectRatio="none" aria-hidden="true">
                        <rect x="0" y="0" width=format!("{width:.1}") height="10" />
                    </svg>
                    <span class="ranked-value">{number(locale, p.value)}</span>
                </li>
            }
        })
        .collect_view();
    view! { <ol class="ranked" aria-label=label>{rows}</ol> }.into_any()
}
