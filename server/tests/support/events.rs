//! Helpers for the event-flow tests: a realistic history made of real domain commands, full
//! dumps of the read-model tables on either backend, NATS settings, and polling with a deadline.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use domain::api_key::{
    ApiKey, ApiKeyCommand, CreateApiKey, EnrollmentCode, Environment, IssueEnrollmentCode, ProjectKeyHash,
    SealedSecret,
};
use domain::device::{Device, DeviceCommand, EnrollDevice, InitialStatus};
use domain::metadata::{Actor, EventMetadata};
use domain::policy::{Policy, PolicyCommand, PolicyScope, PolicySettings};
use domain::protocol::PublicKeySpki;
use domain::provider::Provider;
use domain::user::{CreateUser, Email, PasswordHash, Role, User, UserCommand};
use services::store::Database;
use uuid::Uuid;

pub const PUBLIC_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEIzqvBP4b0IVzk4HnvYE1Ea60RncyOJYxyI+QjPHZWKQyVBYj5graxhEJdMV5ChywPhe/jDBs4bWWIjPKkoX8ng==";
pub const PASSWORD_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";

/// Every read-model table, for full dumps.
pub const READ_MODEL_TABLES: &[&str] = &[
    "devices",
    "api_keys",
    "enrollment_codes",
    "users",
    "policies",
    "audit_log",
    "traffic_hourly",
    "projection_checkpoints",
];

pub fn nats_url() -> String {
    std::env::var("KEYGUARD_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

pub fn metadata(actor: Actor, request_id: &str) -> HashMap<String, String> {
    EventMetadata::new(actor, Utc::now())
        .with_ip(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)))
        .with_user_agent("keyguard-tests/1.0")
        .with_request_id(request_id)
        .to_map()
}

/// What [`scenario`] created.
pub struct Scenario {
    pub admin: Uuid,
    pub api_key: Uuid,
    pub project_key_hash: ProjectKeyHash,
    pub code: Uuid,
    pub device: Uuid,
    pub second_device: Uuid,
    /// The global policy's rate.
    pub requests_per_minute: u32,
}

pub fn sealed() -> SealedSecret {
    SealedSecret::new(Uuid::from_u128(42), 1, "AAAAAAAAAAAAAAAA", "c2VhbGVkIHNlY3JldCBieXRlcw==").unwrap()
}

/// A small but complete history: an admin, a key with a code redeemed by a device that is then
/// approved, suspended and renamed, a second device revoked, global and per-device policies.
pub async fn scenario(db: &Database) -> Scenario {
    let admin_id = Uuid::new_v4();
    let admin = Actor::User { id: admin_id };
    let now = Utc::now();

    let users = db.cqrs::<User>(vec![], ());
    let create_user = UserCommand::Create(CreateUser {
        user_id: admin_id,
        email: Email::parse("Admin@Example.com").unwrap(),
        name: "Ada Admin".into(),
        role: Role::Admin,
        password_hash: PasswordHash::parse(PASSWORD_HASH).unwrap(),
        by: Actor::system("cli"),
        at: now,
    });
    users
        .execute_with_metadata(&admin_id.to_string(), create_user, metadata(Actor::system("cli"), "r-user"))
        .await
        .unwrap();

    let keys = db.cqrs::<ApiKey>(vec![], ());
    let api_key = Uuid::new_v4();
    let project_key_hash = ProjectKeyHash::parse(&"ab".repeat(32)).unwrap();
    let create = ApiKeyCommand::Create(CreateApiKey {
        api_key_id: api_key,
        name: "production".into(),
        provider: Provider::OpenAi,
        environment: Environment::Production,
        project_key_hash: project_key_hash.clone(),
        project_key_prefix: "kg_ab12".into(),
        sealed_secret: sealed(),
        base_url: None,
        azure_deployment: None,
        azure_api_version: None,
        expires_at: None,
        description: Some("main project".into()),
        by: admin.clone(),
        at: now,
    });
    let key = api_key.to_string();
    keys.execute_with_metadata(&key, create, metadata(admin.clone(), "r-key")).await.unwrap();
    let code = EnrollmentCode::generate().unwrap();
    let code_id = Uuid::new_v4();
    let issue = ApiKeyCommand::IssueEnrollmentCode(IssueEnrollmentCode {
        code_id,
        code_hash: code.hash(),
        expires_at: Some(now + TimeDelta::minutes(15)),
        max_uses: Some(1),
        auto_approve: false,
        description: Some("laptop".into()),
        by: admin.clone(),
        at: now,
    });
    keys.execute_with_metadata(&key, issue, metadata(admin.clone(), "r-code")).await.unwrap();
    let device = Uuid::new_v4();
    let redeem = ApiKeyCommand::RedeemEnrollmentCode {
        code: EnrollmentCode::parse(code.expose()).unwrap(),
        device_id: device,
        at: now,
    };
    keys.execute_with_metadata(&key, redeem, metadata(Actor::Device { id: device }, "r-redeem"))
        .await
        .unwrap();

    let devices = db.cqrs::<Device>(vec![], ());
    enroll(db, device, api_key, Some(code_id), "build agent").await;
    let id = device.to_string();
    let run =
        |command, request| devices.execute_with_metadata(&id, command, metadata(admin.clone(), request));
    run(DeviceCommand::Approve { by: admin.clone(), at: Utc::now() }, "r-approve").await.unwrap();
    run(
        DeviceCommand::Suspend { by: admin.clone(), reason: "lost laptop".into(), at: Utc::now() },
        "r-suspend",
    )
    .await
    .unwrap();
    run(
        DeviceCommand::Rename { by: admin.clone(), label: "build agent 2".into(), at: Utc::now() },
        "r-rename",
    )
    .await
    .unwrap();

    let second_device = Uuid::new_v4();
    enroll(db, second_device, api_key, None, "phone").await;
    devices
        .execute_with_metadata(
            &second_device.to_string(),
            DeviceCommand::Revoke { by: admin.clone(), reason: "stolen".into(), at: Utc::now() },
            metadata(admin.clone(), "r-revoke"),
        )
        .await
        .unwrap();

    let policies = db.cqrs::<Policy>(vec![], ());
    // Different each time, so that a second scenario in one store changes the global policy.
    let requests_per_minute = 1 + (admin_id.as_u128() % 10_000) as u32;
    let global = PolicySettings { requests_per_minute: Some(requests_per_minute), ..Default::default() };
    policies
        .execute_with_metadata(
            &PolicyScope::Global.aggregate_id(),
            PolicyCommand::Set {
                scope: PolicyScope::Global,
                settings: global,
                by: admin.clone(),
                at: Utc::now(),
            },
            metadata(admin.clone(), "r-policy"),
        )
        .await
        .unwrap();
    let scope = PolicyScope::Device(device);
    let per_device = PolicySettings { tokens_per_day: Some(1000), ..Default::default() };
    policies
        .execute_with_metadata(
            &scope.aggregate_id(),
            PolicyCommand::Set { scope, settings: per_device, by: admin.clone(), at: Utc::now() },
            metadata(admin.clone(), "r-policy-device"),
        )
        .await
        .unwrap();

    Scenario {
        admin: admin_id,
        api_key,
        project_key_hash,
        code: code_id,
        device,
        second_device,
        requests_per_minute,
    }
}

pub async fn enroll(db: &Database, device: Uuid, api_key: Uuid, code: Option<Uuid>, label: &str) {
    let public_key = PublicKeySpki::parse(PUBLIC_KEY).unwrap();
    let enroll = DeviceCommand::Enroll(EnrollDevice {
        device_id: device,
        api_key_id: api_key,
        key_id: public_key.key_id(),
        public_key,
        label: label.into(),
        fingerprint: format!("fp-{label}"),
        user_agent: Some("keyguard-device/0.1".into()),
        metadata: serde_json::json!({ "os": "linux" }),
        ip: Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 9))),
        initial_status: InitialStatus::Pending,
        enrollment_code_id: code,
        at: Utc::now(),
    });
    db.cqrs::<Device>(vec![], ())
        .execute_with_metadata(
            &device.to_string(),
            enroll,
            metadata(Actor::Device { id: device }, "r-enroll"),
        )
        .await
        .unwrap();
}

/// Every row of each table as JSON text, on either backend, ordered by the first two columns
/// (which hold each table's primary key).
pub async fn dump(db: &Database, tables: &[&str]) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for table in tables {
        let rows: Vec<(String,)> = match db {
            Database::Postgres(pool) => {
                let sql = format!("SELECT row_to_json(t)::text FROM (SELECT * FROM {table} ORDER BY 1, 2) t");
                sqlx::query_as(&sql).fetch_all(pool).await.unwrap()
            }
            Database::Sqlite(pool) => {
                let columns: Vec<(String,)> =
                    sqlx::query_as(&format!("SELECT name FROM pragma_table_info('{table}')"))
                        .fetch_all(pool)
                        .await
                        .unwrap();
                let pairs: Vec<String> = columns.iter().map(|(c,)| format!("'{c}', {c}")).collect();
                let order: Vec<&str> = columns.iter().take(2).map(|(c,)| c.as_str()).collect();
                let sql = format!(
                    "SELECT json_object({}) FROM {table} ORDER BY {}",
                    pairs.join(", "),
                    order.join(", ")
                );
                sqlx::query_as(&sql).fetch_all(pool).await.unwrap()
            }
        };
        out.insert((*table).to_owned(), rows.into_iter().map(|(r,)| r).collect());
    }
    out
}

/// Counts the rows of a table.
pub async fn count(db: &Database, table: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM {table}");
    let (n,): (i64,) = match db {
        Database::Postgres(pool) => sqlx::query_as(&sql).fetch_one(pool).await.unwrap(),
        Database::Sqlite(pool) => sqlx::query_as(&sql).fetch_one(pool).await.unwrap(),
    };
    n
}

/// Polls `check` until it returns `Some`, failing the test after `deadline`.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = tokio::time::Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(started.elapsed() < deadline, "timed out after {deadline:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every committed event, once the log lets a reader see them all. On PostgreSQL the reader
/// holds back while any older transaction in the cluster is in flight (another test's, say), so
/// this polls up to the head instead of reading once.
pub async fn read_all(db: &Database) -> Vec<services::events::StoredEvent> {
    let log = services::events::EventLog::new(db.clone());
    let head = log.head().await.unwrap();
    eventually("the log to be readable up to its head", Duration::from_secs(10), || async {
        let all = log.read_after(0, 100_000).await.unwrap();
        // At or past the head: a commit after reading it must not keep this waiting.
        (all.last().map_or(0, |e| e.position) >= head).then_some(all)
    })
    .await
}

/// Runs `relay.publish_pending()` until it has published up to the head of the log.
pub async fn publish_to_head(db: &Database, relay: &services::outbox::OutboxRelay) -> i64 {
    let head = services::events::EventLog::new(db.clone()).head().await.unwrap();
    eventually("the relay to publish up to the head", Duration::from_secs(10), || async {
        let reached = relay.publish_pending().await.unwrap();
        (reached == head).then_some(reached)
    })
    .await
}
