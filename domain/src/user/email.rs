//! Email addresses of dashboard users, in the one form they are compared and stored in.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;

/// Longest address accepted (RFC 5321's path limit minus the angle brackets).
pub const MAX_EMAIL_LEN: usize = 254;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("The email address must not be empty.")]
    Empty,
    #[error("The email address must be at most {MAX_EMAIL_LEN} characters long.")]
    TooLong,
    #[error("The email address must be ASCII; write an internationalised domain in its xn-- form.")]
    NotAscii,
    #[error("The email address must contain exactly one @.")]
    AtSign,
    #[error(
        "The part before @ must be 1 to 64 letters, digits or !#$%&'*+/=?^_`{{|}}~.- without leading, trailing or doubled dots."
    )]
    InvalidLocalPart,
    #[error(
        "The part after @ must be a domain name with at least two labels of letters, digits and inner hyphens."
    )]
    InvalidDomain,
}

impl ErrorCode for EmailError {
    fn code(&self) -> &'static str {
        match self {
            EmailError::Empty => "email_empty",
            EmailError::TooLong => "email_too_long",
            EmailError::NotAscii => "email_not_ascii",
            EmailError::AtSign => "email_at_sign",
            EmailError::InvalidLocalPart => "email_invalid_local_part",
            EmailError::InvalidDomain => "email_invalid_domain",
        }
    }
}

/// A trimmed, lowercased address with a plausible local part and a real-looking domain name.
/// Quoted local parts, comments and IP-literal domains are refused: nobody logs in with them,
/// and each is a known source of parser disagreements.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    pub fn parse(input: &str) -> Result<Self, EmailError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(EmailError::Empty);
        }
        if !s.is_ascii() {
            return Err(EmailError::NotAscii);
        }
        if s.len() > MAX_EMAIL_LEN {
            return Err(EmailError::TooLong);
        }
        let s = s.to_ascii_lowercase();
        let (local, domain) = match s.split_once('@') {
            Some((l, d)) if !d.contains('@') => (l, d),
            _ => return Err(EmailError::AtSign),
        };
        let local_ok = (1..=64).contains(&local.len())
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~.-".contains(&b));
        if !local_ok {
            return Err(EmailError::InvalidLocalPart);
        }
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|l| {
                (1..=63).contains(&l.len())
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
            && labels.last().is_some_and(|tld| !tld.bytes().all(|b| b.is_ascii_digit()));
        if !domain_ok {
            return Err(EmailError::InvalidDomain);
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Email {
    type Error = EmailError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Email> for String {
    fn from(e: Email) -> Self {
        e.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Email({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn normalises_case_and_whitespace() {
        let e = Email::parse("  Admin.Ops+KG@Example.COM \n").unwrap();
        assert_eq!(e.as_str(), "admin.ops+kg@example.com");
        assert_eq!(Email::parse(e.as_str()), Ok(e));
        assert!(Email::parse("o'brien@xn--mnchen-3ya.de").is_ok());
    }

    #[test]
    fn refusals_are_precise() {
        assert_eq!(Email::parse("  "), Err(EmailError::Empty));
        assert_eq!(Email::parse("admin"), Err(EmailError::AtSign));
        assert_eq!(Email::parse("a@b@example.com"), Err(EmailError::AtSign));
        assert_eq!(Email::parse("بريد@example.com"), Err(EmailError::NotAscii));
        for local in ["", ".a", "a.", "a..b", "a b", "\"quoted\"", &"a".repeat(65)] {
            assert_eq!(
                Email::parse(&format!("{local}@example.com")),
                Err(EmailError::InvalidLocalPart),
                "{local:?}"
            );
        }
        for domain in [
            "",
            "localhost",
            "example..com",
            "-example.com",
            "example-.com",
            "exa_mple.com",
            "[192.168.0.1]",
            "192.168.0.1",
            "example.com.",
        ] {
            assert_eq!(
                Email::parse(&format!("admin@{domain}")),
                Err(EmailError::InvalidDomain),
                "{domain:?}"
            );
        }
        let long = format!("a@{}.com", "b".repeat(63) + &".b".repeat(95));
        assert_eq!(Email::parse(&long), Err(EmailError::TooLong));
        assert!(serde_json::from_str::<Email>("\"not-an-email\"").is_err());
    }

    proptest! {
        #[test]
        fn parsing_is_idempotent_and_never_panics(s in "\\PC{0,80}") {
            if let Ok(e) = Email::parse(&s) {
                prop_assert_eq!(Email::parse(e.as_str()), Ok(e.clone()));
                prop_assert_eq!(e.as_str(), e.as_str().to_ascii_lowercase());
            }
        }
    }
}
