//! Given/when/then for every API key command, success and refusal, and the redemption and grace
//! boundaries.

use chrono::{DateTime, TimeDelta, Utc};
use cqrs_es::DomainEvent as _;
use cqrs_es::test::{AggregateTestExecutor, TestFramework};
use uuid::Uuid;

use super::*;
use crate::hash::Sha256Hex;
use crate::metadata::Actor;
use crate::provider::Provider;
use crate::test_support::{admin, assert_codes_distinct, t, t0};
use crate::text::TextError;

const DAY: i64 = 86_400;

fn api_key_id() -> Uuid {
    Uuid::from_u128(0xa1)
}

fn project_hash(n: u8) -> ProjectKeyHash {
    ProjectKeyHash::parse(Sha256Hex::of(&[n]).as_str()).unwrap()
}

fn sealed(n: u8) -> SealedSecret {
    use base64::Engine as _;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    SealedSecret::new(Uuid::from_u128(0xdc), 1, b64(&[n; 12]), b64(&[n; 40])).unwrap()
}

fn code(n: u8) -> EnrollmentCode {
    EnrollmentCode::parse(&format!("kgc_{n:0>26}")).unwrap()
}

fn code_id(n: u8) -> Uuid {
    Uuid::from_u128(0xc000 + u128::from(n))
}

fn device(n: u8) -> Uuid {
    Uuid::from_u128(0xd000 + u128::from(n))
}

fn expiry() -> DateTime<Utc> {
    t(90 * DAY)
}

fn create_cmd() -> CreateApiKey {
    CreateApiKey {
        api_key_id: api_key_id(),
        name: " Production OpenAI ".into(),
        provider: Provider::OpenAi,
        environment: Environment::Production,
        project_key_hash: project_hash(1),
        project_key_prefix: "kg_live_ab12".into(),
        sealed_secret: sealed(1),
        base_url: None,
        azure_deployment: None,
        azure_api_version: None,
        expires_at: Some(expiry()),
        description: Some("  ".into()),
        by: admin(),
        at: t0(),
    }
}

fn created() -> ApiKeyEvent {
    ApiKeyEvent::ApiKeyCreated {
        api_key_id: api_key_id(),
        name: "Production OpenAI".into(),
        provider: Provider::OpenAi,
        environment: Environment::Production,
        project_key_hash: project_hash(1),
        project_key_prefix: "kg_live_ab12".into(),
        sealed_secret: sealed(1),
        base_url: None,
        azure: None,
        expires_at: Some(expiry()),
        description: None,
        by: admin(),
        at: t0(),
    }
}

fn azure_cmd() -> CreateApiKey {
    CreateApiKey {
        provider: Provider::Azure,
        base_url: Some("https://contoso.openai.azure.com".into()),
        azure_deployment: Some("gpt-4o".into()),
        azure_api_version: Some("2024-10-21".into()),
        ..create_cmd()
    }
}

fn issued(n: u8, expires_at: DateTime<Utc>, max_uses: u32, auto_approve: bool) -> ApiKeyEvent {
    ApiKeyEvent::EnrollmentCodeIssued {
        code_id: code_id(n),
        code_hash: code(n).hash(),
        expires_at,
        max_uses,
        auto_approve,
        description: None,
        by: admin(),
        at: t(10),
    }
}

/// A single-use, auto-approving code 1 valid for 15 minutes from t(10).
fn with_code() -> Vec<ApiKeyEvent> {
    vec![created(), issued(1, t(10 + 900), 1, true)]
}

fn redeemed(n: u8, device_n: u8, uses_after: u32, auto_approve: bool, at: DateTime<Utc>) -> ApiKeyEvent {
    ApiKeyEvent::EnrollmentCodeRedeemed {
        code_id: code_id(n),
        device_id: device(device_n),
        uses_after,
        auto_approve,
        at,
    }
}

fn revoked_key() -> ApiKeyEvent {
    ApiKeyEvent::ApiKeyRevoked {
        reason: "leaked".into(),
        revoked_enrollment_codes: vec![],
        by: admin(),
        at: t(20),
    }
}

fn given(events: Vec<ApiKeyEvent>) -> AggregateTestExecutor<ApiKey> {
    TestFramework::<ApiKey>::with(()).given(events)
}

fn nothing() -> AggregateTestExecutor<ApiKey> {
    TestFramework::<ApiKey>::with(()).given_no_previous_events()
}

fn state(events: Vec<ApiKeyEvent>) -> ApiKey {
    let mut key = ApiKey::default();
    for e in events {
        cqrs_es::Aggregate::apply(&mut key, e);
    }
    key
}

fn issue_cmd(n: u8) -> IssueEnrollmentCode {
    IssueEnrollmentCode {
        code_id: code_id(n),
        code_hash: code(n).hash(),
        expires_at: None,
        max_uses: None,
        auto_approve: false,
        description: None,
        by: admin(),
        at: t(10),
    }
}

fn redeem(n: u8, device_n: u8, at: DateTime<Utc>) -> ApiKeyCommand {
    ApiKeyCommand::RedeemEnrollmentCode { code: code(n), device_id: device(device_n), at }
}

fn rotate_project_key(n: u8, grace_until: Option<DateTime<Utc>>) -> ApiKeyCommand {
    ApiKeyCommand::RotateProjectKey {
        new_hash: project_hash(n),
        new_prefix: format!("kg_live_{n:04}"),
        grace_until,
        by: admin(),
        at: t(100),
    }
}

fn project_key_rotated(from: u8, to: u8, grace_until: Option<DateTime<Utc>>) -> ApiKeyEvent {
    ApiKeyEvent::ProjectKeyRotated {
        previous_hash: project_hash(from),
        previous_prefix: if from == 1 { "kg_live_ab12".into() } else { format!("kg_live_{from:04}") },
        new_hash: project_hash(to),
        new_prefix: format!("kg_live_{to:04}"),
        grace_until,
        by: admin(),
        at: t(100),
    }
}

// ---- Create ----

#[test]
fn create_records_the_key_with_normalised_text() {
    nothing().when(ApiKeyCommand::Create(create_cmd())).then_expect_events(vec![created()]);
}

#[test]
fn create_an_azure_key_with_its_endpoint_and_deployment() {
    nothing().when(ApiKeyCommand::Create(azure_cmd())).then_expect_events(vec![ApiKeyEvent::ApiKeyCreated {
        api_key_id: api_key_id(),
        name: "Production OpenAI".into(),
        provider: Provider::Azure,
        environment: Environment::Production,
        project_key_hash: project_hash(1),
        project_key_prefix: "kg_live_ab12".into(),
        sealed_secret: sealed(1),
        base_url: Some(BaseUrl::parse("https://contoso.openai.azure.com/").unwrap()),
        azure: Some(AzureDeployment::new("gpt-4o", "2024-10-21").unwrap()),
        expires_at: Some(expiry()),
        description: None,
        by: admin(),
        at: t0(),
    }]);
}

#[test]
fn creating_twice_is_refused() {
    given(vec![created()])
        .when(ApiKeyCommand::Create(create_cmd()))
        .then_expect_error(ApiKeyError::AlreadyExists);
}

#[test]
fn create_refuses_an_empty_or_overlong_name() {
    let cmd = CreateApiKey { name: "".into(), ..create_cmd() };
    nothing().when(ApiKeyCommand::Create(cmd)).then_expect_error(ApiKeyError::InvalidName(TextError::Empty));
    let cmd = CreateApiKey { name: "n".repeat(101), ..create_cmd() };
    nothing()
        .when(ApiKeyCommand::Create(cmd))
        .then_expect_error(ApiKeyError::InvalidName(TextError::TooLong { max: 100, len: 101 }));
}

#[test]
fn create_refuses_an_overlong_description() {
    let cmd = CreateApiKey { description: Some("d".repeat(501)), ..create_cmd() };
    nothing()
        .when(ApiKeyCommand::Create(cmd))
        .then_expect_error(ApiKeyError::InvalidDescription(TextError::TooLong { max: 500, len: 501 }));
}

#[test]
fn create_refuses_a_prefix_that_is_empty_long_enough_to_leak_or_not_printable() {
    for prefix in ["", "kg_live_ab12cd34e", "kg live", "kg_é"] {
        let cmd = CreateApiKey { project_key_prefix: prefix.into(), ..create_cmd() };
        nothing().when(ApiKeyCommand::Create(cmd)).then_expect_error(ApiKeyError::InvalidProjectKeyPrefix);
    }
}

#[test]
fn create_refuses_a_base_url_that_would_send_the_secret_in_clear() {
    let cmd = CreateApiKey { base_url: Some("http://gateway.example.com".into()), ..create_cmd() };
    nothing().when(ApiKeyCommand::Create(cmd)).then_expect_error(ApiKeyError::InvalidBaseUrl(
        BaseUrlError::UnsupportedScheme { scheme: "http".into() },
    ));
}

#[test]
fn create_accepts_a_base_url_for_any_provider() {
    let cmd = CreateApiKey { base_url: Some("http://127.0.0.1:9000/v1".into()), ..create_cmd() };
    assert!(nothing().when(ApiKeyCommand::Create(cmd)).inspect_result().is_ok());
}

#[test]
fn create_an_azure_key_requires_deployment_version_and_endpoint() {
    let cmd = CreateApiKey { azure_deployment: None, ..azure_cmd() };
    nothing()
        .when(ApiKeyCommand::Create(cmd))
        .then_expect_error(ApiKeyError::AzureSettingRequired { field: "azure_deployment" });
    let cmd = CreateApiKey { azure_api_version: None, ..azure_cmd() };
    nothing()
        .when(ApiKeyCommand::Create(cmd))
        .then_expect_error(ApiKeyError::AzureSettingRequired { field: "azure_api_version" });
    let cmd = CreateApiKey { base_url: None, ..azure_cmd() };
    nothing()
        .when(ApiKeyCommand::Create(cmd))
        .then_expect_error(ApiKeyError::AzureSettingRequired { field: "base_url" });
}

#[test]
fn create_refuses_malformed_azure_settings() {
    let cmd = CreateApiKey { azure_api_version: Some("latest".into()), ..azure_cmd() };
    nothing()
        .when(ApiKeyCommand::Create(cmd))
        .then_expect_error(ApiKeyError::InvalidAzureSettings(AzureError::InvalidApiVersion));
    let cmd = CreateApiKey { azure_deployment: Some("../admin".into()), ..azure_cmd() };
    nothing()
        .when(ApiKeyCommand::Create(cmd))
        .then_expect_error(ApiKeyError::InvalidAzureSettings(AzureError::InvalidDeployment));
}

#[test]
fn create_refuses_azure_settings_on_other_providers() {
    let cmd = CreateApiKey { azure_deployment: Some("gpt-4o".into()), ..create_cmd() };
    nothing().when(ApiKeyCommand::Create(cmd)).then_expect_error(ApiKeyError::AzureSettingNotAllowed {
        field: "azure_deployment",
        provider: Provider::OpenAi,
    });
    let cmd = CreateApiKey {
        provider: Provider::Anthropic,
        azure_api_version: Some("2024-10-21".into()),
        ..create_cmd()
    };
    nothing().when(ApiKeyCommand::Create(cmd)).then_expect_error(ApiKeyError::AzureSettingNotAllowed {
        field: "azure_api_version",
        provider: Provider::Anthropic,
    });
}

#[test]
fn create_refuses_an_expiry_that_is_not_in_the_future() {
    for expires_at in [t0(), t(-1)] {
        let cmd = CreateApiKey { expires_at: Some(expires_at), ..create_cmd() };
        nothing().when(ApiKeyCommand::Create(cmd)).then_expect_error(ApiKeyError::ExpiryNotInFuture);
    }
}

// ---- RotateProviderSecret ----

fn rotate_secret(n: u8) -> ApiKeyCommand {
    ApiKeyCommand::RotateProviderSecret { sealed_secret: sealed(n), by: admin(), at: t(100) }
}

#[test]
fn rotate_provider_secret_records_the_new_ciphertext() {
    given(vec![created()]).when(rotate_secret(2)).then_expect_events(vec![
        ApiKeyEvent::ProviderSecretRotated { sealed_secret: sealed(2), by: admin(), at: t(100) },
    ]);
}

#[test]
fn rotate_provider_secret_is_allowed_after_expiry() {
    let cmd = ApiKeyCommand::RotateProviderSecret { sealed_secret: sealed(2), by: admin(), at: expiry() };
    assert!(given(vec![created()]).when(cmd).inspect_result().is_ok());
}

#[test]
fn rotate_provider_secret_refuses_a_reused_nonce() {
    given(vec![created()]).when(rotate_secret(1)).then_expect_error(ApiKeyError::SealedSecretNonceReused);
}

#[test]
fn rotate_provider_secret_of_a_revoked_key_is_refused() {
    given(vec![created(), revoked_key()]).when(rotate_secret(2)).then_expect_error(ApiKeyError::Revoked);
}

#[test]
fn rotate_provider_secret_of_an_unknown_key_is_refused() {
    nothing().when(rotate_secret(2)).then_expect_error(ApiKeyError::NotFound);
}

// ---- RotateProjectKey ----

#[test]
fn rotate_project_key_with_a_grace_period() {
    given(vec![created()])
        .when(rotate_project_key(2, Some(t(100 + DAY))))
        .then_expect_events(vec![project_key_rotated(1, 2, Some(t(100 + DAY)))]);
}

#[test]
fn rotate_project_key_without_grace() {
    given(vec![created()])
        .when(rotate_project_key(2, None))
        .then_expect_events(vec![project_key_rotated(1, 2, None)]);
}

#[test]
fn rotate_project_key_accepts_a_grace_of_exactly_30_days() {
    given(vec![created()])
        .when(rotate_project_key(2, Some(t(100 + 30 * DAY))))
        .then_expect_events(vec![project_key_rotated(1, 2, Some(t(100 + 30 * DAY)))]);
}

#[test]
fn rotate_project_key_refuses_a_grace_that_is_past_or_too_long() {
    for grace in [t(100), t(99), t(100 + 30 * DAY + 1)] {
        given(vec![created()])
            .when(rotate_project_key(2, Some(grace)))
            .then_expect_error(ApiKeyError::InvalidGracePeriod);
    }
}

#[test]
fn rotate_project_key_refuses_the_current_or_a_retired_key() {
    given(vec![created()]).when(rotate_project_key(1, None)).then_expect_error(ApiKeyError::ProjectKeyReused);
    given(vec![created(), project_key_rotated(1, 2, None)])
        .when(rotate_project_key(1, None))
        .then_expect_error(ApiKeyError::ProjectKeyReused);
}

#[test]
fn rotate_project_key_refuses_an_invalid_prefix() {
    let cmd = ApiKeyCommand::RotateProjectKey {
        new_hash: project_hash(2),
        new_prefix: "kg_live_0123456789".into(),
        grace_until: None,
        by: admin(),
        at: t(100),
    };
    given(vec![created()]).when(cmd).then_expect_error(ApiKeyError::InvalidProjectKeyPrefix);
}

#[test]
fn rotate_project_key_of_a_revoked_key_is_refused() {
    given(vec![created(), revoked_key()])
        .when(rotate_project_key(2, None))
        .then_expect_error(ApiKeyError::Revoked);
}

#[test]
fn rotate_project_key_of_an_unknown_key_is_refused() {
    nothing().when(rotate_project_key(2, None)).then_expect_error(ApiKeyError::NotFound);
}

// ---- Revoke ----

fn revoke(reason: &str, at: DateTime<Utc>) -> ApiKeyCommand {
    ApiKeyCommand::Revoke { reason: reason.into(), by: admin(), at }
}

#[test]
fn revoke_lists_only_the_codes_that_were_still_usable() {
    let history = vec![
        created(),
        issued(1, t(10 + 900), 1, false), // live
        issued(2, t(50), 1, false),       // expired by t(100)
        issued(3, t(10 + 900), 1, false), // used up
        redeemed(3, 1, 1, false, t(20)),
        issued(4, t(10 + 900), 5, false), // revoked on its own
        ApiKeyEvent::EnrollmentCodeRevoked { code_id: code_id(4), by: admin(), at: t(30) },
        issued(5, t(10 + 900), 5, true), // live, partly used
        redeemed(5, 2, 1, true, t(40)),
    ];
    given(history).when(revoke(" leaked in a public repo ", t(100))).then_expect_events(vec![
        ApiKeyEvent::ApiKeyRevoked {
            reason: "leaked in a public repo".into(),
            revoked_enrollment_codes: vec![code_id(1), code_id(5)],
            by: admin(),
            at: t(100),
        },
    ]);
}

#[test]
fn revoke_is_allowed_after_expiry() {
    given(vec![created()]).when(revoke("cleanup", expiry())).then_expect_events(vec![
        ApiKeyEvent::ApiKeyRevoked {
            reason: "cleanup".into(),
            revoked_enrollment_codes: vec![],
            by: admin(),
            at: expiry(),
        },
    ]);
}

#[test]
fn revoking_twice_is_refused() {
    given(vec![created(), revoked_key()])
        .when(revoke("again", t(100)))
        .then_expect_error(ApiKeyError::Revoked);
}

#[test]
fn revoke_requires_a_reason() {
    given(vec![created()])
        .when(revoke(" ", t(100)))
        .then_expect_error(ApiKeyError::InvalidReason(TextError::Empty));
}

#[test]
fn revoking_an_unknown_key_is_refused() {
    nothing().when(revoke("x", t(100))).then_expect_error(ApiKeyError::NotFound);
}

// ---- IssueEnrollmentCode ----

#[test]
fn issue_with_defaults_gives_one_use_for_15_minutes() {
    given(vec![created()])
        .when(ApiKeyCommand::IssueEnrollmentCode(issue_cmd(1)))
        .then_expect_events(vec![issued(1, t(10 + 15 * 60), 1, false)]);
}

#[test]
fn issue_with_the_largest_lifetime_and_uses() {
    let cmd = IssueEnrollmentCode {
        expires_at: Some(t(10 + 30 * DAY)),
        max_uses: Some(1000),
        auto_approve: true,
        description: Some(" Fleet rollout\nbatch 2 ".into()),
        ..issue_cmd(1)
    };
    given(vec![created()]).when(ApiKeyCommand::IssueEnrollmentCode(cmd)).then_expect_events(vec![
        ApiKeyEvent::EnrollmentCodeIssued {
            code_id: code_id(1),
            code_hash: code(1).hash(),
            expires_at: t(10 + 30 * DAY),
            max_uses: 1000,
            auto_approve: true,
            description: Some("Fleet rollout\nbatch 2".into()),
            by: admin(),
            at: t(10),
        },
    ]);
}

#[test]
fn issue_on_a_revoked_key_is_refused() {
    given(vec![created(), revoked_key()])
        .when(ApiKeyCommand::IssueEnrollmentCode(issue_cmd(1)))
        .then_expect_error(ApiKeyError::Revoked);
}

#[test]
fn issue_on_an_expired_key_is_refused_from_the_expiry_instant_on() {
    let at_expiry = IssueEnrollmentCode { at: expiry(), ..issue_cmd(1) };
    given(vec![created()])
        .when(ApiKeyCommand::IssueEnrollmentCode(at_expiry))
        .then_expect_error(ApiKeyError::Expired);
    let just_before = IssueEnrollmentCode { at: expiry() - TimeDelta::nanoseconds(1), ..issue_cmd(1) };
    assert!(
        given(vec![created()]).when(ApiKeyCommand::IssueEnrollmentCode(just_before)).inspect_result().is_ok()
    );
}

#[test]
fn issue_refuses_a_taken_id_or_a_duplicate_hash() {
    given(with_code())
        .when(ApiKeyCommand::IssueEnrollmentCode(issue_cmd(1)))
        .then_expect_error(ApiKeyError::EnrollmentCodeAlreadyExists);
    let same_secret = IssueEnrollmentCode { code_id: code_id(9), ..issue_cmd(1) };
    given(with_code())
        .when(ApiKeyCommand::IssueEnrollmentCode(same_secret))
        .then_expect_error(ApiKeyError::EnrollmentCodeDuplicate);
}

#[test]
fn issue_refuses_an_expiry_in_the_past_or_beyond_30_days() {
    for expires_at in [t(10), t(9), t(10 + 30 * DAY + 1)] {
        let cmd = IssueEnrollmentCode { expires_at: Some(expires_at), ..issue_cmd(1) };
        given(vec![created()])
            .when(ApiKeyCommand::IssueEnrollmentCode(cmd))
            .then_expect_error(ApiKeyError::InvalidEnrollmentCodeExpiry);
    }
}

#[test]
fn issue_refuses_zero_or_more_than_1000_uses() {
    for max_uses in [0, 1001] {
        let cmd = IssueEnrollmentCode { max_uses: Some(max_uses), ..issue_cmd(1) };
        given(vec![created()])
            .when(ApiKeyCommand::IssueEnrollmentCode(cmd))
            .then_expect_error(ApiKeyError::InvalidMaxUses(max_uses));
    }
}

#[test]
fn issue_refuses_a_description_with_control_characters() {
    let cmd = IssueEnrollmentCode { description: Some("a\u{1b}[31mred".into()), ..issue_cmd(1) };
    given(vec![created()])
        .when(ApiKeyCommand::IssueEnrollmentCode(cmd))
        .then_expect_error(ApiKeyError::InvalidDescription(TextError::ForbiddenCharacter));
}

#[test]
fn issue_on_an_unknown_key_is_refused() {
    nothing().when(ApiKeyCommand::IssueEnrollmentCode(issue_cmd(1))).then_expect_error(ApiKeyError::NotFound);
}

// ---- RevokeEnrollmentCode ----

fn revoke_code(n: u8, at: DateTime<Utc>) -> ApiKeyCommand {
    ApiKeyCommand::RevokeEnrollmentCode { code_id: code_id(n), by: admin(), at }
}

#[test]
fn revoke_enrollment_code() {
    given(with_code()).when(revoke_code(1, t(100))).then_expect_events(vec![
        ApiKeyEvent::EnrollmentCodeRevoked { code_id: code_id(1), by: admin(), at: t(100) },
    ]);
}

#[test]
fn revoking_an_unknown_code_is_refused() {
    given(with_code()).when(revoke_code(2, t(100))).then_expect_error(ApiKeyError::EnrollmentCodeNotFound);
}

#[test]
fn revoking_a_code_twice_is_refused() {
    let mut history = with_code();
    history.push(ApiKeyEvent::EnrollmentCodeRevoked { code_id: code_id(1), by: admin(), at: t(50) });
    given(history).when(revoke_code(1, t(100))).then_expect_error(ApiKeyError::EnrollmentCodeRevoked);
}

#[test]
fn revoking_a_used_up_or_expired_code_is_refused() {
    let mut history = with_code();
    history.push(redeemed(1, 1, 1, true, t(20)));
    given(history).when(revoke_code(1, t(100))).then_expect_error(ApiKeyError::EnrollmentCodeExhausted);
    given(with_code())
        .when(revoke_code(1, t(10 + 900)))
        .then_expect_error(ApiKeyError::EnrollmentCodeExpired);
}

#[test]
fn revoking_a_code_of_a_revoked_key_is_refused() {
    let mut history = with_code();
    history.push(revoked_key());
    given(history).when(revoke_code(1, t(100))).then_expect_error(ApiKeyError::Revoked);
}

#[test]
fn revoking_a_code_of_an_unknown_key_is_refused() {
    nothing().when(revoke_code(1, t(100))).then_expect_error(ApiKeyError::NotFound);
}

// ---- RedeemEnrollmentCode ----

#[test]
fn redeem_records_the_device_and_the_code_s_approval_mode() {
    given(with_code()).when(redeem(1, 1, t(100))).then_expect_events(vec![redeemed(1, 1, 1, true, t(100))]);
}

#[test]
fn redeem_accepts_the_code_in_any_case_with_whitespace() {
    let typed = EnrollmentCode::parse(&format!(" {} ", code(1).expose().to_uppercase())).unwrap();
    given(with_code())
        .when(ApiKeyCommand::RedeemEnrollmentCode { code: typed, device_id: device(1), at: t(100) })
        .then_expect_events(vec![redeemed(1, 1, 1, true, t(100))]);
}

#[test]
fn a_multi_use_code_counts_its_uses_until_exhausted() {
    let mut history = vec![created(), issued(2, t(DAY), 3, false)];
    history.push(redeemed(2, 1, 1, false, t(20)));
    given(history.clone()).when(redeem(2, 2, t(30))).then_expect_events(vec![redeemed(
        2,
        2,
        2,
        false,
        t(30),
    )]);
    history.push(redeemed(2, 2, 2, false, t(30)));
    given(history.clone()).when(redeem(2, 3, t(40))).then_expect_events(vec![redeemed(
        2,
        3,
        3,
        false,
        t(40),
    )]);
    history.push(redeemed(2, 3, 3, false, t(40)));
    given(history).when(redeem(2, 4, t(50))).then_expect_error(ApiKeyError::EnrollmentCodeExhausted);
}

#[test]
fn a_single_use_code_cannot_be_redeemed_twice() {
    let mut history = with_code();
    history.push(redeemed(1, 1, 1, true, t(100)));
    given(history).when(redeem(1, 2, t(101))).then_expect_error(ApiKeyError::EnrollmentCodeExhausted);
}

#[test]
fn redeem_an_unknown_code_is_invalid() {
    given(with_code()).when(redeem(7, 1, t(100))).then_expect_error(ApiKeyError::EnrollmentCodeInvalid);
}

#[test]
fn redeem_expires_at_the_exact_expiry_instant() {
    let expires = t(10 + 900);
    given(with_code())
        .when(redeem(1, 1, expires - TimeDelta::nanoseconds(1)))
        .then_expect_events(vec![redeemed(1, 1, 1, true, expires - TimeDelta::nanoseconds(1))]);
    given(with_code()).when(redeem(1, 1, expires)).then_expect_error(ApiKeyError::EnrollmentCodeExpired);
}

#[test]
fn redeem_a_revoked_code_is_refused() {
    let mut history = with_code();
    history.push(ApiKeyEvent::EnrollmentCodeRevoked { code_id: code_id(1), by: admin(), at: t(50) });
    given(history).when(redeem(1, 1, t(100))).then_expect_error(ApiKeyError::EnrollmentCodeRevoked);
}

#[test]
fn redeem_on_a_revoked_key_is_refused_as_the_key_s_fault() {
    let mut history = with_code();
    history.push(ApiKeyEvent::ApiKeyRevoked {
        reason: "leaked".into(),
        revoked_enrollment_codes: vec![code_id(1)],
        by: admin(),
        at: t(20),
    });
    given(history).when(redeem(1, 1, t(100))).then_expect_error(ApiKeyError::Revoked);
}

#[test]
fn redeem_on_an_expired_key_is_refused() {
    let mut short_lived = created();
    if let ApiKeyEvent::ApiKeyCreated { expires_at, .. } = &mut short_lived {
        *expires_at = Some(t(60));
    }
    given(vec![short_lived, issued(1, t(10 + 900), 1, true)])
        .when(redeem(1, 1, t(60)))
        .then_expect_error(ApiKeyError::Expired);
}

#[test]
fn redeem_twice_by_the_same_device_is_refused() {
    let history = vec![created(), issued(2, t(DAY), 3, false), redeemed(2, 1, 1, false, t(20))];
    given(history).when(redeem(2, 1, t(30))).then_expect_error(ApiKeyError::EnrollmentCodeAlreadyRedeemed);
}

#[test]
fn redeem_on_an_unknown_key_is_refused() {
    nothing().when(redeem(1, 1, t(100))).then_expect_error(ApiKeyError::NotFound);
}

#[test]
fn concurrent_redemptions_rely_on_the_store_s_version_check() {
    // Two requests load the same version and both decide to redeem the last use: the domain
    // cannot tell them apart, which is why the store's optimistic concurrency must reject the
    // second append. Its retry reloads the aggregate and is refused.
    let loaded = with_code();
    let first = given(loaded.clone()).when(redeem(1, 1, t(100))).inspect_result();
    let second = given(loaded.clone()).when(redeem(1, 2, t(100))).inspect_result();
    assert!(first.is_ok() && second.is_ok());
    let mut committed = loaded;
    committed.extend(first.unwrap());
    given(committed).when(redeem(1, 2, t(100))).then_expect_error(ApiKeyError::EnrollmentCodeExhausted);
}

// ---- State helpers ----

#[test]
fn check_redeemable_tells_the_server_whether_to_auto_approve() {
    let key = state(vec![created(), issued(1, t(DAY), 1, true), issued(2, t(DAY), 1, false)]);
    let key = key.state().unwrap();
    assert!(key.check_redeemable(&code(1), t(100)).unwrap().auto_approve());
    assert!(!key.check_redeemable(&code(2), t(100)).unwrap().auto_approve());
    assert_eq!(key.check_redeemable(&code(3), t(100)).unwrap_err(), ApiKeyError::EnrollmentCodeInvalid);
    assert_eq!(key.check_redeemable(&code(1), expiry()).unwrap_err(), ApiKeyError::Expired);
}

#[test]
fn project_key_validity_honours_grace_expiry_and_revocation() {
    let grace_end = t(100 + DAY);
    let key = state(vec![created(), project_key_rotated(1, 2, Some(grace_end))]);
    let key = key.state().unwrap();
    assert_eq!(key.match_project_key(&project_hash(2), t(200)), Some(ProjectKeyMatch::Current));
    assert_eq!(
        key.match_project_key(&project_hash(1), t(200)),
        Some(ProjectKeyMatch::Previous { valid_until: grace_end })
    );
    assert!(key.is_project_key_valid(&project_hash(1), grace_end - TimeDelta::nanoseconds(1)));
    assert!(!key.is_project_key_valid(&project_hash(1), grace_end));
    assert!(!key.is_project_key_valid(&project_hash(3), t(200)));
    // expiry is inclusive
    assert!(key.is_project_key_valid(&project_hash(2), expiry() - TimeDelta::nanoseconds(1)));
    assert!(!key.is_project_key_valid(&project_hash(2), expiry()));
    assert_eq!(key.status_at(expiry()), ApiKeyStatus::Expired);
    assert_eq!(key.previous_project_key().unwrap().key().prefix(), "kg_live_ab12");

    let revoked = state(vec![created(), revoked_key()]);
    let revoked = revoked.state().unwrap();
    assert!(!revoked.is_project_key_valid(&project_hash(1), t(10)));
    assert_eq!(revoked.status_at(t(10)), ApiKeyStatus::Revoked);
    assert_eq!(revoked.revocation().unwrap().reason(), "leaked");
}

#[test]
fn a_second_rotation_ends_the_first_grace_period_at_once() {
    let mut second = project_key_rotated(2, 3, Some(t(100 + 2 * DAY)));
    if let ApiKeyEvent::ProjectKeyRotated { at, .. } = &mut second {
        *at = t(200);
    }
    let key = state(vec![created(), project_key_rotated(1, 2, Some(t(100 + DAY))), second]);
    let key = key.state().unwrap();
    assert!(!key.is_project_key_valid(&project_hash(1), t(300)));
    assert!(key.is_project_key_valid(&project_hash(2), t(300)));
    assert!(key.is_project_key_valid(&project_hash(3), t(300)));
}

#[test]
fn a_rotation_without_grace_ends_the_previous_key_at_once() {
    let key = state(vec![created(), project_key_rotated(1, 2, None)]);
    let key = key.state().unwrap();
    assert!(key.previous_project_key().is_none());
    assert!(!key.is_project_key_valid(&project_hash(1), t(100)));
}

#[test]
fn state_exposes_what_was_recorded() {
    let key = state(vec![
        created(),
        issued(1, t(DAY), 2, true),
        redeemed(1, 1, 1, true, t(20)),
        ApiKeyEvent::ProviderSecretRotated { sealed_secret: sealed(3), by: admin(), at: t(30) },
    ]);
    assert!(ApiKey::default().state().is_none());
    let key = key.state().unwrap();
    assert_eq!(key.id(), api_key_id());
    assert_eq!(key.name(), "Production OpenAI");
    assert_eq!(key.provider(), Provider::OpenAi);
    assert_eq!(key.environment(), Environment::Production);
    assert_eq!(key.project_key().hash(), &project_hash(1));
    assert_eq!(key.sealed_secret(), &sealed(3));
    assert_eq!(key.base_url(), None);
    assert_eq!(key.azure(), None);
    assert_eq!(key.expires_at(), Some(expiry()));
    assert_eq!(key.description(), None);
    assert_eq!(key.created_by(), &admin());
    assert_eq!(key.created_at(), t0());
    assert_eq!(key.status_at(t(40)), ApiKeyStatus::Active);
    let code = key.enrollment_code(code_id(1)).unwrap();
    assert_eq!(key.enrollment_codes().count(), 1);
    assert_eq!(
        key.find_enrollment_code(&super::EnrollmentCodeHash::parse(code.hash().as_str()).unwrap()),
        Some(code)
    );
    assert_eq!((code.uses(), code.max_uses()), (1, 2));
    assert_eq!(code.redeemed_by(), &[device(1)]);
    assert_eq!(code.status_at(t(40)), EnrollmentCodeStatus::Active);
    assert_eq!(code.status_at(t(DAY)), EnrollmentCodeStatus::Expired);
    assert_eq!(code.issued_by(), &admin());
    assert_eq!(code.issued_at(), t(10));
    assert_eq!(code.expires_at(), t(DAY));
    assert_eq!(code.revoked_at(), None);
    assert_eq!(code.description(), None);

    let json = serde_json::to_string(&state(with_code())).unwrap();
    let back: ApiKey = serde_json::from_str(&json).unwrap();
    assert_eq!(back.state(), state(with_code()).state());
}

#[test]
fn revoking_the_key_revokes_its_live_codes() {
    let key = state(vec![
        created(),
        issued(1, t(DAY), 1, true),
        ApiKeyEvent::ApiKeyRevoked {
            reason: "r".into(),
            revoked_enrollment_codes: vec![code_id(1)],
            by: admin(),
            at: t(20),
        },
    ]);
    let code = key.state().unwrap().enrollment_code(code_id(1)).unwrap();
    assert_eq!(code.status_at(t(30)), EnrollmentCodeStatus::Revoked);
    assert_eq!(code.revoked_at(), Some(t(20)));
}

// ---- Serde, Debug, codes ----

#[test]
fn events_round_trip_through_json_tagged_with_their_type() {
    let events = vec![
        created(),
        ApiKeyEvent::ProviderSecretRotated { sealed_secret: sealed(2), by: Actor::system("cli"), at: t(1) },
        project_key_rotated(1, 2, Some(t(DAY))),
        issued(1, t(DAY), 3, true),
        ApiKeyEvent::EnrollmentCodeRevoked { code_id: code_id(1), by: admin(), at: t(2) },
        redeemed(1, 1, 1, true, t(3)),
        ApiKeyEvent::ApiKeyRevoked {
            reason: "r".into(),
            revoked_enrollment_codes: vec![code_id(1)],
            by: admin(),
            at: t(4),
        },
    ];
    for event in events {
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], event.event_type());
        assert_eq!(event.event_version(), "1.0");
        assert_eq!(serde_json::from_value::<ApiKeyEvent>(json).unwrap(), event);
    }
}

#[test]
fn the_redeem_command_does_not_print_the_code() {
    let cmd = redeem(1, 1, t(0));
    let printed = format!("{cmd:?}");
    assert!(!printed.contains(code(1).expose()), "{printed}");
    assert!(printed.contains("<redacted>"));
}

#[test]
fn error_codes_are_distinct_and_snake_case() {
    let errors = [
        ApiKeyError::NotFound,
        ApiKeyError::AlreadyExists,
        ApiKeyError::Revoked,
        ApiKeyError::Expired,
        ApiKeyError::InvalidName(TextError::Empty),
        ApiKeyError::InvalidDescription(TextError::Empty),
        ApiKeyError::InvalidReason(TextError::Empty),
        ApiKeyError::InvalidProjectKeyPrefix,
        ApiKeyError::InvalidBaseUrl(BaseUrlError::NotAbsolute),
        ApiKeyError::InvalidAzureSettings(AzureError::InvalidDeployment),
        ApiKeyError::AzureSettingRequired { field: "base_url" },
        ApiKeyError::AzureSettingNotAllowed { field: "azure_deployment", provider: Provider::Google },
        ApiKeyError::ExpiryNotInFuture,
        ApiKeyError::SealedSecretNonceReused,
        ApiKeyError::ProjectKeyReused,
        ApiKeyError::InvalidGracePeriod,
        ApiKeyError::EnrollmentCodeAlreadyExists,
        ApiKeyError::EnrollmentCodeDuplicate,
        ApiKeyError::InvalidEnrollmentCodeExpiry,
        ApiKeyError::InvalidMaxUses(0),
        ApiKeyError::EnrollmentCodeNotFound,
        ApiKeyError::EnrollmentCodeInvalid,
        ApiKeyError::EnrollmentCodeExpired,
        ApiKeyError::EnrollmentCodeExhausted,
        ApiKeyError::EnrollmentCodeRevoked,
        ApiKeyError::EnrollmentCodeAlreadyRedeemed,
    ];
    assert_codes_distinct(&errors);
    assert_codes_distinct(&[
        EnrollmentCodeError::MissingPrefix,
        EnrollmentCodeError::WrongLength { found: 1 },
        EnrollmentCodeError::InvalidCharacter { position: 1 },
        EnrollmentCodeError::OutOfRange,
    ]);
    assert_codes_distinct(&[
        SealedSecretError::InvalidKeyVersion,
        SealedSecretError::MalformedNonce,
        SealedSecretError::MalformedCiphertext,
        SealedSecretError::CiphertextLength { len: 0 },
    ]);
    assert_codes_distinct(&[
        BaseUrlError::NotAbsolute,
        BaseUrlError::UnsupportedScheme { scheme: "x".into() },
        BaseUrlError::HasCredentials,
        BaseUrlError::HasQueryOrFragment,
        BaseUrlError::TooLong,
    ]);
    assert_codes_distinct(&[AzureError::InvalidDeployment, AzureError::InvalidApiVersion]);
    assert_eq!(
        ApiKeyError::AzureSettingNotAllowed { field: "azure_deployment", provider: Provider::Google }
            .to_string(),
        "The azure_deployment setting only applies to Azure keys, not to google."
    );
}
