//! Dashboard sessions: refresh-token families with rotation and reuse detection.
//!
//! A login starts a family. Each refresh marks the presented token used and issues its successor
//! in the same transaction, so of two concurrent refreshes with one token exactly one wins. A used
//! token presented again can only be a copy (or the loser of such a race), and the safe answer is
//! to revoke the whole family: the thief and the owner both have to log in again (RFC 9700 §4.14).
//! Access tokens are not stored; they expire within 15 minutes, so the HTTP layer should still
//! check that the user is enabled on each request.

use std::future::Future;
use std::sync::Arc;

use domain::user::Role;
use sqlx::Row as _;
use uuid::Uuid;

use super::tokens::{IssuedToken, RefreshClaims, TokenError, TokenIssuer};
use crate::secrets::sql::{on_backend, whole_seconds};
use crate::store::Database;

/// The tokens a login or refresh hands to the client.
#[derive(Debug, Clone)]
pub struct TokenPair {
    pub access: IssuedToken,
    pub refresh: IssuedToken,
    pub family_id: Uuid,
}

/// Why a refresh or logout was refused.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("the refresh token is not known to this server")]
    UnknownToken,
    #[error("the refresh token was already used; the whole session has been revoked")]
    Reused,
    #[error("the session was revoked")]
    Revoked,
    #[error("the account is disabled or no longer exists; the session has been revoked")]
    UserInactive,
    #[error("the session store failed: {0}")]
    Store(#[from] sqlx::Error),
}

impl domain::ErrorCode for SessionError {
    fn code(&self) -> &'static str {
        match self {
            Self::Token(e) => domain::ErrorCode::code(e),
            Self::UnknownToken => "refresh_token_unknown",
            Self::Reused => "refresh_token_reused",
            Self::Revoked => "session_revoked",
            Self::UserInactive => "user_inactive",
            Self::Store(_) => "session_store_unavailable",
        }
    }
}

/// Starts, rotates and ends sessions. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Sessions {
    db: Database,
    tokens: Arc<TokenIssuer>,
}

impl Sessions {
    pub fn new(db: Database, tokens: Arc<TokenIssuer>) -> Self {
        Self { db, tokens }
    }

    pub fn tokens(&self) -> &TokenIssuer {
        &self.tokens
    }

    /// Starts a new family for a user who just proved their password.
    pub async fn start(&self, user_id: Uuid, role: Role) -> Result<TokenPair, SessionError> {
        let family_id = Uuid::new_v4();
        let refresh = self.tokens.issue_refresh(user_id, family_id)?;
        on_backend!(&self.db, pool, uuid => {
            sqlx::query(INSERT_TOKEN)
                .bind(uuid(refresh.jti))
                .bind(uuid(family_id))
                .bind(uuid(user_id))
                .bind(whole_seconds(refresh.issued_at))
                .bind(whole_seconds(refresh.expires_at))
                .execute(pool)
                .await?;
        });
        let access = self.tokens.issue_access(user_id, role)?;
        Ok(TokenPair { access, refresh, family_id })
    }

    /// Exchanges a refresh token for a new pair. `current_role` looks the user up (the role may
    /// have changed since login); `None` means disabled or deleted, which ends the session.
    pub async fn refresh<F, Fut>(
        &self,
        refresh_token: &str,
        current_role: F,
    ) -> Result<TokenPair, SessionError>
    where
        F: FnOnce(Uuid) -> Fut,
        Fut: Future<Output = Option<Role>>,
    {
        let claims = self.tokens.verify_refresh(refresh_token)?;
        let Some(role) = current_role(claims.user_id).await else {
            self.revoke_family(claims.family_id).await?;
            return Err(SessionError::UserInactive);
        };
        let now = whole_seconds(self.tokens.now());
        let next = self.tokens.issue_refresh(claims.user_id, claims.family_id)?;
        let rotated = on_backend!(&self.db, pool, uuid => {
            let mut tx = pool.begin().await?;
            // The WHERE clause is the whole concurrency story: the row lock (PostgreSQL) or the
            // single writer (SQLite) makes the second of two racing updates see used_at set.
            let marked = sqlx::query(
                "UPDATE refresh_tokens SET used_at = $2 \
                 WHERE jti = $1 AND used_at IS NULL AND revoked_at IS NULL",
            )
            .bind(uuid(claims.jti))
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if marked == 1 {
                sqlx::query(INSERT_TOKEN)
                    .bind(uuid(next.jti))
                    .bind(uuid(claims.family_id))
                    .bind(uuid(claims.user_id))
                    .bind(whole_seconds(next.issued_at))
                    .bind(whole_seconds(next.expires_at))
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                true
            } else {
                tx.rollback().await?;
                false
            }
        });
        if rotated {
            let access = self.tokens.issue_access(claims.user_id, role)?;
            return Ok(TokenPair { access, refresh: next, family_id: claims.family_id });
        }
        Err(self.explain_refusal(&claims).await?)
    }

    /// Ends the session the refresh token belongs to (every token of its family). An expired
    /// token still ends it; a token that is not ours is refused.
    pub async fn logout(&self, refresh_token: &str) -> Result<(), SessionError> {
        let claims = self.tokens.verify_refresh_even_if_expired(refresh_token)?;
        self.revoke_family(claims.family_id).await?;
        Ok(())
    }

    /// Ends every session of a user (disabled account, password reset, role change). Returns how
    /// many sessions (token families) were still open.
    pub async fn revoke_all_for_user(&self, user_id: Uuid) -> Result<usize, SessionError> {
        let now = whole_seconds(self.tokens.now());
        let families: Vec<String> = on_backend!(&self.db, pool, uuid => {
            sqlx::query_scalar(
                "UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL \
                 RETURNING CAST(family_id AS text)",
            )
            .bind(uuid(user_id))
            .bind(now)
            .fetch_all(pool)
            .await?
        });
        Ok(families.into_iter().collect::<std::collections::HashSet<_>>().len())
    }

    /// Deletes rows of tokens expired for longer than a refresh token lives: past that, a
    /// presented copy fails on its own expiry, so reuse detection no longer needs the row.
    pub async fn purge_expired(&self) -> Result<u64, SessionError> {
        let cutoff = whole_seconds(self.tokens.now() - super::REFRESH_TOKEN_TTL);
        let purged = on_backend!(&self.db, pool, uuid => {
            sqlx::query("DELETE FROM refresh_tokens WHERE expires_at < $1")
                .bind(cutoff)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(purged)
    }

    async fn revoke_family(&self, family_id: Uuid) -> Result<u64, SessionError> {
        let now = whole_seconds(self.tokens.now());
        let revoked = on_backend!(&self.db, pool, uuid => {
            sqlx::query("UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL")
                .bind(uuid(family_id))
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(revoked)
    }

    /// Says why a validly signed refresh token could not be rotated, revoking its family if it
    /// was a reuse.
    async fn explain_refusal(&self, claims: &RefreshClaims) -> Result<SessionError, SessionError> {
        let state: Option<(bool, bool)> = on_backend!(&self.db, pool, uuid => {
            sqlx::query(
                "SELECT used_at IS NOT NULL AS used, revoked_at IS NOT NULL AS revoked \
                 FROM refresh_tokens WHERE jti = $1",
            )
            .bind(uuid(claims.jti))
            .fetch_optional(pool)
            .await?
            .map(|row| Ok::<_, sqlx::Error>((row.try_get("used")?, row.try_get("revoked")?)))
            .transpose()?
        });
        Ok(match state {
            None => SessionError::UnknownToken,
            Some((_, true)) => SessionError::Revoked,
            Some((true, false)) => {
                let revoked = self.revoke_family(claims.family_id).await?;
                tracing::warn!(
                    user_id = %claims.user_id,
                    family_id = %claims.family_id,
                    revoked,
                    "a used refresh token was presented again; the session family is revoked"
                );
                SessionError::Reused
            }
            // Neither used nor revoked, yet the update matched nothing: cannot happen, since
            // nothing clears those columns; refuse rather than guess.
            Some((false, false)) => SessionError::UnknownToken,
        })
    }
}

/// Records an issued refresh token; the token itself is never stored, only its id.
const INSERT_TOKEN: &str = "INSERT INTO refresh_tokens (jti, family_id, user_id, issued_at, expires_at) \
                            VALUES ($1, $2, $3, $4, $5)";
