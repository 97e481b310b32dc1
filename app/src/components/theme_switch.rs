//! Light, dark or the system's choice.

use leptos::prelude::*;

use crate::i18n::{t, use_i18n};
use crate::theme::{Theme, remember, use_theme};

#[component]
pub fn ThemeSwitch() -> impl IntoView {
    let i18n = use_i18n();
    let theme = use_theme();
    let change = move |ev| {
        if let Some(next) = Theme::parse(&event_target_value(&ev)) {
            theme.0.set(next);
            remember(next);
        }
    };
    view! {
        <label class="inline-select">
            <span class="visually-hidden">{t!(i18n, theme.label)}</span>
            <select data-testid="theme-switch" on:change=change prop:value=move || theme.0.get().as_str()>
                <option value="system">{t!(i18n, theme.system)}</option>
                <option value="light">{t!(i18n, theme.light)}</option>
                <option value="dark">{t!(i18n, theme.dark)}</option>
            </select>
        </label>
    }
}
