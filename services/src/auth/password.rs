//! Password hashing for dashboard accounts: argon2id, the password policy, and a login check whose
//! timing does not reveal whether the account exists.
//!
//! Hashing takes tens of milliseconds of CPU and 19 MiB on purpose, so it runs on tokio's blocking
//! pool rather than on a runtime worker.

use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};
use domain::user::PasswordHash;
use secrecy::{ExposeSecret as _, SecretString};

/// Shortest password accepted, in characters (NIST SP 800-63B asks for at least 8; 12 leaves
/// room for passphrases, which the maximum allows).
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest password accepted, in characters: bounds the hashing cost of one request.
pub const MAX_PASSWORD_CHARS: usize = 1024;

/// OWASP's recommended argon2id parameters: 19 MiB, 2 passes, 1 lane.
const M_COST_KIB: u32 = 19 * 1024;
const T_COST: u32 = 2;
const P_COST: u32 = 1;

/// An argon2id hash of a random password nobody knows, with the parameters above. Verified when
/// the account does not exist, so that answering "no such user" takes as long as "wrong password".
/// A unit test checks that its parameters stay equal to the ones used for real hashes.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$4tVO4Jc+OPRMPunLzW54pg$+zp/ls3qJ8518aik5lhGDXAnV1a7eJs7wAlNjHNXUBk";

/// Why a password cannot be set. The messages give lengths, never the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordPolicyError {
    #[error("The password must be at least {min} characters long (it has {actual}).")]
    TooShort { min: usize, actual: usize },
    #[error("The password must be at most {max} characters long.")]
    TooLong { max: usize },
    #[error("The password must not consist of spaces only.")]
    Blank,
}

impl domain::ErrorCode for PasswordPolicyError {
    fn code(&self) -> &'static str {
        match self {
            Self::TooShort { .. } => "password_too_short",
            Self::TooLong { .. } => "password_too_long",
            Self::Blank => "password_blank",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error(transparent)]
    Policy(#[from] PasswordPolicyError),
    #[error("the password could not be hashed: {0}")]
    Hashing(String),
    #[error("the password hashing task did not finish: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Checks a new password against the policy: length in characters (not bytes, so non-Latin
/// passwords are not penalised), and not whitespace only.
pub fn check_password_policy(password: &SecretString) -> Result<(), PasswordPolicyError> {
    let password = password.expose_secret();
    let chars = password.chars().count();
    if chars > MAX_PASSWORD_CHARS {
        return Err(PasswordPolicyError::TooLong { max: MAX_PASSWORD_CHARS });
    }
    if password.trim().is_empty() && !password.is_empty() {
        return Err(PasswordPolicyError::Blank);
    }
    if chars < MIN_PASSWORD_CHARS {
        return Err(PasswordPolicyError::TooShort { min: MIN_PASSWORD_CHARS, actual: chars });
    }
    Ok(())
}

fn hasher() -> Argon2<'static> {
    let params =
        Params::new(M_COST_KIB, T_COST, P_COST, None).expect("the constant argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a new password after checking the policy, with a fresh random salt.
pub async fn hash_password(password: &SecretString) -> Result<PasswordHash, PasswordError> {
    check_password_policy(password)?;
    let password = password.clone();
    let phc = tokio::task::spawn_blocking(move || {
        hasher()
            .hash_password(password.expose_secret().as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| PasswordError::Hashing(e.to_string()))
    })
    .await??;
    PasswordHash::parse(&phc).map_err(|e| PasswordError::Hashing(e.to_string()))
}

/// Whether `password` matches `hash`. Any failure (a malformed hash included) is a mismatch.
pub async fn verify_password(password: &SecretString, hash: &PasswordHash) -> bool {
    verify_phc(password, hash.as_phc_str().to_owned()).await
}

/// The login check: verifies against the account's hash, or against a dummy hash when there is
/// no such account (or it is disabled), and then answers `false` either way. Callers must not
/// return early for unknown accounts, or the response time tells which emails exist.
pub async fn verify_password_or_dummy(password: &SecretString, hash: Option<&PasswordHash>) -> bool {
    match hash {
        Some(hash) => verify_password(password, hash).await,
        None => {
            let _ = verify_phc(password, DUMMY_HASH.to_owned()).await;
            false
        }
    }
}

/// Whether a stored hash uses weaker parameters than today's, so the caller should re-hash the
/// password after a successful login.
pub fn needs_rehash(hash: &PasswordHash) -> bool {
    match argon2::PasswordHash::new(hash.as_phc_str()).ok().and_then(|h| Params::try_from(&h).ok()) {
        Some(p) => p.m_cost() < M_COST_KIB || p.t_cost() < T_COST || p.p_cost() < P_COST,
        None => true,
    }
}

async fn verify_phc(password: &SecretString, phc: String) -> bool {
    // Characters past the policy's maximum cannot match any hash we made; refusing them first
    // keeps a megabyte "password" from costing more than a normal one.
    if password.expose_secret().len() > MAX_PASSWORD_CHARS * 4 {
        return false;
    }
    let password = password.clone();
    tokio::task::spawn_blocking(move || {
        hasher().verify_password(password.expose_secret().as_bytes(), phc.as_str()).is_ok()
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[test]
    fn the_policy_counts_characters_and_refuses_blank_passwords() {
        assert_eq!(
            check_password_policy(&secret("short")),
            Err(PasswordPolicyError::TooShort { min: 12, actual: 5 })
        );
        assert_eq!(
            check_password_policy(&secret("")),
            Err(PasswordPolicyError::TooShort { min: 12, actual: 0 })
        );
        assert_eq!(check_password_policy(&secret(&" ".repeat(20))), Err(PasswordPolicyError::Blank));
        assert_eq!(check_password_policy(&secret("\t\n \u{3000}")), Err(PasswordPolicyError::Blank));
        assert!(check_password_policy(&secret("correct horse battery")).is_ok());
        // Twelve Arabic letters are 24 bytes but twelve characters: accepted.
        assert!(check_password_policy(&secret(&"كلمة".repeat(3))).is_ok());
        assert!(check_password_policy(&secret(&"a".repeat(MAX_PASSWORD_CHARS))).is_ok());
        assert_eq!(
            check_password_policy(&secret(&"a".repeat(MAX_PASSWORD_CHARS + 1))),
            Err(PasswordPolicyError::TooLong { max: MAX_PASSWORD_CHARS })
        );
        let err = check_password_policy(&secret("hunter2")).unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
    }

    #[tokio::test]
    async fn hashes_are_salted_argon2id_and_verify() {
        let password = secret("correct horse battery staple");
        let first = hash_password(&password).await.unwrap();
        let second = hash_password(&password).await.unwrap();
        assert!(first.as_phc_str().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{first:?}");
        assert_ne!(first, second, "each hash has its own salt");
        assert!(verify_password(&password, &first).await);
        assert!(!verify_password(&secret("correct horse battery stapler"), &first).await);
        assert!(!needs_rehash(&first));
        let weak =
            PasswordHash::parse("$argon2id$v=19$m=4096,t=1,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG")
                .unwrap();
        assert!(needs_rehash(&weak));
        assert!(!verify_password(&password, &weak).await);
        assert!(matches!(hash_password(&secret("short")).await, Err(PasswordError::Policy(_))));
    }

    #[tokio::test]
    async fn unknown_accounts_cost_a_real_verification_and_always_fail() {
        let dummy = PasswordHash::parse(DUMMY_HASH).expect("the dummy hash is an argon2id PHC string");
        assert!(!needs_rehash(&dummy));
        let phc = argon2::PasswordHash::new(DUMMY_HASH).unwrap();
        let params = Params::try_from(&phc).unwrap();
        assert_eq!((params.m_cost(), params.t_cost(), params.p_cost()), (M_COST_KIB, T_COST, P_COST));
        assert!(!verify_password_or_dummy(&secret("anything at all"), None).await);
        let real = hash_password(&secret("correct horse battery staple")).await.unwrap();
        assert!(verify_password_or_dummy(&secret("correct horse battery staple"), Some(&real)).await);
    }
}
