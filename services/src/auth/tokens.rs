//! Signed tokens of dashboard sessions: short-lived access tokens and long-lived refresh tokens.
//!
//! Both are HS256 JWTs, told apart by a `typ` claim that each verifier insists on, so a refresh
//! token is never accepted where an access token is expected (the original system mixed them).
//! The HMAC key is derived from the master key with HKDF, so nodes that share the master key
//! verify each other's tokens; the header's `kid` names the master key, so tokens signed before a
//! rotation stay valid while the previous key is still configured.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use domain::user::Role;
use hkdf::Hkdf;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::clock::Clock;
use crate::secrets::{MasterKey, MasterKeys};

/// How long an access token is valid.
pub const ACCESS_TOKEN_TTL: TimeDelta = TimeDelta::minutes(15);
/// How long a refresh token is valid (each refresh issues a new one).
pub const REFRESH_TOKEN_TTL: TimeDelta = TimeDelta::days(30);

const HKDF_INFO: &[u8] = b"keyguard jwt v1";
/// Far above any token we issue; refusing longer input first bounds the work per request.
const MAX_TOKEN_LEN: usize = 4096;

/// Which of the two token kinds a JWT is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenType {
    Access,
    Refresh,
}

/// Why a token was refused. Each kind is distinct so the API can tell "log in again" (expired)
/// from an attack (tampered, wrong type), and tests can check each.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token uses an algorithm other than HS256")]
    UnsupportedAlgorithm,
    #[error("the token was signed by a key this server does not know")]
    UnknownKey,
    #[error("the token's signature does not match")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("a {found:?} token was given where a {expected:?} token is required")]
    WrongType { expected: TokenType, found: TokenType },
    #[error("the token could not be signed: {0}")]
    Signing(String),
}

impl domain::ErrorCode for TokenError {
    fn code(&self) -> &'static str {
        match self {
            Self::Malformed => "token_malformed",
            Self::UnsupportedAlgorithm => "token_algorithm",
            Self::UnknownKey => "token_unknown_key",
            Self::BadSignature => "token_signature",
            Self::Expired => "token_expired",
            Self::WrongType { .. } => "token_wrong_type",
            Self::Signing(_) => "token_signing",
        }
    }
}

/// A token just issued: the compact JWT (a bearer secret, hence `SecretString`), its id and expiry.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: SecretString,
    pub jti: Uuid,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// What a verified access token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessClaims {
    pub user_id: Uuid,
    pub role: Role,
    pub jti: Uuid,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// What a verified refresh token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshClaims {
    pub user_id: Uuid,
    pub family_id: Uuid,
    pub jti: Uuid,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: Uuid,
    typ: TokenType,
    iat: i64,
    exp: i64,
    jti: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role: Option<Role>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fam: Option<Uuid>,
}

struct SigningKey {
    kid: String,
    encoding: EncodingKey,
}

/// Issues and verifies access and refresh tokens.
pub struct TokenIssuer {
    signing: SigningKey,
    verifying: HashMap<String, DecodingKey>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("signing_kid", &self.signing.kid)
            .field("verifying_kids", &self.verifying.len())
            .finish_non_exhaustive()
    }
}

impl TokenIssuer {
    /// Derives the signing key from the current master key, and verification keys from it and
    /// the previous ones.
    pub fn new(master_keys: &MasterKeys, clock: Arc<dyn Clock>) -> Result<Self, TokenError> {
        let signing_error = |e: jsonwebtoken::errors::Error| TokenError::Signing(e.to_string());
        let current = master_keys.current();
        let signing = SigningKey {
            kid: current.id().to_string(),
            encoding: EncodingKey::from_secret(derive(current).as_slice()).map_err(signing_error)?,
        };
        let mut verifying = HashMap::new();
        for key in std::iter::once(current).chain(master_keys.previous()) {
            let decoding = DecodingKey::from_secret(derive(key).as_slice()).map_err(signing_error)?;
            verifying.insert(key.id().to_string(), decoding);
        }
        Ok(Self { signing, verifying, clock })
    }

    /// The issuer's clock, shared with the sessions that use it.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub fn issue_access(&self, user_id: Uuid, role: Role) -> Result<IssuedToken, TokenError> {
        self.issue(user_id, TokenType::Access, ACCESS_TOKEN_TTL, Some(role), None)
    }

    pub fn issue_refresh(&self, user_id: Uuid, family_id: Uuid) -> Result<IssuedToken, TokenError> {
        self.issue(user_id, TokenType::Refresh, REFRESH_TOKEN_TTL, None, Some(family_id))
    }

    pub fn verify_access(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let claims = self.verify(token, TokenType::Access, false)?;
        Ok(AccessClaims {
            user_id: claims.sub,
            role: claims.role.ok_or(TokenError::Malformed)?,
            jti: claims.jti,
            issued_at: timestamp(claims.iat)?,
            expires_at: timestamp(claims.exp)?,
        })
    }

    pub fn verify_refresh(&self, token: &str) -> Result<RefreshClaims, TokenError> {
        refresh_claims(self.verify(token, TokenType::Refresh, false)?)
    }

    /// Checks signature and type but not expiry: logging out with an old token still revokes
    /// its family.
    pub(crate) fn verify_refresh_even_if_expired(&self, token: &str) -> Result<RefreshClaims, TokenError> {
        refresh_claims(self.verify(token, TokenType::Refresh, true)?)
    }

    fn issue(
        &self,
        user_id: Uuid,
        typ: TokenType,
        ttl: TimeDelta,
        role: Option<Role>,
        fam: Option<Uuid>,
    ) -> Result<IssuedToken, TokenError> {
        let now = self.clock.now();
        let iat = now.timestamp();
        let exp = iat + ttl.num_seconds();
        let jti = Uuid::new_v4();
        let claims = Claims { sub: user_id, typ, iat, exp, jti, role, fam };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.signing.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.signing.encoding)
            .map_err(|e| TokenError::Signing(e.to_string()))?;
        Ok(IssuedToken {
            token: SecretString::from(token),
            jti,
            issued_at: timestamp(iat)?,
            expires_at: timestamp(exp)?,
        })
    }

    fn verify(&self, token: &str, expected: TokenType, allow_expired: bool) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        // The header is read by hand first so that `alg: none` (or any other algorithm) gets its
        // own answer before any key is chosen; jsonwebtoken would call it malformed.
        let header = RawHeader::parse(token)?;
        if header.alg != "HS256" {
            return Err(TokenError::UnsupportedAlgorithm);
        }
        let key =
            header.kid.as_deref().and_then(|kid| self.verifying.get(kid)).ok_or(TokenError::UnknownKey)?;
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is checked below against the injected clock, and the claims we require are
        // enforced by deserialising into `Claims`.
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        validation.leeway = 0;
        let claims = jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenError::BadSignature,
                jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => TokenError::UnsupportedAlgorithm,
                _ => TokenError::Malformed,
            })?
            .claims;
        if claims.typ != expected {
            return Err(TokenError::WrongType { expected, found: claims.typ });
        }
        if !allow_expired && claims.exp <= self.clock.now().timestamp() {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

fn refresh_claims(claims: Claims) -> Result<RefreshClaims, TokenError> {
    Ok(RefreshClaims {
        user_id: claims.sub,
        family_id: claims.fam.ok_or(TokenError::Malformed)?,
        jti: claims.jti,
        issued_at: timestamp(claims.iat)?,
        expires_at: timestamp(claims.exp)?,
    })
}

fn timestamp(seconds: i64) -> Result<DateTime<Utc>, TokenError> {
    DateTime::from_timestamp(seconds, 0).ok_or(TokenError::Malformed)
}

/// HKDF-SHA256 of the master key: the JWT key is never the master key itself, so a leak of one
/// does not give away the other.
fn derive(master: &MasterKey) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(None, master.bytes())
        .expand(HKDF_INFO, out.as_mut_slice())
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    out
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

impl RawHeader {
    fn parse(token: &str) -> Result<Self, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(_), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let json = URL_SAFE_NO_PAD.decode(header).map_err(|_| TokenError::Malformed)?;
        serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret as _;

    use super::*;
    use crate::auth::ManualClock;
    use crate::secrets::MasterKeySource;

    fn keys(current: &SecretString, previous: &[&SecretString]) -> MasterKeys {
        MasterKeys::load(&MasterKeySource::Inline {
            current: current.clone(),
            previous: previous.iter().map(|k| (*k).clone()).collect(),
        })
        .unwrap()
    }

    fn issuer() -> (TokenIssuer, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::default());
        (
            TokenIssuer::new(&keys(&MasterKeys::generate_encoded().unwrap(), &[]), clock.clone()).unwrap(),
            clock,
        )
    }

    /// Re-encodes one part of a JWT with `edit` applied to its JSON.
    fn edit_part(token: &str, index: usize, edit: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut json: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[index]).unwrap()).unwrap();
        edit(&mut json);
        parts[index] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&json).unwrap());
        parts.join(".")
    }

    #[test]
    fn access_tokens_carry_the_documented_claims_and_verify() {
        let (issuer, _) = issuer();
        let user = Uuid::new_v4();
        let issued = issuer.issue_access(user, Role::Operator).unwrap();
        let token = issued.token.expose_secret();
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap())
                .unwrap();
        assert_eq!(claims["sub"], user.to_string());
        assert_eq!(claims["role"], "operator");
        assert_eq!(claims["typ"], "access");
        assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 15 * 60);
        assert_eq!(claims["jti"], issued.jti.to_string());
        let verified = issuer.verify_access(token).unwrap();
        assert_eq!((verified.user_id, verified.role, verified.jti), (user, Role::Operator, issued.jti));
        assert!(!format!("{issued:?}").contains(token));
    }

    #[test]
    fn refresh_and_access_tokens_are_not_interchangeable() {
        let (issuer, _) = issuer();
        let user = Uuid::new_v4();
        let family = Uuid::new_v4();
        let refresh = issuer.issue_refresh(user, family).unwrap();
        let access = issuer.issue_access(user, Role::Admin).unwrap();
        assert_eq!(
            issuer.verify_access(refresh.token.expose_secret()),
            Err(TokenError::WrongType { expected: TokenType::Access, found: TokenType::Refresh })
        );
        assert_eq!(
            issuer.verify_refresh(access.token.expose_secret()),
            Err(TokenError::WrongType { expected: TokenType::Refresh, found: TokenType::Access })
        );
        let claims = issuer.verify_refresh(refresh.token.expose_secret()).unwrap();
        assert_eq!((claims.user_id, claims.family_id, claims.jti), (user, family, refresh.jti));
        assert_eq!(claims.expires_at - claims.issued_at, REFRESH_TOKEN_TTL);
    }

    #[test]
    fn expired_tokens_are_refused_at_their_expiry() {
        let (issuer, clock) = issuer();
        let access = issuer.issue_access(Uuid::new_v4(), Role::Auditor).unwrap();
        let refresh = issuer.issue_refresh(Uuid::new_v4(), Uuid::new_v4()).unwrap();
        clock.advance(ACCESS_TOKEN_TTL - TimeDelta::seconds(1));
        assert!(issuer.verify_access(access.token.expose_secret()).is_ok());
        clock.advance(TimeDelta::seconds(1));
        assert_eq!(issuer.verify_access(access.token.expose_secret()), Err(TokenError::Expired));
        assert!(issuer.verify_refresh(refresh.token.expose_secret()).is_ok());
        clock.advance(REFRESH_TOKEN_TTL);
        assert_eq!(issuer.verify_refresh(refresh.token.expose_secret()), Err(TokenError::Expired));
        assert!(issuer.verify_refresh_even_if_expired(refresh.token.expose_secret()).is_ok());
    }

    #[test]
    fn tampered_forged_and_unsigned_tokens_are_refused() {
        let (issuer, _) = issuer();
        let token = issuer.issue_access(Uuid::new_v4(), Role::Auditor).unwrap().token;
        let token = token.expose_secret();

        let promoted = edit_part(token, 1, |c| c["role"] = "admin".into());
        assert_eq!(issuer.verify_access(&promoted), Err(TokenError::BadSignature));
        let retyped = edit_part(token, 1, |c| c["typ"] = "refresh".into());
        assert_eq!(issuer.verify_refresh(&retyped), Err(TokenError::BadSignature));
        // Change a character inside the signature, not the last one: the last base64url
        // character also carries padding bits, so changing it can make the text undecodable
        // (Malformed) rather than a wrong signature, depending on the random token.
        let mut bad_sig = token.as_bytes().to_vec();
        let at = bad_sig.len() - 5;
        bad_sig[at] = if bad_sig[at] == b'A' { b'B' } else { b'A' };
        let bad_sig = String::from_utf8(bad_sig).unwrap();
        assert_eq!(issuer.verify_access(&bad_sig), Err(TokenError::BadSignature));

        // alg "none" with an empty signature: the classic JWT bypass.
        let unsigned = edit_part(token, 0, |h| h["alg"] = "none".into());
        let unsigned = format!("{}.", unsigned.rsplit_once('.').unwrap().0);
        assert_eq!(issuer.verify_access(&unsigned), Err(TokenError::UnsupportedAlgorithm));
        let other_alg = edit_part(token, 0, |h| h["alg"] = "HS512".into());
        assert_eq!(issuer.verify_access(&other_alg), Err(TokenError::UnsupportedAlgorithm));
        let other_kid = edit_part(token, 0, |h| h["kid"] = "0000000000000000".into());
        assert_eq!(issuer.verify_access(&other_kid), Err(TokenError::UnknownKey));

        for junk in ["", "abc", "a.b", "a.b.c.d", "!!!.e30.x", &"a".repeat(MAX_TOKEN_LEN + 1)] {
            assert_eq!(issuer.verify_access(junk), Err(TokenError::Malformed), "{junk}");
        }

        // A token from a server with another master key.
        let (stranger, _) = self::issuer();
        let foreign = stranger.issue_access(Uuid::new_v4(), Role::Admin).unwrap();
        assert_eq!(issuer.verify_access(foreign.token.expose_secret()), Err(TokenError::UnknownKey));
    }

    #[test]
    fn tokens_survive_a_master_key_rotation_while_the_old_key_is_configured() {
        let (old, new) = (MasterKeys::generate_encoded().unwrap(), MasterKeys::generate_encoded().unwrap());
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::default());
        let before = TokenIssuer::new(&keys(&old, &[]), clock.clone()).unwrap();
        let token = before.issue_access(Uuid::new_v4(), Role::Admin).unwrap().token;
        let during = TokenIssuer::new(&keys(&new, &[&old]), clock.clone()).unwrap();
        assert!(during.verify_access(token.expose_secret()).is_ok());
        let after = TokenIssuer::new(&keys(&new, &[]), clock).unwrap();
        assert_eq!(after.verify_access(token.expose_secret()), Err(TokenError::UnknownKey));
        // A node with the same master key verifies (a cluster shares the derived key).
        let twin = TokenIssuer::new(&keys(&new, &[]), Arc::new(ManualClock::default())).unwrap();
        let t = after.issue_access(Uuid::new_v4(), Role::Admin).unwrap().token;
        assert!(twin.verify_access(t.expose_secret()).is_ok());
    }
}
