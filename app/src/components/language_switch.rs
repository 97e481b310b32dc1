//! The button that toggles the interface between English and Arabic (and so between LTR and RTL).

use leptos::prelude::*;

use crate::i18n::{Locale, t, use_i18n};

#[component]
pub fn LanguageSwitch() -> impl IntoView {
    let i18n = use_i18n();
    let toggle = move |_| {
        let next = match i18n.get_locale() {
            Locale::en => Locale::ar,
            Locale::ar => Locale::en,
        };
        i18n.set_locale(next);
    };
    view! {
        <button
            type="button"
            class="language-switch"
            data-testid="language-switch"
            aria-label=move || t!(i18n, language_switch_label)().to_html()
            on:click=toggle
        >
            {t!(i18n, language_switch)}
        </button>
    }
}
