//! A running node's events leave through the outbox: an admin action over HTTP reaches NATS
//! JetStream (when configured) under its aggregate's subject, with its event id as `Nats-Msg-Id`.

mod support;

use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt as _;
use reqwest::Method;
use services::events::StoredEvent;
use support::{Backend, TestApp};

async fn an_admin_action_reaches_jetstream(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.nats_url = Some(support::nats_url())).await;
    let token = app.bootstrap_admin().await;
    let (_, me) = app.call(Method::GET, "/api/v1/auth/me", Some(&token), None).await;
    let user_id = me["id"].as_str().unwrap().to_owned();

    // Several test databases share this NATS server and stream; the subject is unique to us.
    let client = async_nats::connect(support::nats_url()).await.expect("NATS must be running for this test");
    let js = jetstream::new(client);
    let subject = format!("keyguard.events.user.{user_id}");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let stream = loop {
        match js.get_stream("KEYGUARD_EVENTS").await {
            Ok(stream) => break stream,
            Err(err) => {
                assert!(std::time::Instant::now() < deadline, "the relay never created the stream: {err}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let consumer: consumer::PullConsumer = stream
        .create_consumer(consumer::pull::Config {
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::None,
            filter_subject: subject.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let message = tokio::time::timeout(Duration::from_secs(15), messages.next())
        .await
        .expect("the UserCreated event reaches JetStream")
        .unwrap()
        .unwrap();
    assert_eq!(message.subject.as_str(), subject);
    let event: StoredEvent = serde_json::from_slice(&message.payload).unwrap();
    assert_eq!(event.event_type, "UserCreated");
    assert_eq!(event.aggregate_id, user_id);
    let msg_id = message.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")).map(|v| v.to_string());
    assert_eq!(msg_id, Some(event.event_id.to_string()));
    // The password's hash stays in the store; what leaves it says only that there is one.
    assert_eq!(event.payload["password_hash"], "<redacted>", "{}", event.payload);
    assert!(!String::from_utf8_lossy(&message.payload).contains("$argon2id$"));
}

on_both_backends!(an_admin_action_reaches_jetstream);
