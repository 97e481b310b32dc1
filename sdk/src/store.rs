//! Where a device key lives between runs: a [`KeyStore`] trait, a PKCS#8 file readable only by
//! its owner ([`FileKeyStore`]) and an in-memory store for tests ([`MemoryKeyStore`]).
//!
//! Other backends (an OS keychain, a TPM-backed store) implement [`KeyStore`] themselves.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use zeroize::Zeroizing;

use crate::error::StoreError;
use crate::key::DeviceKey;

/// Loads, saves and deletes one device key.
///
/// ```
/// use keyguard_sdk::{DeviceKey, KeyStore, MemoryKeyStore};
///
/// let store = MemoryKeyStore::default();
/// assert!(store.load()?.is_none());
/// let key = DeviceKey::generate()?;
/// store.save(&key)?;
/// assert_eq!(store.load()?.as_ref(), Some(&key));
/// assert!(store.delete()?);
/// # Ok::<(), keyguard_sdk::Error>(())
/// ```
pub trait KeyStore: Send + Sync {
    /// The stored key, or `None` when there is none.
    fn load(&self) -> Result<Option<DeviceKey>, StoreError>;

    /// Stores `key`. Refuses ([`StoreError::AlreadyExists`]) to replace a stored key: losing a
    /// device key means enrolling again.
    fn save(&self, key: &DeviceKey) -> Result<(), StoreError>;

    /// Removes the stored key; `false` when there was none.
    fn delete(&self) -> Result<bool, StoreError>;
}

/// A PKCS#8 PEM file, created with mode 0600 (and its directory with 0700) on Unix.
///
/// On Unix, a key file that group or other users can access is refused rather than loaded, as
/// OpenSSH does with private keys: the key may already have leaked.
///
/// ```
/// use keyguard_sdk::{DeviceKey, FileKeyStore, KeyStore};
///
/// let dir = tempfile::tempdir()?;
/// let store = FileKeyStore::new(dir.path().join("device.key"));
/// let key = DeviceKey::generate()?;
/// store.save(&key)?;
/// # #[cfg(unix)] {
/// use std::os::unix::fs::PermissionsExt as _;
/// let mode = std::fs::metadata(store.path())?.permissions().mode() & 0o777;
/// assert_eq!(mode, 0o600);
/// # }
/// assert_eq!(store.load()?.unwrap().key_id(), key.key_id());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct FileKeyStore {
    path: PathBuf,
}

impl FileKeyStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl KeyStore for FileKeyStore {
    fn load(&self) -> Result<Option<DeviceKey>, StoreError> {
        let Some(bytes) = read_private_file(&self.path)? else {
            return Ok(None);
        };
        DeviceKey::from_pkcs8(&bytes)
            .map(Some)
            .ok_or_else(|| StoreError::InvalidKey { path: self.path.clone() })
    }

    fn save(&self, key: &DeviceKey) -> Result<(), StoreError> {
        let pem = key.to_pkcs8_pem().map_err(|e| StoreError::Backend(e.to_string()))?;
        write_private_file(&self.path, pem.as_bytes(), Replace::No)
    }

    fn delete(&self) -> Result<bool, StoreError> {
        remove_file(&self.path)
    }
}

/// Keeps the key in memory only; for tests and short-lived processes.
#[derive(Debug, Default)]
pub struct MemoryKeyStore {
    key: Mutex<Option<DeviceKey>>,
}

impl MemoryKeyStore {
    /// A store that already holds `key`.
    pub fn with_key(key: DeviceKey) -> Self {
        Self { key: Mutex::new(Some(key)) }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<DeviceKey>> {
        // A panic while holding the lock cannot leave a half-written key: the slot is replaced whole.
        self.key.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl KeyStore for MemoryKeyStore {
    fn load(&self) -> Result<Option<DeviceKey>, StoreError> {
        Ok(self.slot().clone())
    }

    fn save(&self, key: &DeviceKey) -> Result<(), StoreError> {
        let mut slot = self.slot();
        if slot.is_some() {
            return Err(StoreError::AlreadyExists { path: PathBuf::from("<memory>") });
        }
        *slot = Some(key.clone());
        Ok(())
    }

    fn delete(&self) -> Result<bool, StoreError> {
        Ok(self.slot().take().is_some())
    }
}

/// Whether [`write_private_file`] may replace an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replace {
    No,
    Yes,
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_owned();
    move |source| StoreError::Io { action, path, source }
}

/// Reads a file that must be private to its owner; `None` if it does not exist.
pub(crate) fn read_private_file(path: &Path) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error("cannot open", path)(e)),
    };
    // Checked on the open handle, so a file swapped after the check is not what gets read.
    let metadata = file.metadata().map_err(io_error("cannot inspect", path))?;
    check_private(path, &metadata)?;
    let mut bytes = Zeroizing::new(Vec::new());
    file.read_to_end(&mut bytes).map_err(io_error("cannot read", path))?;
    Ok(Some(bytes))
}

#[cfg(unix)]
fn check_private(path: &Path, metadata: &fs::Metadata) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(StoreError::InsecurePermissions { path: path.to_owned(), mode });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path, _metadata: &fs::Metadata) -> Result<(), StoreError> {
    Ok(())
}

/// Writes `bytes` to a file only its owner can read (0600, directory 0700 when created). With
/// [`Replace::Yes`] an existing file is replaced atomically (written beside it, then renamed).
pub(crate) fn write_private_file(path: &Path, bytes: &[u8], replace: Replace) -> Result<(), StoreError> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        create_private_dir(dir).map_err(io_error("cannot create the directory", dir))?;
    }
    let target = match replace {
        Replace::No => path.to_owned(),
        Replace::Yes => {
            let mut name = path.file_name().unwrap_or_default().to_owned();
            name.push(format!(".{}.tmp", std::process::id()));
            path.with_file_name(name)
        }
    };
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = match options.open(&target) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::AlreadyExists && replace == Replace::No => {
            return Err(StoreError::AlreadyExists { path: path.to_owned() });
        }
        Err(e) => return Err(io_error("cannot create", &target)(e)),
    };
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    if let Err(e) = written {
        let _ = fs::remove_file(&target);
        return Err(io_error("cannot write", &target)(e));
    }
    if replace == Replace::Yes
        && let Err(e) = fs::rename(&target, path)
    {
        let _ = fs::remove_file(&target);
        return Err(io_error("cannot replace", path)(e));
    }
    Ok(())
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Deletes a file; `false` if it was not there.
pub(crate) fn remove_file(path: &Path) -> Result<bool, StoreError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error("cannot delete", path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_store_refuses_to_replace_a_key() {
        let store = MemoryKeyStore::with_key(DeviceKey::generate().unwrap());
        let other = DeviceKey::generate().unwrap();
        assert!(matches!(store.save(&other), Err(StoreError::AlreadyExists { .. })));
        assert!(store.delete().unwrap());
        assert!(!store.delete().unwrap());
        store.save(&other).unwrap();
        assert_eq!(store.load().unwrap(), Some(other));
    }

    #[test]
    fn file_store_saves_loads_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileKeyStore::new(dir.path().join("nested/config/device.key"));
        assert!(store.load().unwrap().is_none());
        let key = DeviceKey::generate().unwrap();
        store.save(&key).unwrap();
        let text = fs::read_to_string(store.path()).unwrap();
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{text}");
        assert_eq!(store.load().unwrap(), Some(key.clone()));
        // Never silently replaced.
        let other = DeviceKey::generate().unwrap();
        assert!(matches!(store.save(&other), Err(StoreError::AlreadyExists { .. })));
        assert_eq!(store.load().unwrap(), Some(key));
        assert!(store.delete().unwrap());
        assert!(!store.delete().unwrap());
        assert!(store.load().unwrap().is_none());
    }

    #[test]
    fn a_file_that_is_not_a_key_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.key");
        write_private_file(&path, b"not a key", Replace::No).unwrap();
        let err = FileKeyStore::new(&path).load().unwrap_err();
        assert!(matches!(err, StoreError::InvalidKey { .. }), "{err}");
    }

    #[test]
    fn replace_swaps_the_content_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("record.json");
        write_private_file(&path, b"one", Replace::Yes).unwrap();
        write_private_file(&path, b"two", Replace::Yes).unwrap();
        assert_eq!(read_private_file(&path).unwrap().unwrap().as_slice(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[cfg(unix)]
    mod unix {
        use std::os::unix::fs::PermissionsExt as _;

        use super::*;

        fn mode(path: &Path) -> u32 {
            fs::metadata(path).unwrap().permissions().mode() & 0o777
        }

        #[test]
        fn key_file_is_0600_and_a_new_directory_0700() {
            let dir = tempfile::tempdir().unwrap();
            let store = FileKeyStore::new(dir.path().join("keyguard/device.key"));
            store.save(&DeviceKey::generate().unwrap()).unwrap();
            assert_eq!(mode(store.path()), 0o600);
            assert_eq!(mode(&dir.path().join("keyguard")), 0o700);
            let record = dir.path().join("keyguard/device.json");
            write_private_file(&record, b"{}", Replace::Yes).unwrap();
            assert_eq!(mode(&record), 0o600);
        }

        #[test]
        fn a_key_readable_by_others_is_refused() {
            let dir = tempfile::tempdir().unwrap();
            let store = FileKeyStore::new(dir.path().join("device.key"));
            store.save(&DeviceKey::generate().unwrap()).unwrap();
            for loose in [0o644, 0o604, 0o640, 0o660, 0o606] {
                fs::set_permissions(store.path(), fs::Permissions::from_mode(loose)).unwrap();
                match store.load() {
                    Err(StoreError::InsecurePermissions { mode, .. }) => assert_eq!(mode, loose),
                    other => panic!("mode {loose:o} was accepted: {other:?}"),
                }
            }
            fs::set_permissions(store.path(), fs::Permissions::from_mode(0o400)).unwrap();
            assert!(store.load().unwrap().is_some());
            let message = {
                fs::set_permissions(store.path(), fs::Permissions::from_mode(0o644)).unwrap();
                store.load().unwrap_err().to_string()
            };
            assert!(message.contains("mode 644") && message.contains("chmod 600"), "{message}");
        }
    }
}
