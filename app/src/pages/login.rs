//! Sign in. Sends the visitor to the setup while no user exists, and home once signed in.

use leptos::prelude::*;

use crate::components::error_note::ErrorNote;
use crate::components::layout::VisitorPage;
use crate::i18n::{t, t_string, use_i18n};
use crate::server_fns::auth::{Login, get_session, setup_needed};

#[component]
pub fn LoginPage() -> impl IntoView {
    let i18n = use_i18n();
    let redirect = Resource::new(
        || (),
        |_| async {
            match (setup_needed().await, get_session().await) {
                (Ok(true), _) => Some("/setup".to_owned()),
                (_, Ok(Some(_))) => Some("/".to_owned()),
                _ => None,
            }
        },
    );
    let login = ServerAction::<Login>::new();
    Effect::new(move |_| {
        if let Some(Ok(())) = login.value().get() {
            let _ = window().location().set_href("/");
        }
    });
    let error = Signal::derive(move || login.value().get().and_then(Result::err));
    view! {
        <VisitorPage redirect>
            <h1>{t!(i18n, login.title)}</h1>
            <p class="muted">{t!(i18n, tagline)}</p>
            <ActionForm action=login attr:data-testid="login-form">
                <div class="field">
                    <label for="login-email">{t!(i18n, login.email)}</label>
                    <input id="login-email" name="email" type="email" autocomplete="username" required />
                </div>
                <div class="field">
                    <label for="login-password">{t!(i18n, login.password)}</label>
                    <input id="login-password" name="password" type="password" autocomplete="current-password" required />
                </div>
                <ErrorNote error=error />
                <button type="submit" data-testid="login-submit" disabled=move || login.pending().get()>
                    {move || if login.pending().get() { t_string!(i18n, login.signing_in) } else { t_string!(i18n, login.submit) }}
                </button>
            </ActionForm>
        </VisitorPage>
    }
}
