//! Given/when/then for every policy command, and the merge rules of `EffectivePolicy`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use cqrs_es::DomainEvent as _;
use cqrs_es::test::{AggregateTestExecutor, TestFramework};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::prelude::*;
use uuid::Uuid;

use super::*;
use crate::provider::Provider;
use crate::test_support::{admin, assert_codes_distinct, t};

fn key_scope() -> PolicyScope {
    PolicyScope::ApiKey(Uuid::from_u128(0xa1))
}

fn device_scope() -> PolicyScope {
    PolicyScope::Device(Uuid::from_u128(0xd1))
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn set(scope: PolicyScope, settings: PolicySettings) -> PolicyCommand {
    PolicyCommand::Set { scope, settings, by: admin(), at: t(10) }
}

fn was_set(scope: PolicyScope, settings: PolicySettings) -> PolicyEvent {
    PolicyEvent::PolicySet { scope, settings, by: admin(), at: t(10) }
}

fn clear() -> PolicyCommand {
    PolicyCommand::Clear { by: admin(), at: t(20) }
}

fn rpm(n: u32) -> PolicySettings {
    PolicySettings { requests_per_minute: Some(n), ..Default::default() }
}

fn given(events: Vec<PolicyEvent>) -> AggregateTestExecutor<Policy> {
    TestFramework::<Policy>::with(()).given(events)
}

fn nothing() -> AggregateTestExecutor<Policy> {
    TestFramework::<Policy>::with(()).given_no_previous_events()
}

fn refused(scope: PolicyScope, settings: PolicySettings, error: PolicyError) {
    nothing().when(set(scope, settings)).then_expect_error(error);
}

// ---- Set ----

#[test]
fn set_global_records_the_settings_in_canonical_form() {
    let settings = PolicySettings {
        timestamp_window_seconds: Some(300),
        requests_per_minute: Some(60),
        tokens_per_day: Some(1_000_000),
        ip_allow_list: Some(vec![net("2001:db8::1/32"), net("10.1.2.3/8"), net("10.0.0.0/8")]),
        allowed_providers: Some(vec![Provider::Anthropic, Provider::OpenAi, Provider::OpenAi]),
        allowed_models: Some(vec![" gpt-4o ".into(), "claude-sonnet-4".into()]),
        require_approval: Some(false),
    };
    nothing().when(set(PolicyScope::Global, settings)).then_expect_events(vec![was_set(
        PolicyScope::Global,
        PolicySettings {
            timestamp_window_seconds: Some(300),
            requests_per_minute: Some(60),
            tokens_per_day: Some(1_000_000),
            ip_allow_list: Some(vec![net("10.0.0.0/8"), net("2001:db8::/32")]),
            allowed_providers: Some(vec![Provider::OpenAi, Provider::Anthropic]),
            allowed_models: Some(vec!["claude-sonnet-4".into(), "gpt-4o".into()]),
            require_approval: Some(false),
        },
    )]);
}

#[test]
fn set_global_to_nothing_means_all_defaults() {
    nothing()
        .when(set(PolicyScope::Global, PolicySettings::default()))
        .then_expect_events(vec![was_set(PolicyScope::Global, PolicySettings::default())]);
}

#[test]
fn set_an_api_key_override() {
    nothing().when(set(key_scope(), rpm(10))).then_expect_events(vec![was_set(key_scope(), rpm(10))]);
}

#[test]
fn set_a_device_override() {
    nothing().when(set(device_scope(), rpm(5))).then_expect_events(vec![was_set(device_scope(), rpm(5))]);
}

#[test]
fn set_replaces_the_previous_settings() {
    given(vec![was_set(key_scope(), rpm(10))])
        .when(set(key_scope(), rpm(20)))
        .then_expect_events(vec![was_set(key_scope(), rpm(20))]);
}

#[test]
fn set_again_after_a_clear() {
    given(vec![
        was_set(key_scope(), rpm(10)),
        PolicyEvent::PolicyCleared { scope: key_scope(), by: admin(), at: t(15) },
    ])
    .when(set(key_scope(), rpm(10)))
    .then_expect_events(vec![was_set(key_scope(), rpm(10))]);
}

#[test]
fn set_for_another_scope_is_refused() {
    given(vec![was_set(key_scope(), rpm(10))])
        .when(set(device_scope(), rpm(10)))
        .then_expect_error(PolicyError::ScopeMismatch { expected: key_scope(), requested: device_scope() });
}

#[test]
fn set_to_the_same_settings_is_refused_even_when_written_differently() {
    let canonical =
        PolicySettings { allowed_models: Some(vec!["a".into(), "b".into()]), ..Default::default() };
    let written_differently = PolicySettings {
        allowed_models: Some(vec!["b ".into(), "a".into(), "a".into()]),
        ..Default::default()
    };
    given(vec![was_set(key_scope(), canonical)])
        .when(set(key_scope(), written_differently))
        .then_expect_error(PolicyError::Unchanged);
}

#[test]
fn an_empty_override_is_refused() {
    refused(key_scope(), PolicySettings::default(), PolicyError::EmptyOverride);
    refused(device_scope(), PolicySettings::default(), PolicyError::EmptyOverride);
}

#[test]
fn the_timestamp_window_is_between_1_and_900_seconds() {
    for ok in [1, 900] {
        let settings = PolicySettings { timestamp_window_seconds: Some(ok), ..Default::default() };
        assert!(nothing().when(set(key_scope(), settings)).inspect_result().is_ok());
    }
    for value in [0, 901] {
        let settings = PolicySettings { timestamp_window_seconds: Some(value), ..Default::default() };
        refused(key_scope(), settings, PolicyError::InvalidTimestampWindow { value });
    }
}

#[test]
fn requests_per_minute_is_at_least_1() {
    refused(key_scope(), rpm(0), PolicyError::InvalidRequestsPerMinute);
}

#[test]
fn tokens_per_day_is_at_least_1() {
    let settings = PolicySettings { tokens_per_day: Some(0), ..Default::default() };
    refused(key_scope(), settings, PolicyError::InvalidTokensPerDay);
}

#[test]
fn the_ip_allow_list_is_neither_empty_nor_huge() {
    let empty = PolicySettings { ip_allow_list: Some(vec![]), ..Default::default() };
    refused(PolicyScope::Global, empty, PolicyError::InvalidIpAllowList(ListError::Empty));
    let huge = PolicySettings {
        ip_allow_list: Some(
            (0..=1000u32).map(|i| IpNet::V4(Ipv4Net::new(Ipv4Addr::from(i << 8), 24).unwrap())).collect(),
        ),
        ..Default::default()
    };
    refused(
        PolicyScope::Global,
        huge,
        PolicyError::InvalidIpAllowList(ListError::TooMany { max: 1000, len: 1001 }),
    );
}

#[test]
fn allowed_providers_is_not_empty() {
    let settings = PolicySettings { allowed_providers: Some(vec![]), ..Default::default() };
    refused(key_scope(), settings, PolicyError::InvalidAllowedProviders(ListError::Empty));
}

#[test]
fn allowed_models_is_not_empty_and_names_are_sane() {
    let settings = PolicySettings { allowed_models: Some(vec![]), ..Default::default() };
    refused(key_scope(), settings, PolicyError::InvalidAllowedModels(ListError::Empty));
    for (models, index) in [
        (vec!["gpt-4o", " "], 1),
        (vec!["gpt 4o"], 0),
        (vec!["ok", "ok", &"m".repeat(201)], 2),
        (vec!["gpt-4o\u{0}"], 0),
    ] {
        let settings = PolicySettings {
            allowed_models: Some(models.into_iter().map(String::from).collect()),
            ..Default::default()
        };
        refused(key_scope(), settings, PolicyError::InvalidModelName { index });
    }
}

#[test]
fn require_approval_cannot_be_set_per_device() {
    let settings = PolicySettings { require_approval: Some(true), ..Default::default() };
    refused(device_scope(), settings.clone(), PolicyError::RequireApprovalOnDevice);
    assert!(nothing().when(set(key_scope(), settings)).inspect_result().is_ok());
}

// ---- Clear ----

#[test]
fn clear_an_api_key_override() {
    given(vec![was_set(key_scope(), rpm(10))])
        .when(clear())
        .then_expect_events(vec![PolicyEvent::PolicyCleared { scope: key_scope(), by: admin(), at: t(20) }]);
}

#[test]
fn clear_a_device_override() {
    given(vec![was_set(device_scope(), rpm(10))]).when(clear()).then_expect_events(vec![
        PolicyEvent::PolicyCleared { scope: device_scope(), by: admin(), at: t(20) },
    ]);
}

#[test]
fn the_global_policy_cannot_be_cleared() {
    given(vec![was_set(PolicyScope::Global, rpm(10))])
        .when(clear())
        .then_expect_error(PolicyError::GlobalCannotBeCleared);
}

#[test]
fn clearing_a_policy_never_set_is_refused() {
    nothing().when(clear()).then_expect_error(PolicyError::NotSet);
}

#[test]
fn clearing_twice_is_refused() {
    given(vec![
        was_set(key_scope(), rpm(10)),
        PolicyEvent::PolicyCleared { scope: key_scope(), by: admin(), at: t(15) },
    ])
    .when(clear())
    .then_expect_error(PolicyError::NotSet);
}

// ---- State, scope, serde, codes ----

#[test]
fn state_follows_the_history() {
    let mut policy = Policy::default();
    assert_eq!((policy.scope(), policy.settings()), (None, None));
    cqrs_es::Aggregate::apply(&mut policy, was_set(key_scope(), rpm(10)));
    assert_eq!(policy.scope(), Some(key_scope()));
    assert_eq!(policy.settings(), Some(&rpm(10)));
    assert_eq!(policy.updated_by(), Some(&admin()));
    assert_eq!(policy.updated_at(), Some(t(10)));
    cqrs_es::Aggregate::apply(
        &mut policy,
        PolicyEvent::PolicyCleared { scope: key_scope(), by: admin(), at: t(20) },
    );
    assert_eq!(policy.settings(), None);
    assert_eq!(policy.updated_at(), Some(t(20)));
}

#[test]
fn scopes_have_stable_aggregate_ids() {
    let id = Uuid::from_u128(0xa1);
    assert_eq!(PolicyScope::Global.aggregate_id(), "global");
    assert_eq!(PolicyScope::ApiKey(id).aggregate_id(), "api_key:00000000-0000-0000-0000-0000000000a1");
    assert_eq!(PolicyScope::Device(id).aggregate_id(), "device:00000000-0000-0000-0000-0000000000a1");
    for scope in [PolicyScope::Global, key_scope(), device_scope()] {
        assert_eq!(PolicyScope::from_aggregate_id(&scope.aggregate_id()), Ok(scope));
    }
    for bad in [
        "",
        "Global",
        "api_key:",
        "api_key:00000000-0000-0000-0000-0000000000A1",
        "api_key:000000000000000000000000000000a1",
        "user:00000000-0000-0000-0000-0000000000a1",
    ] {
        assert_eq!(PolicyScope::from_aggregate_id(bad), Err(PolicyScopeError), "{bad}");
    }
    assert_eq!(
        serde_json::to_value(key_scope()).unwrap(),
        serde_json::json!({"kind": "api_key", "id": "00000000-0000-0000-0000-0000000000a1"})
    );
}

#[test]
fn events_round_trip_through_json_tagged_with_their_type() {
    let full = PolicySettings {
        timestamp_window_seconds: Some(60),
        requests_per_minute: Some(1),
        tokens_per_day: Some(2),
        ip_allow_list: Some(vec![net("192.0.2.0/24"), net("2001:db8::/48")]),
        allowed_providers: Some(vec![Provider::Google]),
        allowed_models: Some(vec!["gemini-2.0-flash".into()]),
        require_approval: Some(true),
    };
    for event in [
        was_set(PolicyScope::Global, full),
        was_set(key_scope(), rpm(3)),
        PolicyEvent::PolicyCleared { scope: device_scope(), by: admin(), at: t(1) },
    ] {
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], event.event_type());
        assert_eq!(event.event_version(), "1.0");
        assert_eq!(serde_json::from_value::<PolicyEvent>(json).unwrap(), event);
    }
    // Unset fields are left out, so an override reads as what it changes.
    assert_eq!(serde_json::to_value(rpm(3)).unwrap(), serde_json::json!({"requests_per_minute": 3}));
}

#[test]
fn a_misspelt_setting_is_refused_rather_than_ignored() {
    let json = serde_json::json!({"ip_whitelist": ["10.0.0.0/8"]});
    assert!(serde_json::from_value::<PolicySettings>(json).is_err());
}

#[test]
fn error_codes_are_distinct_and_snake_case() {
    assert_codes_distinct(&[
        PolicyError::ScopeMismatch { expected: PolicyScope::Global, requested: key_scope() },
        PolicyError::Unchanged,
        PolicyError::NotSet,
        PolicyError::GlobalCannotBeCleared,
        PolicyError::EmptyOverride,
        PolicyError::InvalidTimestampWindow { value: 0 },
        PolicyError::InvalidRequestsPerMinute,
        PolicyError::InvalidTokensPerDay,
        PolicyError::InvalidIpAllowList(ListError::Empty),
        PolicyError::InvalidAllowedProviders(ListError::Empty),
        PolicyError::InvalidAllowedModels(ListError::TooMany { max: 1, len: 2 }),
        PolicyError::InvalidModelName { index: 0 },
        PolicyError::RequireApprovalOnDevice,
    ]);
    assert_eq!(
        PolicyError::InvalidIpAllowList(ListError::Empty).to_string(),
        "The ip_allow_list must not be empty; leave it unset to allow any."
    );
}

// ---- EffectivePolicy ----

#[test]
fn nothing_set_gives_the_defaults() {
    let p = EffectivePolicy::resolve(None, None, None);
    assert_eq!(p, EffectivePolicy::default());
    assert_eq!(p.timestamp_window_seconds, 120);
    assert_eq!(p.timestamp_window(), chrono::TimeDelta::seconds(120));
    assert!(p.require_approval);
    assert_eq!((p.requests_per_minute, p.tokens_per_day), (None, None));
    assert!(p.allows_ip("198.51.100.7".parse().unwrap()));
    assert!(p.allows_ip("2001:db8::7".parse().unwrap()));
    assert!(Provider::ALL.into_iter().all(|pr| p.allows_provider(pr)));
    assert!(p.allows_model("anything"));
}

#[test]
fn the_most_specific_level_wins_field_by_field() {
    let global = PolicySettings {
        timestamp_window_seconds: Some(60),
        requests_per_minute: Some(100),
        tokens_per_day: Some(10_000),
        allowed_providers: Some(vec![Provider::OpenAi]),
        require_approval: Some(false),
        ..Default::default()
    };
    let key = PolicySettings {
        requests_per_minute: Some(50),
        ip_allow_list: Some(vec![net("10.0.0.0/8")]),
        require_approval: Some(true),
        ..Default::default()
    };
    let device = PolicySettings {
        requests_per_minute: Some(5),
        allowed_models: Some(vec!["gpt-4o-mini".into()]),
        ..Default::default()
    };
    let p = EffectivePolicy::resolve(Some(&global), Some(&key), Some(&device));
    assert_eq!(
        p,
        EffectivePolicy {
            timestamp_window_seconds: 60,
            requests_per_minute: Some(5),
            tokens_per_day: Some(10_000),
            ip_allow_list: Some(vec![net("10.0.0.0/8")]),
            allowed_providers: Some(vec![Provider::OpenAi]),
            allowed_models: Some(vec!["gpt-4o-mini".into()]),
            require_approval: true,
        }
    );
    // Without the device level, the key's values show through.
    let p = EffectivePolicy::resolve(Some(&global), Some(&key), None);
    assert_eq!(p.requests_per_minute, Some(50));
    assert!(p.allows_model("gpt-4o"));
}

#[test]
fn allow_lists_match_ipv4_ipv6_and_mapped_addresses() {
    let p = EffectivePolicy {
        ip_allow_list: Some(vec![net("192.0.2.0/24"), net("2001:db8::/32")]),
        allowed_providers: Some(vec![Provider::Anthropic]),
        allowed_models: Some(vec!["claude-sonnet-4".into()]),
        ..EffectivePolicy::default()
    };
    assert!(p.allows_ip("192.0.2.200".parse().unwrap()));
    assert!(!p.allows_ip("192.0.3.1".parse().unwrap()));
    assert!(p.allows_ip("2001:db8:ffff::1".parse().unwrap()));
    assert!(!p.allows_ip("2001:db9::1".parse().unwrap()));
    assert!(p.allows_ip("::ffff:192.0.2.9".parse().unwrap()));
    assert!(!p.allows_ip("::ffff:198.51.100.1".parse().unwrap()));
    assert!(p.allows_provider(Provider::Anthropic));
    assert!(!p.allows_provider(Provider::OpenAi));
    assert!(p.allows_model("claude-sonnet-4"));
    assert!(!p.allows_model("Claude-Sonnet-4"));
    assert!(!p.allows_model("claude-sonnet-4 "));
}

/// The value of the first level (most specific first) that sets the field.
fn most_specific<T>(
    levels: [&Option<PolicySettings>; 3],
    field: impl Fn(&PolicySettings) -> Option<T>,
) -> Option<T> {
    levels.into_iter().flatten().find_map(field)
}

fn arb_net() -> impl Strategy<Value = IpNet> {
    prop_oneof![
        (any::<u32>(), 0u8..=32).prop_map(|(a, l)| IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), l).unwrap())),
        (any::<u128>(), 0u8..=128).prop_map(|(a, l)| IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), l).unwrap())),
    ]
}

fn arb_settings() -> impl Strategy<Value = PolicySettings> {
    use proptest::collection::vec;
    use proptest::option::of;
    (
        of(1u32..=900),
        of(1u32..),
        of(1u64..),
        of(vec(arb_net(), 1..4)),
        of(vec(proptest::sample::select(Provider::ALL.to_vec()), 1..4)),
        of(vec("[a-z0-9.-]{1,12}", 1..4)),
        of(any::<bool>()),
    )
        .prop_map(|(w, r, tk, ips, prov, models, appr)| PolicySettings {
            timestamp_window_seconds: w,
            requests_per_minute: r,
            tokens_per_day: tk,
            ip_allow_list: ips,
            allowed_providers: prov,
            allowed_models: models,
            require_approval: appr,
        })
}

proptest! {
    #[test]
    fn each_field_comes_from_the_most_specific_level_that_sets_it(
        g in proptest::option::of(arb_settings()),
        k in proptest::option::of(arb_settings()),
        d in proptest::option::of(arb_settings()),
    ) {
        let p = EffectivePolicy::resolve(g.as_ref(), k.as_ref(), d.as_ref());
        let levels = [&d, &k, &g];
        prop_assert_eq!(
            p.timestamp_window_seconds,
            most_specific(levels, |s| s.timestamp_window_seconds).unwrap_or(120)
        );
        prop_assert_eq!(p.requests_per_minute, most_specific(levels, |s| s.requests_per_minute));
        prop_assert_eq!(p.tokens_per_day, most_specific(levels, |s| s.tokens_per_day));
        prop_assert_eq!(p.ip_allow_list, most_specific(levels, |s| s.ip_allow_list.clone()));
        prop_assert_eq!(
            p.allowed_providers,
            most_specific(levels, |s| s.allowed_providers.clone())
        );
        prop_assert_eq!(p.allowed_models, most_specific(levels, |s| s.allowed_models.clone()));
        prop_assert_eq!(
            p.require_approval,
            most_specific(levels, |s| s.require_approval).unwrap_or(true)
        );
    }

    #[test]
    fn merging_is_associative(
        g in arb_settings(),
        k in arb_settings(),
        d in arb_settings(),
    ) {
        prop_assert_eq!(
            EffectivePolicy::resolve(Some(&g), Some(&k), Some(&d)),
            EffectivePolicy::resolve(Some(&g.overlaid_with(&k)), None, Some(&d))
        );
        prop_assert_eq!(
            EffectivePolicy::resolve(Some(&g), Some(&k), Some(&d)),
            EffectivePolicy::resolve(None, Some(&g), Some(&k.overlaid_with(&d)))
        );
    }

    #[test]
    fn validation_is_idempotent(s in arb_settings()) {
        let once = s.validated(PolicyScope::Global).unwrap();
        prop_assert_eq!(once.clone().validated(PolicyScope::Global).unwrap(), once);
    }

    #[test]
    fn an_address_is_allowed_iff_a_listed_network_contains_it(
        nets in proptest::collection::vec(arb_net(), 1..4),
        ip in any::<IpAddr>(),
    ) {
        let p = EffectivePolicy { ip_allow_list: Some(nets.clone()), ..EffectivePolicy::default() };
        let canonical = ip.to_canonical();
        prop_assert_eq!(p.allows_ip(ip), nets.iter().any(|n| n.contains(&canonical)));
    }
}
