//! The landing page: what KeyGuard is, and whether the server behind it answers.

use leptos::prelude::*;

use crate::components::language_switch::LanguageSwitch;
use crate::i18n::{t, use_i18n};
use crate::server_fns::system::status::get_server_status;

#[component]
pub fn HomePage() -> impl IntoView {
    let i18n = use_i18n();
    let check = Action::new(|_: &()| get_server_status());
    let status = move || match check.value().get() {
        None if check.pending().get() => t!(i18n, status_checking).into_any(),
        None => ().into_any(),
        Some(Ok(status)) => {
            view! { <span data-testid="status-ok">{t!(i18n, status_ok)} " (" {status.version} ")"</span> }
                .into_any()
        }
        Some(Err(_)) => view! { <span data-testid="status-down">{t!(i18n, status_down)}</span> }.into_any(),
    };
    view! {
        <header class="topbar">
            <span class="brand">{t!(i18n, app_name)}</span>
            <LanguageSwitch />
        </header>
        <main class="page">
            <h1>{t!(i18n, app_name)}</h1>
            <p class="tagline">{t!(i18n, tagline)}</p>
            <section class="card" aria-labelledby="status-heading">
                <h2 id="status-heading">{t!(i18n, status_heading)}</h2>
                <p aria-live="polite">{status}</p>
                <button type="button" data-testid="check-status" on:click=move |_| { check.dispatch(()); }>
                    {t!(i18n, check_again)}
                </button>
            </section>
        </main>
        <footer class="footer">{t!(i18n, footer)}</footer>
    }
}
