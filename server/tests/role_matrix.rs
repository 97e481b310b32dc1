//! Every documented route × every role (and anonymous) answers as the role matrix says: 401 for
//! anonymous callers, 403 for a role without the permission, never 401/403 for a role with it.
//!
//! The routes come from the OpenAPI document itself, so a route added without a rule here fails
//! this test instead of slipping through unchecked.

mod support;

use reqwest::Method;
use support::{Backend, TestApp};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// Open to anyone (health, sign-in, device-facing signed routes).
    Public,
    /// Any signed-in user.
    SignedIn,
    /// Roles allowed; everyone else signed in gets 403.
    Roles(&'static [&'static str]),
}

const ALL: &[&str] = &["admin", "operator", "auditor"];
const WRITERS: &[&str] = &["admin", "operator"];
const ADMIN: &[&str] = &["admin"];
const USER_READERS: &[&str] = &["admin", "auditor"];

/// The role matrix of the issue: admin everything; operator devices, keys, codes, policies but not
/// users; auditor reads everything including the audit trail and changes nothing.
fn rule(method: &str, path: &str) -> Rule {
    let read = method == "get";
    // The checkpoints' public key is for anyone who wants to check a signed checkpoint.
    let public_prefixes = [
        "/api/v1/health",
        "/api/v1/ready",
        "/api/v1/openapi.json",
        "/api/v1/keyguard/",
        "/api/v1/proxy",
        "/api/v1/audit/public-key",
    ];
    if public_prefixes.iter().any(|p| path.starts_with(p)) {
        return Rule::Public;
    }
    match path {
        "/api/v1/auth/login" | "/api/v1/auth/refresh" | "/api/v1/auth/logout" | "/api/v1/auth/setup" => {
            Rule::Public
        }
        "/api/v1/auth/me" => Rule::SignedIn,
        p if p.starts_with("/api/v1/users") => Rule::Roles(if read { USER_READERS } else { ADMIN }),
        p if p.starts_with("/api/v1/audit") => Rule::Roles(ALL),
        p if ["/api/v1/keys", "/api/v1/devices", "/api/v1/policies"]
            .iter()
            .any(|prefix| p.starts_with(prefix)) =>
        {
            Rule::Roles(if read { ALL } else { WRITERS })
        }
        other => panic!("no role rule for {method} {other}: add it to this test's matrix"),
    }
}

async fn every_route_answers_each_role_as_the_matrix_says(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.bootstrap_admin().await;
    let operator = app.user_with_role(&admin, "operator").await;
    let auditor = app.user_with_role(&admin, "auditor").await;
    let tokens = [("admin", admin.as_str()), ("operator", operator.as_str()), ("auditor", auditor.as_str())];

    let (_, doc) = app.call(Method::GET, "/api/v1/openapi.json", None, None).await;
    let paths = doc["paths"].as_object().expect("documented paths");
    let mut checked = 0;
    for (template, operations) in paths {
        // Unknown ids: allowed roles get 404 or 400, which is fine; what matters is 401 and 403.
        let path = fill_parameters(template);
        for method in operations.as_object().unwrap().keys() {
            let rule = rule(method, template);
            if rule == Rule::Public {
                continue;
            }
            let method_value = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let body = (method != "get").then(|| serde_json::json!({}));
            let (status, answer) = probe(&app, method_value.clone(), &path, None, body.clone()).await;
            assert_eq!(status, 401, "anonymous {method} {template}: {answer}");
            for (role, token) in tokens {
                let (status, answer) =
                    probe(&app, method_value.clone(), &path, Some(token), body.clone()).await;
                let allowed = match rule {
                    Rule::SignedIn => true,
                    Rule::Roles(roles) => roles.contains(&role),
                    Rule::Public => unreachable!(),
                };
                if allowed {
                    assert!(
                        status != 401 && status != 403,
                        "{role} may {method} {template}, got {status}: {answer}"
                    );
                } else {
                    assert_eq!(status, 403, "{role} may not {method} {template}: {answer}");
                    assert_eq!(answer["error"], "forbidden");
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 3 * 15, "the matrix covered only {checked} route×role pairs");
}

/// The status and, when the answer is JSON, its body. Downloads and event streams are not read
/// (a live stream never ends): their status is what the matrix is about.
async fn probe(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut request = app.client.request(method, app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let json = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    let body = if json { response.json().await.expect("a JSON body") } else { serde_json::Value::Null };
    (status, body)
}

/// Replaces each `{parameter}` with a syntactically valid id that names nothing.
fn fill_parameters(template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').map_or(rest.len(), |e| start + e + 1);
        let name = &rest[start + 1..end - 1];
        out.push_str(if name == "position" { "999999" } else { "00000000-0000-4000-8000-000000000000" });
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

on_both_backends!(every_route_answers_each_role_as_the_matrix_says);
