//! Overview: devices by status, traffic and rejections over time, tokens by provider, the most
//! active devices and the latest security events.

use chrono::Timelike as _;
use leptos::prelude::*;
use leptos_router::components::A;

use crate::components::badge::{Badge, status_text};
use crate::components::charts::{BarChart, Bucket, Part, RankedBars, Ring};
use crate::components::error_note::ErrorNote;
use crate::format::{number, precise};
use crate::i18n::{Locale, t, t_string, use_i18n};
use crate::server_fns::overview::{OverviewData, get_overview};

#[component]
pub fn OverviewPage() -> impl IntoView {
    let i18n = use_i18n();
    let week = RwSignal::new(false);
    let data = Resource::new(move || week.get(), get_overview);
    view! {
        <div class="page-header">
            <h1>{t!(i18n, overview.title)}</h1>
            <div class="segmented" role="group" aria-label=move || t_string!(i18n, overview.range).to_string()>
                <button type="button" data-testid="range-day" aria-pressed=move || (!week.get()).to_string()
                    on:click=move |_| week.set(false)>{t!(i18n, overview.day)}</button>
                <button type="button" data-testid="range-week" aria-pressed=move || week.get().to_string()
                    on:click=move |_| week.set(true)>{t!(i18n, overview.week)}</button>
            </div>
        </div>
        <Transition fallback=move || view! { <p class="loading">{t!(i18n, common.loading)}</p> }>
            {move || data.get().map(|result| match result {
                Err(err) => view! { <ErrorNote error=Signal::derive(move || Some(err.clone())) /> }.into_any(),
                Ok(data) => (move || overview(i18n.get_locale(), data.clone())).into_any(),
            })}
        </Transition>
    }
}

fn overview(locale: Locale, data: OverviewData) -> impl IntoView {
    let i18n = crate::i18n::use_i18n();
    let d = data.devices;
    let statuses =
        [("pending", d.pending), ("active", d.active), ("suspended", d.suspended), ("revoked", d.revoked)];
    let parts = statuses
        .iter()
        .map(|(key, value)| Part { key: (*key).to_owned(), label: status_text(locale, key), value: *value })
        .collect::<Vec<_>>();
    let buckets = data
        .traffic
        .iter()
        .map(|p| Bucket {
            label: if data.week {
                crate::format::datetime(locale, p.start)
                    .split([',', '،'])
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            } else {
                format!("{:02}", p.start.hour())
            },
            first: p.requests,
            second: p.rejections,
        })
        .collect::<Vec<_>>();
    let requests: i64 = data.traffic.iter().map(|p| p.requests).sum();
    let rejections: i64 = data.traffic.iter().map(|p| p.rejections).sum();
    let tokens = data
        .providers
        .iter()
        .map(|p| Part {
            key: p.provider.clone(),
            label: p.provider.clone(),
            value: p.tokens_in + p.tokens_out,
        })
        .collect::<Vec<_>>();
    let top = data
        .top_devices
        .iter()
        .map(|d| Part { key: d.id.clone(), label: d.label.clone(), value: d.requests })
        .collect::<Vec<_>>();
    let recent = data.recent_security.clone();
    view! {
        <div class="stats">
            <div class="stat card" data-testid="stat-devices"><span>{t!(i18n, overview.devices)}</span><strong>{number(locale, d.total)}</strong></div>
            <div class="stat card" data-testid="stat-pending"><span>{t!(i18n, status.pending)}</span><strong>{number(locale, d.pending)}</strong></div>
            <div class="stat card" data-testid="stat-requests"><span>{t!(i18n, overview.requests)}</span><strong>{number(locale, requests)}</strong></div>
            <div class="stat card" data-testid="stat-rejections"><span>{t!(i18n, overview.rejections)}</span><strong>{number(locale, rejections)}</strong></div>
        </div>
        <div class="grid-2">
            <section class="card">
                <h2>{t!(i18n, overview.traffic)}</h2>
                <BarChart buckets label=t_string!(i18n, overview.traffic).to_string()
                    first_name=t_string!(i18n, overview.requests).to_string()
                    second_name=t_string!(i18n, overview.rejections).to_string()
                    label_every={if data.week { 1 } else { 3 }} />
            </section>
            <section class="card">
                <h2>{t!(i18n, overview.devices_by_status)}</h2>
                <Ring parts label=t_string!(i18n, overview.devices_by_status).to_string() total_text=number(locale, d.total) />
            </section>
            <section class="card">
                <h2>{t!(i18n, overview.tokens_by_provider)}</h2>
                <RankedBars parts=tokens label=t_string!(i18n, overview.tokens_by_provider).to_string() empty=t_string!(i18n, overview.no_traffic).to_string() />
            </section>
            <section class="card">
                <h2>{t!(i18n, overview.top_devices)}</h2>
                <RankedBars parts=top label=t_string!(i18n, overview.top_devices).to_string() empty=t_string!(i18n, devices.empty).to_string() />
            </section>
        </div>
        <section class="card">
            <h2>{t!(i18n, overview.security)}</h2>
            {if recent.is_empty() {
                view! { <p class="muted">{t!(i18n, overview.no_security)}</p> }.into_any()
            } else {
                view! {
                    <ul class="events" data-testid="security-events">
                        {recent.into_iter().map(|e| view! {
                            <li>
                                <span class="muted">{precise(locale, e.at)}</span> " "
                                <Badge status=e.outcome.clone() /> " "
                                <strong>{e.event_type.clone()}</strong> " " {e.summary.clone()}
                            </li>
                        }).collect_view()}
                    </ul>
                    <A href="/audit">{t!(i18n, overview.all_events)}</A>
                }.into_any()
            }}
        </section>
    }
}
