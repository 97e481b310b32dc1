//! A password as the domain knows it: an argon2id PHC string computed by the server.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;

/// Longest PHC string accepted; real argon2id strings are about 100 characters.
pub const MAX_PHC_LEN: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordHashError {
    #[error("The password hash must be an argon2id PHC string (starting with $argon2id$).")]
    NotArgon2id,
    #[error(
        "The password hash must have the form $argon2id$v=19$m=…,t=…,p=…$salt$hash, at most {MAX_PHC_LEN} printable characters."
    )]
    Malformed,
}

impl ErrorCode for PasswordHashError {
    fn code(&self) -> &'static str {
        match self {
            PasswordHashError::NotArgon2id => "password_hash_not_argon2id",
            PasswordHashError::Malformed => "password_hash_malformed",
        }
    }
}

/// An argon2id PHC string. Its `Debug` prints nothing of it, and the parse errors never echo the
/// input, since a plaintext password passed here by mistake must not reach a log.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PasswordHash(String);

impl PasswordHash {
    pub fn parse(phc: &str) -> Result<Self, PasswordHashError> {
        if !phc.starts_with("$argon2id$") {
            return Err(PasswordHashError::NotArgon2id);
        }
        // "", "argon2id", ["v=19",] "m=..,t=..,p=..", salt, hash
        let fields: Vec<&str> = phc.split('$').collect();
        let well_formed = phc.len() <= MAX_PHC_LEN
            && phc.bytes().all(|b| b.is_ascii_graphic())
            && matches!(fields.len(), 5 | 6)
            && fields[1..].iter().all(|f| !f.is_empty())
            && fields[fields.len() - 3].starts_with("m=");
        if well_formed { Ok(Self(phc.to_owned())) } else { Err(PasswordHashError::Malformed) }
    }

    /// The PHC string, for the server's password verification.
    pub fn as_phc_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PasswordHash {
    type Error = PasswordHashError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<PasswordHash> for String {
    fn from(h: PasswordHash) -> Self {
        h.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const SAMPLE: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG";

    #[test]
    fn accepts_argon2id_phc_strings() {
        let h = PasswordHash::parse(SAMPLE).unwrap();
        assert_eq!(h.as_phc_str(), SAMPLE);
        assert!(PasswordHash::parse("$argon2id$m=65536,t=3,p=4$c2FsdA$aGFzaA").is_ok());
        assert_eq!(format!("{h:?}"), "PasswordHash(<redacted>)");
    }

    #[test]
    fn refuses_other_schemes_and_plaintext_without_echoing_them() {
        for other in
            ["$argon2i$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA", "$2b$10$abcdefghijklmnopqrstuv", "hunter2", ""]
        {
            let err = PasswordHash::parse(other).unwrap_err();
            assert_eq!(err, PasswordHashError::NotArgon2id);
            assert!(other.is_empty() || !err.to_string().contains(other));
        }
        for malformed in [
            "$argon2id$",
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA",
            "$argon2id$v=19$m=19456,t=2,p=1$$aGFzaA",
            "$argon2id$v=19$t=2$c2FsdA$aGFzaA",
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFz aA",
        ] {
            assert_eq!(PasswordHash::parse(malformed), Err(PasswordHashError::Malformed), "{malformed}");
        }
        let long = format!("{SAMPLE}{}", "A".repeat(MAX_PHC_LEN));
        assert_eq!(PasswordHash::parse(&long), Err(PasswordHashError::Malformed));
    }
}
