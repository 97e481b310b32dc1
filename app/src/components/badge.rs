//! A coloured status word (device, key, code or user status; audit outcome).

use leptos::prelude::*;

use crate::i18n::{Locale, td_string, use_i18n};

/// The translated word for a status or outcome value.
pub fn status_text(locale: Locale, status: &str) -> String {
    match status {
        "pending" => td_string!(locale, status.pending).to_string(),
        "active" => td_string!(locale, status.active).to_string(),
        "suspended" => td_string!(locale, status.suspended).to_string(),
        "revoked" => td_string!(locale, status.revoked).to_string(),
        "expired" => td_string!(locale, status.expired).to_string(),
        "exhausted" => td_string!(locale, status.exhausted).to_string(),
        "disabled" => td_string!(locale, status.disabled).to_string(),
        "success" => td_string!(locale, status.success).to_string(),
        "failure" => td_string!(locale, status.failure).to_string(),
        "denied" => td_string!(locale, status.denied).to_string(),
        other => other.to_owned(),
    }
}

#[component]
pub fn Badge(#[prop(into)] status: String) -> impl IntoView {
    let i18n = use_i18n();
    let class = format!("badge badge-{status}");
    let text = status.clone();
    view! { <span class=class data-status=status>{move || status_text(i18n.get_locale(), &text)}</span> }
}
