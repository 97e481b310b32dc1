//! The policies read model: the settings of every scope that has any.

use domain::policy::{PolicyEvent, PolicyScope};

use super::{ProjectionError, decode};
use crate::events::StoredEvent;
use crate::read_models::sql::{Tx, args};

pub(super) const TABLES: &[&str] = &["policies"];

pub(super) async fn apply(tx: &mut Tx, event: &StoredEvent) -> Result<(), ProjectionError> {
    if event.aggregate_type != "policy" {
        return Ok(());
    }
    match decode::<PolicyEvent>("policies", event)? {
        PolicyEvent::PolicySet { scope, settings, by, at } => {
            let settings = serde_json::to_value(&settings).map_err(|e| ProjectionError::Apply {
                projection: "policies",
                position: event.position,
                reason: e.to_string(),
            })?;
            let (kind, target) = scope_parts(scope);
            tx.execute(
                "INSERT INTO policies (scope, kind, target_id, settings, updated_by, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (scope) DO UPDATE SET settings = excluded.settings, \
                 updated_by = excluded.updated_by, updated_at = excluded.updated_at",
                args![scope.aggregate_id(), kind, target, settings, by.to_string(), at],
            )
            .await?;
        }
        PolicyEvent::PolicyCleared { scope, .. } => {
            tx.execute("DELETE FROM policies WHERE scope = $1", args![scope.aggregate_id()]).await?;
        }
    }
    Ok(())
}

pub(crate) fn scope_parts(scope: PolicyScope) -> (&'static str, Option<uuid::Uuid>) {
    match scope {
        PolicyScope::Global => ("global", None),
        PolicyScope::ApiKey(id) => ("api_key", Some(id)),
        PolicyScope::Device(id) => ("device", Some(id)),
    }
}
