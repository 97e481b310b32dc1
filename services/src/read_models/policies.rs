//! Policies: the settings stored for one scope, or for all of them.

use chrono::{DateTime, Utc};
use domain::policy::{PolicyScope, PolicySettings};
use serde::Serialize;

use super::ReadModelError;
use super::sql::{self, args};
use crate::store::Database;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyView {
    pub scope: PolicyScope,
    pub settings: PolicySettings,
    pub updated_by: String,
    pub updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct Row {
    scope: String,
    #[sqlx(json)]
    settings: serde_json::Value,
    updated_by: String,
    updated_at: DateTime<Utc>,
}

impl TryFrom<Row> for PolicyView {
    type Error = ReadModelError;
    fn try_from(row: Row) -> Result<Self, Self::Error> {
        let corrupt = |reason: String| ReadModelError::Corrupt { id: row.scope.clone(), reason };
        Ok(PolicyView {
            scope: PolicyScope::from_aggregate_id(&row.scope).map_err(|e| corrupt(e.to_string()))?,
            settings: serde_json::from_value(row.settings.clone()).map_err(|e| corrupt(e.to_string()))?,
            updated_by: row.updated_by,
            updated_at: row.updated_at,
        })
    }
}

const COLUMNS: &str = "scope, settings, updated_by, updated_at";

/// The settings stored for `scope`, if any (absent means "inherit everything").
pub async fn get(db: &Database, scope: PolicyScope) -> Result<Option<PolicyView>, ReadModelError> {
    let sql = format!("SELECT {COLUMNS} FROM policies WHERE scope = $1");
    let row: Option<Row> = sql::fetch_optional(db, &sql, args![scope.aggregate_id()]).await?;
    row.map(PolicyView::try_from).transpose()
}

/// Every stored policy: global first, then per key, then per device.
pub async fn all(db: &Database) -> Result<Vec<PolicyView>, ReadModelError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM policies ORDER BY CASE kind WHEN 'global' THEN 0 WHEN 'api_key' THEN 1 \
         ELSE 2 END, scope"
    );
    let rows: Vec<Row> = sql::fetch_all(db, &sql, vec![]).await?;
    rows.into_iter().map(PolicyView::try_from).collect()
}
