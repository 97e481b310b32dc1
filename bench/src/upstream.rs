//! A fake OpenAI-compatible provider, cheap enough never to be what is measured: plain hyper on
//! its own runtime thread, no routing, no logging.
//!
//! Every POST is a chat completion. The body's `model` chooses the delay before the answer
//! (`fake-20ms` waits 20 ms, see [`model_for`]), so one upstream serves every scenario and every
//! proxy in front of it forwards the choice untouched. `"stream": true` gets a server-sent event
//! stream of [`SseShape::chunks`] events, the first after the delay and the others
//! [`SseShape::interval`] apart, then `data: [DONE]`; anything else gets one JSON completion.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use http_body_util::{BodyExt as _, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::Deserialize;

/// How the fake streams.
#[derive(Debug, Clone, Copy)]
pub struct SseShape {
    pub chunks: u32,
    pub interval: Duration,
}

/// The model name that asks the fake for a given delay before its answer.
pub fn model_for(latency: Duration) -> String {
    format!("fake-{}ms", latency.as_millis())
}

fn latency_of(model: &str) -> Duration {
    model
        .strip_prefix("fake-")
        .and_then(|rest| rest.strip_suffix("ms"))
        .and_then(|ms| ms.parse().ok())
        .map_or(Duration::ZERO, Duration::from_millis)
}

#[derive(Deserialize)]
struct Asked {
    #[serde(default)]
    model: String,
    #[serde(default)]
    stream: bool,
}

/// A running fake; stops with the process (its thread is detached).
pub struct FakeUpstream {
    pub addr: SocketAddr,
}

impl FakeUpstream {
    /// Binds a loopback port and serves on a dedicated single-threaded runtime.
    pub fn spawn(shape: SseShape) -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        std::thread::Builder::new().name("fake-upstream".into()).spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            match runtime {
                Ok(runtime) => runtime.block_on(serve(listener, shape)),
                Err(err) => eprintln!("fake upstream: no runtime: {err}"),
            }
        })?;
        Ok(Self { addr })
    }

    /// The OpenAI-style base URL (`…/v1`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }
}

async fn serve(listener: std::net::TcpListener, shape: SseShape) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(err) => return eprintln!("fake upstream: {err}"),
    };
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(move |request| answer(request, shape));
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

type Body = UnsyncBoxBody<Bytes, Infallible>;

async fn answer(request: Request<Incoming>, shape: SseShape) -> Result<Response<Body>, Infallible> {
    let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let asked: Asked = serde_json::from_slice(&body).unwrap_or(Asked { model: String::new(), stream: false });
    let latency = latency_of(&asked.model);
    if asked.stream {
        return Ok(stream(asked.model, latency, shape));
    }
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let json = serde_json::json!({
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1_733_668_200,
        "model": asked.model,
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": "Hello from the fake upstream." },
            "finish_reason": "stop"
        }],
        "usage": { "prompt_tokens": 9, "completion_tokens": 7, "total_tokens": 16 }
    });
    let mut response = Response::new(Full::new(Bytes::from(json.to_string())).boxed_unsync());
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

fn chunk(model: &str, content: Option<&str>, usage: bool) -> Bytes {
    let mut event = serde_json::json!({
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1_733_668_200,
        "model": model,
        "choices": [{
            "index": 0,
            "delta": content.map_or(serde_json::json!({}), |c| serde_json::json!({ "content": c })),
            "finish_reason": if content.is_some() { serde_json::Value::Null } else { "stop".into() }
        }]
    });
    if usage {
        event["usage"] =
            serde_json::json!({ "prompt_tokens": 9, "completion_tokens": 20, "total_tokens": 29 });
    }
    Bytes::from(format!("data: {event}\n\n"))
}

fn stream(model: String, latency: Duration, shape: SseShape) -> Response<Body> {
    let events = futures::stream::unfold(0u32, move |i| {
        let model = model.clone();
        async move {
            let wait = if i == 0 { latency } else { shape.interval };
            if i > shape.chunks + 1 {
                return None;
            }
            let bytes = if i < shape.chunks {
                if i == 0 {
                    sleep_precisely(wait).await;
                } else if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                chunk(&model, Some("tok "), false)
            } else if i == shape.chunks {
                chunk(&model, None, true)
            } else {
                Bytes::from_static(b"data: [DONE]\n\n")
            };
            Some((Ok::<_, Infallible>(Frame::data(bytes)), i + 1))
        }
    });
    let mut response = Response::new(StreamBody::new(events.boxed()).boxed_unsync());
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    response
}

/// Sleeps for `duration` to within the kernel's timer slack (tens of microseconds). tokio's timer
/// rounds a deadline up to the next millisecond tick, so a proxy that delays the request by a
/// fraction of a millisecond would see the stream's first event a whole millisecond later than a
/// direct call, or no later at all, depending on where the tick fell. The time to the first token
/// is what the stream scenario measures, so its first event must not be quantised: the timer
/// wheel waits for all but the last two milliseconds, a blocking thread's `nanosleep` for those.
async fn sleep_precisely(duration: Duration) {
    const COARSE_SLACK: Duration = Duration::from_millis(2);
    let deadline = std::time::Instant::now() + duration;
    if let Some(coarse) = duration.checked_sub(COARSE_SLACK) {
        tokio::time::sleep(coarse).await;
    }
    let rest = deadline.saturating_duration_since(std::time::Instant::now());
    if !rest.is_zero() {
        let _ = tokio::task::spawn_blocking(move || std::thread::sleep(rest)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_names_the_delay() {
        assert_eq!(latency_of(&model_for(Duration::from_millis(20))), Duration::from_millis(20));
        assert_eq!(latency_of("gpt-4o-mini"), Duration::ZERO);
    }

    #[tokio::test]
    async fn a_precise_sleep_lasts_at_least_its_duration() {
        let started = std::time::Instant::now();
        sleep_precisely(Duration::from_micros(2_500)).await;
        assert!(started.elapsed() >= Duration::from_micros(2_500), "woke after {:?}", started.elapsed());
    }
}
