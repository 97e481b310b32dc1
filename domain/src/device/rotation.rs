//! The proof that lets a device replace its key: a signature by the current key over a text that
//! binds the device and the new key, so a proof cannot be moved to another device or key.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::Signature;
use p256::ecdsa::signature::Verifier as _;
use uuid::Uuid;

use super::DeviceError;
use crate::protocol::PublicKeySpki;

/// The first field of the signed rotation text; distinct from `kg-v1` so that a request
/// signature can never double as a rotation proof, nor the reverse.
pub const ROTATION_PROOF_TAG: &str = "kg-v1-rotate";

/// The UTF-8 text the current key signs: `kg-v1-rotate|{device_id}|{new_public_key}`, with the
/// device id in lowercase hyphenated form and the key in its base64 SPKI wire form.
pub fn rotation_message(device_id: Uuid, new_public_key: &PublicKeySpki) -> String {
    format!("{ROTATION_PROOF_TAG}|{}|{}", device_id.as_hyphenated(), new_public_key.as_str())
}

/// Base64 text length of a 64-byte signature, padding included.
const PROOF_BASE64_LEN: usize = 88;

pub(super) fn verify(
    current_key: &PublicKeySpki,
    device_id: Uuid,
    new_public_key: &PublicKeySpki,
    proof: &str,
) -> Result<(), DeviceError> {
    // The engine is strict (canonical padding, no trailing bits), unlike the original server.
    if proof.len() != PROOF_BASE64_LEN {
        return Err(DeviceError::MalformedRotationProof);
    }
    let bytes = STANDARD.decode(proof).map_err(|_| DeviceError::MalformedRotationProof)?;
    let signature = Signature::from_slice(&bytes).map_err(|_| DeviceError::MalformedRotationProof)?;
    current_key
        .verifying_key()
        .verify(rotation_message(device_id, new_public_key).as_bytes(), &signature)
        .map_err(|_| DeviceError::InvalidRotationProof)
}
