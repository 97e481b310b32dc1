//! Dashboard authentication over HTTP: first-run setup, sign-in, the two token kinds, refresh
//! rotation with reuse detection, and what a disabled account can still do (nothing).

mod support;

use reqwest::Method;
use serde_json::json;
use support::{ADMIN_PASSWORD, Backend, TestApp};

async fn setup_creates_the_first_admin_only_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, status) = app.call(Method::GET, "/api/v1/auth/setup", None, None).await;
    assert_eq!(status, json!({ "setupNeeded": true }));
    let token = app.bootstrap_admin().await;

    let (_, status) = app.call(Method::GET, "/api/v1/auth/setup", None, None).await;
    assert_eq!(status, json!({ "setupNeeded": false }));
    let again = json!({ "email": "mallory@example.com", "name": "Mallory", "password": ADMIN_PASSWORD });
    let (code, body) = app.call(Method::POST, "/api/v1/auth/setup", None, Some(again)).await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(body["error"], "setup_complete");

    let (code, me) = app.call(Method::GET, "/api/v1/auth/me", Some(&token), None).await;
    assert_eq!(code, 200, "{me}");
    assert_eq!(me["email"], "admin@example.com");
    assert_eq!(me["role"], "admin");
    assert!(me.get("passwordHash").is_none() && !me.to_string().contains("argon2"), "{me}");
}

async fn wrong_passwords_and_unknown_emails_look_the_same(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.bootstrap_admin().await;
    let wrong = json!({ "email": "admin@example.com", "password": "not the password at all" });
    let (code, wrong_body) = app.call(Method::POST, "/api/v1/auth/login", None, Some(wrong)).await;
    assert_eq!(code, 401);
    let unknown = json!({ "email": "nobody@example.com", "password": ADMIN_PASSWORD });
    let (code, unknown_body) = app.call(Method::POST, "/api/v1/auth/login", None, Some(unknown)).await;
    assert_eq!(code, 401);
    assert_eq!(wrong_body, unknown_body, "no oracle for which emails exist");
    assert_eq!(wrong_body["error"], "invalid_credentials");
}

async fn repeated_failures_are_throttled_with_retry_after(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.bootstrap_admin().await;
    let mut throttled = None;
    for _ in 0..20 {
        let response = app
            .client
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({ "email": "admin@example.com", "password": "wrong wrong wrong wrong" }))
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            throttled = Some(response);
            break;
        }
        assert_eq!(response.status(), 401);
    }
    let response = throttled.expect("twenty failures in a row must be throttled");
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after >= 1);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "login_throttled");
    // Even the right password waits out the lock.
    let right = json!({ "email": "admin@example.com", "password": ADMIN_PASSWORD });
    let (code, _) = app.call(Method::POST, "/api/v1/auth/login", None, Some(right)).await;
    assert_eq!(code, 429);
}

async fn login_sets_http_only_strict_cookies_that_authenticate(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.bootstrap_admin().await;
    let response = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({ "email": "admin@example.com", "password": ADMIN_PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let cookies: Vec<String> =
        response.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    for cookie in &cookies {
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    }
    let access = cookies.iter().find(|c| c.starts_with("kg_access=")).unwrap();
    let value = access.split(';').next().unwrap();
    let me = app.client.get(app.url("/api/v1/auth/me")).header("cookie", value).send().await.unwrap();
    assert_eq!(me.status(), 200);
}

async fn refresh_rotates_and_a_reused_refresh_token_ends_the_session(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.bootstrap_admin().await;
    let login = json!({ "email": "admin@example.com", "password": ADMIN_PASSWORD });
    let (_, session) = app.call(Method::POST, "/api/v1/auth/login", None, Some(login)).await;
    let first_refresh = session["refreshToken"].as_str().unwrap().to_owned();

    let (code, rotated) = app
        .call(Method::POST, "/api/v1/auth/refresh", None, Some(json!({ "refreshToken": first_refresh })))
        .await;
    assert_eq!(code, 200, "{rotated}");
    let second_refresh = rotated["refreshToken"].as_str().unwrap().to_owned();
    assert_ne!(first_refresh, second_refresh);
    let (code, _) = app.call(Method::GET, "/api/v1/auth/me", rotated["accessToken"].as_str(), None).await;
    assert_eq!(code, 200);

    // The first token again: someone replayed it. The whole family dies, the newer token too.
    let (code, body) = app
        .call(Method::POST, "/api/v1/auth/refresh", None, Some(json!({ "refreshToken": first_refresh })))
        .await;
    assert_eq!(code, 401);
    assert_eq!(body["error"], "refresh_token_reused");
    let (code, _) = app
        .call(Method::POST, "/api/v1/auth/refresh", None, Some(json!({ "refreshToken": second_refresh })))
        .await;
    assert_eq!(code, 401);
}

async fn token_kinds_are_not_interchangeable_and_tampering_fails(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.bootstrap_admin().await;
    let login = json!({ "email": "admin@example.com", "password": ADMIN_PASSWORD });
    let (_, session) = app.call(Method::POST, "/api/v1/auth/login", None, Some(login)).await;
    let access = session["accessToken"].as_str().unwrap();
    let refresh = session["refreshToken"].as_str().unwrap();

    let (code, _) = app.call(Method::GET, "/api/v1/auth/me", Some(refresh), None).await;
    assert_eq!(code, 401, "a refresh token is not an access token");
    let (code, _) =
        app.call(Method::POST, "/api/v1/auth/refresh", None, Some(json!({ "refreshToken": access }))).await;
    assert_eq!(code, 401, "an access token is not a refresh token");

    let mut tampered = access.to_owned();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let (code, _) = app.call(Method::GET, "/api/v1/auth/me", Some(&tampered), None).await;
    assert_eq!(code, 401);
    let (code, _) = app.call(Method::GET, "/api/v1/auth/me", None, None).await;
    assert_eq!(code, 401);
}

async fn a_disabled_user_is_locked_out_at_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.bootstrap_admin().await;
    let operator = app.user_with_role(&admin, "operator").await;
    let (_, me) = app.call(Method::GET, "/api/v1/auth/me", Some(&operator), None).await;
    let id = me["id"].as_str().unwrap().to_owned();

    let (code, body) = app
        .call(
            Method::POST,
            &format!("/api/v1/users/{id}/disable"),
            Some(&admin),
            Some(json!({ "reason": "left" })),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["disabled"], true);
    // The still-unexpired access token no longer opens anything.
    let (code, _) = app.call(Method::GET, "/api/v1/auth/me", Some(&operator), None).await;
    assert_eq!(code, 401);
}

async fn logout_ends_the_session(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.bootstrap_admin().await;
    let login = json!({ "email": "admin@example.com", "password": ADMIN_PASSWORD });
    let (_, session) = app.call(Method::POST, "/api/v1/auth/login", None, Some(login)).await;
    let refresh = session["refreshToken"].as_str().unwrap();
    let (code, _) =
        app.call(Method::POST, "/api/v1/auth/logout", None, Some(json!({ "refreshToken": refresh }))).await;
    assert_eq!(code, 204);
    let (code, _) =
        app.call(Method::POST, "/api/v1/auth/refresh", None, Some(json!({ "refreshToken": refresh }))).await;
    assert_eq!(code, 401);
}

on_both_backends!(
    setup_creates_the_first_admin_only_once,
    wrong_passwords_and_unknown_emails_look_the_same,
    repeated_failures_are_throttled_with_retry_after,
    login_sets_http_only_strict_cookies_that_authenticate,
    refresh_rotates_and_a_reused_refresh_token_ends_the_session,
    token_kinds_are_not_interchangeable_and_tampering_fails,
    a_disabled_user_is_locked_out_at_once,
    logout_ends_the_session,
);
