//! The audit log: filter it, read an entry in full, follow it live (server-sent events; pausing
//! really closes the stream, resuming picks up where it stopped), and export it as a file.

use leptos::prelude::*;
use serde::Deserialize;

use crate::components::badge::Badge;
use crate::components::error_note::ErrorNote;
use crate::components::pager::Pager;
use crate::format::precise;
use crate::i18n::{t, t_string, use_i18n};
use crate::server_fns::audit::{AUDIT_PAGE, AuditQuery, AuditRow, aggregate_history, list_audit};

/// One live entry, as `/api/v1/audit/stream` sends it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TailEntry {
    pub position: i64,
    pub event_type: String,
    pub outcome: String,
    pub summary: String,
    pub at: chrono::DateTime<chrono::Utc>,
}

#[component]
pub fn AuditPage() -> impl IntoView {
    let i18n = use_i18n();
    let query = RwSignal::new(AuditQuery::default());
    let offset = RwSignal::new(0_i64);
    let entries = Resource::new(move || (query.get(), offset.get()), |(q, offset)| list_audit(q, offset));
    let selected = RwSignal::new(None::<AuditRow>);
    let total = Signal::derive(move || entries.get().and_then(Result::ok).map(|p| p.total).unwrap_or(0));
    macro_rules! filter {
        ($field:ident) => {
            move |ev| {
                query.update(|q| q.$field = event_target_value(&ev));
                offset.set(0);
            }
        };
    }
    let export = move |format: &'static str| {
        let q = query.get().to_query_string();
        format!("/api/v1/audit/export?format={format}{}{q}", if q.is_empty() { "" } else { "&" })
    };
    view! {
        <div class="page-header">
            <h1>{t!(i18n, audit.title)}</h1>
            <div class="actions" role="group" aria-label=move || t_string!(i18n, audit.export).to_string()>
                <a class="button secondary" data-testid="export-csv" download href=move || export("csv")>"CSV"</a>
                <a class="button secondary" data-testid="export-json" download href=move || export("json")>"JSON"</a>
                <a class="button secondary" data-testid="export-ndjson" download href=move || export("ndjson")>"NDJSON"</a>
            </div>
        </div>
        <form class="filters" role="search" on:submit=|ev| ev.prevent_default()>
            <div class="field">
                <label for="audit-type">{t!(i18n, audit.event_type)}</label>
                <input id="audit-type" placeholder="SignatureRejected" on:change={filter!(event_type)} />
            </div>
            <div class="field">
                <label for="audit-outcome">{t!(i18n, audit.outcome)}</label>
                <select id="audit-outcome" data-testid="audit-outcome" on:change={filter!(outcome)}>
                    <option value="">{t!(i18n, devices.all)}</option>
                    <option value="success">{t!(i18n, status.success)}</option>
                    <option value="failure">{t!(i18n, status.failure)}</option>
                    <option value="denied">{t!(i18n, status.denied)}</option>
                </select>
            </div>
            <div class="field">
                <label for="audit-device">{t!(i18n, audit.device)}</label>
                <input id="audit-device" data-testid="audit-device" on:change={filter!(device_id)} />
            </div>
            <div class="field grow">
                <label for="audit-q">{t!(i18n, devices.search)}</label>
                <input id="audit-q" type="search" data-testid="audit-search" on:change={filter!(q)} />
            </div>
        </form>
        <LiveTail query />
        <h2>{t!(i18n, audit.history)}</h2>
        <Transition fallback=move || view! { <p class="loading">{t!(i18n, common.loading)}</p> }>
            {move || entries.get().map(|result| match result {
                Err(err) => view! { <ErrorNote error=Signal::derive(move || Some(err.clone())) /> }.into_any(),
                Ok(page) => view! {
                    <div class="table-wrap">
                        <table data-testid="audit-table">
                            <thead><tr>
                                <th scope="col">{t!(i18n, audit.at)}</th>
                                <th scope="col">{t!(i18n, audit.event_type)}</th>
                                <th scope="col">{t!(i18n, audit.outcome)}</th>
                                <th scope="col">{t!(i18n, audit.summary)}</th>
                                <th scope="col">{t!(i18n, audit.actor)}</th>
                            </tr></thead>
                            <tbody>
                                {page.items.into_iter().map(|row| {
                                    let open = row.clone();
                                    view! {
                                        <tr data-testid="audit-row">
                                            <td>{move || precise(i18n.get_locale(), row.at)}</td>
                                            <td><button type="button" class="link" on:click=move |_| selected.set(Some(open.clone()))>{row.event_type.clone()}</button></td>
                                            <td><Badge status=row.outcome.clone() /></td>
                                            <td>{row.summary.clone()}</td>
                                            <td><code>{row.actor.clone()}</code></td>
                                        </tr>
                                    }
                                }).collect_view()}
                            </tbody>
                        </table>
                    </div>
                }.into_any(),
            })}
        </Transition>
        <Pager offset limit=AUDIT_PAGE total />
        {move || selected.get().map(|row| view! { <EntryDetails row selected /> })}
    }
}

#[component]
fn EntryDetails(row: AuditRow, selected: RwSignal<Option<AuditRow>>) -> impl IntoView {
    let i18n = use_i18n();
    view! {
        <aside class="panel" data-testid="audit-entry" aria-labelledby="audit-entry-title">
            <button type="button" class="icon-button panel-close" on:click=move |_| selected.set(None)
                aria-label=move || t_string!(i18n, common.close).to_string()>"×"</button>
            <h2 id="audit-entry-title">{row.event_type.clone()} " " <Badge status=row.outcome.clone() /></h2>
            <p>{row.summary.clone()}</p>
            <dl class="facts">
                <dt>{t!(i18n, audit.position)}</dt><dd>{row.position}</dd>
                <dt>{t!(i18n, audit.at)}</dt><dd>{move || precise(i18n.get_locale(), row.at)}</dd>
                <dt>{t!(i18n, audit.actor)}</dt><dd><code>{row.actor.clone()}</code></dd>
                <dt>{t!(i18n, devices.ip)}</dt><dd>{row.ip.clone().unwrap_or_default()}</dd>
                <dt>{t!(i18n, devices.user_agent)}</dt><dd>{row.user_agent.clone().unwrap_or_default()}</dd>
                <dt>{t!(i18n, audit.request_id)}</dt><dd><code>{row.request_id.clone().unwrap_or_default()}</code></dd>
                <dt>{t!(i18n, audit.aggregate)}</dt><dd><code>{format!("{}/{}", row.aggregate_type, row.aggregate_id)}</code></dd>
                <dt>{t!(i18n, audit.event_id)}</dt><dd><code>{row.event_id.clone()}</code></dd>
            </dl>
            <pre>{row.payload.clone()}</pre>
            {HISTORIES.contains(&row.aggregate_type.as_str()).then(|| view! {
                <TimeTravel kind=row.aggregate_type.clone() id=row.aggregate_id.clone() sequence=row.sequence />
            })}
        </aside>
    }
}

/// The aggregates whose history can be replayed.
const HISTORIES: [&str; 4] = ["device", "api_key", "policy", "user"];

/// The subject's whole history with a slider through time: each step shows the event and the
/// state it left. It opens at the entry being read.
#[component]
fn TimeTravel(kind: String, id: String, sequence: i64) -> impl IntoView {
    let i18n = use_i18n();
    let history = Resource::new(move || (kind.clone(), id.clone()), |(kind, id)| aggregate_history(kind, id));
    view! {
        <section class="time-travel" aria-labelledby="time-travel-title" data-testid="time-travel">
            <h3 id="time-travel-title">{t!(i18n, audit.time_travel)}</h3>
            <Suspense fallback=move || view! { <p class="loading">{t!(i18n, common.loading)}</p> }>
                {move || history.get().map(|result| match result {
                    Err(err) => view! { <ErrorNote error=Signal::derive(move || Some(err.clone())) /> }.into_any(),
                    Ok(steps) if steps.is_empty() => ().into_any(),
                    Ok(steps) => {
                        let last = steps.len() - 1;
                        let opened = steps.iter().position(|s| s.sequence == sequence).unwrap_or(last);
                        let at = RwSignal::new(opened);
                        let steps = StoredValue::new(steps);
                        let step = move || steps.with_value(|s| s[at.get().min(last)].clone());
                        view! {
                            <label for="time-travel-slider">{move || t_string!(i18n, audit.step,
                                n = (at.get() + 1).to_string(), total = (last + 1).to_string()).to_string()}</label>
                            <input id="time-travel-slider" data-testid="time-travel-slider" type="range" min="0"
                                max=last.to_string() step="1" prop:value=move || at.get().to_string()
                                on:input=move |ev| at.set(event_target_value(&ev).parse().unwrap_or(last)) />
                            <p data-testid="time-travel-event">
                                <strong>{move || step().event_type}</strong>
                                " · " {move || precise(i18n.get_locale(), step().at)}
                                " · " <code>{move || step().actor}</code>
                            </p>
                            <h4>{t!(i18n, audit.state_after)}</h4>
                            <pre data-testid="time-travel-state">{move || step().state}</pre>
                        }.into_any()
                    }
                })}
            </Suspense>
        </section>
    }
}

/// New entries as they happen. Pausing closes the stream; resuming opens it again from the last
/// entry seen, so nothing is missed and nothing arrives while paused.
#[component]
fn LiveTail(query: RwSignal<AuditQuery>) -> impl IntoView {
    let i18n = use_i18n();
    let live = RwSignal::new(false);
    let tail = RwSignal::new(Vec::<TailEntry>::new());
    let last = RwSignal::new(None::<i64>);
    let connected = RwSignal::new(false);
    #[cfg(not(feature = "ssr"))]
    stream::follow(live, query, tail, last, connected);
    #[cfg(feature = "ssr")]
    let _ = (query, last);
    view! {
        <section class="card tail" aria-labelledby="tail-title">
            <header>
                <h2 id="tail-title">{t!(i18n, audit.live)}</h2>
                <span class="muted" data-testid="tail-state" data-live=move || live.get().to_string() data-connected=move || connected.get().to_string()>
                    {move || if !live.get() { t_string!(i18n, audit.paused).to_string() } else if connected.get() { t_string!(i18n, audit.following).to_string() } else { t_string!(i18n, audit.connecting).to_string() }}
                </span>
                <button type="button" class="secondary" data-testid="tail-toggle" aria-pressed=move || live.get().to_string()
                    on:click=move |_| live.update(|l| *l = !*l)>
                    {move || if live.get() { t_string!(i18n, audit.pause).to_string() } else { t_string!(i18n, audit.follow).to_string() }}
                </button>
            </header>
            <ol class="tail-list" data-testid="tail-list" aria-live="polite">
                {move || tail.get().into_iter().map(|e| view! {
                    <li data-testid="tail-entry" data-type=e.event_type.clone()>
                        <span class="muted">{precise(i18n.get_locale(), e.at)}</span>
                        " " <strong>{e.event_type.clone()}</strong>
                        " " <Badge status=e.outcome.clone() />
                        " " {e.summary.clone()}
                    </li>
                }).collect_view()}
            </ol>
        </section>
    }
}

#[cfg(not(feature = "ssr"))]
mod stream {
    use leptos::prelude::*;
    use leptos::wasm_bindgen::JsCast as _;
    use leptos::wasm_bindgen::closure::Closure;
    use web_sys::{EventSource, MessageEvent};

    use super::TailEntry;
    use crate::server_fns::audit::AuditQuery;

    /// Entries kept on screen by the live tail.
    const TAIL_LIMIT: usize = 200;

    pub fn follow(
        live: RwSignal<bool>,
        query: RwSignal<AuditQuery>,
        tail: RwSignal<Vec<TailEntry>>,
        last: RwSignal<Option<i64>>,
        connected: RwSignal<bool>,
    ) {
        let source = StoredValue::new_local(None::<EventSource>);
        let close = move || {
            source.update_value(|s| {
                if let Some(s) = s.take() {
                    s.close();
                }
            });
            connected.set(false);
        };
        Effect::new(move |_| {
            let q = query.get().to_query_string();
            close();
            if !live.get() {
                return;
            }
            let after = last.get_untracked().map(|p| format!("after={p}")).unwrap_or_default();
            let params: Vec<&str> =
                [q.as_str(), after.as_str()].into_iter().filter(|s| !s.is_empty()).collect();
            let url = format!("/api/v1/audit/stream?{}", params.join("&"));
            let Ok(es) = EventSource::new(&url) else { return };
            let on_open = Closure::<dyn FnMut()>::new(move || connected.set(true));
            es.set_onopen(Some(on_open.as_ref().unchecked_ref()));
            on_open.forget();
            let on_entry = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
                let Some(text) = ev.data().as_string() else { return };
                if let Ok(entry) = serde_json::from_str::<TailEntry>(&text) {
                    last.set(Some(entry.position));
                    tail.update(|t| {
                        t.insert(0, entry);
                        t.truncate(TAIL_LIMIT);
                    });
                }
            });
            let _ = es.add_event_listener_with_callback("audit", on_entry.as_ref().unchecked_ref());
            on_entry.forget();
            source.set_value(Some(es));
        });
        on_cleanup(close);
    }
}
