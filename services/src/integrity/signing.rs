//! The key that signs checkpoints and retention runs, and the registry of every such key ever
//! used.
//!
//! The signing key is derived from the master key (HKDF-SHA256, its own label), so it needs no
//! storage of its own and never leaves the server; its public half is what auditors keep.
//!
//! A master key is dropped from the configuration once the data keys are re-wrapped under its
//! successor; what it signed must stay verifiable. So each signing key registers itself
//! (`audit_signing_keys`) the first time it signs, endorsing the public keys of the master keys
//! configured before it and of the keys those endorsed: the list is signed by the new key. The
//! keys a verifier trusts are the configured ones and those a configured key endorsed with a
//! signature that verifies; a row written into the table by hand endorses nothing.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{SecondsFormat, Utc};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::read_models::sql::{self, args};
use crate::secrets::{MasterKey, MasterKeys};
use crate::store::Database;

const HKDF_INFO: &[u8] = b"keyguard audit checkpoint signing v1";
const ENDORSEMENT_DOMAIN: &[u8] = b"keyguard-signing-key-v1";
/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410), before the 32 key bytes.
const ED25519_SPKI_PREFIX: [u8; 12] =
    [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

/// The signing keys: the current one and the verifying keys of every configured master key, by
/// master key id.
pub struct CheckpointKeys {
    key_id: String,
    signing: SigningKey,
    configured: HashMap<String, VerifyingKey>,
}

impl std::fmt::Debug for CheckpointKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CheckpointKeys({}, <redacted>)", self.key_id)
    }
}

fn derive(master: &MasterKey) -> SigningKey {
    let mut seed = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(None, master.bytes())
        .expand(HKDF_INFO, seed.as_mut_slice())
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    SigningKey::from_bytes(&seed)
}

/// One endorsed key: a master key id and the public half of the signing key derived from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Endorsed {
    key_id: String,
    /// Hex of the 32 key bytes.
    public_key: String,
}

#[derive(Debug, sqlx::FromRow)]
struct KeyRow {
    key_id: String,
    public_key: String,
    endorses: String,
    signature: String,
}

/// A row of the registry as a backup carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct RegisteredKey {
    pub key_id: String,
    pub public_key: String,
    pub endorses: String,
    pub signature: String,
    pub created_at: String,
}

impl CheckpointKeys {
    pub fn new(master_keys: &MasterKeys) -> Self {
        let current = master_keys.current();
        let configured = std::iter::once(current)
            .chain(master_keys.previous())
            .map(|key| (key.id().to_string(), derive(key).verifying_key()))
            .collect();
        Self { key_id: current.id().to_string(), signing: derive(current), configured }
    }

    /// The id of the master key the current signing key derives from.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The current public key, for auditors.
    pub fn public_key(&self) -> PublicKey {
        PublicKey::new(&self.key_id, &self.signing.verifying_key())
    }

    pub(super) fn sign(&self, statement: &[u8]) -> String {
        hex::encode(self.signing.sign(statement).to_bytes())
    }

    /// Registers the current key (once), endorsing every older key the configured ones trust.
    pub(super) async fn register(&self, db: &Database) -> Result<(), sqlx::Error> {
        let exists = sql::fetch_i64(
            db,
            "SELECT COUNT(*) FROM audit_signing_keys WHERE key_id = $1",
            args![self.key_id.as_str()],
        )
        .await?;
        if exists > 0 {
            return Ok(());
        }
        let mut endorses: Vec<Endorsed> = self
            .trusted(db)
            .await?
            .into_iter()
            .filter(|(key_id, _)| *key_id != self.key_id)
            .map(|(key_id, key)| Endorsed { key_id, public_key: hex::encode(key.as_bytes()) })
            .collect();
        endorses.sort_by(|a, b| a.key_id.cmp(&b.key_id));
        let endorses = serde_json::to_string(&endorses).expect("a list of strings serializes");
        let public_key = hex::encode(self.signing.verifying_key().as_bytes());
        let signature = self.sign(&endorsement(&self.key_id, &public_key, &endorses));
        sql::execute(
            db,
            "INSERT INTO audit_signing_keys (key_id, public_key, endorses, signature, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key_id) DO NOTHING",
            args![
                self.key_id.as_str(),
                public_key,
                endorses,
                signature,
                Utc::now().to_rfc3339_opts(SecondsFormat::AutoSi, true),
            ],
        )
        .await?;
        Ok(())
    }

    /// The keys whose signatures count: the configured ones and those a configured key endorsed.
    pub(super) async fn trusted(&self, db: &Database) -> Result<TrustedKeys, sqlx::Error> {
        let rows: Vec<KeyRow> = sql::fetch_all(
            db,
            "SELECT key_id, public_key, endorses, signature FROM audit_signing_keys",
            args![],
        )
        .await?;
        let mut trusted = self.configured.clone();
        for row in rows {
            let Some(key) = self.configured.get(&row.key_id) else { continue };
            // A row names a configured key: it counts only if that key signed it.
            if hex::encode(key.as_bytes()) != row.public_key
                || check(key, &endorsement(&row.key_id, &row.public_key, &row.endorses), &row.signature)
                    .is_err()
            {
                tracing::warn!(key_id = %row.key_id, "a signing key registration does not verify; ignored");
                continue;
            }
            let endorsed: Vec<Endorsed> = serde_json::from_str(&row.endorses).unwrap_or_default();
            for entry in endorsed {
                let Some(key) = parse_key(&entry.public_key) else { continue };
                trusted.entry(entry.key_id).or_insert(key);
            }
        }
        Ok(TrustedKeys(trusted))
    }
}

/// The verifying keys a verification accepts, by master key id.
#[derive(Debug, Clone)]
pub(super) struct TrustedKeys(HashMap<String, VerifyingKey>);

impl TrustedKeys {
    pub(super) fn verify(&self, key_id: &str, statement: &[u8], signature_hex: &str) -> Result<(), String> {
        let key = self.0.get(key_id).ok_or_else(|| {
            format!(
                "signed with the key of master key {key_id}, which is neither configured nor endorsed by a \
                 configured key"
            )
        })?;
        check(key, statement, signature_hex)
    }
}

impl IntoIterator for TrustedKeys {
    type Item = (String, VerifyingKey);
    type IntoIter = std::collections::hash_map::IntoIter<String, VerifyingKey>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

fn check(key: &VerifyingKey, statement: &[u8], signature_hex: &str) -> Result<(), String> {
    let mut bytes = [0u8; 64];
    hex::decode_to_slice(signature_hex, &mut bytes).map_err(|_| "the signature is malformed".to_owned())?;
    key.verify_strict(statement, &Signature::from_bytes(&bytes))
        .map_err(|_| "the signature does not verify: the signed record was altered".to_owned())
}

fn parse_key(hex_key: &str) -> Option<VerifyingKey> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex_key, &mut bytes).ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

fn endorsement(key_id: &str, public_key: &str, endorses: &str) -> Vec<u8> {
    let mut out = ENDORSEMENT_DOMAIN.to_vec();
    for field in [key_id, public_key, endorses] {
        out.extend_from_slice(&(field.len() as u64).to_be_bytes());
        out.extend_from_slice(field.as_bytes());
    }
    out
}

/// A signing verifying key as auditors receive it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicKey {
    /// Always `Ed25519`.
    pub algorithm: &'static str,
    /// The id of the master key the signing key derives from (checkpoints name it).
    pub key_id: String,
    /// The 32 raw key bytes, standard base64.
    pub public_key: String,
    /// The same key as a PEM SubjectPublicKeyInfo (`openssl pkey -pubin` reads it).
    pub pem: String,
}

impl PublicKey {
    fn new(key_id: &str, key: &VerifyingKey) -> Self {
        let mut der = ED25519_SPKI_PREFIX.to_vec();
        der.extend_from_slice(key.as_bytes());
        Self {
            algorithm: "Ed25519",
            key_id: key_id.to_owned(),
            public_key: STANDARD.encode(key.as_bytes()),
            pem: format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", STANDARD.encode(der)),
        }
    }
}
