//! The API keys read model (one row per key, including the sealed provider secret) and the
//! enrollment codes read model (one row per issued code), both fed by the ApiKey aggregate; the
//! keys' usage counters come from the proxy's `RequestCompleted` events.

use domain::api_key::ApiKeyEvent;

use super::{ProjectionError, decode};
use crate::events::StoredEvent;
use crate::read_models::sql::{Tx, args};

pub(super) const KEY_TABLES: &[&str] = &["api_keys"];
pub(super) const CODE_TABLES: &[&str] = &["enrollment_codes"];

pub(super) async fn apply_keys(tx: &mut Tx, event: &StoredEvent) -> Result<(), ProjectionError> {
    // Usage records are counted in runs by `Projection::apply_all`.
    if event.aggregate_type != "api_key" {
        return Ok(());
    }
    let id = event.aggregate_id.as_str();
    match decode::<ApiKeyEvent>("api_keys", event)? {
        ApiKeyEvent::ApiKeyCreated {
            api_key_id,
            name,
            provider,
            environment,
            project_key_hash,
            project_key_prefix,
            sealed_secret,
            base_url,
            azure,
            expires_at,
            description,
            by,
            at,
        } => {
            tx.execute(
                "INSERT INTO api_keys (id, name, provider, environment, project_key_hash, project_key_prefix, \
                 previous_key_hash, previous_key_prefix, grace_until, status, revoked_reason, base_url, \
                 azure_deployment, azure_api_version, expires_at, description, sealed_data_key_id, \
                 sealed_key_version, sealed_nonce, sealed_ciphertext, created_by, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, NULL, NULL, NULL, 'active', NULL, $7, $8, $9, $10, $11, \
                 $12, $13, $14, $15, $16, $17, $17)",
                args![
                    api_key_id,
                    name,
                    provider.as_str(),
                    environment.as_str(),
                    project_key_hash.as_str(),
                    project_key_prefix,
                    base_url.as_ref().map(|u| u.as_str()),
                    azure.as_ref().map(|a| a.deployment()),
                    azure.as_ref().map(|a| a.api_version()),
                    expires_at,
                    description,
                    sealed_secret.data_key_id(),
                    sealed_secret.key_version(),
                    sealed_secret.nonce_b64(),
                    sealed_secret.ciphertext_b64(),
                    by.to_string(),
                    at,
                ],
            )
            .await?;
        }
        ApiKeyEvent::ProviderSecretRotated { sealed_secret, at, .. } => {
            tx.execute(
                "UPDATE api_keys SET sealed_data_key_id = $1, sealed_key_version = $2, sealed_nonce = $3, \
                 sealed_ciphertext = $4, updated_at = $5 WHERE id = $6",
                args![
                    sealed_secret.data_key_id(),
                    sealed_secret.key_version(),
                    sealed_secret.nonce_b64(),
                    sealed_secret.ciphertext_b64(),
                    at,
                    id,
                ],
            )
            .await?;
        }
        ApiKeyEvent::ProjectKeyRotated {
            previous_hash,
            previous_prefix,
            new_hash,
            new_prefix,
            grace_until,
            at,
            ..
        } => {
            tx.execute(
                "UPDATE api_keys SET previous_key_hash = $1, previous_key_prefix = $2, grace_until = $3, \
                 project_key_hash = $4, project_key_prefix = $5, updated_at = $6 WHERE id = $7",
                args![
                    previous_hash.as_str(),
                    previous_prefix,
                    grace_until,
                    new_hash.as_str(),
                    new_prefix,
                    at,
                    id,
                ],
            )
            .await?;
        }
        ApiKeyEvent::ApiKeyRevoked { reason, at, .. } => {
            tx.execute(
                "UPDATE api_keys SET status = 'revoked', revoked_reason = $1, updated_at = $2 WHERE id = $3",
                args![reason, at, id],
            )
            .await?;
        }
        ApiKeyEvent::EnrollmentCodeIssued { .. }
        | ApiKeyEvent::EnrollmentCodeRevoked { .. }
        | ApiKeyEvent::EnrollmentCodeRedeemed { .. } => {}
    }
    Ok(())
}

pub(super) async fn apply_codes(tx: &mut Tx, event: &StoredEvent) -> Result<(), ProjectionError> {
    if event.aggregate_type != "api_key" {
        return Ok(());
    }
    let api_key_id = event.aggregate_id.as_str();
    match decode::<ApiKeyEvent>("enrollment_codes", event)? {
        ApiKeyEvent::EnrollmentCodeIssued {
            code_id,
            code_hash,
            expires_at,
            max_uses,
            auto_approve,
            description,
            by,
            at,
        } => {
            tx.execute(
                "INSERT INTO enrollment_codes (id, api_key_id, code_hash, expires_at, max_uses, uses, \
                 auto_approve, status, description, created_by, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, 0, $6, 'active', $7, $8, $9, $9)",
                args![
                    code_id,
                    api_key_id,
                    code_hash.as_str(),
                    expires_at,
                    max_uses,
                    auto_approve,
                    description,
                    by.to_string(),
                    at,
                ],
            )
            .await?;
        }
        ApiKeyEvent::EnrollmentCodeRevoked { code_id, at, .. } => {
            tx.execute(
                "UPDATE enrollment_codes SET status = 'revoked', updated_at = $1 WHERE id = $2",
                args![at, code_id],
            )
            .await?;
        }
        ApiKeyEvent::EnrollmentCodeRedeemed { code_id, uses_after, at, .. } => {
            tx.execute(
                "UPDATE enrollment_codes SET uses = $1, updated_at = $2, \
                 status = CASE WHEN $1 >= max_uses THEN 'exhausted' ELSE status END WHERE id = $3",
                args![uses_after, at, code_id],
            )
            .await?;
        }
        // The key's revocation takes its still-usable codes with it.
        ApiKeyEvent::ApiKeyRevoked { revoked_enrollment_codes, at, .. } => {
            for code_id in revoked_enrollment_codes {
                tx.execute(
                    "UPDATE enrollment_codes SET status = 'revoked', updated_at = $1 WHERE id = $2",
                    args![at, code_id],
                )
                .await?;
            }
        }
        ApiKeyEvent::ApiKeyCreated { .. }
        | ApiKeyEvent::ProviderSecretRotated { .. }
        | ApiKeyEvent::ProjectKeyRotated { .. } => {}
    }
    Ok(())
}
