//! Envelope encryption of provider secrets: seals and opens them under per-credential data keys,
//! which the master key wraps.
//!
//! A secret is AES-256-GCM under its data key, with a fresh random 96-bit nonce per seal and the
//! data key id, the key version and the caller's context (the API key id) as associated data, so a
//! ciphertext copied onto another credential does not open. Data keys are stored wrapped (also
//! AES-256-GCM) by the current master key; the associated data of a wrap binds the data key id and
//! version and the master key id, so a wrapped key cannot be moved to another row either.
//!
//! Unwrapped data keys are cached in memory (wiped on drop) so the proxy's hot path never reads the
//! database. The cache is per process: a node that learns of a revocation through the event bus
//! calls [`Envelope::forget`]; the node that destroys a key forgets it itself.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut as _, KeyInit as _};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::Utc;
use domain::api_key::SealedSecret;
use secrecy::{ExposeSecret as _, SecretString};
use sqlx::Row as _;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::SecretsError;
use super::master::{MASTER_KEY_LEN, MasterKey, MasterKeyId, MasterKeys, random_key};
use super::sql::{on_backend, parse_uuid, whole_seconds};
use crate::store::Database;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// What `SealedSecret` accepts as ciphertext (8 KiB), minus the tag.
const MAX_SECRET_LEN: usize = 8 * 1024 - TAG_LEN;
/// Data keys start at version 1; the column leaves room for re-keying a credential in place later.
const FIRST_VERSION: u32 = 1;

/// Domain separation: a wrapped key can never be mistaken for a sealed secret, or the reverse.
const WRAP_AAD_PREFIX: &[u8] = b"keyguard data-key wrap v1\0";
const SEAL_AAD_PREFIX: &[u8] = b"keyguard secret seal v1\0";

type DataKeyBytes = Zeroizing<[u8; MASTER_KEY_LEN]>;

/// What `keyguard master-key rotate` reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RewrapReport {
    /// Live data keys now wrapped by the current master key that were not before.
    pub rewrapped: usize,
    /// Live data keys that already were (a second run finds only these).
    pub already_current: usize,
    /// Data keys that could not be re-wrapped; the rest were still done.
    pub failed: Vec<RewrapFailure>,
}

/// One data key the rotation could not re-wrap, and why (the error names no secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewrapFailure {
    pub data_key_id: Uuid,
    pub version: u32,
    pub reason: String,
}

/// Seals and opens provider secrets. Cheap to clone; clones share the data-key cache.
#[derive(Clone)]
pub struct Envelope {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    keys: Arc<MasterKeys>,
    cache: RwLock<HashMap<(Uuid, u32), Arc<DataKeyBytes>>>,
}

impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cached = self.inner.cache.read().map(|c| c.len()).unwrap_or_default();
        f.debug_struct("Envelope")
            .field("master_keys", &self.inner.keys)
            .field("cached_data_keys", &cached)
            .finish()
    }
}

/// A stored data key row, still wrapped.
struct WrappedRow {
    master_key_id: String,
    wrapped: Option<Vec<u8>>,
    nonce: Option<Vec<u8>>,
}

impl Envelope {
    pub fn new(db: Database, keys: Arc<MasterKeys>) -> Self {
        Self { inner: Arc::new(Inner { db, keys, cache: RwLock::new(HashMap::new()) }) }
    }

    pub fn master_keys(&self) -> &MasterKeys {
        &self.inner.keys
    }

    /// Creates a data key for one new provider credential, wrapped by the current master key.
    pub async fn create_data_key(&self) -> Result<Uuid, SecretsError> {
        let id = Uuid::new_v4();
        let key = random_key()?;
        let master = self.inner.keys.current();
        let (wrapped, nonce) = wrap(master, id, FIRST_VERSION, &key)?;
        let now = whole_seconds(Utc::now());
        on_backend!(&self.inner.db, pool, uuid => {
            sqlx::query(
                "INSERT INTO data_keys (id, version, master_key_id, wrapped_key, wrap_nonce, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(uuid(id))
            .bind(FIRST_VERSION as i32)
            .bind(master.id().to_string())
            .bind(wrapped)
            .bind(nonce.to_vec())
            .bind(now)
            .execute(pool)
            .await?;
        });
        self.cache().insert((id, FIRST_VERSION), Arc::new(key));
        Ok(id)
    }

    /// Encrypts `plaintext` under the newest version of the data key. `context` is bound into the
    /// ciphertext and must be given again to open it (the server passes the API key id).
    pub async fn seal(
        &self,
        data_key_id: Uuid,
        plaintext: &SecretString,
        context: &str,
    ) -> Result<SealedSecret, SecretsError> {
        let plaintext = plaintext.expose_secret().as_bytes();
        if plaintext.is_empty() || plaintext.len() > MAX_SECRET_LEN {
            return Err(SecretsError::SecretLength { max: MAX_SECRET_LEN });
        }
        let version = self.newest_version(data_key_id).await?;
        let key = self.data_key(data_key_id, version).await?;
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| SecretsError::RandomUnavailable)?;
        // Reserved up front so appending the tag never reallocates and strands a plaintext copy.
        let mut buffer = Zeroizing::new(Vec::with_capacity(plaintext.len() + TAG_LEN));
        buffer.extend_from_slice(plaintext);
        cipher(&key)
            .encrypt_in_place(&nonce.into(), &seal_aad(data_key_id, version, context), &mut *buffer)
            .map_err(|_| SecretsError::EncryptionFailed)?;
        let sealed =
            SealedSecret::new(data_key_id, version, STANDARD.encode(nonce), STANDARD.encode(&*buffer))
                .map_err(|_| SecretsError::SecretLength { max: MAX_SECRET_LEN })?;
        Ok(sealed)
    }

    /// Decrypts a sealed secret. Fails, naming only ids, if the data key was destroyed, if its
    /// master key is not configured, or if anything (context, nonce, ciphertext, version) differs
    /// from what was sealed.
    pub async fn open(
        &self,
        sealed: &SealedSecret,
        context: &str,
    ) -> Result<Zeroizing<String>, SecretsError> {
        let (id, version) = (sealed.data_key_id(), sealed.key_version());
        let undecryptable = || SecretsError::Undecryptable { data_key_id: id };
        let key = self.data_key(id, version).await?;
        let nonce: [u8; NONCE_LEN] = STANDARD
            .decode(sealed.nonce_b64())
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(undecryptable)?;
        let mut buffer =
            Zeroizing::new(STANDARD.decode(sealed.ciphertext_b64()).map_err(|_| undecryptable())?);
        cipher(&key)
            .decrypt_in_place(&nonce.into(), &seal_aad(id, version, context), &mut *buffer)
            .map_err(|_| undecryptable())?;
        let text = std::str::from_utf8(&buffer).map_err(|_| SecretsError::NotUtf8 { data_key_id: id })?;
        Ok(Zeroizing::new(text.to_owned()))
    }

    /// Erases every version of the data key, so that nothing sealed under it can be opened again.
    /// Returns whether anything was left to erase (calling it twice is harmless).
    ///
    /// The row keeps its id and dates for the audit trail. On SQLite, `secure_delete` makes the
    /// database overwrite the freed bytes; the old page can still sit in the WAL until the next
    /// checkpoint, and on PostgreSQL in the old tuple until VACUUM, and in any earlier backup.
    pub async fn destroy(&self, data_key_id: Uuid) -> Result<bool, SecretsError> {
        let now = whole_seconds(Utc::now());
        const DESTROY: &str = "UPDATE data_keys SET wrapped_key = NULL, wrap_nonce = NULL, destroyed_at = $2 \
                               WHERE id = $1 AND destroyed_at IS NULL";
        let affected = match &self.inner.db {
            Database::Postgres(pool) => {
                sqlx::query(DESTROY).bind(data_key_id).bind(now).execute(pool).await?.rows_affected()
            }
            Database::Sqlite(pool) => {
                let mut conn = pool.acquire().await?;
                sqlx::query("PRAGMA secure_delete = ON").execute(&mut *conn).await?;
                sqlx::query(DESTROY)
                    .bind(data_key_id.hyphenated().to_string())
                    .bind(now)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected()
            }
        };
        self.forget(data_key_id);
        Ok(affected > 0)
    }

    /// Drops a data key from this process's cache (after another node destroyed it).
    pub fn forget(&self, data_key_id: Uuid) {
        self.cache().retain(|(id, _), _| *id != data_key_id);
    }

    /// Re-wraps every live data key under the current master key, one transaction per key, so a
    /// crash half-way leaves every key readable and a second run finishes the job. Secrets and
    /// events are not touched: only the wrapping changes.
    pub async fn rewrap_all(&self) -> Result<RewrapReport, SecretsError> {
        let current = self.inner.keys.current().id().to_string();
        let live: Vec<(Uuid, u32, String)> = on_backend!(&self.inner.db, pool, uuid => {
            sqlx::query(
                "SELECT CAST(id AS text) AS id, version, master_key_id FROM data_keys \
                 WHERE destroyed_at IS NULL ORDER BY created_at, id, version",
            )
            .fetch_all(pool)
            .await?
            .iter()
            .map(|row| {
                Ok((
                    parse_uuid(&row.try_get::<String, _>("id")?)?,
                    row.try_get::<i32, _>("version")? as u32,
                    row.try_get::<String, _>("master_key_id")?,
                ))
            })
            .collect::<Result<_, sqlx::Error>>()?
        });
        let mut report = RewrapReport::default();
        for (id, version, master_key_id) in live {
            if master_key_id == current {
                report.already_current += 1;
                continue;
            }
            match self.rewrap_one(id, version).await {
                Ok(true) => report.rewrapped += 1,
                Ok(false) => report.already_current += 1,
                Err(e) => {
                    tracing::warn!(data_key_id = %id, version, error = %e, "cannot re-wrap a data key");
                    report.failed.push(RewrapFailure { data_key_id: id, version, reason: e.to_string() })
                }
            }
        }
        Ok(report)
    }

    /// Re-wraps one data key; `false` if another rotation (or a destroy) got there first.
    async fn rewrap_one(&self, id: Uuid, version: u32) -> Result<bool, SecretsError> {
        let current = self.inner.keys.current();
        let now = whole_seconds(Utc::now());
        on_backend!(&self.inner.db, pool, uuid => {
            let mut tx = pool.begin().await?;
            let row = sqlx::query(
                "SELECT master_key_id, wrapped_key, wrap_nonce FROM data_keys \
                 WHERE id = $1 AND version = $2 AND destroyed_at IS NULL",
            )
            .bind(uuid(id))
            .bind(version as i32)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else { return Ok(false) };
            let row = WrappedRow {
                master_key_id: row.try_get("master_key_id")?,
                wrapped: row.try_get("wrapped_key")?,
                nonce: row.try_get("wrap_nonce")?,
            };
            if row.master_key_id == current.id().to_string() {
                return Ok(false);
            }
            let old_master_key_id = row.master_key_id.clone();
            let key = self.unwrap_row(id, version, row)?;
            let (wrapped, nonce) = wrap(current, id, version, &key)?;
            // Compare-and-set on the old master key id: a concurrent rotation cannot be overwritten
            // with a stale wrap, even on SQLite where the SELECT above takes no row lock.
            let updated = sqlx::query(
                "UPDATE data_keys SET master_key_id = $3, wrapped_key = $4, wrap_nonce = $5, rewrapped_at = $6 \
                 WHERE id = $1 AND version = $2 AND master_key_id = $7 AND destroyed_at IS NULL",
            )
            .bind(uuid(id))
            .bind(version as i32)
            .bind(current.id().to_string())
            .bind(wrapped)
            .bind(nonce.to_vec())
            .bind(now)
            .bind(old_master_key_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            Ok(updated == 1)
        })
    }

    async fn newest_version(&self, id: Uuid) -> Result<u32, SecretsError> {
        let newest: Option<(i32, bool)> = on_backend!(&self.inner.db, pool, uuid => {
            sqlx::query(
                "SELECT version, destroyed_at IS NOT NULL AS destroyed FROM data_keys \
                 WHERE id = $1 ORDER BY version DESC LIMIT 1",
            )
            .bind(uuid(id))
            .fetch_optional(pool)
            .await?
            .map(|row| Ok::<_, sqlx::Error>((row.try_get("version")?, row.try_get("destroyed")?)))
            .transpose()?
        });
        match newest {
            None => Err(SecretsError::UnknownDataKey { data_key_id: id, version: FIRST_VERSION }),
            Some((_, true)) => Err(SecretsError::DataKeyDestroyed { data_key_id: id }),
            Some((version, false)) => Ok(version as u32),
        }
    }

    /// The unwrapped data key, from the cache or else from the database.
    async fn data_key(&self, id: Uuid, version: u32) -> Result<Arc<DataKeyBytes>, SecretsError> {
        if let Some(key) = self.inner.cache.read().unwrap_or_else(PoisonError::into_inner).get(&(id, version))
        {
            return Ok(Arc::clone(key));
        }
        let row: Option<WrappedRow> = on_backend!(&self.inner.db, pool, uuid => {
            sqlx::query(
                "SELECT master_key_id, wrapped_key, wrap_nonce FROM data_keys WHERE id = $1 AND version = $2",
            )
            .bind(uuid(id))
            .bind(version as i32)
            .fetch_optional(pool)
            .await?
            .map(|row| {
                Ok::<_, sqlx::Error>(WrappedRow {
                    master_key_id: row.try_get("master_key_id")?,
                    wrapped: row.try_get("wrapped_key")?,
                    nonce: row.try_get("wrap_nonce")?,
                })
            })
            .transpose()?
        });
        let row = row.ok_or(SecretsError::UnknownDataKey { data_key_id: id, version })?;
        let key = Arc::new(self.unwrap_row(id, version, row)?);
        self.cache().insert((id, version), Arc::clone(&key));
        Ok(key)
    }

    fn unwrap_row(&self, id: Uuid, version: u32, row: WrappedRow) -> Result<DataKeyBytes, SecretsError> {
        let corrupt = || SecretsError::WrappedKeyCorrupt { data_key_id: id, version };
        let (Some(wrapped), Some(nonce)) = (row.wrapped, row.nonce) else {
            return Err(SecretsError::DataKeyDestroyed { data_key_id: id });
        };
        let master = MasterKeyId::parse(&row.master_key_id)
            .and_then(|mk| self.inner.keys.find(mk))
            .ok_or_else(|| SecretsError::MasterKeyUnavailable {
                data_key_id: id,
                master_key_id: row.master_key_id.clone(),
            })?;
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| corrupt())?;
        let mut buffer = Zeroizing::new(wrapped);
        cipher(master.bytes())
            .decrypt_in_place(&nonce.into(), &wrap_aad(id, version, master.id()), &mut *buffer)
            .map_err(|_| corrupt())?;
        let mut key = Zeroizing::new([0u8; MASTER_KEY_LEN]);
        if buffer.len() != MASTER_KEY_LEN {
            return Err(corrupt());
        }
        key.copy_from_slice(&buffer);
        Ok(key)
    }

    fn cache(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<(Uuid, u32), Arc<DataKeyBytes>>> {
        // A panic elsewhere cannot leave the map half-updated (every update is one call), so a
        // poisoned lock is still safe to use.
        self.inner.cache.write().unwrap_or_else(PoisonError::into_inner)
    }
}

fn cipher(key: &[u8; MASTER_KEY_LEN]) -> Aes256Gcm {
    Aes256Gcm::new(key.into())
}

fn wrap(
    master: &MasterKey,
    id: Uuid,
    version: u32,
    key: &DataKeyBytes,
) -> Result<(Vec<u8>, [u8; NONCE_LEN]), SecretsError> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|_| SecretsError::RandomUnavailable)?;
    let mut buffer = Vec::with_capacity(MASTER_KEY_LEN + TAG_LEN);
    buffer.extend_from_slice(key.as_slice());
    cipher(master.bytes())
        .encrypt_in_place(&nonce.into(), &wrap_aad(id, version, master.id()), &mut buffer)
        .map_err(|_| SecretsError::EncryptionFailed)?;
    Ok((buffer, nonce))
}

fn wrap_aad(id: Uuid, version: u32, master: MasterKeyId) -> Vec<u8> {
    [WRAP_AAD_PREFIX, id.as_bytes(), &version.to_be_bytes(), master.as_bytes()].concat()
}

/// Fixed-length fields first, then the context, so no two inputs share an encoding.
fn seal_aad(id: Uuid, version: u32, context: &str) -> Vec<u8> {
    [SEAL_AAD_PREFIX, id.as_bytes(), &version.to_be_bytes(), context.as_bytes()].concat()
}
