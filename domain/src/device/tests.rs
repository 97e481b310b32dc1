//! Given/when/then for every device command, success and refusal.

use cqrs_es::DomainEvent as _;
use cqrs_es::test::{AggregateTestExecutor, TestFramework};
use p256::ecdsa::SigningKey;
use serde_json::json;
use uuid::Uuid;

use super::*;
use crate::protocol::{KeyError, KeyId, PublicKeySpki};
use crate::test_support::{admin, public_key, sign, signing_key, t, t0};
use crate::text::TextError;

fn device_id() -> Uuid {
    Uuid::from_u128(0xd1)
}

fn project() -> Uuid {
    Uuid::from_u128(0xa1)
}

fn key_a() -> SigningKey {
    signing_key(1)
}

fn key_b() -> SigningKey {
    signing_key(2)
}

fn key_c() -> SigningKey {
    signing_key(3)
}

fn enroll_cmd(initial_status: InitialStatus) -> EnrollDevice {
    let public_key = public_key(&key_a());
    EnrollDevice {
        device_id: device_id(),
        api_key_id: project(),
        key_id: public_key.key_id(),
        public_key,
        label: "  Chrome on macOS ".into(),
        fingerprint: "fp-123".into(),
        user_agent: Some("Mozilla/5.0".into()),
        metadata: json!({"platform": "macOS"}),
        ip: Some("203.0.113.9".parse().unwrap()),
        initial_status,
        enrollment_code_id: Some(Uuid::from_u128(0xc0de)),
        at: t0(),
    }
}

fn enrolled(initial_status: InitialStatus) -> DeviceEvent {
    let cmd = enroll_cmd(initial_status);
    DeviceEvent::DeviceEnrolled {
        device_id: cmd.device_id,
        api_key_id: cmd.api_key_id,
        key_id: cmd.key_id,
        public_key: cmd.public_key,
        label: "Chrome on macOS".into(),
        fingerprint: cmd.fingerprint,
        user_agent: cmd.user_agent,
        metadata: cmd.metadata,
        ip: cmd.ip,
        initial_status,
        enrollment_code_id: cmd.enrollment_code_id,
        at: t0(),
    }
}

fn active() -> Vec<DeviceEvent> {
    vec![enrolled(InitialStatus::Active)]
}

fn pending() -> Vec<DeviceEvent> {
    vec![enrolled(InitialStatus::Pending)]
}

fn suspended_after(mut history: Vec<DeviceEvent>) -> Vec<DeviceEvent> {
    history.push(DeviceEvent::DeviceSuspended { by: admin(), reason: "lost laptop".into(), at: t(10) });
    history
}

fn revoked_after(mut history: Vec<DeviceEvent>) -> Vec<DeviceEvent> {
    history.push(DeviceEvent::DeviceRevoked { by: admin(), reason: "stolen".into(), at: t(20) });
    history
}

fn given(events: Vec<DeviceEvent>) -> AggregateTestExecutor<Device> {
    TestFramework::<Device>::with(()).given(events)
}

fn nothing() -> AggregateTestExecutor<Device> {
    TestFramework::<Device>::with(()).given_no_previous_events()
}

fn approve() -> DeviceCommand {
    DeviceCommand::Approve { by: admin(), at: t(30) }
}

fn suspend(reason: &str) -> DeviceCommand {
    DeviceCommand::Suspend { by: admin(), reason: reason.into(), at: t(30) }
}

fn reactivate() -> DeviceCommand {
    DeviceCommand::Reactivate { by: admin(), at: t(30) }
}

fn revoke(reason: &str) -> DeviceCommand {
    DeviceCommand::Revoke { by: admin(), reason: reason.into(), at: t(30) }
}

fn rename(label: &str) -> DeviceCommand {
    DeviceCommand::Rename { by: admin(), label: label.into(), at: t(30) }
}

/// A rotation to `new`, proven by `signer` for `device`.
fn rotate_signed(new: &SigningKey, signer: &SigningKey, device: Uuid) -> DeviceCommand {
    let new_public_key = public_key(new);
    let proof = sign(signer, &rotation_message(device, &new_public_key));
    DeviceCommand::RotateKey { new_public_key, proof, at: t(40) }
}

fn rotate(new: &SigningKey, signer: &SigningKey) -> DeviceCommand {
    rotate_signed(new, signer, device_id())
}

fn rotated(from: &SigningKey, to: &SigningKey) -> DeviceEvent {
    DeviceEvent::DeviceKeyRotated {
        old_key_id: public_key(from).key_id(),
        new_key_id: public_key(to).key_id(),
        new_public_key: public_key(to),
        at: t(40),
    }
}

fn invalid(action: DeviceAction, from: DeviceStatus) -> DeviceError {
    DeviceError::InvalidTransition { action, from }
}

fn state(events: Vec<DeviceEvent>) -> Device {
    let mut device = Device::default();
    for e in events {
        cqrs_es::Aggregate::apply(&mut device, e);
    }
    device
}

// ---- Enroll ----

#[test]
fn enroll_active_records_the_device_with_its_label_trimmed() {
    nothing()
        .when(DeviceCommand::Enroll(enroll_cmd(InitialStatus::Active)))
        .then_expect_events(vec![enrolled(InitialStatus::Active)]);
}

#[test]
fn enroll_pending_records_a_pending_device() {
    nothing()
        .when(DeviceCommand::Enroll(enroll_cmd(InitialStatus::Pending)))
        .then_expect_events(vec![enrolled(InitialStatus::Pending)]);
}

#[test]
fn enroll_treats_a_blank_user_agent_as_absent() {
    let mut cmd = enroll_cmd(InitialStatus::Pending);
    cmd.user_agent = Some("  ".into());
    let result = nothing().when(DeviceCommand::Enroll(cmd)).inspect_result();
    let Ok(events) = result else { panic!("expected success") };
    assert!(matches!(&events[..], [DeviceEvent::DeviceEnrolled { user_agent: None, .. }]));
}

#[test]
fn enrolling_twice_is_refused() {
    given(pending())
        .when(DeviceCommand::Enroll(enroll_cmd(InitialStatus::Pending)))
        .then_expect_error(DeviceError::AlreadyEnrolled);
}

#[test]
fn enrolling_a_revoked_device_again_is_refused() {
    given(revoked_after(active()))
        .when(DeviceCommand::Enroll(enroll_cmd(InitialStatus::Active)))
        .then_expect_error(DeviceError::AlreadyEnrolled);
}

#[test]
fn enroll_refuses_a_key_id_that_is_not_derived_from_the_key() {
    let mut cmd = enroll_cmd(InitialStatus::Active);
    cmd.key_id = public_key(&key_b()).key_id();
    nothing().when(DeviceCommand::Enroll(cmd)).then_expect_error(DeviceError::KeyIdMismatch(
        KeyError::KeyIdMismatch {
            claimed: public_key(&key_b()).key_id(),
            derived: public_key(&key_a()).key_id(),
        },
    ));
}

#[test]
fn enroll_refuses_an_empty_label() {
    let mut cmd = enroll_cmd(InitialStatus::Active);
    cmd.label = " ".into();
    nothing().when(DeviceCommand::Enroll(cmd)).then_expect_error(DeviceError::InvalidLabel(TextError::Empty));
}

#[test]
fn enroll_accepts_a_label_of_255_characters_and_refuses_256() {
    let mut cmd = enroll_cmd(InitialStatus::Active);
    cmd.label = "é".repeat(MAX_LABEL_CHARS);
    assert!(nothing().when(DeviceCommand::Enroll(cmd.clone())).inspect_result().is_ok());
    cmd.label.push('x');
    nothing()
        .when(DeviceCommand::Enroll(cmd))
        .then_expect_error(DeviceError::InvalidLabel(TextError::TooLong { max: 255, len: 256 }));
}

#[test]
fn enroll_refuses_a_label_with_a_control_character() {
    let mut cmd = enroll_cmd(InitialStatus::Active);
    cmd.label = "laptop\r\nINFO forged log line".into();
    nothing()
        .when(DeviceCommand::Enroll(cmd))
        .then_expect_error(DeviceError::InvalidLabel(TextError::ForbiddenCharacter));
}

#[test]
fn enroll_refuses_an_empty_fingerprint() {
    let mut cmd = enroll_cmd(InitialStatus::Active);
    cmd.fingerprint = String::new();
    nothing()
        .when(DeviceCommand::Enroll(cmd))
        .then_expect_error(DeviceError::InvalidFingerprint(TextError::Empty));
}

#[test]
fn enroll_refuses_an_overlong_user_agent() {
    let mut cmd = enroll_cmd(InitialStatus::Active);
    cmd.user_agent = Some("a".repeat(MAX_USER_AGENT_CHARS + 1));
    nothing().when(DeviceCommand::Enroll(cmd)).then_expect_error(DeviceError::InvalidUserAgent(
        TextError::TooLong { max: MAX_USER_AGENT_CHARS, len: MAX_USER_AGENT_CHARS + 1 },
    ));
}

#[test]
fn enroll_refuses_metadata_that_is_not_an_object() {
    for metadata in [json!(null), json!([1, 2]), json!("x"), json!(3)] {
        let mut cmd = enroll_cmd(InitialStatus::Active);
        cmd.metadata = metadata;
        nothing().when(DeviceCommand::Enroll(cmd)).then_expect_error(DeviceError::MetadataNotObject);
    }
}

#[test]
fn enroll_accepts_metadata_of_exactly_16_kib_and_refuses_one_byte_more() {
    // {"k":"…"} is 8 bytes of framing around the value.
    let exact = json!({ "k": "x".repeat(MAX_METADATA_BYTES - 8) });
    assert_eq!(serde_json::to_vec(&exact).unwrap().len(), MAX_METADATA_BYTES);
    let mut cmd = enroll_cmd(InitialStatus::Active);
    cmd.metadata = exact;
    assert!(nothing().when(DeviceCommand::Enroll(cmd.clone())).inspect_result().is_ok());
    cmd.metadata = json!({ "k": "x".repeat(MAX_METADATA_BYTES - 7) });
    nothing().when(DeviceCommand::Enroll(cmd)).then_expect_error(DeviceError::MetadataTooLarge {
        size: MAX_METADATA_BYTES + 1,
        max: MAX_METADATA_BYTES,
    });
}

// ---- Approve ----

#[test]
fn approve_activates_a_pending_device() {
    given(pending())
        .when(approve())
        .then_expect_events(vec![DeviceEvent::DeviceApproved { by: admin(), at: t(30) }]);
}

#[test]
fn approving_an_active_device_is_refused() {
    given(active()).when(approve()).then_expect_error(invalid(DeviceAction::Approve, DeviceStatus::Active));
}

#[test]
fn approving_a_suspended_device_is_refused() {
    given(suspended_after(pending()))
        .when(approve())
        .then_expect_error(invalid(DeviceAction::Approve, DeviceStatus::Suspended));
}

#[test]
fn approving_a_revoked_device_is_refused() {
    given(revoked_after(pending())).when(approve()).then_expect_error(DeviceError::Revoked);
}

#[test]
fn approving_an_unknown_device_is_refused() {
    nothing().when(approve()).then_expect_error(DeviceError::NotEnrolled);
}

// ---- Suspend ----

#[test]
fn suspend_an_active_device_records_who_and_why() {
    given(active()).when(suspend(" lost laptop ")).then_expect_events(vec![DeviceEvent::DeviceSuspended {
        by: admin(),
        reason: "lost laptop".into(),
        at: t(30),
    }]);
}

#[test]
fn suspend_a_pending_device() {
    given(pending()).when(suspend("unknown owner")).then_expect_events(vec![DeviceEvent::DeviceSuspended {
        by: admin(),
        reason: "unknown owner".into(),
        at: t(30),
    }]);
}

#[test]
fn suspending_a_suspended_device_is_refused() {
    given(suspended_after(active()))
        .when(suspend("again"))
        .then_expect_error(invalid(DeviceAction::Suspend, DeviceStatus::Suspended));
}

#[test]
fn suspending_a_revoked_device_is_refused() {
    given(revoked_after(active())).when(suspend("x")).then_expect_error(DeviceError::Revoked);
}

#[test]
fn suspending_an_unknown_device_is_refused() {
    nothing().when(suspend("x")).then_expect_error(DeviceError::NotEnrolled);
}

#[test]
fn suspend_requires_a_reason() {
    given(active()).when(suspend("  ")).then_expect_error(DeviceError::InvalidReason(TextError::Empty));
}

#[test]
fn suspend_accepts_a_reason_of_500_characters_and_refuses_501() {
    assert!(given(active()).when(suspend(&"r".repeat(500))).inspect_result().is_ok());
    given(active())
        .when(suspend(&"r".repeat(501)))
        .then_expect_error(DeviceError::InvalidReason(TextError::TooLong { max: 500, len: 501 }));
}

// ---- Reactivate ----

#[test]
fn reactivate_returns_a_once_active_device_to_active() {
    given(suspended_after(active())).when(reactivate()).then_expect_events(vec![
        DeviceEvent::DeviceReactivated { by: admin(), status: DeviceStatus::Active, at: t(30) },
    ]);
}

#[test]
fn reactivate_returns_a_never_approved_device_to_pending() {
    given(suspended_after(pending())).when(reactivate()).then_expect_events(vec![
        DeviceEvent::DeviceReactivated { by: admin(), status: DeviceStatus::Pending, at: t(30) },
    ]);
}

#[test]
fn reactivate_after_approval_then_suspension_returns_to_active() {
    let mut history = pending();
    history.push(DeviceEvent::DeviceApproved { by: admin(), at: t(5) });
    given(suspended_after(history)).when(reactivate()).then_expect_events(vec![
        DeviceEvent::DeviceReactivated { by: admin(), status: DeviceStatus::Active, at: t(30) },
    ]);
}

#[test]
fn reactivating_an_active_device_is_refused() {
    given(active())
        .when(reactivate())
        .then_expect_error(invalid(DeviceAction::Reactivate, DeviceStatus::Active));
}

#[test]
fn reactivating_a_pending_device_is_refused() {
    given(pending())
        .when(reactivate())
        .then_expect_error(invalid(DeviceAction::Reactivate, DeviceStatus::Pending));
}

#[test]
fn reactivating_a_revoked_device_is_refused() {
    given(revoked_after(suspended_after(active())))
        .when(reactivate())
        .then_expect_error(DeviceError::Revoked);
}

#[test]
fn reactivating_an_unknown_device_is_refused() {
    nothing().when(reactivate()).then_expect_error(DeviceError::NotEnrolled);
}

// ---- Revoke ----

#[test]
fn revoke_works_from_every_live_state() {
    for history in [pending(), active(), suspended_after(active())] {
        given(history).when(revoke("stolen")).then_expect_events(vec![DeviceEvent::DeviceRevoked {
            by: admin(),
            reason: "stolen".into(),
            at: t(30),
        }]);
    }
}

#[test]
fn revoking_twice_is_refused() {
    given(revoked_after(active())).when(revoke("again")).then_expect_error(DeviceError::Revoked);
}

#[test]
fn revoking_an_unknown_device_is_refused() {
    nothing().when(revoke("x")).then_expect_error(DeviceError::NotEnrolled);
}

#[test]
fn revoke_requires_a_reason() {
    given(active()).when(revoke("")).then_expect_error(DeviceError::InvalidReason(TextError::Empty));
}

// ---- Rename ----

#[test]
fn rename_records_the_previous_and_the_new_label() {
    given(active()).when(rename(" Work laptop ")).then_expect_events(vec![DeviceEvent::DeviceRenamed {
        by: admin(),
        previous_label: "Chrome on macOS".into(),
        label: "Work laptop".into(),
        at: t(30),
    }]);
}

#[test]
fn rename_is_allowed_while_suspended() {
    assert!(given(suspended_after(active())).when(rename("Quarantined")).inspect_result().is_ok());
}

#[test]
fn renaming_to_the_same_label_is_refused() {
    given(active())
        .when(rename("Chrome on macOS"))
        .then_expect_error(DeviceError::LabelUnchanged("Chrome on macOS".into()));
}

#[test]
fn rename_refuses_an_invalid_label() {
    given(active()).when(rename("")).then_expect_error(DeviceError::InvalidLabel(TextError::Empty));
    given(active())
        .when(rename("a\u{202E}b"))
        .then_expect_error(DeviceError::InvalidLabel(TextError::ForbiddenCharacter));
}

#[test]
fn renaming_a_revoked_device_is_refused() {
    given(revoked_after(active())).when(rename("x")).then_expect_error(DeviceError::Revoked);
}

#[test]
fn renaming_an_unknown_device_is_refused() {
    nothing().when(rename("x")).then_expect_error(DeviceError::NotEnrolled);
}

// ---- RotateKey ----

#[test]
fn rotate_key_with_a_proof_by_the_current_key() {
    given(active()).when(rotate(&key_b(), &key_a())).then_expect_events(vec![rotated(&key_a(), &key_b())]);
}

#[test]
fn rotate_key_twice_in_a_row() {
    let mut history = active();
    history.push(rotated(&key_a(), &key_b()));
    given(history).when(rotate(&key_c(), &key_b())).then_expect_events(vec![rotated(&key_b(), &key_c())]);
}

#[test]
fn rotating_the_key_of_a_pending_device_is_refused() {
    given(pending())
        .when(rotate(&key_b(), &key_a()))
        .then_expect_error(invalid(DeviceAction::RotateKey, DeviceStatus::Pending));
}

#[test]
fn rotating_the_key_of_a_suspended_device_is_refused() {
    given(suspended_after(active()))
        .when(rotate(&key_b(), &key_a()))
        .then_expect_error(invalid(DeviceAction::RotateKey, DeviceStatus::Suspended));
}

#[test]
fn rotating_the_key_of_a_revoked_device_is_refused() {
    given(revoked_after(active())).when(rotate(&key_b(), &key_a())).then_expect_error(DeviceError::Revoked);
}

#[test]
fn rotating_the_key_of_an_unknown_device_is_refused() {
    nothing().when(rotate(&key_b(), &key_a())).then_expect_error(DeviceError::NotEnrolled);
}

#[test]
fn rotate_refuses_a_proof_signed_by_the_new_key() {
    given(active()).when(rotate(&key_b(), &key_b())).then_expect_error(DeviceError::InvalidRotationProof);
}

#[test]
fn rotate_refuses_a_proof_made_for_another_device() {
    given(active())
        .when(rotate_signed(&key_b(), &key_a(), Uuid::from_u128(0xd2)))
        .then_expect_error(DeviceError::InvalidRotationProof);
}

#[test]
fn rotate_refuses_a_proof_made_for_another_new_key() {
    let proof = sign(&key_a(), &rotation_message(device_id(), &public_key(&key_c())));
    given(active())
        .when(DeviceCommand::RotateKey { new_public_key: public_key(&key_b()), proof, at: t(40) })
        .then_expect_error(DeviceError::InvalidRotationProof);
}

#[test]
fn rotate_refuses_a_malformed_proof() {
    let good = match rotate(&key_b(), &key_a()) {
        DeviceCommand::RotateKey { proof, .. } => proof,
        _ => unreachable!(),
    };
    let url_safe = good.replace('+', "-").replace('/', "_");
    let unpadded = good.trim_end_matches('=').to_owned();
    let zeros = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [0u8; 64]);
    let der_like = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [0x30u8; 70]);
    for proof in [String::new(), unpadded, der_like, zeros, "!".repeat(88)] {
        given(active())
            .when(DeviceCommand::RotateKey { new_public_key: public_key(&key_b()), proof, at: t(40) })
            .then_expect_error(DeviceError::MalformedRotationProof);
    }
    // base64url only differs from standard base64 when the text contains + or /.
    if url_safe != good {
        given(active())
            .when(DeviceCommand::RotateKey {
                new_public_key: public_key(&key_b()),
                proof: url_safe,
                at: t(40),
            })
            .then_expect_error(DeviceError::MalformedRotationProof);
    }
}

#[test]
fn rotating_to_the_current_key_is_refused() {
    given(active()).when(rotate(&key_a(), &key_a())).then_expect_error(DeviceError::KeyUnchanged);
}

#[test]
fn rotating_back_to_a_retired_key_is_refused() {
    let mut history = active();
    history.push(rotated(&key_a(), &key_b()));
    given(history).when(rotate(&key_a(), &key_b())).then_expect_error(DeviceError::KeyPreviouslyUsed);
}

#[test]
fn a_replayed_rotation_proof_is_useless_after_the_rotation() {
    let mut history = active();
    history.push(rotated(&key_a(), &key_b()));
    // Same command again: the new key is now current.
    given(history.clone()).when(rotate(&key_b(), &key_a())).then_expect_error(DeviceError::KeyUnchanged);
    // A proof by the retired key for yet another key.
    given(history).when(rotate(&key_c(), &key_a())).then_expect_error(DeviceError::InvalidRotationProof);
}

#[test]
fn a_high_s_signature_from_webcrypto_is_accepted() {
    // WebCrypto does not normalise s, so half of real proofs have a high s.
    use p256::ecdsa::Signature;
    use p256::ecdsa::signature::Signer as _;
    use p256::elliptic_curve::scalar::IsHigh as _;
    let message = rotation_message(device_id(), &public_key(&key_b()));
    let low: Signature = key_a().sign(message.as_bytes());
    let low = low.normalize_s();
    let (r, s) = low.split_scalars();
    let high = Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
    assert!(bool::from(high.s().is_high()));
    let proof = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, high.to_bytes());
    given(active())
        .when(DeviceCommand::RotateKey { new_public_key: public_key(&key_b()), proof, at: t(40) })
        .then_expect_events(vec![rotated(&key_a(), &key_b())]);
}

// ---- State, serde, codes ----

#[test]
fn state_follows_the_history() {
    assert!(Device::default().enrolled().is_none());
    assert!(!Device::default().can_sign());

    let device = state(pending());
    assert_eq!(device.status(), Some(DeviceStatus::Pending));
    assert!(!device.can_sign());

    let mut history = suspended_after(active());
    let device = state(history.clone());
    let d = device.enrolled().unwrap();
    assert_eq!(d.status(), DeviceStatus::Suspended);
    assert_eq!(d.status_reason(), Some("lost laptop"));

    history.push(DeviceEvent::DeviceReactivated { by: admin(), status: DeviceStatus::Active, at: t(30) });
    history.push(rotated(&key_a(), &key_b()));
    let device = state(history);
    let d = device.enrolled().unwrap();
    assert!(device.can_sign());
    assert_eq!(d.status_reason(), None);
    assert_eq!(d.id(), device_id());
    assert_eq!(d.api_key_id(), project());
    assert_eq!(d.key_id(), &public_key(&key_b()).key_id());
    assert_eq!(d.public_key(), &public_key(&key_b()));
    assert_eq!(d.retired_key_ids(), &[public_key(&key_a()).key_id()]);
    assert_eq!(d.label(), "Chrome on macOS");
    assert_eq!(d.fingerprint(), "fp-123");
    assert_eq!(d.user_agent(), Some("Mozilla/5.0"));
    assert_eq!(d.metadata(), &json!({"platform": "macOS"}));
    assert_eq!(d.enrolled_ip(), Some("203.0.113.9".parse().unwrap()));
    assert_eq!(d.enrollment_code_id(), Some(Uuid::from_u128(0xc0de)));
    assert_eq!(d.enrolled_at(), t0());
    assert_eq!(d.updated_at(), t(40));
}

#[test]
fn state_survives_a_snapshot_round_trip() {
    let device = state(revoked_after(active()));
    let json = serde_json::to_string(&device).unwrap();
    let back: Device = serde_json::from_str(&json).unwrap();
    assert_eq!(back.enrolled(), device.enrolled());
}

fn one_of_each_event() -> Vec<DeviceEvent> {
    vec![
        enrolled(InitialStatus::Pending),
        DeviceEvent::DeviceApproved { by: admin(), at: t(1) },
        DeviceEvent::DeviceSuspended { by: admin(), reason: "r".into(), at: t(2) },
        DeviceEvent::DeviceReactivated {
            by: crate::metadata::Actor::system("cli"),
            status: DeviceStatus::Active,
            at: t(3),
        },
        DeviceEvent::DeviceRenamed { by: admin(), previous_label: "a".into(), label: "b".into(), at: t(4) },
        rotated(&key_a(), &key_b()),
        DeviceEvent::DeviceRevoked { by: admin(), reason: "r".into(), at: t(5) },
    ]
}

#[test]
fn events_round_trip_through_json_tagged_with_their_type() {
    for event in one_of_each_event() {
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], event.event_type());
        assert_eq!(event.event_version(), "1.0");
        let back: DeviceEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
    }
}

#[test]
fn stored_events_with_an_invalid_key_do_not_deserialize() {
    let mut json = serde_json::to_value(enrolled(InitialStatus::Active)).unwrap();
    json["key_id"] = json!("kg_key_test_abc123");
    assert!(serde_json::from_value::<DeviceEvent>(json).is_err());
}

#[test]
fn error_codes_are_distinct_and_snake_case() {
    let key = PublicKeySpki::parse(public_key(&key_a()).as_str()).unwrap();
    let errors = [
        DeviceError::NotEnrolled,
        DeviceError::AlreadyEnrolled,
        DeviceError::Revoked,
        invalid(DeviceAction::Approve, DeviceStatus::Active),
        DeviceError::KeyIdMismatch(key.check_key_id(&KeyId::parse(&"0".repeat(32)).unwrap()).unwrap_err()),
        DeviceError::InvalidLabel(TextError::Empty),
        DeviceError::LabelUnchanged("a".into()),
        DeviceError::InvalidFingerprint(TextError::Empty),
        DeviceError::InvalidUserAgent(TextError::Empty),
        DeviceError::MetadataNotObject,
        DeviceError::MetadataTooLarge { size: 1, max: 0 },
        DeviceError::InvalidReason(TextError::Empty),
        DeviceError::MalformedRotationProof,
        DeviceError::InvalidRotationProof,
        DeviceError::KeyUnchanged,
        DeviceError::KeyPreviouslyUsed,
    ];
    crate::test_support::assert_codes_distinct(&errors);
    assert_eq!(
        invalid(DeviceAction::RotateKey, DeviceStatus::Pending).to_string(),
        "Cannot rotate the key of a device that is pending."
    );
    assert_eq!(DeviceError::InvalidLabel(TextError::Empty).to_string(), "The label must not be empty.");
}
