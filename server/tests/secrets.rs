//! Envelope encryption of provider secrets on both stores: round trip, tampering, destruction and
//! master-key rotation.

mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use domain::api_key::SealedSecret;
use secrecy::{ExposeSecret as _, SecretString};
use services::secrets::{Envelope, MasterKeySource, MasterKeys, SecretsError};
use services::store::Database;
use support::{Backend, TestDb};
use uuid::Uuid;

const PROVIDER_KEY: &str = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789";

fn master_keys(current: &SecretString, previous: &[&SecretString]) -> Arc<MasterKeys> {
    Arc::new(
        MasterKeys::load(&MasterKeySource::Inline {
            current: current.clone(),
            previous: previous.iter().map(|k| (*k).clone()).collect(),
        })
        .expect("valid master keys"),
    )
}

fn new_master_key() -> SecretString {
    MasterKeys::generate_encoded().unwrap()
}

fn secret(text: &str) -> SecretString {
    SecretString::from(text.to_owned())
}

/// Flips one bit of a base64 field.
fn flip(b64: &str, index: usize) -> String {
    let mut bytes = STANDARD.decode(b64).unwrap();
    bytes[index] ^= 0x01;
    STANDARD.encode(bytes)
}

async fn wrapped_key_of(db: &Database, id: Uuid) -> Option<Vec<u8>> {
    let query = "SELECT wrapped_key FROM data_keys WHERE CAST(id AS text) = $1";
    match db {
        Database::Postgres(pool) => {
            sqlx::query_scalar(query).bind(id.to_string()).fetch_one(pool).await.unwrap()
        }
        Database::Sqlite(pool) => {
            sqlx::query_scalar(query).bind(id.to_string()).fetch_one(pool).await.unwrap()
        }
    }
}

async fn corrupt_wrapped_key(db: &Database, id: Uuid) {
    let mut wrapped = wrapped_key_of(db, id).await.unwrap();
    wrapped[0] ^= 0x80;
    let query = "UPDATE data_keys SET wrapped_key = $1 WHERE CAST(id AS text) = $2";
    match db {
        Database::Postgres(pool) => {
            sqlx::query(query).bind(wrapped).bind(id.to_string()).execute(pool).await.unwrap();
        }
        Database::Sqlite(pool) => {
            sqlx::query(query).bind(wrapped).bind(id.to_string()).execute(pool).await.unwrap();
        }
    }
}

async fn seal_and_open_round_trip(backend: Backend) {
    let test = TestDb::new(backend).await;
    let key = new_master_key();
    let envelope = Envelope::new(test.db.clone(), master_keys(&key, &[]));
    let data_key = envelope.create_data_key().await.unwrap();
    let context = Uuid::new_v4().to_string();

    let first = envelope.seal(data_key, &secret(PROVIDER_KEY), &context).await.unwrap();
    let second = envelope.seal(data_key, &secret(PROVIDER_KEY), &context).await.unwrap();
    assert_eq!(first.data_key_id(), data_key);
    assert_eq!(first.key_version(), 1);
    assert!(!first.reuses_nonce_of(&second), "every seal takes a fresh nonce");
    assert_ne!(first.ciphertext_b64(), second.ciphertext_b64());
    assert!(!format!("{first:?}").contains(first.ciphertext_b64()));

    assert_eq!(envelope.open(&first, &context).await.unwrap().as_str(), PROVIDER_KEY);
    // What the ApiKey aggregate stores survives its JSON round trip and opens on a node that has
    // never seen the data key (an empty cache reads and unwraps it from the database).
    let stored: SealedSecret = serde_json::from_value(serde_json::to_value(&second).unwrap()).unwrap();
    let other_node = Envelope::new(test.db.clone(), master_keys(&key, &[]));
    assert_eq!(other_node.open(&stored, &context).await.unwrap().as_str(), PROVIDER_KEY);

    // Every credential has its own data key.
    assert_ne!(envelope.create_data_key().await.unwrap(), data_key);
    let empty = envelope.seal(data_key, &secret(""), &context).await.unwrap_err();
    assert!(matches!(empty, SecretsError::SecretLength { .. }), "{empty}");
    let unknown = Uuid::new_v4();
    let err = envelope.seal(unknown, &secret(PROVIDER_KEY), &context).await.unwrap_err();
    assert!(
        matches!(err, SecretsError::UnknownDataKey { data_key_id, .. } if data_key_id == unknown),
        "{err}"
    );
}

async fn tampering_is_detected(backend: Backend) {
    let test = TestDb::new(backend).await;
    let key = new_master_key();
    let envelope = Envelope::new(test.db.clone(), master_keys(&key, &[]));
    let data_key = envelope.create_data_key().await.unwrap();
    let other_data_key = envelope.create_data_key().await.unwrap();
    let context = "api-key-1";
    let sealed = envelope.seal(data_key, &secret(PROVIDER_KEY), context).await.unwrap();
    let undecryptable = |r: Result<_, SecretsError>| match r {
        Err(SecretsError::Undecryptable { .. }) => {}
        Err(other) => panic!("expected Undecryptable, got {other}"),
        Ok(_) => panic!("a tampered secret opened"),
    };

    for i in [0, 10, STANDARD.decode(sealed.ciphertext_b64()).unwrap().len() - 1] {
        let tampered =
            SealedSecret::new(data_key, 1, sealed.nonce_b64(), flip(sealed.ciphertext_b64(), i)).unwrap();
        undecryptable(envelope.open(&tampered, context).await);
    }
    let tampered_nonce =
        SealedSecret::new(data_key, 1, flip(sealed.nonce_b64(), 5), sealed.ciphertext_b64()).unwrap();
    undecryptable(envelope.open(&tampered_nonce, context).await);
    undecryptable(envelope.open(&sealed, "api-key-2").await);
    undecryptable(envelope.open(&sealed, "").await);
    let moved = SealedSecret::new(other_data_key, 1, sealed.nonce_b64(), sealed.ciphertext_b64()).unwrap();
    undecryptable(envelope.open(&moved, context).await);
    let other_version = SealedSecret::new(data_key, 2, sealed.nonce_b64(), sealed.ciphertext_b64()).unwrap();
    let err = envelope.open(&other_version, context).await.unwrap_err();
    assert!(matches!(err, SecretsError::UnknownDataKey { version: 2, .. }), "{err}");
    // None of the errors gives the secret away.
    assert!(!err.to_string().contains(PROVIDER_KEY));

    // An altered wrapped key in the table is caught by the node that has to unwrap it.
    corrupt_wrapped_key(&test.db, data_key).await;
    let fresh = Envelope::new(test.db.clone(), master_keys(&key, &[]));
    let err = fresh.open(&sealed, context).await.unwrap_err();
    assert!(matches!(err, SecretsError::WrappedKeyCorrupt { .. }), "{err}");
    // The node that cached the key before the alteration still serves it.
    assert_eq!(envelope.open(&sealed, context).await.unwrap().as_str(), PROVIDER_KEY);
}

async fn destroyed_data_keys_open_nothing(backend: Backend) {
    let test = TestDb::new(backend).await;
    let key = new_master_key();
    let envelope = Envelope::new(test.db.clone(), master_keys(&key, &[]));
    let data_key = envelope.create_data_key().await.unwrap();
    let kept = envelope.create_data_key().await.unwrap();
    let sealed = envelope.seal(data_key, &secret(PROVIDER_KEY), "k").await.unwrap();
    let kept_sealed = envelope.seal(kept, &secret("sk-ant-kept"), "k2").await.unwrap();

    assert!(envelope.destroy(data_key).await.unwrap());
    assert!(!envelope.destroy(data_key).await.unwrap(), "destroying twice is harmless");
    assert_eq!(wrapped_key_of(&test.db, data_key).await, None, "the wrapped key is erased");

    for node in [envelope.clone(), Envelope::new(test.db.clone(), master_keys(&key, &[]))] {
        let err = node.open(&sealed, "k").await.unwrap_err();
        assert!(matches!(err, SecretsError::DataKeyDestroyed { .. }), "{err}");
        let err = node.seal(data_key, &secret(PROVIDER_KEY), "k").await.unwrap_err();
        assert!(matches!(err, SecretsError::DataKeyDestroyed { .. }), "{err}");
        assert_eq!(node.open(&kept_sealed, "k2").await.unwrap().as_str(), "sk-ant-kept");
    }
}

async fn rotation_rewraps_every_live_data_key(backend: Backend) {
    let test = TestDb::new(backend).await;
    let (old, new) = (new_master_key(), new_master_key());
    let before = Envelope::new(test.db.clone(), master_keys(&old, &[]));
    let mut sealed = Vec::new();
    for i in 0..3 {
        let data_key = before.create_data_key().await.unwrap();
        let context = format!("key-{i}");
        let plaintext = format!("sk-secret-number-{i}");
        sealed.push((
            before.seal(data_key, &secret(&plaintext), &context).await.unwrap(),
            context,
            plaintext,
        ));
    }
    let destroyed = before.create_data_key().await.unwrap();
    before.destroy(destroyed).await.unwrap();

    // The new key alone cannot unwrap what the old one wrapped, and says which key is missing.
    let new_only = Envelope::new(test.db.clone(), master_keys(&new, &[]));
    let err = new_only.open(&sealed[0].0, &sealed[0].1).await.unwrap_err();
    assert!(
        matches!(&err, SecretsError::MasterKeyUnavailable { master_key_id, .. }
            if *master_key_id == before.master_keys().current().id().to_string()),
        "{err}"
    );

    let rotating = Envelope::new(test.db.clone(), master_keys(&new, &[&old]));
    let report = rotating.rewrap_all().await.unwrap();
    assert_eq!((report.rewrapped, report.already_current, report.failed.len()), (3, 0, 0), "{report:?}");
    let again = rotating.rewrap_all().await.unwrap();
    assert_eq!((again.rewrapped, again.already_current, again.failed.len()), (0, 3, 0), "{again:?}");

    let after = Envelope::new(test.db.clone(), master_keys(&new, &[]));
    for (s, context, plaintext) in &sealed {
        assert_eq!(after.open(s, context).await.unwrap().as_str(), plaintext.as_str());
        // The sealed secrets (the events) did not change; only the wrapping did.
        let old_only = Envelope::new(test.db.clone(), master_keys(&old, &[]));
        let err = old_only.open(s, context).await.unwrap_err();
        assert!(matches!(err, SecretsError::MasterKeyUnavailable { .. }), "{err}");
    }
    // New data keys are wrapped by the new key.
    let data_key = after.create_data_key().await.unwrap();
    let s = after.seal(data_key, &secret("sk-new"), "c").await.unwrap();
    assert_eq!(after.open(&s, "c").await.unwrap().as_str(), "sk-new");
}

async fn rotation_reports_keys_it_cannot_unwrap(backend: Backend) {
    let test = TestDb::new(backend).await;
    let (lost, kept, new) = (new_master_key(), new_master_key(), new_master_key());
    let lost_node = Envelope::new(test.db.clone(), master_keys(&lost, &[]));
    let orphan = lost_node.create_data_key().await.unwrap();
    let kept_node = Envelope::new(test.db.clone(), master_keys(&kept, &[]));
    kept_node.create_data_key().await.unwrap();

    let rotating = Envelope::new(test.db.clone(), master_keys(&new, &[&kept]));
    let report = rotating.rewrap_all().await.unwrap();
    assert_eq!(report.rewrapped, 1, "{report:?}");
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert_eq!(report.failed[0].data_key_id, orphan);
    assert!(report.failed[0].reason.contains("KEYGUARD_PREVIOUS_MASTER_KEYS"), "{report:?}");
}

on_both_backends!(
    seal_and_open_round_trip,
    tampering_is_detected,
    destroyed_data_keys_open_nothing,
    rotation_rewraps_every_live_data_key,
    rotation_reports_keys_it_cannot_unwrap,
);

#[test]
fn a_world_readable_master_key_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    std::fs::write(&path, new_master_key().expose_secret()).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let source = MasterKeySource::File { path: path.clone(), create_if_missing: false, previous: vec![] };
    let err = MasterKeys::load(&source).unwrap_err();
    assert!(matches!(err, SecretsError::MasterKeyFileExposed { .. }), "{err}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(MasterKeys::load(&source).is_ok());
}
