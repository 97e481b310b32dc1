//! The dashboard's server side over HTTP: pages render on the server for a signed-in user and
//! redirect everyone else, sign-in through the server function sets HttpOnly cookies, a page load
//! renews an expired session from the refresh cookie, and every server function checks the role.

mod support;

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use serde_json::{Value, json};
use support::{ADMIN_PASSWORD, Backend, TestApp};

fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(Policy::none()).build().expect("a client")
}

/// `name=value` pairs of the response's `Set-Cookie` headers, with the full header by name.
fn set_cookies(response: &reqwest::Response) -> Vec<(String, String, String)> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|full| {
            let pair = full.split(';').next()?;
            let (name, value) = pair.split_once('=')?;
            Some((name.to_owned(), value.to_owned(), full.to_owned()))
        })
        .collect()
}

async fn get_page(app: &TestApp, path: &str, cookie: Option<&str>) -> reqwest::Response {
    let mut request = browser().get(app.url(path)).header("accept", "text/html");
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, cookie);
    }
    request.send().await.expect("page request")
}

fn location(response: &reqwest::Response) -> String {
    response.headers().get(LOCATION).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

/// Signs in through the dashboard's server function; returns the `Cookie` header to send after.
async fn sign_in(app: &TestApp, email: &str, password: &str) -> String {
    let response = browser()
        .post(app.url("/api/auth/login"))
        .form(&[("email", email), ("password", password)])
        .send()
        .await
        .expect("sign in");
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    let cookies = set_cookies(&response);
    for name in ["kg_access", "kg_refresh"] {
        let (_, _, full) = cookies.iter().find(|(n, _, _)| n == name).unwrap_or_else(|| panic!("{name} set"));
        assert!(
            full.contains("HttpOnly") && full.contains("SameSite=Strict") && full.contains("Path=/"),
            "{full}"
        );
    }
    cookies.iter().map(|(n, v, _)| format!("{n}={v}")).collect::<Vec<_>>().join("; ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visitors_are_sent_to_the_setup_then_to_sign_in_and_pages_render_for_the_signed_in() {
    let app = TestApp::spawn(Backend::Sqlite).await;

    let home = get_page(&app, "/devices", None).await;
    assert_eq!((home.status().as_u16(), location(&home)), (302, "/login".to_owned()));
    let login = get_page(&app, "/login", None).await;
    assert_eq!((login.status().as_u16(), location(&login)), (302, "/setup".to_owned()), "no user yet");
    let setup = get_page(&app, "/setup", None).await;
    assert_eq!(setup.status(), 200);
    assert!(setup.text().await.unwrap().contains("setup-form"));

    app.bootstrap_admin().await;
    let setup = get_page(&app, "/setup", None).await;
    assert_eq!((setup.status().as_u16(), location(&setup)), (302, "/login".to_owned()), "setup is over");
    let login = get_page(&app, "/login", None).await;
    assert_eq!(login.status(), 200);

    let cookie = sign_in(&app, "admin@example.com", ADMIN_PASSWORD).await;
    let devices = get_page(&app, "/devices", Some(&cookie)).await;
    assert_eq!(devices.status(), 200);
    let html = devices.text().await.unwrap();
    assert!(html.contains("Ada Admin"), "the frame names the user");
    assert!(html.contains("data-testid=\"issue-code\""), "an admin may issue codes");
    let login = get_page(&app, "/login", Some(&cookie)).await;
    assert_eq!((login.status().as_u16(), location(&login)), (302, "/".to_owned()), "already signed in");

    let arabic = get_page(&app, "/devices", Some(&format!("{cookie}; i18n_pref_locale=ar"))).await;
    let html = arabic.text().await.unwrap();
    assert!(html.contains("dir=\"rtl\"") && html.contains("الأجهزة"), "Arabic is rendered on the server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_in_the_readers_terms() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.bootstrap_admin().await;
    let response = browser()
        .post(app.url("/api/auth/login"))
        .form(&[("email", "admin@example.com"), ("password", "not the password at all")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(set_cookies(&response).is_empty(), "no session for a wrong password");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["Refused"]["code"], "invalid_credentials", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_load_renews_an_expired_session_from_the_refresh_cookie() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.bootstrap_admin().await;
    let cookie = sign_in(&app, "admin@example.com", ADMIN_PASSWORD).await;
    let refresh = cookie.split("; ").find(|c| c.starts_with("kg_refresh=")).unwrap().to_owned();

    // An access token that no longer verifies, as after its 15 minutes.
    let page = get_page(&app, "/keys", Some(&format!("kg_access=expired.token.here; {refresh}"))).await;
    assert_eq!(page.status(), 200, "renewed instead of sent to sign in");
    let renewed = set_cookies(&page);
    assert!(renewed.iter().any(|(n, v, _)| n == "kg_access" && !v.is_empty()), "{renewed:?}");
    assert!(renewed.iter().any(|(n, v, _)| n == "kg_refresh" && format!("{n}={v}") != refresh));

    // The old refresh token was rotated away: presenting it again is theft, and ends the session.
    let again = get_page(&app, "/keys", Some(&format!("kg_access=expired.token.here; {refresh}"))).await;
    assert_eq!((again.status().as_u16(), location(&again)), (302, "/login".to_owned()));
    assert!(set_cookies(&again).iter().any(|(n, v, _)| n == "kg_refresh" && v.is_empty()), "cookies cleared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_functions_check_the_role_before_acting() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let admin = app.bootstrap_admin().await;
    let key = app.create_key(&admin, "Production").await;
    let device = app.seed_device(key, "laptop", domain::device::InitialStatus::Pending).await;
    let auditor = app.user_with_role(&admin, "auditor").await;
    let operator = app.user_with_role(&admin, "operator").await;

    let call = |token: Option<String>, path: &'static str, body: Value| {
        let request = browser().post(app.url(path)).json(&body);
        let request = match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let approve = json!({ "id": device.to_string(), "change": "Approve", "text": "", "version": 1 });
    let new_key = json!({ "input": { "name": "x", "provider": "openai", "environment": "production",
        "provider_key": "sk-0123456789abcdef", "base_url": "", "azure_deployment": "", "azure_api_version": "",
        "expires_in_days": "", "description": "" } });

    assert_eq!(call(None, "/api/devices/change", approve.clone()).await.0, 401);
    let (status, body) = call(Some(auditor.clone()), "/api/devices/change", approve.clone()).await;
    assert_eq!((status, body), (403, json!("Forbidden")));
    assert_eq!(call(Some(auditor.clone()), "/api/keys/create", new_key.clone()).await.0, 403);
    assert_eq!(
        call(
            Some(operator.clone()),
            "/api/users/change",
            json!({ "id": key.to_string(), "change": "Enable" })
        )
        .await
        .0,
        403
    );

    // Reading is allowed to the auditor, and the operator may act on devices.
    let list = browser()
        .post(app.url("/api/devices/list"))
        .bearer_auth(&auditor)
        .form(&[("status", "pending"), ("search", ""), ("api_key_id", ""), ("offset", "0")])
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
    let page: Value = list.json().await.unwrap();
    assert_eq!(page["total"], 1, "{page}");
    let (status, row) = call(Some(operator), "/api/devices/change", approve.clone()).await;
    assert_eq!(status, 200, "{row}");
    assert_eq!(row["status"], "active");

    // The same version again lost the race: someone changed the device since.
    let (status, body) = call(Some(admin), "/api/devices/change", approve).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["Refused"]["code"], "concurrent_modification", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_page_replays_a_subjects_history_step_by_step() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let admin = app.bootstrap_admin().await;
    let key = app.create_key(&admin, "Replayed").await;
    let device = app.seed_device(key, "replayed-laptop", domain::device::InitialStatus::Pending).await;
    let approve = json!({ "id": device.to_string(), "change": "Approve", "text": "", "version": 1 });
    let approved =
        browser().post(app.url("/api/devices/change")).bearer_auth(&admin).json(&approve).send().await;
    assert_eq!(approved.unwrap().status(), 200);
    let auditor = app.user_with_role(&admin, "auditor").await;

    let history = |token: Option<&str>| {
        let request = browser()
            .post(app.url("/api/audit/history"))
            .form(&[("kind", "device"), ("id", device.to_string().as_str())]);
        let request = match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    assert_eq!(history(None).await.0, 401);
    let (status, steps) = history(Some(&auditor)).await;
    assert_eq!(status, 200, "{steps}");
    let steps = steps.as_array().expect("steps");
    let kinds: Vec<&str> = steps.iter().map(|s| s["event_type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["DeviceEnrolled", "DeviceApproved"]);
    let state = |i: usize| serde_json::from_str::<Value>(steps[i]["state"].as_str().unwrap()).unwrap();
    assert_eq!(state(0)["status"], "pending", "{}", state(0));
    assert_eq!(state(1)["status"], "active", "{}", state(1));
}

/// The values a server-rendered page hands to the browser for hydration, in order.
fn hydration_values(html: &str) -> Vec<&str> {
    html.match_indices("__RESOLVED_RESOURCES[")
        .filter_map(|(at, _)| {
            let value = html[at..].split_once("] = ")?.1;
            value.split_once("\";").map(|(value, _)| value)
        })
        .collect()
}

/// A page is built once on the server: every value it loads is loaded and handed to the browser
/// once. A page built again while the server waits for its data would load everything again, and
/// the browser would hydrate the first build's values into the last build's markup (a key created
/// meanwhile made the device filter's options disagree and hydration fail).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_page_is_built_once_on_the_server_and_loads_its_data_once() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    app.bootstrap_admin().await;
    let admin = app.login("admin@example.com", ADMIN_PASSWORD).await;
    let key = app.create_key(&admin, "Hydrated").await;
    let device = app.seed_device(key, "hydrated-laptop", domain::device::InitialStatus::Pending).await;
    let cookie = sign_in(&app, "admin@example.com", ADMIN_PASSWORD).await;

    let device_page = format!("/devices?device={device}");
    // The session, then each of the page's own loads.
    let expected = [
        ("/", 2),
        ("/devices", 3),
        (device_page.as_str(), 4),
        ("/keys", 2),
        ("/policies", 3),
        ("/audit", 2),
        ("/users", 2),
        ("/integration", 1),
        ("/profile", 1),
    ];
    for (path, loads) in expected {
        let page = get_page(&app, path, Some(&cookie)).await;
        assert_eq!(page.status(), 200, "{path}");
        let html = page.text().await.unwrap();
        let values = hydration_values(&html);
        assert_eq!(values.len(), loads, "{path} hands over {values:#?}");
        assert!(values[0].contains("admin@example.com"), "{path} starts with the session: {}", values[0]);
    }

    let html = get_page(&app, &device_page, Some(&cookie)).await.text().await.unwrap();
    assert!(html.contains("hydrated-laptop") && html.contains("data-testid=\"device-panel\""), "{html}");
    let values = hydration_values(&html);
    assert!(values[2].contains("Hydrated"), "the key list: {}", values[2]);
    assert!(values[3].contains(&device.to_string()), "the device's details: {}", values[3]);
}

/// Several nodes in one process, as in these tests: starting one must not stall a page that
/// another is rendering. Listing the dashboard's routes runs the app with data loading switched
/// off for the whole process, so a page whose first load fell in that window never answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_a_node_does_not_stall_a_page_another_node_renders() {
    let first = TestApp::spawn(Backend::Sqlite).await;
    let (done, mut pages_done) = tokio::sync::watch::channel(false);
    let pages = {
        let (client, url) = (first.client.clone(), first.url("/setup"));
        tokio::spawn(async move {
            let mut rendered = 0;
            while !*pages_done.borrow_and_update() {
                let page = client
                    .get(&url)
                    .timeout(std::time::Duration::from_secs(10))
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("page {rendered} did not answer: {e}"));
                assert_eq!(page.status(), 200);
                assert!(page.text().await.unwrap().contains("setup-form"));
                rendered += 1;
            }
            rendered
        })
    };
    for _ in 0..20 {
        drop(first.spawn_beside(|_| {}).await);
    }
    done.send_replace(true);
    let rendered = pages.await.expect("the page requests");
    assert!(rendered > 0);
}
