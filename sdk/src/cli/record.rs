//! What the CLI remembers about its enrollment, in a JSON file beside the key (same 0600 mode):
//! enough to sign (server, project key) and to answer `whoami` offline.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::DeviceStatus;
use crate::error::StoreError;
use crate::store::{Replace, read_private_file, remove_file, write_private_file};

/// The enrollment of this device. Holds the project key, which signing needs; the file is
/// private to its owner like the key itself.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrollmentRecord {
    pub server: String,
    pub device_id: String,
    pub key_id: String,
    pub label: String,
    /// The last status the server told us: at enrollment, then after each `status`.
    pub status: DeviceStatus,
    pub enrolled_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<String>,
    pub project_key: String,
}

impl EnrollmentRecord {
    /// The record that belongs to the key file at `key_path`: the same name with `.json` added.
    pub fn path_for(key_path: &Path) -> PathBuf {
        let mut name = key_path.file_name().unwrap_or_default().to_owned();
        name.push(".json");
        key_path.with_file_name(name)
    }

    pub fn load(path: &Path) -> Result<Option<Self>, StoreError> {
        let Some(bytes) = read_private_file(path)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| StoreError::Io {
            action: "cannot parse",
            path: path.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })
    }

    pub fn save(&self, path: &Path) -> Result<(), StoreError> {
        let mut json = serde_json::to_vec_pretty(self).expect("a record always serialises");
        json.push(b'\n');
        write_private_file(path, &json, Replace::Yes)
    }

    pub fn delete(path: &Path) -> Result<bool, StoreError> {
        remove_file(path)
    }

    /// The project key as the dashboard shows it: first 8 and last 4 characters.
    pub fn masked_project_key(&self) -> String {
        let key = &self.project_key;
        if key.len() <= 12 || !key.is_ascii() {
            return "…".to_owned();
        }
        format!("{}…{}", &key[..8], &key[key.len() - 4..])
    }
}

impl fmt::Debug for EnrollmentRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnrollmentRecord")
            .field("server", &self.server)
            .field("device_id", &self.device_id)
            .field("key_id", &self.key_id)
            .field("label", &self.label)
            .field("status", &self.status)
            .field("enrolled_at", &self.enrolled_at)
            .field("checked_at", &self.checked_at)
            .field("project_key", &self.masked_project_key())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> EnrollmentRecord {
        EnrollmentRecord {
            server: "http://127.0.0.1:3000".into(),
            device_id: "4a9f0b9e-0000-4000-8000-000000000000".into(),
            key_id: "5f28758eb139cb43769d731f803d4d6c".into(),
            label: "laptop".into(),
            status: DeviceStatus::Pending,
            enrolled_at: "2025-01-15T10:30:00.000Z".into(),
            checked_at: None,
            project_key: "kg_1733668200000_abcdefghijklmnopqrstuvwxyz012345".into(),
        }
    }

    #[test]
    fn record_sits_beside_the_key_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("device.key");
        let path = EnrollmentRecord::path_for(&key_path);
        assert_eq!(path, dir.path().join("device.key.json"));
        assert_eq!(EnrollmentRecord::load(&path).unwrap(), None);
        record().save(&path).unwrap();
        assert_eq!(EnrollmentRecord::load(&path).unwrap(), Some(record()));
        let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(json["status"], "PENDING");
        assert_eq!(json["keyId"], "5f28758eb139cb43769d731f803d4d6c");
        assert!(EnrollmentRecord::delete(&path).unwrap());
    }

    #[test]
    fn debug_and_mask_hide_the_project_key() {
        let r = record();
        assert_eq!(r.masked_project_key(), "kg_17336…2345");
        assert!(!format!("{r:?}").contains("abcdefgh"));
    }

    #[cfg(unix)]
    #[test]
    fn a_record_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.key.json");
        record().save(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(EnrollmentRecord::load(&path), Err(StoreError::InsecurePermissions { .. })));
    }
}
