//! Given/when/then for every user command, success and refusal.

use cqrs_es::DomainEvent as _;
use cqrs_es::test::{AggregateTestExecutor, TestFramework};
use uuid::Uuid;

use super::*;
use crate::metadata::Actor;
use crate::test_support::{admin, assert_codes_distinct, t, t0};
use crate::text::TextError;

const HASH_1: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdG9uZQ$aGFzaG9uZWhhc2hvbmVoYXNob25l";
const HASH_2: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHR3bw$aGFzaHR3b2hhc2h0d29oYXNodHdv";

fn user_id() -> Uuid {
    Uuid::from_u128(0x05e7)
}

fn myself() -> Actor {
    Actor::User { id: user_id() }
}

fn hash(phc: &str) -> PasswordHash {
    PasswordHash::parse(phc).unwrap()
}

fn create_cmd() -> CreateUser {
    CreateUser {
        user_id: user_id(),
        email: Email::parse("Operator@Example.com").unwrap(),
        name: " Layla Haddad ".into(),
        role: Role::Operator,
        password_hash: hash(HASH_1),
        by: admin(),
        at: t0(),
    }
}

fn created() -> UserEvent {
    UserEvent::UserCreated {
        user_id: user_id(),
        email: Email::parse("operator@example.com").unwrap(),
        name: "Layla Haddad".into(),
        role: Role::Operator,
        password_hash: hash(HASH_1),
        by: admin(),
        at: t0(),
    }
}

fn disabled() -> UserEvent {
    UserEvent::UserDisabled { reason: "left the company".into(), by: admin(), at: t(10) }
}

fn given(events: Vec<UserEvent>) -> AggregateTestExecutor<User> {
    TestFramework::<User>::with(()).given(events)
}

fn nothing() -> AggregateTestExecutor<User> {
    TestFramework::<User>::with(()).given_no_previous_events()
}

fn change_role(role: Role, by: Actor) -> UserCommand {
    UserCommand::ChangeRole { role, by, at: t(20) }
}

fn disable(reason: &str, by: Actor) -> UserCommand {
    UserCommand::Disable { reason: reason.into(), by, at: t(20) }
}

fn enable() -> UserCommand {
    UserCommand::Enable { by: admin(), at: t(20) }
}

fn change_password(phc: &str, by: Actor) -> UserCommand {
    UserCommand::ChangePassword { password_hash: hash(phc), by, at: t(20) }
}

// ---- Create ----

#[test]
fn create_records_the_account() {
    nothing().when(UserCommand::Create(create_cmd())).then_expect_events(vec![created()]);
}

#[test]
fn creating_twice_is_refused() {
    given(vec![created()])
        .when(UserCommand::Create(create_cmd()))
        .then_expect_error(UserError::AlreadyExists);
}

#[test]
fn create_refuses_an_empty_or_overlong_name() {
    let cmd = CreateUser { name: "  ".into(), ..create_cmd() };
    nothing().when(UserCommand::Create(cmd)).then_expect_error(UserError::InvalidName(TextError::Empty));
    let cmd = CreateUser { name: "n".repeat(101), ..create_cmd() };
    nothing()
        .when(UserCommand::Create(cmd))
        .then_expect_error(UserError::InvalidName(TextError::TooLong { max: 100, len: 101 }));
}

// ---- ChangeRole ----

#[test]
fn change_role_records_the_previous_role() {
    given(vec![created()]).when(change_role(Role::Admin, admin())).then_expect_events(vec![
        UserEvent::UserRoleChanged {
            previous_role: Role::Operator,
            role: Role::Admin,
            by: admin(),
            at: t(20),
        },
    ]);
}

#[test]
fn changing_to_the_same_role_is_refused() {
    given(vec![created()])
        .when(change_role(Role::Operator, admin()))
        .then_expect_error(UserError::RoleUnchanged(Role::Operator));
}

#[test]
fn changing_one_s_own_role_is_refused() {
    given(vec![created()])
        .when(change_role(Role::Admin, myself()))
        .then_expect_error(UserError::SelfModification);
}

#[test]
fn changing_the_role_of_a_disabled_user_is_refused() {
    given(vec![created(), disabled()])
        .when(change_role(Role::Auditor, admin()))
        .then_expect_error(UserError::Disabled);
}

#[test]
fn changing_the_role_of_an_unknown_user_is_refused() {
    nothing().when(change_role(Role::Auditor, admin())).then_expect_error(UserError::NotFound);
}

// ---- Disable ----

#[test]
fn disable_records_who_and_why() {
    given(vec![created()]).when(disable(" left the company ", admin())).then_expect_events(vec![
        UserEvent::UserDisabled { reason: "left the company".into(), by: admin(), at: t(20) },
    ]);
}

#[test]
fn disabling_a_disabled_user_is_refused() {
    given(vec![created(), disabled()]).when(disable("again", admin())).then_expect_error(UserError::Disabled);
}

#[test]
fn disabling_oneself_is_refused() {
    given(vec![created()]).when(disable("bye", myself())).then_expect_error(UserError::SelfModification);
}

#[test]
fn disable_requires_a_reason() {
    given(vec![created()])
        .when(disable("", admin()))
        .then_expect_error(UserError::InvalidReason(TextError::Empty));
    given(vec![created()])
        .when(disable(&"r".repeat(501), admin()))
        .then_expect_error(UserError::InvalidReason(TextError::TooLong { max: 500, len: 501 }));
}

#[test]
fn disabling_an_unknown_user_is_refused() {
    nothing().when(disable("x", admin())).then_expect_error(UserError::NotFound);
}

// ---- Enable ----

#[test]
fn enable_a_disabled_user() {
    given(vec![created(), disabled()])
        .when(enable())
        .then_expect_events(vec![UserEvent::UserEnabled { by: admin(), at: t(20) }]);
}

#[test]
fn enabling_an_enabled_user_is_refused() {
    given(vec![created()]).when(enable()).then_expect_error(UserError::NotDisabled);
}

#[test]
fn enabling_an_unknown_user_is_refused() {
    nothing().when(enable()).then_expect_error(UserError::NotFound);
}

// ---- ChangePassword ----

#[test]
fn change_password_records_the_new_hash() {
    given(vec![created()]).when(change_password(HASH_2, myself())).then_expect_events(vec![
        UserEvent::UserPasswordChanged { password_hash: hash(HASH_2), by: myself(), at: t(20) },
    ]);
}

#[test]
fn changing_to_the_same_hash_is_refused() {
    given(vec![created()])
        .when(change_password(HASH_1, myself()))
        .then_expect_error(UserError::PasswordUnchanged);
}

#[test]
fn changing_the_password_of_a_disabled_user_is_refused() {
    given(vec![created(), disabled()])
        .when(change_password(HASH_2, admin()))
        .then_expect_error(UserError::Disabled);
}

#[test]
fn changing_the_password_of_an_unknown_user_is_refused() {
    nothing().when(change_password(HASH_2, admin())).then_expect_error(UserError::NotFound);
}

// ---- State, Debug, serde, codes ----

#[test]
fn state_follows_the_history() {
    let mut user = User::default();
    assert!(user.state().is_none());
    for e in [
        created(),
        disabled(),
        UserEvent::UserEnabled { by: admin(), at: t(15) },
        UserEvent::UserRoleChanged {
            previous_role: Role::Operator,
            role: Role::Auditor,
            by: admin(),
            at: t(16),
        },
        UserEvent::UserPasswordChanged { password_hash: hash(HASH_2), by: myself(), at: t(17) },
    ] {
        cqrs_es::Aggregate::apply(&mut user, e);
    }
    let u = user.state().unwrap();
    assert_eq!(u.id(), user_id());
    assert_eq!(u.email().as_str(), "operator@example.com");
    assert_eq!(u.name(), "Layla Haddad");
    assert_eq!(u.role(), Role::Auditor);
    assert_eq!(u.password_hash(), &hash(HASH_2));
    assert!(!u.is_disabled());
    assert_eq!(u.created_by(), &admin());
    assert_eq!(u.created_at(), t0());
    assert_eq!(u.password_changed_at(), t(17));

    cqrs_es::Aggregate::apply(&mut user, disabled());
    let d = user.state().unwrap().disablement().unwrap();
    assert_eq!((d.reason(), d.by(), d.at()), ("left the company", &admin(), t(10)));

    let json = serde_json::to_string(&user).unwrap();
    let back: User = serde_json::from_str(&json).unwrap();
    assert!(back.state() == user.state());
}

#[test]
fn no_debug_output_reveals_a_password_hash() {
    let mut user = User::default();
    cqrs_es::Aggregate::apply(&mut user, created());
    let printed = [
        format!("{:?}", created()),
        format!(
            "{:?}",
            UserEvent::UserPasswordChanged { password_hash: hash(HASH_2), by: myself(), at: t(1) }
        ),
        format!("{:?}", UserCommand::Create(create_cmd())),
        format!("{:?}", change_password(HASH_2, myself())),
        format!("{user:?}"),
    ];
    for p in printed {
        assert!(!p.contains("argon2id"), "{p}");
        assert!(p.contains("<redacted>"), "{p}");
    }
}

#[test]
fn events_round_trip_through_json_tagged_with_their_type() {
    for event in [
        created(),
        UserEvent::UserRoleChanged {
            previous_role: Role::Operator,
            role: Role::Admin,
            by: admin(),
            at: t(1),
        },
        disabled(),
        UserEvent::UserEnabled { by: Actor::system("cli"), at: t(2) },
        UserEvent::UserPasswordChanged { password_hash: hash(HASH_2), by: myself(), at: t(3) },
    ] {
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], event.event_type());
        assert_eq!(event.event_version(), "1.0");
        assert!(serde_json::from_value::<UserEvent>(json).unwrap() == event);
    }
}

#[test]
fn error_codes_are_distinct_and_snake_case() {
    assert_codes_distinct(&[
        UserError::NotFound,
        UserError::AlreadyExists,
        UserError::Disabled,
        UserError::NotDisabled,
        UserError::RoleUnchanged(Role::Admin),
        UserError::PasswordUnchanged,
        UserError::SelfModification,
        UserError::InvalidName(TextError::Empty),
        UserError::InvalidReason(TextError::Empty),
    ]);
    assert_codes_distinct(&[
        EmailError::Empty,
        EmailError::TooLong,
        EmailError::NotAscii,
        EmailError::AtSign,
        EmailError::InvalidLocalPart,
        EmailError::InvalidDomain,
    ]);
    assert_codes_distinct(&[PasswordHashError::NotArgon2id, PasswordHashError::Malformed]);
    assert_eq!(UserError::RoleUnchanged(Role::Admin).to_string(), "The user already has the admin role.");
}
