//! The enrollment route's body (`POST /api/v1/keyguard/enroll`), as any holder of a project key
//! may send it: the JSON, the public key and keyId, the enrollment code and the domain's checks
//! of label, fingerprint, user agent and metadata.
//!
//! Checked beyond "no panic": an accepted public key round-trips and its keyId is the one derived
//! from it; an accepted code has one canonical spelling; what the domain accepts respects its
//! documented limits.

#![no_main]

use domain::api_key::EnrollmentCode;
use domain::device::{
    EnrollDevice, InitialStatus, MAX_FINGERPRINT_CHARS, MAX_LABEL_CHARS, MAX_METADATA_BYTES,
    MAX_USER_AGENT_CHARS,
};
use domain::protocol::{KeyId, PublicKeySpki};
use libfuzzer_sys::fuzz_target;
use services::enrollment::{EnrollmentBody, device_key, dry_run};

fuzz_target!(|data: &[u8]| {
    let Ok(body) = EnrollmentBody::parse(data) else { return };
    let request = body.into_request("kg_1733668200000_abcdefghijklmnopqrstuvwxyz012345".into());

    if let Some(text) = &request.enrollment_code
        && let Ok(code) = EnrollmentCode::parse(text.trim())
    {
        let spelled = code.expose();
        assert!(spelled.starts_with(EnrollmentCode::PREFIX) && spelled.len() == EnrollmentCode::LEN);
        let again = EnrollmentCode::parse(spelled).expect("a parsed code parses again");
        assert!(again.hash() == code.hash(), "one code, two hashes");
    }

    let Ok((public_key, key_id)) = device_key(&request) else {
        // Refused although both parse: then they must not belong together.
        if let (Ok(public_key), Ok(key_id)) =
            (PublicKeySpki::parse(&request.public_key), KeyId::parse(&request.key_id))
        {
            assert!(public_key.key_id() != key_id, "refused a matching key and keyId");
        }
        return;
    };
    assert!(public_key.key_id() == key_id, "accepted a keyId that is not the key's");
    assert_eq!(key_id, KeyId::derive(public_key.as_str()));
    let reparsed = PublicKeySpki::parse(public_key.as_str()).expect("an accepted key parses again");
    assert_eq!(reparsed.as_str(), public_key.as_str());

    let metadata = request.metadata.clone().unwrap_or_else(|| serde_json::json!({}));
    let command = EnrollDevice {
        device_id: uuid::Uuid::nil(),
        api_key_id: uuid::Uuid::nil(),
        key_id,
        public_key,
        label: request.label.clone(),
        fingerprint: request.device_fingerprint.clone(),
        user_agent: request.user_agent.clone(),
        metadata: metadata.clone(),
        ip: None,
        initial_status: InitialStatus::Pending,
        enrollment_code_id: None,
        at: chrono::DateTime::UNIX_EPOCH,
    };
    if futures::executor::block_on(dry_run(&command)).is_ok() {
        let chars = |s: &str| s.trim().chars().count();
        assert!((1..=MAX_LABEL_CHARS).contains(&chars(&request.label)), "label {:?}", request.label);
        assert!((1..=MAX_FINGERPRINT_CHARS).contains(&chars(&request.device_fingerprint)));
        for text in [&request.label, &request.device_fingerprint] {
            assert!(!text.trim().chars().any(char::is_control), "accepted a control character: {text:?}");
        }
        assert!(request.user_agent.as_deref().is_none_or(|ua| chars(ua) <= MAX_USER_AGENT_CHARS));
        assert!(metadata.is_object());
        assert!(serde_json::to_vec(&metadata).expect("JSON serialises").len() <= MAX_METADATA_BYTES);
    }
});
