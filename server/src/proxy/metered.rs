//! The answer's body on its way back: each chunk is handed on as soon as it arrives, and a tap
//! reads token counts and bytes as it passes. When the body ends the usage record is queued; when
//! the client goes away first, the stream is dropped, which cancels the upstream call, and a
//! partial record (`completed: false`, `client_disconnected`) is queued.
//!
//! Strict audit mode means the client never holds a complete answer whose record is not stored:
//! - a JSON (or any non-stream) answer is passed on one chunk behind, and its last chunk is sent
//!   only after the record is stored;
//! - an event stream's events are passed on as they arrive (holding them would defeat streaming),
//!   and the end of the stream (the last chunk when the length is known, otherwise the end of
//!   the chunked body) is sent only after the record is stored. A client has the complete
//!   stream only once it has seen that end, and by then the record is durable.
//!
//! If the record cannot be stored, the answer is cut off with an error instead of ending, so the
//! client sees a broken answer, never a complete one.

use std::pin::Pin;
use std::time::Instant;

use axum::body::Bytes;
use futures::{Stream, StreamExt as _};
use services::platform::Platform;
use services::usage::{AuditMode, TokenTap, UsageRecord};

/// What the stream needs to account for the answer.
pub struct Metered {
    pub tap: TokenTap,
    /// Filled in (tokens, bytes, latency) when the body ends.
    pub record: UsageRecord,
    /// Its usage writer stores the record; its gate counts the tokens against daily limits.
    pub platform: std::sync::Arc<Platform>,
    pub received_at: Instant,
    /// The upstream's `Content-Length`: the server stops reading the body once it has sent that
    /// many bytes, so reaching it is the end (no end-of-stream will be seen).
    pub content_length: Option<u64>,
}

type Upstream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

struct State {
    upstream: Upstream,
    metered: Metered,
    /// Strict mode, non-SSE: the latest chunk is held back so that the client cannot hold the
    /// complete answer before its record is stored. An event stream is not delayed this way: its
    /// end (not each event) waits for the record.
    hold_back: bool,
    held: Option<Bytes>,
    /// Set once the record is queued; the stream then only ends.
    done: bool,
}

impl State {
    fn finish(&mut self, completed: bool, error: Option<&str>) -> UsageRecord {
        self.done = true;
        let counts = self.metered.tap.finish();
        let record = &mut self.metered.record;
        record.completed = completed;
        record.error = error.map(str::to_owned);
        record.tokens_in = counts.input;
        record.tokens_out = counts.output;
        record.latency_ms = self.metered.received_at.elapsed().as_millis().try_into().unwrap_or(u64::MAX);
        let tokens = counts.total();
        if tokens > 0 {
            self.metered.platform.gate.record_tokens(record.api_key_id, record.device_id, tokens);
        }
        record.clone()
    }
}

impl State {
    /// The whole answer went by: queue its record (strict: store it) before the client gets
    /// the end of it.
    async fn complete(&mut self) -> Result<(), std::io::Error> {
        let record = self.finish(true, None);
        let usage = &self.metered.platform.usage;
        if usage.mode() == AuditMode::Strict {
            if !usage.record(record).await {
                // Not durable: the client must not receive a complete answer.
                self.held = None;
                return Err(std::io::Error::other("the usage record could not be stored"));
            }
        } else {
            usage.record_now(record);
        }
        Ok(())
    }
}

impl Drop for State {
    fn drop(&mut self) {
        if !self.done {
            // The client went away (or the server is stopping) before the body ended.
            let record = self.finish(false, Some("client_disconnected"));
            self.metered.platform.usage.record_now(record);
        }
    }
}

/// Wraps the upstream body; yields its chunks unchanged and in order.
pub fn metered_body(
    upstream: impl Stream<Item = reqwest::Result<Bytes>> + Send + 'static,
    metered: Metered,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let hold_back = metered.platform.usage.mode() == AuditMode::Strict && !metered.tap.is_event_stream();
    let state = State { upstream: Box::pin(upstream), metered, hold_back, held: None, done: false };
    futures::stream::unfold(state, |mut state| async move {
        loop {
            if state.done {
                return state.held.take().map(|last| (Ok(last), state));
            }
            match state.upstream.next().await {
                Some(Ok(chunk)) => {
                    state.metered.tap.feed(&chunk);
                    state.metered.record.bytes_out += chunk.len() as u64;
                    let complete =
                        state.metered.content_length.is_some_and(|len| state.metered.record.bytes_out >= len);
                    if !state.hold_back {
                        if complete && let Err(err) = state.complete().await {
                            return Some((Err(err), state));
                        }
                        return Some((Ok(chunk), state));
                    }
                    if let Some(previous) = state.held.replace(chunk) {
                        return Some((Ok(previous), state));
                    }
                }
                Some(Err(err)) => {
                    tracing::warn!(error = %err, "the upstream answer broke off");
                    let record = state.finish(
                        false,
                        Some(if err.is_timeout() { "upstream_timeout" } else { "upstream_broken" }),
                    );
                    state.metered.platform.usage.record_now(record);
                    state.held = None;
                    return Some((Err(std::io::Error::other("the upstream answer broke off")), state));
                }
                None => {
                    if let Err(err) = state.complete().await {
                        return Some((Err(err), state));
                    }
                }
            }
        }
    })
}
