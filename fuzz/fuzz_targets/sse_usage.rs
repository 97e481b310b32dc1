//! The usage tap that reads token counts from a provider's answer as it streams past: server-sent
//! events or JSON, as the upstream (an untrusted peer) sends them.
//!
//! Input: byte 0 picks the provider and the content type, byte 1 the chunk size; the rest is the
//! body. Checked beyond "no panic": the counts do not depend on how the body is cut into chunks,
//! and only a JSON or event-stream body is read.

#![no_main]

use domain::provider::Provider;
use libfuzzer_sys::fuzz_target;
use services::usage::{TokenCounts, TokenTap};

const CONTENT_TYPES: [Option<&str>; 6] = [
    Some("text/event-stream"),
    Some("application/json"),
    Some("text/event-stream; charset=utf-8"),
    Some("application/problem+json"),
    Some("text/plain"),
    None,
];

fuzz_target!(|data: &[u8]| {
    let [selector, chunk, body @ ..] = data else { return };
    let provider = Provider::ALL[usize::from(selector & 0x03)];
    let content_type = CONTENT_TYPES[usize::from(selector >> 2) % CONTENT_TYPES.len()];
    let chunk = usize::from(*chunk).max(1);

    let whole = counts(provider, content_type, body, body.len().max(1));
    let chunked = counts(provider, content_type, body, chunk);
    assert_eq!(whole, chunked, "the counts depend on the chunking ({chunk}-byte chunks)");
    assert!(whole.total() >= whole.input.unwrap_or(0).max(whole.output.unwrap_or(0)));

    let readable = content_type.is_some_and(|t| t.contains("event-stream") || t.contains("json"));
    if !readable {
        assert_eq!(whole, TokenCounts::default(), "counted tokens in a body that is neither JSON nor SSE");
    }
});

fn counts(provider: Provider, content_type: Option<&str>, body: &[u8], chunk: usize) -> TokenCounts {
    let mut tap = TokenTap::new(provider, content_type);
    assert_eq!(tap.is_event_stream(), content_type.is_some_and(|t| t.starts_with("text/event-stream")));
    for piece in body.chunks(chunk) {
        tap.feed(piece);
    }
    tap.finish()
}
