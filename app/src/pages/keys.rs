//! Project API keys: list with filters, the create wizard ending in the one-time project key,
//! rotations, revocation, and per-key usage.

use leptos::prelude::*;

use crate::components::badge::Badge;
use crate::components::copy_button::CopyButton;
use crate::components::dialog::{Dialog, open_while_chosen};
use crate::components::error_note::ErrorNote;
use crate::components::layout::use_session;
use crate::format::{maybe_datetime, number};
use crate::i18n::{t, t_string, use_i18n};
use crate::server_fns::keys::{
    CreatedKey, KeyInput, KeyRow, create_key, list_keys, revoke_key, rotate_project_key,
    rotate_provider_secret,
};

const PROVIDERS: [&str; 4] = ["openai", "anthropic", "google", "azure"];

#[component]
pub fn KeysPage() -> impl IntoView {
    let i18n = use_i18n();
    let can = use_session().can;
    let provider = RwSignal::new(String::new());
    let status = RwSignal::new(String::new());
    let search = RwSignal::new(String::new());
    let version = RwSignal::new(0_u32);
    let keys = Resource::new(
        move || (provider.get(), status.get(), search.get(), version.get()),
        |(provider, status, search, _)| list_keys(provider, status, search, 0),
    );
    let wizard = RwSignal::new(false);
    view! {
        <div class="page-header">
            <h1>{t!(i18n, keys.title)}</h1>
            {can.manage_keys.then(|| view! {
                <button type="button" data-testid="create-key" on:click=move |_| wizard.set(true)>{t!(i18n, keys.create)}</button>
            })}
        </div>
        <form class="filters" role="search" on:submit=|ev| ev.prevent_default()>
            <div class="field">
                <label for="key-provider">{t!(i18n, keys.provider)}</label>
                <select id="key-provider" on:change=move |ev| provider.set(event_target_value(&ev))>
                    <option value="">{t!(i18n, devices.all)}</option>
                    {PROVIDERS.map(|p| view! { <option value=p>{provider_name(p)}</option> }).collect_view()}
                </select>
            </div>
            <div class="field">
                <label for="key-status">{t!(i18n, devices.status)}</label>
                <select id="key-status" on:change=move |ev| status.set(event_target_value(&ev))>
                    <option value="">{t!(i18n, devices.all)}</option>
                    <option value="active">{t!(i18n, status.active)}</option>
                    <option value="expired">{t!(i18n, status.expired)}</option>
                    <option value="revoked">{t!(i18n, status.revoked)}</option>
                </select>
            </div>
            <div class="field grow">
                <label for="key-search">{t!(i18n, devices.search)}</label>
                <input id="key-search" type="search" on:input=move |ev| search.set(event_target_value(&ev)) />
            </div>
        </form>
        <Transition fallback=move || view! { <p class="loading">{t!(i18n, common.loading)}</p> }>
            {move || keys.get().map(|result| match result {
                Err(err) => view! { <ErrorNote error=Signal::derive(move || Some(err.clone())) /> }.into_any(),
                Ok(page) if page.items.is_empty() => view! { <p class="empty">{t!(i18n, keys.empty)}</p> }.into_any(),
                Ok(page) => view! {
                    <div class="cards">
                        {page.items.into_iter().map(|key| view! { <KeyCard key can_manage=can.manage_keys version /> }).collect_view()}
                    </div>
                }.into_any(),
            })}
        </Transition>
        <CreateKeyWizard open=wizard version />
    }
}

fn provider_name(provider: &str) -> &'static str {
    match provider {
        "openai" => "OpenAI",
        "anthropic" => "Anthropic",
        "google" => "Google Gemini",
        "azure" => "Azure OpenAI",
        _ => "?",
    }
}

#[derive(Clone, Copy, PartialEq)]
enum KeyAction {
    RotateSecret,
    RotateProjectKey,
    Revoke,
}

#[component]
fn KeyCard(key: KeyRow, can_manage: bool, version: RwSignal<u32>) -> impl IntoView {
    let i18n = use_i18n();
    let action = RwSignal::new(None::<KeyAction>);
    let active = key.status == "active";
    let k = key.clone();
    view! {
        <article class="card key-card" data-testid="key-card" data-name=key.name.clone()>
            <header>
                <h2>{key.name.clone()}</h2>
                <Badge status=key.status.clone() />
            </header>
            <dl class="facts">
                <dt>{t!(i18n, keys.provider)}</dt><dd>{provider_name(&key.provider)}</dd>
                <dt>{t!(i18n, keys.environment)}</dt><dd>{key.environment.clone()}</dd>
                <dt>{t!(i18n, keys.prefix)}</dt><dd><code>{key.project_key_prefix.clone()} "…"</code></dd>
                {key.base_url.clone().map(|u| view! { <dt>{t!(i18n, keys.base_url)}</dt><dd><code>{u}</code></dd> })}
                {key.azure_deployment.clone().map(|d| view! { <dt>{t!(i18n, keys.azure_deployment)}</dt><dd>{d}</dd> })}
                <dt>{t!(i18n, keys.expires)}</dt><dd>{move || maybe_datetime(i18n.get_locale(), k.expires_at)}</dd>
                <dt>{t!(i18n, keys.last_used)}</dt><dd>{move || maybe_datetime(i18n.get_locale(), k.last_used_at)}</dd>
                <dt>{t!(i18n, devices.usage)}</dt>
                <dd data-testid="key-usage">{move || t_string!(i18n, devices.usage_line,
                    requests = number(i18n.get_locale(), k.request_count),
                    tokens_in = number(i18n.get_locale(), k.tokens_in),
                    tokens_out = number(i18n.get_locale(), k.tokens_out),
                    errors = number(i18n.get_locale(), k.error_count)).to_string()}</dd>
            </dl>
            {(can_manage && active).then(|| view! {
                <div class="actions">
                    <button type="button" class="secondary" on:click=move |_| action.set(Some(KeyAction::RotateSecret))>{t!(i18n, keys.rotate_secret)}</button>
                    <button type="button" class="secondary" on:click=move |_| action.set(Some(KeyAction::RotateProjectKey))>{t!(i18n, keys.rotate_project_key)}</button>
                    <button type="button" class="danger" on:click=move |_| action.set(Some(KeyAction::Revoke))>{t!(i18n, keys.revoke)}</button>
                </div>
            })}
            <KeyActionDialog key=key.clone() action version />
        </article>
    }
}

#[component]
fn KeyActionDialog(
    key: KeyRow,
    action: RwSignal<Option<KeyAction>>,
    version: RwSignal<u32>,
) -> impl IntoView {
    let i18n = use_i18n();
    let open = open_while_chosen(action);
    let text = RwSignal::new(String::new());
    let grace = RwSignal::new("24".to_owned());
    let id = key.id.clone();
    let run = Action::new(move |which: &KeyAction| {
        let (id, which, text, grace) = (id.clone(), *which, text.get_untracked(), grace.get_untracked());
        async move {
            match which {
                KeyAction::RotateSecret => rotate_provider_secret(id, text).await.map(|_| None),
                KeyAction::RotateProjectKey => {
                    rotate_project_key(id, grace.trim().parse().unwrap_or(-1)).await.map(Some)
                }
                KeyAction::Revoke => revoke_key(id, text).await.map(|_| None),
            }
        }
    });
    Effect::new(move |_| {
        if let Some(Ok(None)) = run.value().get() {
            open.set(false);
            version.update(|v| *v += 1);
        }
    });
    let error = Signal::derive(move || run.value().get().and_then(Result::err));
    let created = Signal::derive(move || run.value().get().and_then(Result::ok).flatten());
    let title = Signal::derive(move || match action.get() {
        Some(KeyAction::RotateSecret) => t_string!(i18n, keys.rotate_secret).to_string(),
        Some(KeyAction::RotateProjectKey) => t_string!(i18n, keys.rotate_project_key).to_string(),
        Some(KeyAction::Revoke) => t_string!(i18n, keys.revoke).to_string(),
        None => String::new(),
    });
    let labelled_by = "key-action-title";
    view! {
        <Dialog open labelled_by title>
            {move || match (created.get(), action.get()) {
                (Some(created), _) => view! { <ProjectKeyOnce created /> }.into_any(),
                (None, Some(KeyAction::RotateProjectKey)) => view! {
                    <form on:submit=move |ev| { ev.prevent_default(); run.dispatch(KeyAction::RotateProjectKey); }>
                        <div class="field">
                            <label for="grace-hours">{t!(i18n, keys.grace_hours)}</label>
                            <input id="grace-hours" type="number" min="0" max="720" prop:value=move || grace.get()
                                on:input=move |ev| grace.set(event_target_value(&ev)) />
                        </div>
                        <ErrorNote error />
                        <button type="submit">{t!(i18n, common.confirm)}</button>
                    </form>
                }.into_any(),
                (None, which) => {
                    let which = which.unwrap_or(KeyAction::Revoke);
                    let secret = which == KeyAction::RotateSecret;
                    view! {
                        <form on:submit=move |ev| { ev.prevent_default(); run.dispatch(which); }>
                            <div class="field">
                                <label for="key-action-text">{if secret { t_string!(i18n, keys.provider_secret).to_string() } else { t_string!(i18n, devices.reason).to_string() }}</label>
                                <input id="key-action-text" type={if secret { "password" } else { "text" }} required autocomplete="off"
                                    prop:value=move || text.get() on:input=move |ev| text.set(event_target_value(&ev)) />
                            </div>
                            <ErrorNote error />
                            <button type="submit" class={if secret { "" } else { "danger" }}>{t!(i18n, common.confirm)}</button>
                        </form>
                    }.into_any()
                }
            }}
        </Dialog>
    }
}

/// The project key in clear, once: copy it now, it is never shown again.
#[component]
fn ProjectKeyOnce(created: CreatedKey) -> impl IntoView {
    let i18n = use_i18n();
    let key = created.project_key.clone();
    view! {
        <div class="once" data-testid="project-key-once">
            <p><strong>{t!(i18n, keys.copy_now)}</strong></p>
            <p class="secret"><code data-testid="project-key">{key.clone()}</code></p>
            <CopyButton value=Signal::derive(move || key.clone()) testid="copy-project-key" />
        </div>
    }
}

/// Create a key in three steps: provider and name, connection and secret, expiry; then the
/// project key once.
#[component]
fn CreateKeyWizard(open: RwSignal<bool>, version: RwSignal<u32>) -> impl IntoView {
    let i18n = use_i18n();
    let step = RwSignal::new(1_u8);
    let input = RwSignal::new(KeyInput {
        provider: "openai".into(),
        environment: "production".into(),
        ..KeyInput::default()
    });
    let create = Action::new(move |input: &KeyInput| create_key(input.clone()));
    let error = Signal::derive(move || create.value().get().and_then(Result::err));
    let created = Signal::derive(move || create.value().get().and_then(Result::ok));
    Effect::new(move |_| {
        if created.get().is_some() {
            version.update(|v| *v += 1);
        }
    });
    Effect::new(move |_| {
        if !open.get() {
            step.set(1);
            create.value().set(None);
            input.set(KeyInput {
                provider: "openai".into(),
                environment: "production".into(),
                ..KeyInput::default()
            });
        }
    });
    macro_rules! bind {
        ($field:ident) => {
            (
                move || input.with(|i| i.$field.clone()),
                move |ev| input.update(|i| i.$field = event_target_value(&ev)),
            )
        };
    }
    let (name, set_name) = bind!(name);
    let (provider, set_provider) = bind!(provider);
    let (environment, set_environment) = bind!(environment);
    let (secret, set_secret) = bind!(provider_key);
    let (base_url, set_base_url) = bind!(base_url);
    let (deployment, set_deployment) = bind!(azure_deployment);
    let (api_version, set_api_version) = bind!(azure_api_version);
    let (days, set_days) = bind!(expires_in_days);
    let is_azure = move || input.with(|i| i.provider == "azure");
    let title = Signal::derive(move || t_string!(i18n, keys.create).to_string());
    view! {
        <Dialog open labelled_by="create-key-title" title>
            {move || match created.get() {
                Some(created) => view! { <ProjectKeyOnce created /> }.into_any(),
                None => view! {
                    <p class="steps" aria-live="polite">{move || t_string!(i18n, keys.step, step = step.get().to_string()).to_string()}</p>
                    <form data-testid="create-key-form" on:submit=move |ev| {
                        ev.prevent_default();
                        if step.get_untracked() < 3 { step.update(|s| *s += 1) } else { create.dispatch(input.get_untracked()); }
                    }>
                        <Show when=move || step.get() == 1>
                            <div class="field">
                                <label for="key-name">{t!(i18n, keys.name)}</label>
                                <input id="key-name" data-testid="key-name" required prop:value=name on:input=set_name />
                            </div>
                            <div class="field">
                                <label for="key-provider-new">{t!(i18n, keys.provider)}</label>
                                <select id="key-provider-new" data-testid="key-provider" prop:value=provider on:change=set_provider>
                                    {PROVIDERS.map(|p| view! { <option value=p>{provider_name(p)}</option> }).collect_view()}
                                </select>
                            </div>
                            <div class="field">
                                <label for="key-environment">{t!(i18n, keys.environment)}</label>
                                <select id="key-environment" prop:value=environment on:change=set_environment>
                                    <option value="production">"production"</option>
                                    <option value="staging">"staging"</option>
                                    <option value="development">"development"</option>
                                </select>
                            </div>
                        </Show>
                        <Show when=move || step.get() == 2>
                            <div class="field">
                                <label for="key-secret">{t!(i18n, keys.provider_secret)}</label>
                                <input id="key-secret" data-testid="key-secret" type="password" autocomplete="off" required
                                    prop:value=secret on:input=set_secret />
                            </div>
                            <div class="field">
                                <label for="key-base-url">{t!(i18n, keys.base_url)}</label>
                                <input id="key-base-url" data-testid="key-base-url" type="url" aria-describedby="key-base-url-hint"
                                    prop:value=base_url on:input=set_base_url />
                                <small id="key-base-url-hint" class="hint">{t!(i18n, keys.base_url_hint)}</small>
                            </div>
                            <Show when=is_azure>
                                <div class="field">
                                    <label for="key-deployment">{t!(i18n, keys.azure_deployment)}</label>
                                    <input id="key-deployment" prop:value=deployment on:input=set_deployment />
                                </div>
                                <div class="field">
                                    <label for="key-api-version">{t!(i18n, keys.azure_api_version)}</label>
                                    <input id="key-api-version" placeholder="2024-10-21" prop:value=api_version on:input=set_api_version />
                                </div>
                            </Show>
                        </Show>
                        <Show when=move || step.get() == 3>
                            <div class="field">
                                <label for="key-days">{t!(i18n, keys.expires_in_days)}</label>
                                <input id="key-days" type="number" min="1" max="3650" aria-describedby="key-days-hint"
                                    prop:value=days on:input=set_days />
                                <small id="key-days-hint" class="hint">{t!(i18n, keys.expires_hint)}</small>
                            </div>
                        </Show>
                        <ErrorNote error />
                        <div class="actions">
                            <Show when=move || { step.get() > 1 }>
                                <button type="button" class="secondary" on:click=move |_| step.update(|s| *s -= 1)>{t!(i18n, common.back)}</button>
                            </Show>
                            <button type="submit" data-testid="key-next" disabled=move || create.pending().get()>
                                {move || if step.get() < 3 { t_string!(i18n, common.next).to_string() } else { t_string!(i18n, keys.create).to_string() }}
                            </button>
                        </div>
                    </form>
                }.into_any(),
            }}
        </Dialog>
    }
}
