//! Users: list, lookups, the number of accounts, and — for the login path only — the password
//! hash.

use std::fmt;

use chrono::{DateTime, Utc};
use domain::user::{Email, PasswordHash, Role};
use serde::Serialize;
use uuid::Uuid;

use super::sql::{self, Where, args};
use super::{Page, PageRequest, ReadModelError};
use crate::store::Database;

const COLUMNS: &str = "id, email, name, role, disabled, disabled_reason, created_at, updated_at";

/// An account as the API shows it; there is no password hash here to leak.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    #[sqlx(try_from = "String")]
    pub id: Uuid,
    pub email: String,
    pub name: String,
    /// `admin`, `operator` or `auditor`.
    pub role: String,
    pub disabled: bool,
    pub disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    /// Case-insensitive substring of the email or name.
    pub search: Option<String>,
    pub page: PageRequest,
}

/// What the login path needs to check a password. Not `Debug`-derived: it holds the hash.
pub struct Credentials {
    pub user_id: Uuid,
    pub email: String,
    pub role: String,
    pub disabled: bool,
    pub password_hash: PasswordHash,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user_id", &self.user_id)
            .field("email", &self.email)
            .field("role", &self.role)
            .field("disabled", &self.disabled)
            .field("password_hash", &"<redacted>")
            .finish()
    }
}

/// Oldest accounts first.
pub async fn list(db: &Database, filter: &UserFilter) -> Result<Page<UserView>, ReadModelError> {
    let mut w = Where::default();
    if let Some(role) = filter.role {
        w.and("role = $", role.as_str());
    }
    if let Some(disabled) = filter.disabled {
        w.and("disabled = $", disabled);
    }
    if let Some(needle) = filter.search.as_deref().filter(|s| !s.trim().is_empty()) {
        w.search(&["email", "name"], needle.trim());
    }
    super::page(db, COLUMNS, "users", w, "created_at, id", filter.page).await
}

pub async fn get(db: &Database, id: Uuid) -> Result<Option<UserView>, ReadModelError> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE id = $1");
    Ok(sql::fetch_optional(db, &sql, args![id]).await?)
}

/// The account with this address (emails are stored lowercased by [`Email`]); the oldest if the
/// history holds two.
pub async fn find_by_email(db: &Database, email: &Email) -> Result<Option<UserView>, ReadModelError> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE email = $1 ORDER BY created_at, id LIMIT 1");
    Ok(sql::fetch_optional(db, &sql, args![email.as_str()]).await?)
}

#[derive(sqlx::FromRow)]
struct CredentialsRow {
    id: String,
    email: String,
    role: String,
    disabled: bool,
    password_hash: String,
}

/// The login path's lookup: the account and its argon2id hash. Nothing else may read the hash.
pub async fn credentials_by_email(
    db: &Database,
    email: &Email,
) -> Result<Option<Credentials>, ReadModelError> {
    let row: Option<CredentialsRow> = sql::fetch_optional(
        db,
        "SELECT id, email, role, disabled, password_hash FROM users WHERE email = $1 \
         ORDER BY created_at, id LIMIT 1",
        args![email.as_str()],
    )
    .await?;
    let Some(row) = row else { return Ok(None) };
    let corrupt = |reason: String| ReadModelError::Corrupt { id: row.id.clone(), reason };
    Ok(Some(Credentials {
        user_id: Uuid::parse_str(&row.id).map_err(|e| corrupt(e.to_string()))?,
        password_hash: PasswordHash::parse(&row.password_hash).map_err(|e| corrupt(e.to_string()))?,
        email: row.email,
        role: row.role,
        disabled: row.disabled,
    }))
}

/// How many accounts exist (the setup page is open only while this is 0).
pub async fn count(db: &Database) -> Result<i64, ReadModelError> {
    Ok(sql::fetch_i64(db, "SELECT COUNT(*) FROM users", vec![]).await?)
}
