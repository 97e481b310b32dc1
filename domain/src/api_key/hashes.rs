//! The stored forms of the two secrets an API key deals in: the project key and enrollment
//! codes. Distinct types, so one can never be looked up where the other is expected.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::hash::{MalformedDigest, Sha256Hex};

/// SHA-256 (lowercase hex) of the raw `kg_…` project key. The raw key never enters the domain:
/// the server hashes it on creation and on every request.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProjectKeyHash(Sha256Hex);

impl ProjectKeyHash {
    pub fn parse(hex: &str) -> Result<Self, MalformedDigest> {
        Sha256Hex::parse(hex).map(Self)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn ct_eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0)
    }
}

impl fmt::Debug for ProjectKeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProjectKeyHash({:?})", self.0)
    }
}

/// SHA-256 (lowercase hex) of the canonical text of an [`super::EnrollmentCode`].
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EnrollmentCodeHash(Sha256Hex);

impl EnrollmentCodeHash {
    pub fn parse(hex: &str) -> Result<Self, MalformedDigest> {
        Sha256Hex::parse(hex).map(Self)
    }

    pub(super) fn of_canonical(code: &str) -> Self {
        Self(Sha256Hex::of(code.as_bytes()))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn ct_eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0)
    }
}

impl fmt::Debug for EnrollmentCodeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EnrollmentCodeHash({:?})", self.0)
    }
}
