//! Loads the master keys: the current one, which wraps every new data key, and earlier ones that
//! may still unwrap data keys until `keyguard master-key rotate` has re-wrapped them.
//!
//! Key bytes live only in zeroizing memory, and nothing here prints them.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret as _, SecretString};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use super::{MasterKeySource, SecretsError};

/// A master key is 32 random bytes (AES-256).
pub const MASTER_KEY_LEN: usize = 32;

/// Names a master key without revealing it: the first 8 bytes of its SHA-256, in hex. Stored next
/// to every wrapped data key so that unwrapping picks the right key, and so that an operator can
/// see which data keys a rotation has not reached yet.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct MasterKeyId([u8; 8]);

impl MasterKeyId {
    /// Parses the 16 hex digits stored in `data_keys.master_key_id`.
    pub fn parse(hex_id: &str) -> Option<Self> {
        let mut id = [0u8; 8];
        hex::decode_to_slice(hex_id, &mut id).ok()?;
        Some(Self(id))
    }

    pub fn as_bytes(&self) -> &[u8; 8] {
        &self.0
    }
}

impl fmt::Display for MasterKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for MasterKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKeyId({self})")
    }
}

/// One master key: its id and its bytes, wiped from memory on drop.
pub struct MasterKey {
    id: MasterKeyId,
    key: Zeroizing<[u8; MASTER_KEY_LEN]>,
}

impl MasterKey {
    fn from_bytes(key: Zeroizing<[u8; MASTER_KEY_LEN]>) -> Self {
        let digest = Sha256::digest(key.as_slice());
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        Self { id: MasterKeyId(id), key }
    }

    /// Decodes standard base64 of exactly 32 bytes. `origin` names where the key came from, for
    /// the error message; the value itself is never echoed.
    fn decode(encoded: &str, origin: &str) -> Result<Self, SecretsError> {
        let malformed = || SecretsError::MalformedMasterKey { origin: origin.to_owned() };
        let bytes = Zeroizing::new(STANDARD.decode(encoded.trim()).map_err(|_| malformed())?);
        if bytes.len() != MASTER_KEY_LEN {
            return Err(malformed());
        }
        let mut key = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        key.copy_from_slice(&bytes);
        Ok(Self::from_bytes(key))
    }

    pub fn id(&self) -> MasterKeyId {
        self.id
    }

    pub(crate) fn bytes(&self) -> &[u8; MASTER_KEY_LEN] {
        &self.key
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({}, <redacted>)", self.id)
    }
}

/// The current master key and the previous ones still accepted for unwrapping.
pub struct MasterKeys {
    current: MasterKey,
    previous: Vec<MasterKey>,
}

impl MasterKeys {
    /// Loads the keys the configuration points at. A `File` source with `create_if_missing`
    /// generates the key on first start.
    pub fn load(source: &MasterKeySource) -> Result<Self, SecretsError> {
        let (current, previous) = match source {
            MasterKeySource::Inline { current, previous } => {
                (MasterKey::decode(current.expose_secret(), "KEYGUARD_MASTER_KEY")?, previous)
            }
            MasterKeySource::File { path, create_if_missing, previous } => {
                (load_file(path, *create_if_missing)?, previous)
            }
        };
        let previous = previous
            .iter()
            .map(|k| MasterKey::decode(k.expose_secret(), "KEYGUARD_PREVIOUS_MASTER_KEYS"))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(current, previous))
    }

    fn new(current: MasterKey, previous: Vec<MasterKey>) -> Self {
        // The current key listed again as a previous one is harmless but would be tried twice.
        let mut kept: Vec<MasterKey> = Vec::with_capacity(previous.len());
        for key in previous {
            if key.id != current.id && kept.iter().all(|k| k.id != key.id) {
                kept.push(key);
            }
        }
        Self { current, previous: kept }
    }

    /// A fresh random master key in the encoding `KEYGUARD_MASTER_KEY` expects, for
    /// `keyguard master-key generate` and for tests.
    pub fn generate_encoded() -> Result<SecretString, SecretsError> {
        let key = random_key()?;
        Ok(SecretString::from(STANDARD.encode(key.as_slice())))
    }

    /// The key that wraps new data keys and signs tokens.
    pub fn current(&self) -> &MasterKey {
        &self.current
    }

    /// Earlier keys, still accepted for unwrapping and for verifying tokens they signed.
    pub fn previous(&self) -> &[MasterKey] {
        &self.previous
    }

    /// The key with this id, whether current or previous.
    pub fn find(&self, id: MasterKeyId) -> Option<&MasterKey> {
        std::iter::once(&self.current).chain(&self.previous).find(|k| k.id == id)
    }
}

impl fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let previous: Vec<MasterKeyId> = self.previous.iter().map(|k| k.id).collect();
        f.debug_struct("MasterKeys").field("current", &self.current.id).field("previous", &previous).finish()
    }
}

pub(crate) fn random_key() -> Result<Zeroizing<[u8; MASTER_KEY_LEN]>, SecretsError> {
    let mut key = Zeroizing::new([0u8; MASTER_KEY_LEN]);
    getrandom::fill(key.as_mut_slice()).map_err(|_| SecretsError::RandomUnavailable)?;
    Ok(key)
}

fn load_file(path: &Path, create_if_missing: bool) -> Result<MasterKey, SecretsError> {
    match File::open(path) {
        Ok(file) => read_key_file(path, file),
        Err(e) if e.kind() == ErrorKind::NotFound && create_if_missing => create_key_file(path),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            Err(SecretsError::MasterKeyFileMissing { path: path.display().to_string() })
        }
        Err(source) => Err(SecretsError::MasterKeyFile { path: path.display().to_string(), source }),
    }
}

fn read_key_file(path: &Path, file: File) -> Result<MasterKey, SecretsError> {
    let io_error = |source| SecretsError::MasterKeyFile { path: path.display().to_string(), source };
    // Checked on the open handle, not the path, so the file cannot be swapped in between.
    let mode = file.metadata().map_err(io_error)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(SecretsError::MasterKeyFileExposed {
            path: path.display().to_string(),
            mode: mode & 0o777,
        });
    }
    let mut text = Zeroizing::new(String::new());
    // A key file is 45 bytes; reading at most a little more keeps a wrong path (a log file, a
    // device) from filling memory.
    file.take(4096).read_to_string(&mut text).map_err(io_error)?;
    MasterKey::decode(&text, &path.display().to_string())
}

/// Writes a new key to a temporary file and then hard-links it into place: the link fails if the
/// path exists, so of two processes starting together exactly one key wins, and nobody ever reads
/// a half-written file.
fn create_key_file(path: &Path) -> Result<MasterKey, SecretsError> {
    let io_error = |source| SecretsError::MasterKeyFile { path: path.display().to_string(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io_error)?;
    }
    let key = random_key()?;
    let mut encoded = Zeroizing::new(STANDARD.encode(key.as_slice()));
    encoded.push('\n');
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
    let tmp = Path::new(&tmp_name);
    let written = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(tmp)?;
        file.write_all(encoded.as_bytes())?;
        file.sync_all()
    })();
    let linked = written.and_then(|()| fs::hard_link(tmp, path));
    let _ = fs::remove_file(tmp);
    match linked {
        Ok(()) => {
            tracing::info!(path = %path.display(), "generated a new master key");
            Ok(MasterKey::from_bytes(key))
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            read_key_file(path, File::open(path).map_err(io_error)?)
        }
        Err(source) => Err(io_error(source)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(byte: u8) -> SecretString {
        SecretString::from(STANDARD.encode([byte; MASTER_KEY_LEN]))
    }

    #[test]
    fn inline_keys_decode_and_get_stable_ids() {
        let keys = MasterKeys::load(&MasterKeySource::Inline {
            current: encoded(1),
            previous: vec![encoded(2), encoded(1), encoded(2)],
        })
        .unwrap();
        assert_eq!(keys.current().bytes(), &[1; 32]);
        // Duplicates and the current key are dropped from the previous list.
        assert_eq!(keys.previous().len(), 1);
        let id = keys.current().id();
        assert_eq!(id.to_string().len(), 16);
        assert_eq!(MasterKeyId::parse(&id.to_string()), Some(id));
        assert_eq!(keys.find(keys.previous()[0].id()).unwrap().bytes(), &[2; 32]);
        let debug = format!("{keys:?} {:?}", keys.current());
        assert!(!debug.contains(&STANDARD.encode([1u8; 32])), "{debug}");
    }

    #[test]
    fn malformed_keys_are_refused_without_echoing_them() {
        for bad in ["", "c2hvcnQ=", "not base64 at all!", &STANDARD.encode([1u8; 31])] {
            let err = MasterKeys::load(&MasterKeySource::Inline {
                current: SecretString::from(bad.to_owned()),
                previous: vec![],
            })
            .unwrap_err();
            assert!(matches!(err, SecretsError::MalformedMasterKey { .. }), "{err}");
            assert!(bad.is_empty() || !err.to_string().contains(bad));
        }
    }

    #[test]
    fn a_missing_file_is_created_once_with_mode_0600_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/master.key");
        let source = MasterKeySource::File { path: path.clone(), create_if_missing: true, previous: vec![] };
        let first = MasterKeys::load(&source).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
        let second = MasterKeys::load(&source).unwrap();
        assert_eq!(first.current().id(), second.current().id());
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1, "no temporary file left");
    }

    #[test]
    fn concurrent_creation_yields_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let ids: Vec<MasterKeyId> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let source = MasterKeySource::File {
                        path: path.clone(),
                        create_if_missing: true,
                        previous: vec![],
                    };
                    s.spawn(move || MasterKeys::load(&source).unwrap().current().id())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(ids.iter().all(|id| *id == ids[0]));
    }

    #[test]
    fn a_file_readable_by_others_or_missing_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        fs::write(&path, STANDARD.encode([3u8; 32])).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let source = MasterKeySource::File { path: path.clone(), create_if_missing: true, previous: vec![] };
        let err = MasterKeys::load(&source).unwrap_err();
        assert!(matches!(err, SecretsError::MasterKeyFileExposed { mode: 0o644, .. }), "{err}");
        assert!(err.to_string().contains("chmod 600"), "{err}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(MasterKeys::load(&source).unwrap().current().bytes(), &[3; 32]);

        let missing = MasterKeySource::File {
            path: dir.path().join("absent.key"),
            create_if_missing: false,
            previous: vec![],
        };
        assert!(matches!(MasterKeys::load(&missing), Err(SecretsError::MasterKeyFileMissing { .. })));
    }
}
