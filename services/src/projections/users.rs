//! The users read model: one row per dashboard account; the password hash sits in its own column
//! that only the login query reads.

use domain::user::UserEvent;

use super::{ProjectionError, decode};
use crate::events::StoredEvent;
use crate::read_models::sql::{Tx, args};

pub(super) const TABLES: &[&str] = &["users"];

pub(super) async fn apply(tx: &mut Tx, event: &StoredEvent) -> Result<(), ProjectionError> {
    if event.aggregate_type != "user" {
        return Ok(());
    }
    let id = event.aggregate_id.as_str();
    match decode::<UserEvent>("users", event)? {
        UserEvent::UserCreated { user_id, email, name, role, password_hash, at, .. } => {
            tx.execute(
                "INSERT INTO users (id, email, name, role, disabled, disabled_reason, password_hash, \
                 created_at, updated_at) VALUES ($1, $2, $3, $4, $5, NULL, $6, $7, $7)",
                args![user_id, email.as_str(), name, role.as_str(), false, password_hash.as_phc_str(), at],
            )
            .await?;
        }
        UserEvent::UserRoleChanged { role, at, .. } => {
            tx.execute(
                "UPDATE users SET role = $1, updated_at = $2 WHERE id = $3",
                args![role.as_str(), at, id],
            )
            .await?;
        }
        UserEvent::UserDisabled { reason, at, .. } => {
            tx.execute(
                "UPDATE users SET disabled = $1, disabled_reason = $2, updated_at = $3 WHERE id = $4",
                args![true, reason, at, id],
            )
            .await?;
        }
        UserEvent::UserEnabled { at, .. } => {
            tx.execute(
                "UPDATE users SET disabled = $1, disabled_reason = NULL, updated_at = $2 WHERE id = $3",
                args![false, at, id],
            )
            .await?;
        }
        UserEvent::UserPasswordChanged { password_hash, at, .. } => {
            tx.execute(
                "UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3",
                args![password_hash.as_phc_str(), at, id],
            )
            .await?;
        }
    }
    Ok(())
}
