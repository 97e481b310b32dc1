//! The signed-in user's own settings: password, language, theme.

use leptos::prelude::*;

use crate::components::error_note::ErrorNote;
use crate::components::language_switch::LanguageSwitch;
use crate::components::layout::{role_text, use_session};
use crate::components::theme_switch::ThemeSwitch;
use crate::i18n::{t, use_i18n};
use crate::server_fns::auth::ChangePassword;

#[component]
pub fn ProfilePage() -> impl IntoView {
    let i18n = use_i18n();
    let session = use_session();
    let change = ServerAction::<ChangePassword>::new();
    Effect::new(move |_| {
        // Every session ends with a password change, this one too.
        if let Some(Ok(())) = change.value().get() {
            let _ = window().location().set_href("/login");
        }
    });
    let error = Signal::derive(move || change.value().get().and_then(Result::err));
    view! {
        <div class="page-header"><h1>{t!(i18n, profile.title)}</h1></div>
        <section class="card">
            <dl class="facts">
                <dt>{t!(i18n, users.name)}</dt><dd>{session.name.clone()}</dd>
                <dt>{t!(i18n, users.email)}</dt><dd>{session.email.clone()}</dd>
                <dt>{t!(i18n, users.role)}</dt><dd>{role_text(i18n, session.role.clone())}</dd>
            </dl>
        </section>
        <section class="card">
            <h2>{t!(i18n, profile.preferences)}</h2>
            <div class="actions"><LanguageSwitch /><ThemeSwitch /></div>
        </section>
        <section class="card">
            <h2>{t!(i18n, profile.password)}</h2>
            <ActionForm action=change>
                <div class="field"><label for="current-password">{t!(i18n, profile.current)}</label>
                    <input id="current-password" name="current" type="password" autocomplete="current-password" required /></div>
                <div class="field"><label for="new-password">{t!(i18n, profile.new_password)}</label>
                    <input id="new-password" name="new_password" type="password" autocomplete="new-password" minlength="12" required /></div>
                <ErrorNote error />
                <button type="submit">{t!(i18n, profile.change)}</button>
            </ActionForm>
        </section>
    }
}
