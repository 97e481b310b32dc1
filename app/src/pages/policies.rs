//! Policies: the global one, and overrides per key or per device. An empty field inherits.

use leptos::prelude::*;

use crate::components::error_note::ErrorNote;
use crate::components::layout::use_session;
use crate::format::maybe_datetime;
use crate::i18n::{t, t_string, use_i18n};
use crate::server_fns::keys::all_keys;
use crate::server_fns::policies::{PolicyForm, clear_policy, get_policy, save_policy};

const PROVIDERS: [&str; 4] = ["openai", "anthropic", "google", "azure"];

/// Entries of an IP list that are neither a CIDR network nor an address, as `line: text`.
pub fn invalid_networks(text: &str) -> Vec<String> {
    text.lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !is_network(line))
        .map(|(n, line)| format!("{n}: {line}"))
        .collect()
}

fn is_network(text: &str) -> bool {
    let (address, prefix) = match text.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (text, None),
    };
    let max = match address.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => 32,
        Ok(std::net::IpAddr::V6(_)) => 128,
        Err(_) => return false,
    };
    prefix.is_none_or(|p| p.parse::<u8>().is_ok_and(|p| p <= max))
}

#[component]
pub fn PoliciesPage() -> impl IntoView {
    let i18n = use_i18n();
    let can = use_session().can;
    let scope = RwSignal::new("global".to_owned());
    let device = RwSignal::new(String::new());
    let keys = Resource::new(|| (), |_| all_keys());
    let saved = RwSignal::new(0_u32);
    // Outlives the editor, which is rebuilt when the saved policy reloads.
    let notice = RwSignal::new(false);
    Effect::new(move |_| {
        scope.track();
        notice.set(false);
    });
    let policy = Resource::new(move || (scope.get(), saved.get()), |(scope, _)| get_policy(scope));
    view! {
        <div class="page-header"><h1>{t!(i18n, policies.title)}</h1></div>
        <p class="muted">{t!(i18n, policies.intro)}</p>
        <div class="filters">
            <div class="field">
                <label for="policy-scope">{t!(i18n, policies.level)}</label>
                <select id="policy-scope" data-testid="policy-scope" on:change=move |ev| scope.set(event_target_value(&ev))>
                    <option value="global">{t!(i18n, policies.global)}</option>
                    <Suspense fallback=|| ()>
                        {move || keys.get().and_then(Result::ok).map(|page| page.items.into_iter().map(|k| {
                            let label = format!("{}: {}", t_string!(i18n, policies.key), k.name);
                            view! { <option value=format!("api_key:{}", k.id)>{label}</option> }
                        }).collect_view())}
                    </Suspense>
                </select>
            </div>
            <form class="field" on:submit=move |ev| { ev.prevent_default(); scope.set(format!("device:{}", device.get_untracked().trim())); }>
                <label for="policy-device">{t!(i18n, policies.device_id)}</label>
                <input id="policy-device" prop:value=move || device.get() on:input=move |ev| device.set(event_target_value(&ev)) />
            </form>
        </div>
        // Not a Transition: the form of the previous level must not stay editable while the next
        // one loads, or what is typed there would be lost.
        <Suspense fallback=move || view! { <p class="loading">{t!(i18n, common.loading)}</p> }>
            {move || policy.get().map(|result| match result {
                Err(err) => view! { <ErrorNote error=Signal::derive(move || Some(err.clone())) /> }.into_any(),
                Ok(state) => {
                    let meta = state.updated_at.map(|at| (at, state.updated_by.clone().unwrap_or_default()));
                    view! {
                        {meta.map(|(at, by)| view! { <p class="muted">{move || t_string!(i18n, policies.updated, at = maybe_datetime(i18n.get_locale(), Some(at)), by = by.clone()).to_string()}</p> })}
                        <PolicyEditor scope=scope.get_untracked() form=state.form exists=state.exists editable=can.manage_policies saved notice />
                    }.into_any()
                }
            })}
        </Suspense>
    }
}

#[component]
fn PolicyEditor(
    scope: String,
    form: PolicyForm,
    exists: bool,
    editable: bool,
    saved: RwSignal<u32>,
    notice: RwSignal<bool>,
) -> impl IntoView {
    let i18n = use_i18n();
    let form = RwSignal::new(form);
    let scope = StoredValue::new(scope);
    let save = Action::new(move |form: &PolicyForm| save_policy(scope.get_value(), form.clone()));
    let clear = Action::new(move |_: &()| clear_policy(scope.get_value()));
    Effect::new(move |_| {
        let saved_now = matches!(save.value().get(), Some(Ok(())));
        if saved_now || matches!(clear.value().get(), Some(Ok(()))) {
            notice.set(saved_now);
            saved.update(|s| *s += 1);
        }
    });
    let error = Signal::derive(move || {
        save.value().get().and_then(Result::err).or_else(|| clear.value().get().and_then(Result::err))
    });
    let bad_networks = Memo::new(move |_| form.with(|f| invalid_networks(&f.ip_allow_list)));
    macro_rules! text {
        ($field:ident) => {
            (
                move || form.with(|f| f.$field.clone()),
                move |ev| form.update(|f| f.$field = event_target_value(&ev)),
            )
        };
    }
    let (window, set_window) = text!(timestamp_window_seconds);
    let (rpm, set_rpm) = text!(requests_per_minute);
    let (tokens, set_tokens) = text!(tokens_per_day);
    let (ips, set_ips) = text!(ip_allow_list);
    let (models, set_models) = text!(allowed_models);
    let (approval, set_approval) = text!(require_approval);
    let is_global = scope.get_value() == "global";
    view! {
        <form class="card policy" data-testid="policy-form" data-scope=scope.get_value() on:submit=move |ev| {
            ev.prevent_default();
            if bad_networks.get_untracked().is_empty() { save.dispatch(form.get_untracked()); }
        }>
            <fieldset disabled={!editable}>
                <div class="grid">
                    <div class="field">
                        <label for="p-window">{t!(i18n, policies.window)}</label>
                        <input id="p-window" type="number" min="1" max="900" prop:value=window on:input=set_window
                            placeholder=move || t_string!(i18n, policies.inherit).to_string() />
                    </div>
                    <div class="field">
                        <label for="p-rpm">{t!(i18n, policies.rpm)}</label>
                        <input id="p-rpm" data-testid="policy-rpm" type="number" min="1" prop:value=rpm on:input=set_rpm
                            placeholder=move || t_string!(i18n, policies.inherit).to_string() />
                    </div>
                    <div class="field">
                        <label for="p-tokens">{t!(i18n, policies.tokens_per_day)}</label>
                        <input id="p-tokens" type="number" min="1" prop:value=tokens on:input=set_tokens
                            placeholder=move || t_string!(i18n, policies.inherit).to_string() />
                    </div>
                    <div class="field">
                        <label for="p-approval">{t!(i18n, policies.require_approval)}</label>
                        <select id="p-approval" prop:value=approval on:change=set_approval>
                            <option value="">{t!(i18n, policies.inherit)}</option>
                            <option value="true">{t!(i18n, common.yes)}</option>
                            <option value="false">{t!(i18n, common.no)}</option>
                        </select>
                    </div>
                </div>
                <div class="field">
                    <label for="p-ips">{t!(i18n, policies.ip_allow_list)}</label>
                    <textarea id="p-ips" data-testid="policy-ips" rows="4" aria-describedby="p-ips-hint p-ips-error"
                        prop:value=ips on:input=set_ips></textarea>
                    <small id="p-ips-hint" class="hint">{t!(i18n, policies.ip_hint)}</small>
                    <p id="p-ips-error" class="field-error" data-testid="policy-ips-error" aria-live="polite">
                        {move || { let bad = bad_networks.get(); (!bad.is_empty()).then(|| t_string!(i18n, policies.ip_invalid, entries = bad.join(", ")).to_string()) }}
                    </p>
                </div>
                <fieldset class="field">
                    <legend>{t!(i18n, policies.providers)}</legend>
                    {PROVIDERS.map(|p| {
                        let id = format!("p-provider-{p}");
                        view! {
                            <span class="checkbox">
                                <input id=id.clone() type="checkbox"
                                    prop:checked=move || form.with(|f| f.allowed_providers.iter().any(|x| x == p))
                                    on:change=move |ev| {
                                        let on = event_target_checked(&ev);
                                        form.update(|f| { f.allowed_providers.retain(|x| x != p); if on { f.allowed_providers.push(p.to_owned()); } });
                                    } />
                                <label for=id>{p}</label>
                            </span>
                        }
                    }).collect_view()}
                    <small class="hint">{t!(i18n, policies.providers_hint)}</small>
                </fieldset>
                <div class="field">
                    <label for="p-models">{t!(i18n, policies.models)}</label>
                    <textarea id="p-models" rows="3" prop:value=models on:input=set_models></textarea>
                    <small class="hint">{t!(i18n, policies.models_hint)}</small>
                </div>
            </fieldset>
            <ErrorNote error />
            {editable.then(|| view! {
                <div class="actions">
                    <button type="submit" data-testid="policy-save" disabled=move || save.pending().get()>{t!(i18n, common.save)}</button>
                    {(exists && !is_global).then(|| view! {
                        <button type="button" class="secondary" on:click=move |_| { clear.dispatch(()); }>{t!(i18n, policies.clear)}</button>
                    })}
                </div>
            })}
            <p class="ok" role="status" data-testid="policy-saved">
                {move || notice.get().then_some(t!(i18n, common.saved))}
            </p>
        </form>
    }
}

#[cfg(test)]
mod tests {
    use super::invalid_networks;

    #[test]
    fn networks_and_addresses_pass_and_the_rest_is_named_by_line() {
        assert!(invalid_networks("10.0.0.0/8\n\n2001:db8::/32\n203.0.113.7\n::1").is_empty());
        assert_eq!(
            invalid_networks("10.0.0.0/33\nexample.com\n10.0.0.1/x"),
            ["1: 10.0.0.0/33", "2: example.com", "3: 10.0.0.1/x"]
        );
    }
}
