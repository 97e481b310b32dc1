//! The domain's aggregates on the real event store, on both backends: a device's history and its
//! metadata survive the round trip, and a single-use enrollment code cannot be redeemed twice even
//! by two requests that decided at the same moment.

mod support;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use chrono::{TimeDelta, Utc};
use cqrs_es::persist::{PersistedEventRepository as _, PersistedEventStore};
use cqrs_es::{Aggregate as _, AggregateError, EventStore as _};
use domain::api_key::{
    ApiKey, ApiKeyCommand, ApiKeyError, CreateApiKey, EnrollmentCode, Environment, IssueEnrollmentCode,
    ProjectKeyHash, SealedSecret,
};
use domain::device::{Device, DeviceCommand, DeviceStatus, EnrollDevice, InitialStatus};
use domain::metadata::{Actor, EventMetadata};
use domain::protocol::PublicKeySpki;
use domain::provider::Provider;
use support::{Backend, TestDb};
use uuid::Uuid;

const PUBLIC_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEIzqvBP4b0IVzk4HnvYE1Ea60RncyOJYxyI+QjPHZWKQyVBYj5graxhEJdMV5ChywPhe/jDBs4bWWIjPKkoX8ng==";

fn admin() -> Actor {
    Actor::User { id: Uuid::from_u128(1) }
}

fn metadata(actor: Actor, request_id: &str) -> HashMap<String, String> {
    EventMetadata::new(actor, Utc::now())
        .with_ip(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)))
        .with_user_agent("keyguard-tests")
        .with_request_id(request_id)
        .to_map()
}

async fn device_history_round_trips_with_its_metadata(backend: Backend) {
    let test = TestDb::new(backend).await;
    let cqrs = test.db.cqrs::<Device>(vec![], ());
    let device_id = Uuid::new_v4();
    let public_key = PublicKeySpki::parse(PUBLIC_KEY).unwrap();
    let enroll = DeviceCommand::Enroll(EnrollDevice {
        device_id,
        api_key_id: Uuid::new_v4(),
        key_id: public_key.key_id(),
        public_key,
        label: "build agent".into(),
        fingerprint: "fp-1".into(),
        user_agent: Some("keyguard-device/0.1".into()),
        metadata: serde_json::json!({ "os": "linux" }),
        ip: None,
        initial_status: InitialStatus::Pending,
        enrollment_code_id: None,
        at: Utc::now(),
    });
    let id = device_id.to_string();
    cqrs.execute_with_metadata(&id, enroll, metadata(Actor::Device { id: device_id }, "r-enroll"))
        .await
        .unwrap();
    cqrs.execute_with_metadata(
        &id,
        DeviceCommand::Approve { by: admin(), at: Utc::now() },
        metadata(admin(), "r-approve"),
    )
    .await
    .unwrap();
    let suspend = DeviceCommand::Suspend { by: admin(), reason: "lost laptop".into(), at: Utc::now() };
    cqrs.execute_with_metadata(&id, suspend, metadata(admin(), "r-suspend")).await.unwrap();

    // An invalid transition is refused by the aggregate and leaves the history untouched.
    let err = cqrs
        .execute_with_metadata(
            &id,
            DeviceCommand::Approve { by: admin(), at: Utc::now() },
            metadata(admin(), "r-x"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, AggregateError::UserError(_)), "{err:?}");

    let events = test.db.event_repository().get_events::<Device>(&id).await.unwrap();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["DeviceEnrolled", "DeviceApproved", "DeviceSuspended"]);
    let suspended_meta: HashMap<String, String> = serde_json::from_value(events[2].metadata.clone()).unwrap();
    let suspended_meta = EventMetadata::from_map(&suspended_meta).unwrap();
    assert_eq!(suspended_meta.actor, admin());
    assert_eq!(suspended_meta.request_id.as_deref(), Some("r-suspend"));
    assert_eq!(suspended_meta.ip, Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7))));

    let store = PersistedEventStore::<_, Device>::new_event_store(test.db.event_repository());
    let device = store.load_aggregate(&id).await.unwrap().aggregate;
    assert_eq!(device.status(), Some(DeviceStatus::Suspended));
    assert_eq!(Device::TYPE, events[0].aggregate_type);
}

async fn a_single_use_code_is_redeemed_once_even_under_a_race(backend: Backend) {
    let test = TestDb::new(backend).await;
    let cqrs = test.db.cqrs::<ApiKey>(vec![], ());
    let key_id = Uuid::new_v4();
    let id = key_id.to_string();
    let now = Utc::now();
    let create = ApiKeyCommand::Create(CreateApiKey {
        api_key_id: key_id,
        name: "production".into(),
        provider: Provider::OpenAi,
        environment: Environment::Production,
        project_key_hash: ProjectKeyHash::parse(&"ab".repeat(32)).unwrap(),
        project_key_prefix: "kg_ab12".into(),
        sealed_secret: SealedSecret::new(
            Uuid::new_v4(),
            1,
            "AAAAAAAAAAAAAAAA",
            "c2VhbGVkIHNlY3JldCBieXRlcw==",
        )
        .unwrap(),
        base_url: None,
        azure_deployment: None,
        azure_api_version: None,
        expires_at: None,
        description: None,
        by: admin(),
        at: now,
    });
    cqrs.execute(&id, create).await.unwrap();
    let code = EnrollmentCode::generate().unwrap();
    let issue = ApiKeyCommand::IssueEnrollmentCode(IssueEnrollmentCode {
        code_id: Uuid::new_v4(),
        code_hash: code.hash(),
        expires_at: Some(now + TimeDelta::minutes(15)),
        max_uses: Some(1),
        auto_approve: true,
        description: None,
        by: admin(),
        at: now,
    });
    cqrs.execute(&id, issue).await.unwrap();

    // Two enrollments load the key at the same version; both see an unused code.
    let store = PersistedEventStore::<_, ApiKey>::new_event_store(test.db.event_repository());
    let mut first = store.load_aggregate(&id).await.unwrap();
    let mut second = store.load_aggregate(&id).await.unwrap();
    let redeem = |device_id| ApiKeyCommand::RedeemEnrollmentCode {
        code: EnrollmentCode::parse(code.expose()).unwrap(),
        device_id,
        at: Utc::now(),
    };
    let first_events = decide(&mut first.aggregate, redeem(Uuid::new_v4())).await;
    let second_events = decide(&mut second.aggregate, redeem(Uuid::new_v4())).await;
    assert_eq!(first_events.len(), 1);
    assert_eq!(second_events.len(), 1, "from the same version, both decisions pass the checks");

    store.commit(first_events, first, HashMap::new()).await.expect("the first redemption commits");
    let err = store.commit(second_events, second, HashMap::new()).await.expect_err("the second must not");
    assert!(matches!(err, AggregateError::AggregateConflict), "{err:?}");

    // Retried, the second request sees the code used up.
    let err = cqrs.execute(&id, redeem(Uuid::new_v4())).await.unwrap_err();
    assert!(matches!(err, AggregateError::UserError(ApiKeyError::EnrollmentCodeExhausted)), "{err:?}");
}

/// Runs a command against a loaded aggregate and returns the events it decided, without storing them.
async fn decide(aggregate: &mut ApiKey, command: ApiKeyCommand) -> Vec<domain::api_key::ApiKeyEvent> {
    let sink = cqrs_es::event_sink::EventSink::default();
    aggregate.handle(command, &(), &sink).await.expect("the domain accepts the redemption");
    sink.collect().await
}

on_both_backends!(
    device_history_round_trips_with_its_metadata,
    a_single_use_code_is_redeemed_once_even_under_a_race
);
