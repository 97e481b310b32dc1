//! Enrollment codes: the codes issued for one API key, and lookups by id.

use chrono::{DateTime, Utc};
use domain::api_key::EnrollmentCodeStatus;
use serde::Serialize;
use uuid::Uuid;

use super::ReadModelError;
use super::sql::{self, args};
use crate::store::Database;

const COLUMNS: &str = "id, api_key_id, code_hash, expires_at, max_uses, uses, auto_approve, status, \
                       description, created_by, created_at, updated_at";

/// An issued code (only its hash; the code itself was shown once). `status` is the stored one
/// (`active`, `exhausted`, `revoked`); use [`EnrollmentCodeView::status_at`] for `expired`.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct EnrollmentCodeView {
    #[sqlx(try_from = "String")]
    pub id: Uuid,
    #[sqlx(try_from = "String")]
    pub api_key_id: Uuid,
    pub code_hash: String,
    pub expires_at: DateTime<Utc>,
    pub max_uses: i64,
    pub uses: i64,
    pub auto_approve: bool,
    pub status: String,
    pub description: Option<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl EnrollmentCodeView {
    pub fn status_at(&self, now: DateTime<Utc>) -> EnrollmentCodeStatus {
        match self.status.as_str() {
            "revoked" => EnrollmentCodeStatus::Revoked,
            "exhausted" => EnrollmentCodeStatus::Exhausted,
            _ if self.expires_at <= now => EnrollmentCodeStatus::Expired,
            _ => EnrollmentCodeStatus::Active,
        }
    }
}

/// Every code issued for `api_key_id`, newest first.
pub async fn list(db: &Database, api_key_id: Uuid) -> Result<Vec<EnrollmentCodeView>, ReadModelError> {
    let sql =
        format!("SELECT {COLUMNS} FROM enrollment_codes WHERE api_key_id = $1 ORDER BY created_at DESC, id");
    Ok(sql::fetch_all(db, &sql, args![api_key_id]).await?)
}

pub async fn get(db: &Database, id: Uuid) -> Result<Option<EnrollmentCodeView>, ReadModelError> {
    let sql = format!("SELECT {COLUMNS} FROM enrollment_codes WHERE id = $1");
    Ok(sql::fetch_optional(db, &sql, args![id]).await?)
}
