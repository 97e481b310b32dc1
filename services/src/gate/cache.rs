//! The gate's memory: project keys by hash, devices by (project, keyId) with their parsed public
//! keys, policy settings per level, and decrypted provider keys.
//!
//! Every map sits behind its own `std::sync::RwLock`: requests only take read locks, for the
//! length of a hash probe and an `Arc` clone, and never across an `.await`. Writers (the event
//! listener and the periodic refresh) read the read models and open secrets first, then take the
//! write lock just to swap entries in.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use domain::device::DeviceStatus;
use domain::policy::{EffectivePolicy, PolicyScope, PolicySettings};
use domain::protocol::PublicKeySpki;
use domain::provider::Provider;
use p256::ecdsa::VerifyingKey;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::read_models::api_keys::{self, ApiKeyFilter, ApiKeyView};
use crate::read_models::devices::{self, DeviceFilter, DeviceView};
use crate::read_models::{PageRequest, ReadModelError, policies};
use crate::secrets::Envelope;
use crate::store::Database;

/// A project key as the gate needs it.
pub(crate) struct KeyEntry {
    pub id: Uuid,
    pub provider: Provider,
    pub revoked: bool,
    pub expires_at: Option<DateTime<Utc>>,
    pub current_hash: String,
    pub previous_hash: Option<String>,
    pub grace_until: Option<DateTime<Utc>>,
    pub base_url: Option<String>,
    pub azure_deployment: Option<String>,
    pub azure_api_version: Option<String>,
    /// `None` when the secret could not be opened (destroyed data key, missing master key).
    pub secret: Option<Arc<Zeroizing<String>>>,
}

/// A device as the gate needs it: its standing and its parsed public key.
pub(crate) struct DeviceEntry {
    pub id: Uuid,
    pub api_key_id: Uuid,
    pub key_id: String,
    pub status: DeviceStatus,
    pub verifying_key: VerifyingKey,
}

#[derive(Default)]
struct DeviceIndex {
    by_key_id: HashMap<(Uuid, String), Arc<DeviceEntry>>,
    /// device id → its (project, keyId), so a rotation or removal finds the old entry.
    by_id: HashMap<Uuid, (Uuid, String)>,
}

#[derive(Default)]
struct KeyIndex {
    by_hash: HashMap<String, Uuid>,
    by_id: HashMap<Uuid, Arc<KeyEntry>>,
}

#[derive(Default)]
struct PolicyIndex {
    global: Option<PolicySettings>,
    keys: HashMap<Uuid, PolicySettings>,
    devices: HashMap<Uuid, PolicySettings>,
}

/// What the cache currently holds, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    pub keys: usize,
    pub devices: usize,
    pub policies: usize,
}

pub(crate) struct Cache {
    db: Database,
    envelope: Envelope,
    keys: RwLock<KeyIndex>,
    devices: RwLock<DeviceIndex>,
    policies: RwLock<PolicyIndex>,
    /// Writers (full loads and single reloads) take turns across their read *and* swap: a full
    /// load that read the read models before a revocation must not swap in after the reload that
    /// applied it, or the revoked device would pass again until the next refresh. Requests never
    /// take this lock.
    writers: tokio::sync::Mutex<()>,
}

/// A poisoned lock only means a panic elsewhere while swapping entries; the maps are still valid.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Cache {
    pub fn new(db: Database, envelope: Envelope) -> Self {
        Self {
            db,
            envelope,
            keys: RwLock::default(),
            devices: RwLock::default(),
            policies: RwLock::default(),
            writers: tokio::sync::Mutex::new(()),
        }
    }

    pub fn key_by_hash(&self, hash_hex: &str) -> Option<Arc<KeyEntry>> {
        let keys = read(&self.keys);
        keys.by_hash.get(hash_hex).and_then(|id| keys.by_id.get(id)).cloned()
    }

    pub fn device(&self, api_key_id: Uuid, key_id: &str) -> Option<Arc<DeviceEntry>> {
        // The tuple key needs an owned String; a keyId is 32 characters, so this is cheap.
        read(&self.devices).by_key_id.get(&(api_key_id, key_id.to_owned())).cloned()
    }

    /// The policy in force for a request of `device_id` through `api_key_id` (device level
    /// included), and the key-wide one (device level left out) for the key's shared limits.
    pub fn policies(&self, api_key_id: Uuid, device_id: Uuid) -> (EffectivePolicy, EffectivePolicy) {
        let p = read(&self.policies);
        let global = p.global.as_ref();
        let key = p.keys.get(&api_key_id);
        (
            EffectivePolicy::resolve(global, key, p.devices.get(&device_id)),
            EffectivePolicy::resolve(global, key, None),
        )
    }

    pub fn stats(&self) -> CacheStats {
        let p = read(&self.policies);
        CacheStats {
            keys: read(&self.keys).by_id.len(),
            devices: read(&self.devices).by_id.len(),
            policies: usize::from(p.global.is_some()) + p.keys.len() + p.devices.len(),
        }
    }

    /// Reloads everything from the read models and swaps it in.
    pub async fn load_all(&self) -> Result<(), ReadModelError> {
        let _turn = self.writers.lock().await;
        let mut key_index = KeyIndex::default();
        for view in all_keys(&self.db).await? {
            if let Some(entry) = self.key_entry(view).await {
                index_key(&mut key_index, entry);
            }
        }
        let mut device_index = DeviceIndex::default();
        for view in all_devices(&self.db).await? {
            if let Some(entry) = device_entry(&view) {
                index_device(&mut device_index, entry);
            }
        }
        let mut policy_index = PolicyIndex::default();
        for view in policies::all(&self.db).await? {
            set_policy(&mut policy_index, view.scope, Some(view.settings));
        }
        *write(&self.keys) = key_index;
        *write(&self.devices) = device_index;
        *write(&self.policies) = policy_index;
        Ok(())
    }

    /// Brings one aggregate's entry up to date from the read model (which must already hold the
    /// event). Unknown aggregate types are ignored.
    pub async fn reload(&self, aggregate_type: &str, aggregate_id: &str) -> Result<(), ReadModelError> {
        let _turn = self.writers.lock().await;
        match aggregate_type {
            "api_key" => {
                let Ok(id) = Uuid::parse_str(aggregate_id) else { return Ok(()) };
                let entry = match api_keys::get(&self.db, id).await? {
                    Some(view) => self.key_entry(view).await,
                    None => None,
                };
                let mut keys = write(&self.keys);
                remove_key(&mut keys, id);
                if let Some(entry) = entry {
                    index_key(&mut keys, entry);
                }
            }
            "device" => {
                let Ok(id) = Uuid::parse_str(aggregate_id) else { return Ok(()) };
                let entry = devices::get(&self.db, id).await?.as_ref().and_then(device_entry);
                let mut devices = write(&self.devices);
                if let Some(old) = devices.by_id.remove(&id) {
                    devices.by_key_id.remove(&old);
                }
                if let Some(entry) = entry {
                    index_device(&mut devices, entry);
                }
            }
            "policy" => {
                let Ok(scope) = PolicyScope::from_aggregate_id(aggregate_id) else { return Ok(()) };
                let settings = policies::get(&self.db, scope).await?.map(|v| v.settings);
                set_policy(&mut write(&self.policies), scope, settings);
            }
            _ => {}
        }
        Ok(())
    }

    /// `None` for a provider this build does not know (never written by the domain).
    async fn key_entry(&self, view: ApiKeyView) -> Option<KeyEntry> {
        let provider = view.provider.parse().ok()?;
        let secret = match api_keys::sealed_secret(&self.db, view.id).await {
            Ok(Some(sealed)) => match self.envelope.open(&sealed, &view.id.to_string()).await {
                Ok(secret) => Some(Arc::new(secret)),
                Err(e) => {
                    tracing::warn!(api_key_id = %view.id, error = %e, "cannot open the provider secret");
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(api_key_id = %view.id, error = %e, "cannot read the provider secret");
                None
            }
        };
        Some(KeyEntry {
            id: view.id,
            provider,
            revoked: view.status == "revoked",
            expires_at: view.expires_at,
            current_hash: view.project_key_hash,
            previous_hash: view.previous_key_hash,
            grace_until: view.grace_until,
            base_url: view.base_url,
            azure_deployment: view.azure_deployment,
            azure_api_version: view.azure_api_version,
            secret,
        })
    }
}

fn index_key(index: &mut KeyIndex, entry: KeyEntry) {
    index.by_hash.insert(entry.current_hash.clone(), entry.id);
    if let Some(previous) = &entry.previous_hash {
        index.by_hash.insert(previous.clone(), entry.id);
    }
    index.by_id.insert(entry.id, Arc::new(entry));
}

fn remove_key(index: &mut KeyIndex, id: Uuid) {
    if let Some(old) = index.by_id.remove(&id) {
        index.by_hash.remove(&old.current_hash);
        if let Some(previous) = &old.previous_hash {
            index.by_hash.remove(previous);
        }
    }
}

fn device_entry(view: &DeviceView) -> Option<DeviceEntry> {
    let status = match view.status.as_str() {
        "pending" => DeviceStatus::Pending,
        "active" => DeviceStatus::Active,
        "suspended" => DeviceStatus::Suspended,
        "revoked" => DeviceStatus::Revoked,
        _ => return None,
    };
    let public_key = PublicKeySpki::parse(&view.public_key).ok()?;
    Some(DeviceEntry {
        id: view.id,
        api_key_id: view.api_key_id,
        key_id: view.key_id.clone(),
        status,
        verifying_key: public_key.verifying_key(),
    })
}

fn index_device(index: &mut DeviceIndex, entry: DeviceEntry) {
    let slot = (entry.api_key_id, entry.key_id.clone());
    index.by_id.insert(entry.id, slot.clone());
    index.by_key_id.insert(slot, Arc::new(entry));
}

fn set_policy(index: &mut PolicyIndex, scope: PolicyScope, settings: Option<PolicySettings>) {
    match scope {
        PolicyScope::Global => index.global = settings,
        PolicyScope::ApiKey(id) => {
            match settings {
                Some(s) => index.keys.insert(id, s),
                None => index.keys.remove(&id),
            };
        }
        PolicyScope::Device(id) => {
            match settings {
                Some(s) => index.devices.insert(id, s),
                None => index.devices.remove(&id),
            };
        }
    }
}

async fn all_keys(db: &Database) -> Result<Vec<ApiKeyView>, ReadModelError> {
    let mut all = Vec::new();
    loop {
        let filter = ApiKeyFilter {
            page: PageRequest::new(PageRequest::MAX_LIMIT, all.len() as i64),
            ..Default::default()
        };
        let page = api_keys::list(db, &filter).await?;
        let done = page.items.len() < PageRequest::MAX_LIMIT as usize;
        all.extend(page.items);
        if done {
            return Ok(all);
        }
    }
}

async fn all_devices(db: &Database) -> Result<Vec<DeviceView>, ReadModelError> {
    let mut all = Vec::new();
    loop {
        let filter = DeviceFilter {
            page: PageRequest::new(PageRequest::MAX_LIMIT, all.len() as i64),
            ..Default::default()
        };
        let page = devices::list(db, &filter).await?;
        let done = page.items.len() < PageRequest::MAX_LIMIT as usize;
        all.extend(page.items);
        if done {
            return Ok(all);
        }
    }
}
