//! Token counts read from a provider's answer while it streams to the client: the JSON body's
//! usage object, or the usage carried by the last server-sent events. The tap keeps a bounded
//! window of the body, never the whole of a large one.

use domain::provider::Provider;
use serde_json::Value;

/// A JSON body up to this size is parsed whole; a larger one only by its tail.
const WHOLE_JSON_LIMIT: usize = 256 * 1024;
/// How much of the end of a large JSON body is kept to find its usage object.
const JSON_TAIL: usize = 64 * 1024;
/// An SSE line or event longer than this is skipped (usage events are a few hundred bytes).
const SSE_EVENT_LIMIT: usize = 256 * 1024;

/// Tokens a request consumed, as the provider reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenCounts {
    pub input: Option<u64>,
    pub output: Option<u64>,
}

impl TokenCounts {
    /// Input and output together. The numbers come from the upstream, so sums saturate rather
    /// than overflow.
    pub fn total(&self) -> u64 {
        self.input.unwrap_or(0).saturating_add(self.output.unwrap_or(0))
    }
}

enum Body {
    Json {
        buf: Vec<u8>,
        whole: bool,
    },
    Sse(Sse),
    /// Neither JSON nor SSE: nothing to count.
    Opaque,
}

#[derive(Default)]
struct Sse {
    line: Vec<u8>,
    skipping_line: bool,
    data: Vec<u8>,
    skipping_event: bool,
}

/// Watches a response body go by and keeps the token counts it reports.
pub struct TokenTap {
    provider: Provider,
    body: Body,
    counts: TokenCounts,
}

impl TokenTap {
    /// `content_type` is the response's `Content-Type`.
    pub fn new(provider: Provider, content_type: Option<&str>) -> Self {
        let mime = content_type
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let body = if mime == "text/event-stream" {
            Body::Sse(Sse::default())
        } else if mime == "application/json" || mime.ends_with("+json") {
            Body::Json { buf: Vec::new(), whole: true }
        } else {
            Body::Opaque
        };
        Self { provider, body, counts: TokenCounts::default() }
    }

    pub fn is_event_stream(&self) -> bool {
        matches!(self.body, Body::Sse(_))
    }

    /// Takes in the next piece of the body.
    pub fn feed(&mut self, chunk: &[u8]) {
        let provider = self.provider;
        match &mut self.body {
            Body::Opaque => {}
            Body::Json { buf, whole } => {
                buf.extend_from_slice(chunk);
                if *whole && buf.len() > WHOLE_JSON_LIMIT {
                    *whole = false;
                }
                if !*whole && buf.len() > 2 * JSON_TAIL {
                    buf.drain(..buf.len() - JSON_TAIL);
                }
            }
            Body::Sse(sse) => {
                let mut rest = chunk;
                while let Some(newline) = rest.iter().position(|&b| b == b'\n') {
                    sse.push_line_bytes(&rest[..newline]);
                    let mut line = std::mem::take(&mut sse.line);
                    if !std::mem::take(&mut sse.skipping_line) {
                        if line.last() == Some(&b'\r') {
                            line.pop();
                        }
                        if let Some(event) = sse.take_line(&line) {
                            apply_event(provider, &event, &mut self.counts);
                        }
                    }
                    line.clear();
                    sse.line = line;
                    rest = &rest[newline + 1..];
                }
                sse.push_line_bytes(rest);
            }
        }
    }

    /// The counts found once the body has ended (or was cut off).
    pub fn finish(&mut self) -> TokenCounts {
        let provider = self.provider;
        match &mut self.body {
            Body::Opaque => {}
            Body::Json { buf, whole } => {
                let parsed = if *whole { serde_json::from_slice::<Value>(buf).ok() } else { None };
                match parsed {
                    Some(value) => apply_event(provider, &value, &mut self.counts),
                    None => apply_tail(provider, buf, &mut self.counts),
                }
                buf.clear();
            }
            Body::Sse(sse) => {
                let line = std::mem::take(&mut sse.line);
                if !sse.skipping_line
                    && let Some(event) = sse.take_line(&line)
                {
                    apply_event(provider, &event, &mut self.counts);
                }
                if let Some(event) = sse.take_line(b"") {
                    apply_event(provider, &event, &mut self.counts);
                }
            }
        }
        self.counts
    }
}

impl Sse {
    fn push_line_bytes(&mut self, bytes: &[u8]) {
        if self.skipping_line {
            return;
        }
        if self.line.len() + bytes.len() > SSE_EVENT_LIMIT {
            self.line.clear();
            self.skipping_line = true;
        } else {
            self.line.extend_from_slice(bytes);
        }
    }

    /// Handles one complete line; returns the event's JSON when a blank line ends an event that
    /// may carry usage.
    fn take_line(&mut self, line: &[u8]) -> Option<Value> {
        if line.is_empty() {
            let data = std::mem::take(&mut self.data);
            let skipped = std::mem::take(&mut self.skipping_event);
            if skipped || data.is_empty() || !contains(&data, b"sage") {
                return None;
            }
            return serde_json::from_slice(&data).ok();
        }
        if let Some(value) = line.strip_prefix(b"data:") {
            let value = value.strip_prefix(b" ").unwrap_or(value);
            if self.skipping_event || self.data.len() + value.len() + 1 > SSE_EVENT_LIMIT {
                self.data.clear();
                self.skipping_event = true;
            } else {
                if !self.data.is_empty() {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
            }
        }
        None
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Reads the usage a provider reports in one JSON document (a whole body or one event).
fn apply_event(provider: Provider, value: &Value, counts: &mut TokenCounts) {
    if let Value::Array(items) = value {
        // Gemini's `streamGenerateContent` without `alt=sse` answers a JSON array of chunks.
        for item in items {
            apply_event(provider, item, counts);
        }
        return;
    }
    match provider {
        Provider::OpenAi | Provider::Azure => {
            // Chat completions (`usage`, also the last chunk with `stream_options.include_usage`)
            // and the Responses API (`usage`, or `response.usage` on `response.completed`).
            for usage in [&value["usage"], &value["response"]["usage"]] {
                apply_openai(usage, counts);
            }
        }
        Provider::Anthropic => {
            // `message_start` carries the input (and a first output count) under `message`;
            // `message_delta` the cumulative output; a plain JSON answer has `usage` on top.
            for usage in [&value["message"]["usage"], &value["usage"]] {
                apply_anthropic(usage, counts);
            }
        }
        Provider::Google => apply_gemini(&value["usageMetadata"], counts),
    }
}

fn number(value: &Value, names: &[&str]) -> Option<u64> {
    names.iter().find_map(|name| value.get(*name).and_then(Value::as_u64))
}

fn apply_openai(usage: &Value, counts: &mut TokenCounts) {
    if !usage.is_object() {
        return;
    }
    if let Some(n) = number(usage, &["prompt_tokens", "input_tokens"]) {
        counts.input = Some(n);
    }
    if let Some(n) = number(usage, &["completion_tokens", "output_tokens"]) {
        counts.output = Some(n);
    }
}

fn apply_anthropic(usage: &Value, counts: &mut TokenCounts) {
    if !usage.is_object() {
        return;
    }
    if let Some(n) = number(usage, &["input_tokens"]) {
        // Cached prompt tokens are billed input too.
        let cached = number(usage, &["cache_creation_input_tokens"])
            .unwrap_or(0)
            .saturating_add(number(usage, &["cache_read_input_tokens"]).unwrap_or(0));
        counts.input = Some(n.saturating_add(cached));
    }
    if let Some(n) = number(usage, &["output_tokens"]) {
        counts.output = Some(n);
    }
}

fn apply_gemini(usage: &Value, counts: &mut TokenCounts) {
    if !usage.is_object() {
        return;
    }
    if let Some(n) = number(usage, &["promptTokenCount"]) {
        counts.input = Some(n);
    }
    let candidates = number(usage, &["candidatesTokenCount"]);
    let thoughts = number(usage, &["thoughtsTokenCount"]);
    if candidates.is_some() || thoughts.is_some() {
        counts.output = Some(candidates.unwrap_or(0).saturating_add(thoughts.unwrap_or(0)));
    }
}

/// A body too large to parse whole: the last usage object in its tail. A key inside a JSON
/// string has escaped quotes (`\"usage\"`), so only a real key matches.
fn apply_tail(provider: Provider, tail: &[u8], counts: &mut TokenCounts) {
    let key: &[u8] = if provider == Provider::Google { b"\"usageMetadata\"" } else { b"\"usage\"" };
    let Some(start) = tail.windows(key.len()).rposition(|w| w == key) else {
        return;
    };
    let rest = &tail[start + key.len()..];
    let rest = rest.trim_ascii_start();
    let Some(rest) = rest.strip_prefix(b":") else {
        return;
    };
    let Some(Ok(usage)) = serde_json::Deserializer::from_slice(rest).into_iter::<Value>().next() else {
        return;
    };
    let field = if provider == Provider::Google { "usageMetadata" } else { "usage" };
    apply_event(provider, &serde_json::json!({ field: usage }), counts);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tap(provider: Provider, content_type: &str, body: &[u8], chunk: usize) -> TokenCounts {
        let mut tap = TokenTap::new(provider, Some(content_type));
        for piece in body.chunks(chunk) {
            tap.feed(piece);
        }
        tap.finish()
    }

    fn counts(input: u64, output: u64) -> TokenCounts {
        TokenCounts { input: Some(input), output: Some(output) }
    }

    #[test]
    fn openai_json_and_final_stream_chunk() {
        let json = br#"{"id":"c1","choices":[{"message":{"content":"\"usage\": 1"}}],"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19}}"#;
        for chunk in [1, 5, json.len()] {
            assert_eq!(tap(Provider::OpenAi, "application/json; charset=utf-8", json, chunk), counts(12, 7));
        }
        let sse = b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n\
                    data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\r\n\r\n\
                    data: [DONE]\n\n";
        for chunk in [1, 3, 17, sse.len()] {
            assert_eq!(tap(Provider::Azure, "text/event-stream", sse, chunk), counts(3, 2));
        }
    }

    #[test]
    fn anthropic_message_start_and_delta() {
        let sse = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n\
                    event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"Hello\"}}\n\n\
                    event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":15}}\n\n\
                    event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        for chunk in [1, 7, sse.len()] {
            assert_eq!(
                tap(Provider::Anthropic, "text/event-stream; charset=utf-8", sse, chunk),
                counts(25, 15)
            );
        }
        let json = br#"{"content":[{"text":"Hi"}],"usage":{"input_tokens":10,"cache_read_input_tokens":5,"output_tokens":4}}"#;
        assert_eq!(tap(Provider::Anthropic, "application/json", json, 4), counts(15, 4));
    }

    #[test]
    fn gemini_usage_metadata_in_json_arrays_and_sse() {
        let json = br#"{"candidates":[],"usageMetadata":{"promptTokenCount":8,"candidatesTokenCount":20,"thoughtsTokenCount":2}}"#;
        assert_eq!(tap(Provider::Google, "application/json", json, 9), counts(8, 22));
        let array = br#"[{"usageMetadata":{"promptTokenCount":8,"candidatesTokenCount":1}},{"usageMetadata":{"promptTokenCount":8,"candidatesTokenCount":9}}]"#;
        assert_eq!(tap(Provider::Google, "application/json", array, 9), counts(8, 9));
        let sse = b"data: {\"usageMetadata\":{\"promptTokenCount\":4,\"candidatesTokenCount\":1}}\r\n\r\n\
                    data: {\"usageMetadata\":{\"promptTokenCount\":4,\"candidatesTokenCount\":6}}";
        assert_eq!(tap(Provider::Google, "text/event-stream", sse, 5), counts(4, 6));
    }

    #[test]
    fn a_large_body_is_read_by_its_tail_only() {
        let filler = "x".repeat(3 * WHOLE_JSON_LIMIT);
        let json =
            format!(r#"{{"text":"{filler}","usage":{{"prompt_tokens":1000,"completion_tokens":900}}}}"#);
        let mut tap = TokenTap::new(Provider::OpenAi, Some("application/json"));
        for piece in json.as_bytes().chunks(4096) {
            tap.feed(piece);
            if let Body::Json { buf, .. } = &tap.body {
                assert!(buf.len() <= WHOLE_JSON_LIMIT + 4096, "kept {} bytes", buf.len());
            }
        }
        assert_eq!(tap.finish(), counts(1000, 900));
    }

    #[test]
    fn counts_near_the_top_of_u64_saturate_instead_of_overflowing() {
        let max = u64::MAX;
        let anthropic = format!(
            r#"{{"usage":{{"input_tokens":{max},"cache_creation_input_tokens":{max},"cache_read_input_tokens":1,"output_tokens":{max}}}}}"#
        );
        let counts = tap(Provider::Anthropic, "application/json", anthropic.as_bytes(), 7);
        assert_eq!(counts, TokenCounts { input: Some(max), output: Some(max) });
        assert_eq!(counts.total(), max);
        let gemini =
            format!(r#"{{"usageMetadata":{{"candidatesTokenCount":{max},"thoughtsTokenCount":2}}}}"#);
        let counts = tap(Provider::Google, "application/json", gemini.as_bytes(), 7);
        assert_eq!(counts, TokenCounts { input: None, output: Some(max) });
    }

    #[test]
    fn other_bodies_count_nothing() {
        assert_eq!(tap(Provider::OpenAi, "text/plain", b"usage", 2), TokenCounts::default());
        assert_eq!(tap(Provider::OpenAi, "application/json", b"{not json", 2), TokenCounts::default());
        let long_line = format!(
            "data: {}\n\ndata: {{\"usage\":{{\"prompt_tokens\":1,\"completion_tokens\":2}}}}\n\n",
            "y".repeat(SSE_EVENT_LIMIT + 10)
        );
        assert_eq!(tap(Provider::OpenAi, "text/event-stream", long_line.as_bytes(), 1000), counts(1, 2));
    }
}
