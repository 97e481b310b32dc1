//! Errors shown in the reader's language: the stable code picks the sentence.

use leptos::prelude::*;

use crate::error::AppError;
use crate::i18n::{Locale, td_string, use_i18n};

/// The sentence for `err` in `locale`. Codes without a sentence of their own still say what
/// happened, and which code it was (for the logs and for support).
pub fn error_message(locale: Locale, err: &AppError) -> String {
    macro_rules! known {
        ($($code:ident),* $(,)?) => {
            match err.code() {
                $(stringify!($code) => Some(td_string!(locale, errors.$code).to_string()),)*
                _ => None,
            }
        };
    }
    if let AppError::Throttled { retry_after_seconds } = err {
        let seconds = crate::format::number(locale, i64::try_from(*retry_after_seconds).unwrap_or(i64::MAX));
        return td_string!(locale, errors.login_throttled, seconds = seconds).to_string();
    }
    known!(
        unauthorized,
        forbidden,
        unavailable,
        internal,
        transport,
        invalid_credentials,
        concurrent_modification,
        invalid_transition,
        device_not_found,
        device_revoked,
        api_key_not_found,
        api_key_revoked,
        api_key_id_required,
        user_not_found,
        email_taken,
        user_already_exists,
        setup_complete,
        self_modification_forbidden,
        role_unchanged,
        password_too_short,
        password_too_long,
        password_blank,
        password_unchanged,
        email_empty,
        email_at_sign,
        email_invalid_domain,
        email_invalid_local_part,
        invalid_name,
        invalid_label,
        label_unchanged,
        invalid_reason,
        invalid_base_url,
        base_url_not_absolute,
        base_url_unsupported_scheme,
        base_url_has_credentials,
        base_url_has_query,
        provider_key_required,
        secret_length,
        azure_setting_required,
        azure_setting_not_allowed,
        invalid_azure_deployment,
        invalid_azure_api_version,
        expiry_not_in_future,
        invalid_grace_period,
        invalid_enrollment_code_expiry,
        invalid_max_uses,
        invalid_ip_allow_list,
        invalid_allowed_providers,
        invalid_allowed_models,
        invalid_requests_per_minute,
        invalid_tokens_per_day,
        invalid_timestamp_window_seconds,
        empty_policy_override,
        policy_unchanged,
        global_policy_cannot_be_cleared,
        require_approval_not_applicable,
        invalid_id,
        invalid_input,
    )
    .unwrap_or_else(|| td_string!(locale, errors.other, code = err.code().to_owned()).to_string())
}

/// An error in an alert region, announced by screen readers.
#[component]
pub fn ErrorNote(#[prop(into)] error: Signal<Option<AppError>>) -> impl IntoView {
    let i18n = use_i18n();
    move || {
        error.get().map(|err| {
            view! {
                <p class="error-note" role="alert" data-testid="error" data-code=err.code().to_owned()>
                    {error_message(i18n.get_locale(), &err)}
                </p>
            }
        })
    }
}
