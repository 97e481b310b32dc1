//! The bytes an event's hash is computed over, and the hash itself.
//!
//! The encoding must come out the same from an event about to be written and from the row read
//! back years later, whatever the database did to the JSON text in between: PostgreSQL's `jsonb`
//! reorders keys and drops whitespace, cqrs-es writes metadata from a `HashMap` in no particular
//! order, and a number may come back spelled differently (`1e20` as `100000000000000000000`). So
//! nothing here hashes stored text: JSON values are re-encoded canonically (object keys sorted by
//! their UTF-8 bytes, no whitespace, strings escaped as `serde_json` escapes them, numbers as
//! described at [`canonical_json`]), and the fields are joined with length prefixes so that no
//! two different events share an encoding.
//!
//! ```text
//! hash = SHA-256( "keyguard-event-chain-v1" || prev_hash (32 bytes)
//!                 || field(aggregate_type) || field(aggregate_id) || u64be(sequence)
//!                 || field(event_type) || field(event_version)
//!                 || field(canonical(payload)) || field(canonical(metadata without "hash")) )
//! field(x) = u64be(len(x)) || x
//! ```

use std::fmt;

use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// Separates this hash from every other SHA-256 KeyGuard computes.
const DOMAIN: &[u8] = b"keyguard-event-chain-v1";

/// A link of the chain: the SHA-256 of one event (or the genesis value before the first).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ChainHash(pub [u8; 32]);

impl ChainHash {
    /// What the first event of every aggregate points back to.
    pub const GENESIS: ChainHash = ChainHash([0; 32]);

    /// Parses the 64 lowercase or uppercase hex digits stored in the metadata.
    pub fn parse(hex_hash: &str) -> Option<Self> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_hash, &mut bytes).ok()?;
        Some(Self(bytes))
    }

    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainHash({self})")
    }
}

/// The parts of an event that its hash covers.
#[derive(Debug, Clone, Copy)]
pub struct EventContent<'a> {
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
    pub sequence: u64,
    pub event_type: &'a str,
    pub event_version: &'a str,
    pub payload: &'a Value,
    /// The metadata as stored; its `hash` entry, if any, is left out of the encoding.
    pub metadata: &'a Value,
}

/// The hash of `event` following `prev`.
pub fn event_hash(prev: ChainHash, event: &EventContent<'_>) -> ChainHash {
    let mut hasher = Sha256::new();
    hasher.update(DOMAIN);
    hasher.update(prev.0);
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    };
    field(event.aggregate_type.as_bytes());
    field(event.aggregate_id.as_bytes());
    field(&event.sequence.to_be_bytes());
    field(event.event_type.as_bytes());
    field(event.event_version.as_bytes());
    field(&canonical_json(event.payload));
    field(&canonical_metadata(event.metadata));
    ChainHash(hasher.finalize().into())
}

/// The metadata's canonical form without the `hash` entry (which cannot cover itself).
fn canonical_metadata(metadata: &Value) -> Vec<u8> {
    match metadata {
        Value::Object(map) if map.contains_key(domain::metadata::keys::HASH) => {
            let mut map = map.clone();
            map.remove(domain::metadata::keys::HASH);
            canonical_json(&Value::Object(map))
        }
        other => canonical_json(other),
    }
}

/// A JSON value as bytes that do not depend on how it was spelled: object keys sorted by their
/// UTF-8 bytes, no insignificant whitespace, strings escaped the way `serde_json` escapes them.
///
/// Numbers: integers as their decimal digits; a float with an integral value that an `i64` or
/// `u64` holds exactly as those digits too (a database may turn `1e19` into
/// `10000000000000000000`, which then reads back as an integer); any other float in `serde_json`'s
/// shortest round-trip form. So `100` and `100.0` encode alike, as they are the same JSON number.
pub fn canonical_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                write_canonical(item, out);
            }
            out.push(b'}');
        }
    }
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    // serde_json escapes deterministically: `"`, `\` and control characters only.
    let escaped = serde_json::to_string(s).expect("a string always serializes");
    out.extend_from_slice(escaped.as_bytes());
}

fn write_number(n: &serde_json::Number, out: &mut Vec<u8>) {
    if let Some(i) = n.as_i64() {
        out.extend_from_slice(i.to_string().as_bytes());
    } else if let Some(u) = n.as_u64() {
        out.extend_from_slice(u.to_string().as_bytes());
    } else if let Some(f) = n.as_f64() {
        // 2^63 and 2^64 are exact as f64; every integral f64 in [-2^63, 2^64) is an exact integer.
        const TWO_63: f64 = 9_223_372_036_854_775_808.0;
        const TWO_64: f64 = 18_446_744_073_709_551_616.0;
        if f.fract() == 0.0 && (-TWO_63..0.0).contains(&f) {
            out.extend_from_slice((f as i64).to_string().as_bytes());
        } else if f.fract() == 0.0 && (0.0..TWO_64).contains(&f) {
            out.extend_from_slice((f as u64).to_string().as_bytes());
        } else {
            out.extend_from_slice(n.to_string().as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(value: &Value) -> String {
        String::from_utf8(canonical_json(value)).unwrap()
    }

    #[test]
    fn keys_are_sorted_at_every_depth_and_whitespace_is_gone() {
        let a: Value =
            serde_json::from_str(r#"{ "b": 1, "a": { "z": [1, {"y": 2, "x": 3}], "m": null } }"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":{"m":null,"z":[1,{"x":3,"y":2}]},"b":1}"#).unwrap();
        assert_eq!(text(&a), r#"{"a":{"m":null,"z":[1,{"x":3,"y":2}]},"b":1}"#);
        assert_eq!(canonical_json(&a), canonical_json(&b));
    }

    #[test]
    fn array_order_and_values_still_matter() {
        assert_ne!(canonical_json(&json!([1, 2])), canonical_json(&json!([2, 1])));
        assert_ne!(canonical_json(&json!({"a": "1"})), canonical_json(&json!({"a": 1})));
        assert_ne!(canonical_json(&json!({"a": 1})), canonical_json(&json!({"b": 1})));
    }

    #[test]
    fn numbers_survive_a_database_respelling_them() {
        // What PostgreSQL's jsonb gives back for numbers serde_json wrote.
        for (written, respelled) in [
            ("1e19", "10000000000000000000"),
            ("1e20", "100000000000000000000"),
            ("1e-7", "0.0000001"),
            ("100.0", "100"),
            ("-2.5e3", "-2500.0"),
            ("0.1", "0.10"),
        ] {
            let a: Value = serde_json::from_str(written).unwrap();
            let b: Value = serde_json::from_str(respelled).unwrap();
            assert_eq!(text(&a), text(&b), "{written} vs {respelled}");
        }
        assert_eq!(text(&json!(u64::MAX)), "18446744073709551615");
        assert_eq!(text(&json!(-7)), "-7");
        assert_eq!(text(&json!(0.25)), "0.25");
    }

    #[test]
    fn strings_are_escaped_one_way() {
        let a: Value = serde_json::from_str(r#""caf\u00e9 \"q\" \/ \u0001""#).unwrap();
        let b = json!("café \"q\" / \u{1}");
        assert_eq!(text(&a), text(&b));
        assert_eq!(text(&b), "\"café \\\"q\\\" / \\u0001\"");
    }

    fn content<'a>(payload: &'a Value, metadata: &'a Value) -> EventContent<'a> {
        EventContent {
            aggregate_type: "device",
            aggregate_id: "d-1",
            sequence: 2,
            event_type: "DeviceApproved",
            event_version: "1.0",
            payload,
            metadata,
        }
    }

    #[test]
    fn the_hash_ignores_the_hash_entry_and_spelling_but_nothing_else() {
        let payload = json!({"type": "DeviceApproved", "by": {"type": "user", "id": "u"}});
        let metadata = json!({"actor_type": "user", "prev_hash": "00", "at": "2026-01-01T00:00:00Z"});
        let prev = ChainHash([7; 32]);
        let hash = event_hash(prev, &content(&payload, &metadata));

        let mut with_hash = metadata.clone();
        with_hash["hash"] = json!(hash.to_hex());
        assert_eq!(event_hash(prev, &content(&payload, &with_hash)), hash);

        let respelled: Value =
            serde_json::from_str(r#"{"by":{"id":"u","type":"user"},   "type":"DeviceApproved"}"#).unwrap();
        assert_eq!(event_hash(prev, &content(&respelled, &metadata)), hash);

        assert_ne!(event_hash(ChainHash::GENESIS, &content(&payload, &metadata)), hash);
        let mut other = content(&payload, &metadata);
        other.sequence = 3;
        assert_ne!(event_hash(prev, &other), hash);
        let mut other = content(&payload, &metadata);
        other.aggregate_id = "d-2";
        assert_ne!(event_hash(prev, &other), hash);
        let changed_meta = json!({"actor_type": "system", "prev_hash": "00", "at": "2026-01-01T00:00:00Z"});
        assert_ne!(event_hash(prev, &content(&payload, &changed_meta)), hash);
    }

    #[test]
    fn length_prefixes_keep_fields_apart() {
        let (payload, metadata) = (json!({}), json!({}));
        let mut a = content(&payload, &metadata);
        a.aggregate_type = "ab";
        a.aggregate_id = "c";
        let mut b = content(&payload, &metadata);
        b.aggregate_type = "a";
        b.aggregate_id = "bc";
        assert_ne!(event_hash(ChainHash::GENESIS, &a), event_hash(ChainHash::GENESIS, &b));
    }

    #[test]
    fn hashes_parse_from_their_hex() {
        let hash = ChainHash([0xab; 32]);
        assert_eq!(ChainHash::parse(&hash.to_hex()), Some(hash));
        assert_eq!(ChainHash::parse(&hash.to_hex().to_uppercase()), Some(hash));
        assert_eq!(ChainHash::parse("abc"), None);
    }
}
