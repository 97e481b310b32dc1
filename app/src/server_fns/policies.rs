//! Policies at three levels: global, per key, per device. A level leaves a setting empty to
//! inherit it from the level above.

use chrono::{DateTime, Utc};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use leptos::server_fn::codec::Json;

use crate::error::AppError;

/// A policy as the form edits it: numbers as text (empty: inherit), lists one entry per line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PolicyForm {
    pub timestamp_window_seconds: String,
    pub requests_per_minute: String,
    pub tokens_per_day: String,
    pub ip_allow_list: String,
    /// Empty: every provider.
    pub allowed_providers: Vec<String>,
    pub allowed_models: String,
    /// `""` inherit, `"true"` or `"false"`.
    pub require_approval: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyState {
    pub form: PolicyForm,
    /// False when this level has no policy of its own.
    pub exists: bool,
    pub updated_by: Option<String>,
    pub updated_at: Option<DateTime<Utc>>,
}

#[cfg(feature = "ssr")]
fn scope(raw: &str) -> Result<domain::policy::PolicyScope, AppError> {
    domain::policy::PolicyScope::from_aggregate_id(raw.trim())
        .map_err(|e| crate::backend::fail(AppError::invalid_field("scope", "invalid_input", e.to_string())))
}

/// The policy of one level: `global`, `api_key:<id>` or `device:<id>`.
#[server(endpoint = "policies/get")]
pub async fn get_policy(scope_id: String) -> Result<PolicyState, AppError> {
    use domain::user::Permission;
    let allowed = crate::backend::authorize(Permission::ReadConfiguration)?;
    let view = services::policies::get(&allowed.platform, scope(&scope_id)?).await?;
    Ok(match view {
        None => {
            PolicyState { form: PolicyForm::default(), exists: false, updated_by: None, updated_at: None }
        }
        Some(view) => {
            let s = view.settings;
            let lines = |items: Vec<String>| items.join("\n");
            PolicyState {
                form: PolicyForm {
                    timestamp_window_seconds: s
                        .timestamp_window_seconds
                        .map(|v| v.to_string())
                        .unwrap_or_default(),
                    requests_per_minute: s.requests_per_minute.map(|v| v.to_string()).unwrap_or_default(),
                    tokens_per_day: s.tokens_per_day.map(|v| v.to_string()).unwrap_or_default(),
                    ip_allow_list: lines(
                        s.ip_allow_list.unwrap_or_default().iter().map(ToString::to_string).collect(),
                    ),
                    allowed_providers: s
                        .allowed_providers
                        .unwrap_or_default()
                        .iter()
                        .map(|p| p.as_str().to_owned())
                        .collect(),
                    allowed_models: lines(s.allowed_models.unwrap_or_default()),
                    require_approval: s.require_approval.map(|v| v.to_string()).unwrap_or_default(),
                },
                exists: true,
                updated_by: Some(view.updated_by),
                updated_at: Some(view.updated_at),
            }
        }
    })
}

/// Saves one level's policy. Each bad entry is named (field and line).
#[server(endpoint = "policies/save", input = Json)]
pub async fn save_policy(scope_id: String, form: PolicyForm) -> Result<(), AppError> {
    use crate::backend::fail;
    use domain::user::Permission;
    use services::policies::SettingsInput;

    fn number<T: std::str::FromStr>(field: &str, code: &str, raw: &str) -> Result<Option<T>, AppError> {
        match raw.trim() {
            "" => Ok(None),
            raw => raw.parse().map(Some).map_err(|_| {
                fail(AppError::invalid_field(field, code, format!("{field}: {raw:?} is not a whole number")))
            }),
        }
    }
    let lines = |text: &str| -> Option<Vec<String>> {
        let items: Vec<String> =
            text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect();
        (!items.is_empty()).then_some(items)
    };
    let allowed = crate::backend::authorize(Permission::ManagePolicies)?;
    let input = SettingsInput {
        timestamp_window_seconds: number(
            "timestamp_window_seconds",
            "invalid_timestamp_window_seconds",
            &form.timestamp_window_seconds,
        )?,
        requests_per_minute: number(
            "requests_per_minute",
            "invalid_requests_per_minute",
            &form.requests_per_minute,
        )?,
        tokens_per_day: number("tokens_per_day", "invalid_tokens_per_day", &form.tokens_per_day)?,
        ip_allow_list: lines(&form.ip_allow_list),
        allowed_providers: Some(form.allowed_providers).filter(|p| !p.is_empty()),
        allowed_models: lines(&form.allowed_models),
        require_approval: match form.require_approval.as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        },
    };
    services::policies::set(&allowed.platform, &allowed.caller, scope(&scope_id)?, input).await?;
    Ok(())
}

/// Removes a key's or a device's own policy: it inherits everything again.
#[server(endpoint = "policies/clear")]
pub async fn clear_policy(scope_id: String) -> Result<(), AppError> {
    use domain::user::Permission;
    let allowed = crate::backend::authorize(Permission::ManagePolicies)?;
    services::policies::clear(&allowed.platform, &allowed.caller, scope(&scope_id)?).await?;
    Ok(())
}
