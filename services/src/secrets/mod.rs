//! Secrets at rest: the master key, envelope encryption of provider secrets, and the hashing and
//! token primitives of dashboard authentication.

use std::path::PathBuf;

use secrecy::SecretString;

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
