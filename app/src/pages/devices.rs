//! Devices: filter, search and page through them; open one to see everything about it and act
//! on it; issue enrollment codes.

use leptos::prelude::*;
use leptos_router::hooks::{use_navigate, use_query_map};

use crate::components::badge::Badge;
use crate::components::copy_button::CopyButton;
use crate::components::dialog::{Dialog, open_while_chosen};
use crate::components::error_note::ErrorNote;
use crate::components::layout::use_session;
use crate::components::pager::Pager;
use crate::error::AppError;
use crate::format::{datetime, maybe_datetime, number};
use crate::i18n::{t, t_string, use_i18n};
use crate::server_fns::devices::{
    DEVICE_PAGE, DeviceChange, DeviceDetail, IssuedCode, change_device, get_device, issue_code, list_devices,
};
use crate::server_fns::keys::{KeyPage, all_keys};

#[component]
pub fn DevicesPage() -> impl IntoView {
    let i18n = use_i18n();
    let can = use_session().can;
    let status = RwSignal::new(String::new());
    let search = RwSignal::new(String::new());
    let key = RwSignal::new(String::new());
    let offset = RwSignal::new(0_i64);
    // Bumped after every change, so the table and the panel reload.
    let version = RwSignal::new(0_u32);
    let devices = Resource::new(
        move || (status.get(), search.get(), key.get(), offset.get(), version.get()),
        |(status, search, key, offset, _)| list_devices(status, search, key, offset),
    );
    // One key list for the filter and the code dialog; opening the dialog loads it again.
    let keys = Resource::new(|| (), |_| all_keys());
    let query = use_query_map();
    let selected = Memo::new(move |_| query.read().get("device").filter(|id| !id.is_empty()));
    let navigate = use_navigate();
    let open = move |id: String| navigate(&format!("/devices?device={id}"), Default::default());
    let code_open = RwSignal::new(false);
    let total = Signal::derive(move || devices.get().and_then(Result::ok).map(|p| p.total).unwrap_or(0));

    view! {
        <div class="page-header">
            <h1>{t!(i18n, devices.title)}</h1>
            {can.manage_codes.then(|| view! {
                <button type="button" data-testid="issue-code" on:click=move |_| { keys.refetch(); code_open.set(true); }>
                    {t!(i18n, devices.issue_code)}
                </button>
            })}
        </div>
        <form class="filters" role="search" on:submit=|ev| ev.prevent_default()>
            <div class="field">
                <label for="device-status">{t!(i18n, devices.status_filter)}</label>
                <select id="device-status" data-testid="device-status-filter"
                    on:change=move |ev| { status.set(event_target_value(&ev)); offset.set(0); }>
                    <option value="">{t!(i18n, devices.all)}</option>
                    <option value="pending">{t!(i18n, status.pending)}</option>
                    <option value="active">{t!(i18n, status.active)}</option>
                    <option value="suspended">{t!(i18n, status.suspended)}</option>
                    <option value="revoked">{t!(i18n, status.revoked)}</option>
                </select>
            </div>
            <div class="field">
                <label for="device-key">{t!(i18n, devices.key_filter)}</label>
                <select id="device-key" on:change=move |ev| { key.set(event_target_value(&ev)); offset.set(0); }>
                    <option value="">{t!(i18n, devices.all)}</option>
                    <Transition fallback=|| ()>
                        {move || keys.get().and_then(Result::ok).map(|page| page.items.into_iter().map(|k| {
                            view! { <option value=k.id.clone() selected=key.get_untracked() == k.id>{k.name.clone()}</option> }
                        }).collect_view())}
                    </Transition>
                </select>
            </div>
            <div class="field grow">
                <label for="device-search">{t!(i18n, devices.search)}</label>
                <input id="device-search" type="search" data-testid="device-search"
                    placeholder=move || t_string!(i18n, devices.search_hint).to_string()
                    on:input=move |ev| { search.set(event_target_value(&ev)); offset.set(0); } />
            </div>
        </form>
        <Transition fallback=move || view! { <p class="loading">{t!(i18n, common.loading)}</p> }>
            {move || devices.get().map(|result| match result {
                Err(err) => view! { <ErrorNote error=Signal::derive(move || Some(err.clone())) /> }.into_any(),
                Ok(page) if page.items.is_empty() => view! {
                    <p class="empty" data-testid="devices-empty">{t!(i18n, devices.empty)}</p>
                }.into_any(),
                Ok(page) => {
                    let counts = page.counts;
                    let rows = page.items.into_iter().map(|d| {
                        let id = d.id.clone();
                        let open = open.clone();
                        view! {
                            <tr data-testid="device-row" data-status=d.status.clone()>
                                <td>
                                    <button type="button" class="link" on:click=move |_| open(id.clone())>
                                        {d.label.clone()}
                                    </button>
                                </td>
                                <td><Badge status=d.status.clone() /></td>
                                <td><code>{d.key_id.chars().take(12).collect::<String>()}</code></td>
                                <td>{move || maybe_datetime(i18n.get_locale(), d.last_seen_at)}</td>
                                <td class="num">{move || number(i18n.get_locale(), d.request_count)}</td>
                            </tr>
                        }
                    }).collect_view();
                    view! {
                        <p class="muted counts">
                            {move || t_string!(i18n, devices.counts,
                                pending = number(i18n.get_locale(), counts.pending),
                                active = number(i18n.get_locale(), counts.active),
                                suspended = number(i18n.get_locale(), counts.suspended),
                                revoked = number(i18n.get_locale(), counts.revoked)).to_string()}
                        </p>
                        <div class="table-wrap">
                            <table data-testid="devices-table">
                                <thead><tr>
                                    <th scope="col">{t!(i18n, devices.label)}</th>
                                    <th scope="col">{t!(i18n, devices.status)}</th>
                                    <th scope="col">{t!(i18n, devices.key_id)}</th>
                                    <th scope="col">{t!(i18n, devices.last_seen)}</th>
                                    <th scope="col" class="num">{t!(i18n, devices.requests)}</th>
                                </tr></thead>
                                <tbody>{rows}</tbody>
                            </table>
                        </div>
                    }.into_any()
                }
            })}
        </Transition>
        <Pager offset limit=DEVICE_PAGE total />
        {move || selected.get().map(|id| view! { <DevicePanel id version /> })}
        <IssueCodeDialog open=code_open keys />
    }
}

/// Everything about one device, its history, and what the role may do to it.
#[component]
fn DevicePanel(id: String, version: RwSignal<u32>) -> impl IntoView {
    let i18n = use_i18n();
    let can = use_session().can;
    let detail = Resource::new(move || (id.clone(), version.get()), |(id, _)| get_device(id));
    let navigate = use_navigate();
    let close = move |_| navigate("/devices", Default::default());
    view! {
        <aside class="panel" data-testid="device-panel" aria-labelledby="device-panel-title">
            <button type="button" class="icon-button panel-close" on:click=close
                aria-label=move || t_string!(i18n, common.close).to_string()>"×"</button>
            <Suspense fallback=move || view! { <p class="loading">{t!(i18n, common.loading)}</p> }>
                {move || detail.get().map(|result| match result {
                    Err(err) => view! { <ErrorNote error=Signal::derive(move || Some(err.clone())) /> }.into_any(),
                    Ok(detail) => view! { <DeviceDetails detail can_manage=can.manage_devices version /> }.into_any(),
                })}
            </Suspense>
        </aside>
    }
}

#[component]
fn DeviceDetails(detail: DeviceDetail, can_manage: bool, version: RwSignal<u32>) -> impl IntoView {
    let i18n = use_i18n();
    let d = detail.device.clone();
    let status = d.status.clone();
    let act = Action::new(move |(change, text): &(DeviceChange, String)| {
        change_device(detail.device.id.clone(), *change, text.clone(), detail.version)
    });
    let error = Signal::derive(move || act.value().get().and_then(Result::err));
    Effect::new(move |_| {
        if let Some(Ok(_)) = act.value().get() {
            version.update(|v| *v += 1);
        }
    });
    let dialog = RwSignal::new(None::<DeviceChange>);
    let history = detail.history.into_iter().rev().map(|h| view! {
        <li>
            <strong>{h.event_type.clone()}</strong>
            " · " {move || datetime(i18n.get_locale(), h.at)}
            " · " <code>{h.actor.clone()}</code>
            {h.ip.clone().map(|ip| view! { " · " {ip} })}
            <details><summary>{t!(i18n, devices.payload)}</summary><pre>{h.payload.clone()}</pre></details>
        </li>
    }).collect_view();
    let can = |s: &str, allowed: &[&str]| can_manage && allowed.contains(&s);
    view! {
        <h2 id="device-panel-title">{d.label.clone()} " " <Badge status=status.clone() /></h2>
        {d.status_reason.clone().map(|r| view! { <p class="muted">{t!(i18n, devices.reason)} ": " {r}</p> })}
        <dl class="facts">
            <dt>{t!(i18n, devices.key_id)}</dt><dd><code data-testid="device-key-id">{d.key_id.clone()}</code></dd>
            <dt>{t!(i18n, devices.fingerprint)}</dt><dd><code>{d.fingerprint.clone()}</code></dd>
            <dt>{t!(i18n, devices.user_agent)}</dt><dd>{d.user_agent.clone().unwrap_or_default()}</dd>
            <dt>{t!(i18n, devices.ip)}</dt><dd>{d.enrolled_ip.clone().unwrap_or_default()}</dd>
            <dt>{t!(i18n, devices.enrolled)}</dt><dd>{move || datetime(i18n.get_locale(), d.enrolled_at)}</dd>
            <dt>{t!(i18n, devices.last_seen)}</dt><dd>{move || maybe_datetime(i18n.get_locale(), d.last_seen_at)}</dd>
            <dt>{t!(i18n, devices.usage)}</dt>
            <dd data-testid="device-usage">{move || t_string!(i18n, devices.usage_line,
                requests = number(i18n.get_locale(), d.request_count),
                tokens_in = number(i18n.get_locale(), d.tokens_in),
                tokens_out = number(i18n.get_locale(), d.tokens_out),
                errors = number(i18n.get_locale(), d.error_count)).to_string()}</dd>
        </dl>
        <details><summary>{t!(i18n, devices.metadata)}</summary><pre>{d.metadata.clone()}</pre></details>
        <div class="actions">
            {can(&status, &["pending"]).then(|| view! {
                <button type="button" data-testid="device-approve" disabled=move || act.pending().get()
                    on:click=move |_| { act.dispatch((DeviceChange::Approve, String::new())); }>
                    {t!(i18n, devices.approve)}</button>
            })}
            {can(&status, &["suspended"]).then(|| view! {
                <button type="button" data-testid="device-reactivate" disabled=move || act.pending().get()
                    on:click=move |_| { act.dispatch((DeviceChange::Reactivate, String::new())); }>
                    {t!(i18n, devices.reactivate)}</button>
            })}
            {can(&status, &["pending", "active"]).then(|| view! {
                <button type="button" class="secondary" data-testid="device-suspend"
                    on:click=move |_| dialog.set(Some(DeviceChange::Suspend))>{t!(i18n, devices.suspend)}</button>
            })}
            {can(&status, &["pending", "active", "suspended"]).then(|| view! {
                <button type="button" class="secondary" data-testid="device-rename"
                    on:click=move |_| dialog.set(Some(DeviceChange::Rename))>{t!(i18n, devices.rename)}</button>
                <button type="button" class="danger" data-testid="device-revoke"
                    on:click=move |_| dialog.set(Some(DeviceChange::Revoke))>{t!(i18n, devices.revoke)}</button>
            })}
        </div>
        <ErrorNote error />
        <ChangeDialog change=dialog label=d.label.clone() act />
        <h3>{t!(i18n, devices.history)}</h3>
        <ol class="history" data-testid="device-history">{history}</ol>
    }
}

/// Asks for the reason (suspend, revoke) or the new label (rename); revoking also asks to type
/// the device's label, since it cannot be undone.
#[component]
fn ChangeDialog(
    change: RwSignal<Option<DeviceChange>>,
    label: String,
    act: Action<(DeviceChange, String), Result<crate::server_fns::devices::DeviceRow, AppError>>,
) -> impl IntoView {
    let i18n = use_i18n();
    let open = open_while_chosen(change);
    let text = RwSignal::new(String::new());
    let confirm = RwSignal::new(String::new());
    let label = StoredValue::new(label);
    let title = Signal::derive(move || match change.get() {
        Some(DeviceChange::Suspend) => t_string!(i18n, devices.suspend_title).to_string(),
        Some(DeviceChange::Rename) => t_string!(i18n, devices.rename_title).to_string(),
        Some(DeviceChange::Revoke) => t_string!(i18n, devices.revoke_title).to_string(),
        _ => String::new(),
    });
    let is_revoke = move || change.get() == Some(DeviceChange::Revoke);
    let ready = move || !text.get().trim().is_empty() && (!is_revoke() || confirm.get() == label.get_value());
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if let Some(which) = change.get_untracked()
            && ready()
        {
            act.dispatch((which, text.get_untracked()));
            open.set(false);
            text.set(String::new());
            confirm.set(String::new());
        }
    };
    view! {
        <Dialog open labelled_by="device-change-title" title>
            <form on:submit=submit data-testid="device-change-form">
                <div class="field">
                    <label for="device-change-text">{move || if change.get() == Some(DeviceChange::Rename) {
                        t_string!(i18n, devices.new_label).to_string()
                    } else {
                        t_string!(i18n, devices.reason).to_string()
                    }}</label>
                    <input id="device-change-text" data-testid="device-change-text" required
                        prop:value=move || text.get() on:input=move |ev| text.set(event_target_value(&ev)) />
                </div>
                <Show when=is_revoke>
                    <div class="field">
                        <label for="device-confirm">{move || t_string!(i18n, devices.type_to_confirm, label = label.get_value()).to_string()}</label>
                        <input id="device-confirm" data-testid="device-confirm" autocomplete="off"
                            prop:value=move || confirm.get() on:input=move |ev| confirm.set(event_target_value(&ev)) />
                    </div>
                </Show>
                <button type="submit" data-testid="device-change-submit" class=move || if is_revoke() { "danger" } else { "" }
                    disabled=move || !ready()>{t!(i18n, common.confirm)}</button>
            </form>
        </Dialog>
    }
}

/// Issues an enrollment code and shows it once, with its expiry counting down, a copy button and
/// the device CLI line that uses it.
#[component]
fn IssueCodeDialog(open: RwSignal<bool>, keys: Resource<Result<KeyPage, AppError>>) -> impl IntoView {
    let i18n = use_i18n();
    let key = RwSignal::new(String::new());
    let minutes = RwSignal::new("15".to_owned());
    let uses = RwSignal::new("1".to_owned());
    let auto = RwSignal::new(false);
    let issue = Action::new(move |_: &()| {
        issue_code(
            key.get_untracked(),
            minutes.get_untracked().trim().parse().unwrap_or(-1),
            uses.get_untracked().trim().parse().unwrap_or(-1),
            auto.get_untracked(),
        )
    });
    let error = Signal::derive(move || issue.value().get().and_then(Result::err));
    let issued = Signal::derive(move || issue.value().get().and_then(Result::ok));
    Effect::new(move |_| {
        if !open.get() {
            issue.value().set(None);
        }
    });
    let title = Signal::derive(move || t_string!(i18n, devices.issue_code).to_string());
    view! {
        <Dialog open labelled_by="issue-code-title" title>
            {move || match issued.get() {
                Some(code) => view! { <IssuedCodeView code /> }.into_any(),
                None => view! {
                    <form data-testid="issue-code-form" on:submit=move |ev| { ev.prevent_default(); issue.dispatch(()); }>
                        <div class="field">
                            <label for="code-key">{t!(i18n, devices.code_key)}</label>
                            <select id="code-key" data-testid="code-key" on:change=move |ev| key.set(event_target_value(&ev))>
                                <option value="">{t!(i18n, devices.code_key_only)}</option>
                                <Transition fallback=|| ()>
                                    {move || keys.get().and_then(Result::ok).map(|page| page.items.into_iter()
                                        .filter(|k| k.status == "active")
                                        .map(|k| view! {
                                            <option value=k.id.clone() selected=key.get_untracked() == k.id>{k.name.clone()}</option>
                                        })
                                        .collect_view())}
                                </Transition>
                            </select>
                        </div>
                        <div class="field">
                            <label for="code-minutes">{t!(i18n, devices.code_minutes)}</label>
                            <input id="code-minutes" type="number" min="1" max="10080" required
                                prop:value=move || minutes.get() on:input=move |ev| minutes.set(event_target_value(&ev)) />
                        </div>
                        <div class="field">
                            <label for="code-uses">{t!(i18n, devices.code_uses)}</label>
                            <input id="code-uses" type="number" min="1" max="1000" required
                                prop:value=move || uses.get() on:input=move |ev| uses.set(event_target_value(&ev)) />
                        </div>
                        <div class="field checkbox">
                            <input id="code-auto" type="checkbox" prop:checked=move || auto.get()
                                on:change=move |ev| auto.set(event_target_checked(&ev)) />
                            <label for="code-auto">{t!(i18n, devices.code_auto)}</label>
                        </div>
                        <ErrorNote error />
                        <button type="submit" data-testid="issue-code-submit" disabled=move || issue.pending().get()>
                            {t!(i18n, devices.issue)}
                        </button>
                    </form>
                }.into_any(),
            }}
        </Dialog>
    }
}

#[component]
fn IssuedCodeView(code: IssuedCode) -> impl IntoView {
    let i18n = use_i18n();
    let expires = code.expires_at;
    let now = RwSignal::new(expires - chrono::TimeDelta::seconds(0));
    // Counts down in the browser; the server renders the full lifetime.
    #[cfg(not(feature = "ssr"))]
    {
        let tick = move || {
            let millis = js_sys::Date::now() as i64;
            if let Some(at) = chrono::DateTime::from_timestamp_millis(millis) {
                now.set(at);
            }
        };
        tick();
        if let Ok(handle) = set_interval_with_handle(tick, std::time::Duration::from_secs(1)) {
            on_cleanup(move || handle.clear());
        }
    }
    let remaining = move || {
        let seconds = (expires - now.get()).num_seconds().max(0);
        let locale = i18n.get_locale();
        if seconds == 0 {
            t_string!(i18n, devices.code_expired).to_string()
        } else {
            t_string!(
                i18n,
                devices.code_expires_in,
                minutes = number(locale, seconds / 60),
                seconds = number(locale, seconds % 60)
            )
            .to_string()
        }
    };
    let origin = window().location().origin().unwrap_or_default();
    let text = code.code.clone();
    let cli =
        format!("keyguard-device enroll --server {origin} --api-key <project key> --code {}", code.code);
    view! {
        <p>{t!(i18n, devices.code_once)}</p>
        <p class="secret"><code data-testid="issued-code">{text.clone()}</code></p>
        <CopyButton value=Signal::derive(move || text.clone()) testid="copy-code" />
        <p aria-live="polite" data-testid="code-countdown">{remaining}</p>
        <h3>{t!(i18n, devices.code_cli)}</h3>
        <pre class="snippet">{cli.clone()}</pre>
        <CopyButton value=Signal::derive(move || cli.clone()) />
    }
}
