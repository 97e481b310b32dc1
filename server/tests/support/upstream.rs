//! Fake LLM providers: real HTTP servers on loopback that record every request they receive and
//! answer with a fixed JSON body, a server-sent event stream (optionally paused after its first
//! event until the test releases it), or never; and that tell when a caller gave up on an answer
//! (its connection closed, so the answer was dropped before it was complete).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use tokio::sync::Notify;

/// What the fake answers every request with.
#[derive(Clone)]
pub enum Reply {
    Json {
        status: u16,
        body: String,
    },
    /// `first` is sent at once; `rest` only after [`FakeUpstream::release`] when `paused`.
    Sse {
        first: String,
        rest: String,
        paused: bool,
    },
    /// Accepts the request and never answers.
    Hang,
}

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    /// Path and query exactly as received.
    pub target: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

#[derive(Clone)]
struct Shared {
    reply: Reply,
    received: Arc<Mutex<Vec<Received>>>,
    release: Arc<Notify>,
    abandoned: Arc<Notify>,
}

/// Fires `abandoned` when dropped before [`Unfinished::finished`]: the server drops a handler or
/// a response body when the caller's connection closes.
struct Unfinished(Option<Arc<Notify>>);

impl Unfinished {
    fn finished(&mut self) {
        self.0 = None;
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if let Some(abandoned) = self.0.take() {
            abandoned.notify_one();
        }
    }
}

pub struct FakeUpstream {
    pub addr: SocketAddr,
    shared: Shared,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl FakeUpstream {
    pub async fn spawn(reply: Reply) -> Self {
        let shared = Shared {
            reply,
            received: Arc::default(),
            release: Arc::new(Notify::new()),
            abandoned: Arc::new(Notify::new()),
        };
        let router = Router::new().fallback(answer).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a fake upstream");
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        Self { addr, shared, shutdown: Some(tx) }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Lets a paused stream send the rest of its events.
    pub fn release(&self) {
        self.shared.release.notify_one();
    }

    /// Resolves once an answer was given up by its caller: a `Hang` request's connection closed,
    /// or a stream's body was dropped before its end (also if that happened before the call).
    pub async fn abandoned(&self) {
        self.shared.abandoned.notified().await;
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// The only request received (panics on none or several).
    pub fn single(&self) -> Received {
        let received = self.received();
        assert_eq!(received.len(), 1, "expected one upstream request, got {received:?}");
        received.into_iter().next().unwrap()
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A loopback address where nothing listens.
pub async fn closed_port_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

async fn answer(State(shared): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 16 * 1024 * 1024).await.expect("read the request body");
    shared.received.lock().unwrap().push(Received {
        method: parts.method,
        target: parts.uri.path_and_query().map(|pq| pq.as_str().to_owned()).unwrap_or_default(),
        headers: parts.headers,
        body,
    });
    match shared.reply {
        Reply::Json { status, body } => Response::builder()
            .status(StatusCode::from_u16(status).unwrap())
            .header("content-type", "application/json")
            .header("x-request-id", "upstream-req-1")
            .body(Body::from(body))
            .unwrap(),
        Reply::Sse { first, rest, paused } => {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
            let release = shared.release.clone();
            tokio::spawn(async move {
                let _ = tx.send(Ok(Bytes::from(first))).await;
                if paused {
                    release.notified().await;
                }
                let _ = tx.send(Ok(Bytes::from(rest))).await;
            });
            let unfinished = Unfinished(Some(shared.abandoned.clone()));
            let stream = futures::stream::unfold((rx, unfinished), |(mut rx, mut unfinished)| async move {
                let item = rx.recv().await;
                if item.is_none() {
                    unfinished.finished();
                }
                item.map(|item| (item, (rx, unfinished)))
            });
            Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "text/event-stream")
                .header("cache-control", "no-cache")
                .body(Body::from_stream(stream))
                .unwrap()
        }
        Reply::Hang => {
            let _unfinished = Unfinished(Some(shared.abandoned.clone()));
            std::future::pending().await
        }
    }
}
