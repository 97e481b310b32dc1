//! `/api/v1/audit/export` (CSV, JSON, NDJSON downloads, filtered like the list) and
//! `/api/v1/audit/stream` (server-sent events that deliver new entries and resume from
//! `Last-Event-ID`).

mod support;

use std::time::Duration;

use futures::StreamExt as _;
use reqwest::Method;
use serde_json::Value;
use support::{Backend, TestApp};

async fn download(app: &TestApp, token: &str, query: &str) -> (u16, String, String, String) {
    let response = app
        .client
        .get(app.url(&format!("/api/v1/audit/export{query}")))
        .bearer_auth(token)
        .send()
        .await
        .expect("export");
    let header = |name: &str| {
        response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
    };
    let (content_type, disposition) = (header("content-type"), header("content-disposition"));
    (response.status().as_u16(), content_type, disposition, response.text().await.unwrap())
}

async fn exports_in_three_formats_with_the_lists_filters(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.bootstrap_admin().await;
    app.create_key(&admin, "Export, \"quoted\"").await;
    // One failure among the successes.
    let (status, _) = app
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(serde_json::json!({ "email": "admin@example.com", "password": "wrong password here" })),
        )
        .await;
    assert_eq!(status, 401);
    let (_, all) = app.call(Method::GET, "/api/v1/audit/logs?limit=500", Some(&admin), None).await;
    let total = all["total"].as_u64().unwrap() as usize;
    assert!(total >= 4, "{all}");

    let (status, content_type, disposition, ndjson) = download(&app, &admin, "").await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "application/x-ndjson");
    assert!(
        disposition.starts_with("attachment; filename=\"keyguard-audit-")
            && disposition.ends_with(".ndjson\"")
    );
    let lines: Vec<Value> = ndjson.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(lines.len(), total);
    let positions: Vec<i64> = lines.iter().map(|l| l["position"].as_i64().unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "oldest first: {positions:?}");

    let (_, content_type, _, json) = download(&app, &admin, "?format=json").await;
    assert_eq!(content_type, "application/json");
    let array: Vec<Value> = serde_json::from_str(&json).expect("one JSON array");
    assert_eq!(array, lines);

    let (_, content_type, _, csv) = download(&app, &admin, "?format=csv").await;
    assert_eq!(content_type, "text/csv; charset=utf-8");
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let headers = reader.headers().unwrap().clone();
    assert_eq!(&headers[0], "position");
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), total);
    let created = rows.iter().find(|r| &r[2] == "ApiKeyCreated").expect("the key's creation");
    assert!(created[4].contains("Export, \"quoted\""), "commas and quotes survive: {:?}", created);

    let (_, _, _, failures) = download(&app, &admin, "?format=ndjson&outcome=failure").await;
    let failures: Vec<Value> = failures.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(!failures.is_empty() && failures.iter().all(|f| f["outcome"] == "failure"), "{failures:?}");

    // An empty result is still a well-formed file.
    let (_, _, _, none) = download(&app, &admin, "?format=json&eventType=NoSuchEvent").await;
    assert_eq!(serde_json::from_str::<Vec<Value>>(&none).unwrap(), Vec::<Value>::new());

    for (query, field) in [("?format=xml", "format"), ("?limit=5", "limit"), ("?outcome=ok", "outcome")] {
        let (status, _, _, body) = download(&app, &admin, query).await;
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!((status, body["fields"].get(field).is_some()), (400, true), "{query}: {body}");
    }
    let operator = app.user_with_role(&admin, "operator").await;
    let auditor = app.user_with_role(&admin, "auditor").await;
    assert_eq!(download(&app, &auditor, "").await.0, 200);
    let operator_status = download(&app, &operator, "").await.0;
    let (_, list) = app.call(Method::GET, "/api/v1/audit/logs", Some(&operator), None).await;
    assert_eq!(
        operator_status == 200,
        list.get("items").is_some(),
        "the export follows the list's permission"
    );
}

/// Reads server-sent events until one of type `audit` arrives; returns its id and data.
async fn next_audit_event(
    stream: &mut (impl futures::Stream<Item = reqwest::Result<axum::body::Bytes>> + Unpin),
    buffer: &mut String,
) -> (i64, Value) {
    let read = async {
        loop {
            if let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let field = |name: &str| {
                    block
                        .lines()
                        .find_map(|l| l.strip_prefix(&format!("{name}:")))
                        .map(|v| v.trim().to_owned())
                };
                if field("event").as_deref() == Some("audit") {
                    let id = field("id").unwrap().parse().unwrap();
                    return (id, serde_json::from_str(&field("data").unwrap()).unwrap());
                }
                continue;
            }
            let chunk = stream.next().await.expect("the stream stays open").expect("a chunk");
            buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read).await.expect("an audit event within 10 s")
}

async fn the_stream_delivers_new_entries_and_resumes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = app.bootstrap_admin().await;
    let open = |query: &'static str, last: Option<i64>| {
        let mut request =
            app.client.get(app.url(&format!("/api/v1/audit/stream{query}"))).bearer_auth(&admin);
        if let Some(last) = last {
            request = request.header("last-event-id", last.to_string());
        }
        request.send()
    };
    let response = open("?eventType=ApiKeyCreated", None).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();

    // Only entries made after connecting, and only those the filter names.
    app.create_key(&admin, "first").await;
    let (first_id, first) = next_audit_event(&mut stream, &mut buffer).await;
    assert_eq!(
        (first["eventType"].as_str(), first["summary"].as_str().map(|s| s.contains("first"))),
        (Some("ApiKeyCreated"), Some(true))
    );
    app.create_key(&admin, "second").await;
    let (second_id, second) = next_audit_event(&mut stream, &mut buffer).await;
    assert!(second_id > first_id);
    assert!(second["summary"].as_str().unwrap().contains("second"));
    drop(stream);

    // A client that reconnects with the last id it saw gets what it missed, then new ones.
    app.create_key(&admin, "missed").await;
    let response = open("?eventType=ApiKeyCreated", Some(second_id)).await.unwrap();
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let (_, missed) = next_audit_event(&mut stream, &mut buffer).await;
    assert!(missed["summary"].as_str().unwrap().contains("missed"), "{missed}");

    let (status, _) = app.call(Method::GET, "/api/v1/audit/stream?after=-3", Some(&admin), None).await;
    assert_eq!(status, 400);
    let (status, _) = app.call(Method::GET, "/api/v1/audit/stream", None, None).await;
    assert_eq!(status, 401);
}

on_both_backends!(
    exports_in_three_formats_with_the_lists_filters,
    the_stream_delivers_new_entries_and_resumes
);
