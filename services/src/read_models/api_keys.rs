//! API keys: list with filters and paging, lookups by id and by project key hash, and the sealed
//! provider secret for the secrets service (kept out of every listing).

use chrono::{DateTime, Utc};
use domain::api_key::{ApiKeyStatus, Environment, ProjectKeyHash, SealedSecret};
use domain::provider::Provider;
use serde::Serialize;
use uuid::Uuid;

use super::sql::{self, Where, args};
use super::{Page, PageRequest, ReadModelError};
use crate::store::Database;

const COLUMNS: &str = "id, name, provider, environment, project_key_hash, project_key_prefix, \
                       previous_key_hash, previous_key_prefix, grace_until, status, revoked_reason, base_url, \
                       azure_deployment, azure_api_version, expires_at, description, created_by, created_at, \
                       updated_at, request_count, tokens_in, tokens_out, error_count, last_used_at";

/// An API key without its secret. `status` is the stored one (`active` or `revoked`); use
/// [`ApiKeyView::status_at`] for `expired`.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyView {
    #[sqlx(try_from = "String")]
    pub id: Uuid,
    pub name: String,
    pub provider: String,
    pub environment: String,
    pub project_key_hash: String,
    pub project_key_prefix: String,
    pub previous_key_hash: Option<String>,
    pub previous_key_prefix: Option<String>,
    pub grace_until: Option<DateTime<Utc>>,
    pub status: String,
    pub revoked_reason: Option<String>,
    pub base_url: Option<String>,
    pub azure_deployment: Option<String>,
    pub azure_api_version: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub description: Option<String>,
    /// The actor, as `user:<uuid>` or `system:<component>`.
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Proxied requests through this key, whatever their outcome.
    pub request_count: i64,
    pub tokens_in: i64,
    pub tokens_out: i64,
    /// Requests answered with status 400 or above, or not delivered in full.
    pub error_count: i64,
    /// The time of the latest proxied request through this key.
    pub last_used_at: Option<DateTime<Utc>>,
}

impl ApiKeyView {
    pub fn status_at(&self, now: DateTime<Utc>) -> ApiKeyStatus {
        match (self.status.as_str(), self.expires_at) {
            ("revoked", _) => ApiKeyStatus::Revoked,
            (_, Some(expires_at)) if expires_at <= now => ApiKeyStatus::Expired,
            _ => ApiKeyStatus::Active,
        }
    }

    /// Whether `hash` opens this key at `now`: the current project key, or the previous one
    /// within its grace period.
    pub fn accepts_hash_at(&self, hash: &ProjectKeyHash, now: DateTime<Utc>) -> bool {
        let current = ProjectKeyHash::parse(&self.project_key_hash).is_ok_and(|h| h.ct_eq(hash));
        let previous = self.grace_until.is_some_and(|until| now < until)
            && self
                .previous_key_hash
                .as_deref()
                .and_then(|h| ProjectKeyHash::parse(h).ok())
                .is_some_and(|h| h.ct_eq(hash));
        current || previous
    }
}

#[derive(Debug, Clone, Default)]
pub struct ApiKeyFilter {
    pub status: Option<ApiKeyStatus>,
    pub provider: Option<Provider>,
    pub environment: Option<Environment>,
    /// Case-insensitive substring of the name, description, prefix or id.
    pub search: Option<String>,
    pub page: PageRequest,
}

/// Newest first.
pub async fn list(db: &Database, filter: &ApiKeyFilter) -> Result<Page<ApiKeyView>, ReadModelError> {
    let mut w = Where::default();
    match filter.status {
        Some(ApiKeyStatus::Revoked) => w.and("status = $", "revoked"),
        Some(ApiKeyStatus::Active) => {
            w.and("status = $", "active");
            w.and("(expires_at IS NULL OR expires_at > $)", Utc::now());
        }
        Some(ApiKeyStatus::Expired) => {
            w.and("status = $", "active");
            w.and("expires_at <= $", Utc::now());
        }
        None => {}
    }
    if let Some(provider) = filter.provider {
        w.and("provider = $", provider.as_str());
    }
    if let Some(environment) = filter.environment {
        w.and("environment = $", environment.as_str());
    }
    if let Some(needle) = filter.search.as_deref().filter(|s| !s.trim().is_empty()) {
        w.search(&["name", "description", "project_key_prefix", "id"], needle.trim());
    }
    super::page(db, COLUMNS, "api_keys", w, "created_at DESC, id", filter.page).await
}

pub async fn get(db: &Database, id: Uuid) -> Result<Option<ApiKeyView>, ReadModelError> {
    let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE id = $1");
    Ok(sql::fetch_optional(db, &sql, args![id]).await?)
}

/// The key whose current or previous project key has this hash (the proxy's lookup). Whether
/// a previous key is still in its grace period is [`ApiKeyView::accepts_hash_at`]'s to say.
pub async fn find_by_project_key_hash(
    db: &Database,
    hash: &ProjectKeyHash,
) -> Result<Option<ApiKeyView>, ReadModelError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM api_keys WHERE project_key_hash = $1 OR previous_key_hash = $1 \
         ORDER BY CASE WHEN project_key_hash = $1 THEN 0 ELSE 1 END, created_at DESC LIMIT 1"
    );
    Ok(sql::fetch_optional(db, &sql, args![hash.as_str()]).await?)
}

#[derive(sqlx::FromRow)]
struct SealedRow {
    sealed_data_key_id: String,
    sealed_key_version: i64,
    sealed_nonce: String,
    sealed_ciphertext: String,
}

/// The provider secret's envelope ciphertext, for the secrets service to open.
pub async fn sealed_secret(db: &Database, id: Uuid) -> Result<Option<SealedSecret>, ReadModelError> {
    let row: Option<SealedRow> = sql::fetch_optional(
        db,
        "SELECT sealed_data_key_id, sealed_key_version, sealed_nonce, sealed_ciphertext FROM api_keys \
         WHERE id = $1",
        args![id],
    )
    .await?;
    let Some(row) = row else { return Ok(None) };
    let corrupt = |reason: String| ReadModelError::Corrupt { id: id.to_string(), reason };
    let data_key_id = Uuid::parse_str(&row.sealed_data_key_id).map_err(|e| corrupt(e.to_string()))?;
    let version = u32::try_from(row.sealed_key_version).map_err(|e| corrupt(e.to_string()))?;
    SealedSecret::new(data_key_id, version, row.sealed_nonce, row.sealed_ciphertext)
        .map(Some)
        .map_err(|e| corrupt(e.to_string()))
}
