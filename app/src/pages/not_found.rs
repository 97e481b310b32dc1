//! The page for unknown addresses.

use leptos::prelude::*;
use leptos_router::components::A;

use crate::i18n::{t, use_i18n};

#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    {
        if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
            response.set_status(http::StatusCode::NOT_FOUND);
        }
    }
    let i18n = use_i18n();
    view! {
        <main class="auth-page">
            <section class="card auth-card">
                <h1>{t!(i18n, not_found.title)}</h1>
                <p><A href="/">{t!(i18n, not_found.home)}</A></p>
            </section>
        </main>
    }
}
