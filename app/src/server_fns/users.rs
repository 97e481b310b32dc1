//! Dashboard users (admins only change them; auditors may read them).

use chrono::{DateTime, Utc};
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use leptos::server_fn::codec::Json;

use crate::error::AppError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRow {
    pub id: String,
    pub email: String,
    pub name: String,
    pub role: String,
    pub disabled: bool,
    pub disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserPage {
    pub items: Vec<UserRow>,
    pub total: i64,
}

pub const USER_PAGE: i64 = 50;

#[cfg(feature = "ssr")]
impl From<services::read_models::users::UserView> for UserRow {
    fn from(u: services::read_models::users::UserView) -> Self {
        Self {
            id: u.id.to_string(),
            email: u.email,
            name: u.name,
            role: u.role,
            disabled: u.disabled,
            disabled_reason: u.disabled_reason,
            created_at: u.created_at,
        }
    }
}

#[server(endpoint = "users/list")]
pub async fn list_users(search: String, offset: i64) -> Result<UserPage, AppError> {
    use domain::user::Permission;
    use services::read_models::PageRequest;
    use services::read_models::users::UserFilter;

    let allowed = crate::backend::authorize(Permission::ReadUsers)?;
    let filter = UserFilter {
        search: Some(search).filter(|s| !s.trim().is_empty()),
        page: PageRequest::new(USER_PAGE, offset.max(0)),
        ..UserFilter::default()
    };
    let page = services::users::list(&allowed.platform, &filter).await?;
    Ok(UserPage { total: page.total, items: page.items.into_iter().map(UserRow::from).collect() })
}

#[server(endpoint = "users/create")]
pub async fn create_user(
    email: String,
    name: String,
    role: String,
    password: String,
) -> Result<UserRow, AppError> {
    use domain::user::Permission;
    use services::users::NewUser;

    let allowed = crate::backend::authorize(Permission::ManageUsers)?;
    let input = NewUser {
        email: email.trim().to_owned(),
        name: name.trim().to_owned(),
        role: role.trim().to_owned(),
        password: secrecy::SecretString::from(password),
    };
    Ok(services::users::create(&allowed.platform, &allowed.caller, input).await?.into())
}

/// What an admin can change about another user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserChange {
    Role(String),
    Disable(String),
    Enable,
    ResetPassword(String),
}

#[server(endpoint = "users/change", input = Json)]
pub async fn change_user(id: String, change: UserChange) -> Result<UserRow, AppError> {
    use domain::user::Permission;
    use services::users;

    let allowed = crate::backend::authorize(Permission::ManageUsers)?;
    let id = crate::backend::parse_id("id", &id)?;
    let (platform, caller) = (&allowed.platform, &allowed.caller);
    let changed = match change {
        UserChange::Role(role) => users::change_role(platform, caller, id, role.trim()).await?,
        UserChange::Disable(reason) => users::disable(platform, caller, id, reason.trim().to_owned()).await?,
        UserChange::Enable => users::enable(platform, caller, id).await?,
        UserChange::ResetPassword(password) => {
            users::set_password(platform, caller, id, secrecy::SecretString::from(password)).await?
        }
    };
    Ok(changed.into())
}
