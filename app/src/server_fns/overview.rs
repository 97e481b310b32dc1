//! The figures of the overview page, from the read models.

use chrono::{DateTime, Utc};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;
use crate::server_fns::audit::AuditRow;
use crate::server_fns::devices::DeviceCounts;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrafficPoint {
    pub start: DateTime<Utc>,
    pub requests: i64,
    pub errors: i64,
    pub rejections: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProviderUse {
    pub provider: String,
    pub requests: i64,
    pub tokens_in: i64,
    pub tokens_out: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveDevice {
    pub id: String,
    pub label: String,
    pub status: String,
    pub requests: i64,
    pub tokens: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverviewData {
    /// True for the last 7 days by day, false for the last 24 hours by hour.
    pub week: bool,
    pub traffic: Vec<TrafficPoint>,
    pub providers: Vec<ProviderUse>,
    pub top_devices: Vec<ActiveDevice>,
    pub recent_security: Vec<AuditRow>,
    pub devices: DeviceCounts,
}

#[server(endpoint = "overview")]
pub async fn get_overview(week: bool) -> Result<OverviewData, AppError> {
    use domain::user::Permission;
    use services::overview::{self, OverviewRange};

    let allowed = crate::backend::authorize(Permission::ReadConfiguration)?;
    let range = if week { OverviewRange::Week } else { OverviewRange::Day };
    let o = overview::overview(&allowed.platform, range, Utc::now()).await?;
    // Security events are for auditors and admins; operators see the counts only.
    let recent_security = if allowed.user.role.allows(Permission::ReadAudit) {
        o.recent_security.into_iter().map(AuditRow::from).collect()
    } else {
        Vec::new()
    };
    Ok(OverviewData {
        week,
        traffic: o
            .buckets
            .into_iter()
            .map(|b| TrafficPoint {
                start: b.start,
                requests: b.requests,
                errors: b.errors,
                rejections: b.rejections,
            })
            .collect(),
        providers: o
            .providers
            .into_iter()
            .map(|p| ProviderUse {
                provider: p.provider,
                requests: p.requests,
                tokens_in: p.tokens_in,
                tokens_out: p.tokens_out,
            })
            .collect(),
        top_devices: o
            .top_devices
            .into_iter()
            .map(|d| ActiveDevice {
                id: d.id.to_string(),
                label: d.label,
                status: d.status,
                requests: d.request_count,
                tokens: d.token_count,
            })
            .collect(),
        recent_security,
        devices: o.devices.into(),
    })
}
