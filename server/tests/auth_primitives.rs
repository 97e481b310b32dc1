//! Refresh-token sessions on both stores: rotation, reuse detection, concurrent refresh, logout
//! and revocation.

mod support;

use std::sync::Arc;

use chrono::TimeDelta;
use domain::user::Role;
use secrecy::{ExposeSecret as _, SecretString};
use services::auth::{ManualClock, SessionError, Sessions, TokenError, TokenIssuer, TokenType};
use services::secrets::{MasterKeySource, MasterKeys};
use support::{Backend, TestDb};
use uuid::Uuid;

struct Setup {
    sessions: Sessions,
    clock: Arc<ManualClock>,
    _db: TestDb,
}

async fn setup(backend: Backend) -> Setup {
    let db = TestDb::new(backend).await;
    let keys = MasterKeys::load(&MasterKeySource::Inline {
        current: MasterKeys::generate_encoded().unwrap(),
        previous: vec![],
    })
    .unwrap();
    let clock = Arc::new(ManualClock::default());
    let issuer = Arc::new(TokenIssuer::new(&keys, clock.clone()).unwrap());
    Setup { sessions: Sessions::new(db.db.clone(), issuer), clock, _db: db }
}

async fn role(role: Role) -> impl FnOnce(Uuid) -> std::future::Ready<Option<Role>> {
    move |_| std::future::ready(Some(role))
}

fn token(t: &SecretString) -> &str {
    t.expose_secret()
}

async fn refresh_rotates_within_the_family(backend: Backend) {
    let s = setup(backend).await;
    let user = Uuid::new_v4();
    let first = s.sessions.start(user, Role::Operator).await.unwrap();
    let access = s.sessions.tokens().verify_access(token(&first.access.token)).unwrap();
    assert_eq!((access.user_id, access.role), (user, Role::Operator));

    s.clock.advance(TimeDelta::minutes(20));
    assert_eq!(s.sessions.tokens().verify_access(token(&first.access.token)), Err(TokenError::Expired));
    // The role is looked up afresh: a change since login shows in the new access token.
    let second = s.sessions.refresh(token(&first.refresh.token), role(Role::Auditor).await).await.unwrap();
    assert_eq!(second.family_id, first.family_id);
    assert_ne!(second.refresh.jti, first.refresh.jti);
    let access = s.sessions.tokens().verify_access(token(&second.access.token)).unwrap();
    assert_eq!((access.user_id, access.role), (user, Role::Auditor));
    let refresh = s.sessions.tokens().verify_refresh(token(&second.refresh.token)).unwrap();
    assert_eq!((refresh.user_id, refresh.family_id), (user, first.family_id));

    let third = s.sessions.refresh(token(&second.refresh.token), role(Role::Auditor).await).await.unwrap();
    assert_eq!(third.family_id, first.family_id);
    // Neither token kind passes for the other.
    let err = s.sessions.refresh(token(&third.access.token), role(Role::Admin).await).await.unwrap_err();
    assert!(
        matches!(
            err,
            SessionError::Token(TokenError::WrongType {
                expected: TokenType::Refresh,
                found: TokenType::Access
            })
        ),
        "{err}"
    );
}

async fn a_reused_refresh_token_revokes_the_whole_family(backend: Backend) {
    let s = setup(backend).await;
    let user = Uuid::new_v4();
    let stolen = s.sessions.start(user, Role::Admin).await.unwrap();
    let other_session = s.sessions.start(user, Role::Admin).await.unwrap();
    let owner = s.sessions.refresh(token(&stolen.refresh.token), role(Role::Admin).await).await.unwrap();

    // The thief replays the copy the owner already used.
    let err = s.sessions.refresh(token(&stolen.refresh.token), role(Role::Admin).await).await.unwrap_err();
    assert!(matches!(err, SessionError::Reused), "{err}");
    // ...and the owner's current token is dead too: both must log in again.
    let err = s.sessions.refresh(token(&owner.refresh.token), role(Role::Admin).await).await.unwrap_err();
    assert!(matches!(err, SessionError::Revoked), "{err}");
    // Another login of the same user is a different family and unaffected.
    s.sessions.refresh(token(&other_session.refresh.token), role(Role::Admin).await).await.unwrap();
}

async fn concurrent_refreshes_with_one_token_let_exactly_one_through(backend: Backend) {
    let s = setup(backend).await;
    let pair = s.sessions.start(Uuid::new_v4(), Role::Operator).await.unwrap();
    let presented = token(&pair.refresh.token).to_owned();
    let attempts = 8;
    let handles: Vec<_> = (0..attempts)
        .map(|_| {
            let sessions = s.sessions.clone();
            let presented = presented.clone();
            tokio::spawn(async move {
                sessions.refresh(&presented, |_| std::future::ready(Some(Role::Operator))).await
            })
        })
        .collect();
    let mut won = Vec::new();
    for handle in handles {
        match handle.await.unwrap() {
            Ok(pair) => won.push(pair),
            Err(SessionError::Reused | SessionError::Revoked) => {}
            Err(other) => panic!("unexpected refusal: {other}"),
        }
    }
    assert_eq!(won.len(), 1, "exactly one of {attempts} concurrent refreshes succeeds");
    // The losers presented a used token, which is reuse: the winner's new token is revoked with
    // the family (strict reuse detection; the dashboard serialises its refreshes).
    let err = s.sessions.refresh(token(&won[0].refresh.token), role(Role::Operator).await).await.unwrap_err();
    assert!(matches!(err, SessionError::Revoked), "{err}");
}

async fn logout_and_revoke_all_end_sessions(backend: Backend) {
    let s = setup(backend).await;
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let laptop = s.sessions.start(alice, Role::Admin).await.unwrap();
    let phone = s.sessions.start(alice, Role::Admin).await.unwrap();
    let tablet = s.sessions.start(alice, Role::Admin).await.unwrap();
    let bobs = s.sessions.start(bob, Role::Auditor).await.unwrap();

    s.sessions.logout(token(&laptop.refresh.token)).await.unwrap();
    let err = s.sessions.refresh(token(&laptop.refresh.token), role(Role::Admin).await).await.unwrap_err();
    assert!(matches!(err, SessionError::Revoked), "{err}");
    let phone = s.sessions.refresh(token(&phone.refresh.token), role(Role::Admin).await).await.unwrap();

    // Password reset: every remaining session of alice ends, bob's does not.
    assert_eq!(s.sessions.revoke_all_for_user(alice).await.unwrap(), 2, "phone's new token and the tablet's");
    for t in [&phone.refresh.token, &tablet.refresh.token] {
        let err = s.sessions.refresh(token(t), role(Role::Admin).await).await.unwrap_err();
        assert!(matches!(err, SessionError::Revoked), "{err}");
    }
    s.sessions.refresh(token(&bobs.refresh.token), role(Role::Auditor).await).await.unwrap();

    // A logout with a forged token is refused.
    let err = s.sessions.logout("not.a.token").await.unwrap_err();
    assert!(matches!(err, SessionError::Token(TokenError::Malformed)), "{err}");
}

async fn disabled_users_expired_and_unknown_tokens_are_refused(backend: Backend) {
    let s = setup(backend).await;
    let user = Uuid::new_v4();
    let pair = s.sessions.start(user, Role::Operator).await.unwrap();
    let err = s.sessions.refresh(token(&pair.refresh.token), |_| std::future::ready(None)).await.unwrap_err();
    assert!(matches!(err, SessionError::UserInactive), "{err}");
    let err = s.sessions.refresh(token(&pair.refresh.token), role(Role::Operator).await).await.unwrap_err();
    assert!(matches!(err, SessionError::Revoked), "the disabled user's session is gone: {err}");

    let pair = s.sessions.start(user, Role::Operator).await.unwrap();
    s.clock.advance(TimeDelta::days(30));
    let err = s.sessions.refresh(token(&pair.refresh.token), role(Role::Operator).await).await.unwrap_err();
    assert!(matches!(err, SessionError::Token(TokenError::Expired)), "{err}");
    // Rows are kept for a refresh lifetime after expiry, then purged.
    assert_eq!(s.sessions.purge_expired().await.unwrap(), 0);
    s.clock.advance(TimeDelta::days(30) + TimeDelta::seconds(1));
    assert_eq!(s.sessions.purge_expired().await.unwrap(), 2);

    // Correctly signed but never recorded (e.g. issued before a database restore).
    let unrecorded = s.sessions.tokens().issue_refresh(user, Uuid::new_v4()).unwrap();
    let err = s.sessions.refresh(token(&unrecorded.token), role(Role::Operator).await).await.unwrap_err();
    assert!(matches!(err, SessionError::UnknownToken), "{err}");
}

on_both_backends!(
    refresh_rotates_within_the_family,
    a_reused_refresh_token_revokes_the_whole_family,
    concurrent_refreshes_with_one_token_let_exactly_one_through,
    logout_and_revoke_all_end_sessions,
    disabled_users_expired_and_unknown_tokens_are_refused,
);
