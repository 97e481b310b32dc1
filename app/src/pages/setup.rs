//! First run: create the first admin. Only while no user exists; afterwards it sends the visitor
//! to sign in.

use leptos::prelude::*;

use crate::components::error_note::ErrorNote;
use crate::components::layout::VisitorPage;
use crate::i18n::{t, use_i18n};
use crate::server_fns::auth::{CreateFirstAdmin, setup_needed};

#[component]
pub fn SetupPage() -> impl IntoView {
    let i18n = use_i18n();
    let redirect = Resource::new(
        || (),
        |_| async { matches!(setup_needed().await, Ok(false)).then(|| "/login".to_owned()) },
    );
    let setup = ServerAction::<CreateFirstAdmin>::new();
    Effect::new(move |_| {
        if let Some(Ok(())) = setup.value().get() {
            let _ = window().location().set_href("/login");
        }
    });
    let error = Signal::derive(move || setup.value().get().and_then(Result::err));
    view! {
        <VisitorPage redirect>
            <h1>{t!(i18n, setup.title)}</h1>
            <p class="muted">{t!(i18n, setup.intro)}</p>
            <ActionForm action=setup attr:data-testid="setup-form">
                <div class="field">
                    <label for="setup-name">{t!(i18n, setup.name)}</label>
                    <input id="setup-name" name="name" type="text" autocomplete="name" required />
                </div>
                <div class="field">
                    <label for="setup-email">{t!(i18n, setup.email)}</label>
                    <input id="setup-email" name="email" type="email" autocomplete="username" required />
                </div>
                <div class="field">
                    <label for="setup-password">{t!(i18n, setup.password)}</label>
                    <input id="setup-password" name="password" type="password" autocomplete="new-password"
                        minlength="12" required aria-describedby="setup-password-hint" />
                    <small id="setup-password-hint" class="hint">{t!(i18n, setup.password_hint)}</small>
                </div>
                <ErrorNote error />
                <button type="submit" data-testid="setup-submit" disabled=move || setup.pending().get()>
                    {t!(i18n, setup.submit)}
                </button>
            </ActionForm>
        </VisitorPage>
    }
}
