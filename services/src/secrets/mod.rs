//! Secrets at rest: the master key, and envelope encryption of provider secrets under it.
//!
//! The master key only ever wraps data keys; each provider credential has its own data key, so a
//! credential can be destroyed alone and a master-key rotation rewrites a small table, never the
//! event history. The hashing and token primitives of dashboard sign-in live in `crate::auth`.

mod envelope;
mod master;
pub(crate) mod sql;

use std::path::PathBuf;

use secrecy::SecretString;
use uuid::Uuid;

pub use envelope::{Envelope, RewrapFailure, RewrapReport};
pub use master::{MASTER_KEY_LEN, MasterKey, MasterKeyId, MasterKeys};

/// Where the master key comes from. The server's configuration decides; this module loads it.
#[derive(Clone)]
pub enum MasterKeySource {
    /// Given directly as standard base64 of 32 bytes: the current key, then earlier keys that are
    /// still accepted for unwrapping data keys until `keyguard master-key rotate` re-wraps them.
    Inline { current: SecretString, previous: Vec<SecretString> },
    /// A file holding the base64 key. With `create_if_missing`, a fresh random key is written
    /// there (mode 0600) on first start: the embedded default needs no set-up.
    File { path: PathBuf, create_if_missing: bool, previous: Vec<SecretString> },
}

impl std::fmt::Debug for MasterKeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Inline { previous, .. } => write!(f, "Inline(current, {} previous)", previous.len()),
            Self::File { path, create_if_missing, previous } => write!(
                f,
                "File({}, create_if_missing: {create_if_missing}, {} previous)",
                path.display(),
                previous.len()
            ),
        }
    }
}

/// Why a key could not be loaded or a secret not be sealed or opened. No variant carries key
/// material or plaintext; ids are safe to log.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("the master key from {origin} must be standard base64 of exactly {MASTER_KEY_LEN} bytes")]
    MalformedMasterKey { origin: String },
    #[error("the master key file {path} does not exist")]
    MasterKeyFileMissing { path: String },
    #[error(
        "the master key file {path} is readable by other users (mode {mode:o}); run `chmod 600 {path}` \
         and make sure only the keyguard user owns it"
    )]
    MasterKeyFileExposed { path: String, mode: u32 },
    #[error("cannot read or create the master key file {path}: {source}")]
    MasterKeyFile { path: String, source: std::io::Error },
    #[error("the operating system's random number generator failed")]
    RandomUnavailable,
    #[error("there is no data key {data_key_id} version {version}")]
    UnknownDataKey { data_key_id: Uuid, version: u32 },
    #[error("the data key {data_key_id} was destroyed; its secrets can no longer be read")]
    DataKeyDestroyed { data_key_id: Uuid },
    #[error(
        "the data key {data_key_id} is wrapped by master key {master_key_id}, which is not configured; \
         add it to KEYGUARD_PREVIOUS_MASTER_KEYS"
    )]
    MasterKeyUnavailable { data_key_id: Uuid, master_key_id: String },
    #[error(
        "the wrapped data key {data_key_id} version {version} does not authenticate: the row was altered"
    )]
    WrappedKeyCorrupt { data_key_id: Uuid, version: u32 },
    #[error(
        "the sealed secret does not authenticate under data key {data_key_id}: wrong context, or an altered \
         nonce, ciphertext or key version"
    )]
    Undecryptable { data_key_id: Uuid },
    #[error("the secret sealed under data key {data_key_id} is not UTF-8 text")]
    NotUtf8 { data_key_id: Uuid },
    #[error("AES-GCM refused to encrypt")]
    EncryptionFailed,
    #[error("a secret must be between 1 and {max} bytes long")]
    SecretLength { max: usize },
    #[error("the data key store failed: {0}")]
    Store(#[from] sqlx::Error),
}

impl domain::ErrorCode for SecretsError {
    fn code(&self) -> &'static str {
        match self {
            Self::MalformedMasterKey { .. } => "master_key_malformed",
            Self::MasterKeyFileMissing { .. } => "master_key_file_missing",
            Self::MasterKeyFileExposed { .. } => "master_key_file_exposed",
            Self::MasterKeyFile { .. } => "master_key_file_unreadable",
            Self::RandomUnavailable => "random_unavailable",
            Self::UnknownDataKey { .. } => "data_key_unknown",
            Self::DataKeyDestroyed { .. } => "data_key_destroyed",
            Self::MasterKeyUnavailable { .. } => "master_key_unavailable",
            Self::WrappedKeyCorrupt { .. } => "data_key_corrupt",
            Self::Undecryptable { .. } => "secret_undecryptable",
            Self::NotUtf8 { .. } => "secret_not_utf8",
            Self::EncryptionFailed => "encryption_failed",
            Self::SecretLength { .. } => "secret_length",
            Self::Store(_) => "secrets_store_unavailable",
        }
    }
}
