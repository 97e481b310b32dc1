//! Every string exists in both languages: the two locale files must have the same keys, and no
//! value may be left empty.

use std::collections::BTreeSet;

fn keys(file: &str) -> BTreeSet<String> {
    let path = format!("{}/../locales/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {path}: {e}"));
    let mut keys = BTreeSet::new();
    collect("", &json, &mut keys, &path);
    keys
}

fn collect(prefix: &str, value: &serde_json::Value, keys: &mut BTreeSet<String>, path: &str) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                let full = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                collect(&full, value, keys, path);
            }
        }
        serde_json::Value::String(s) => {
            assert!(!s.trim().is_empty(), "{path}: `{prefix}` is empty");
            keys.insert(prefix.to_owned());
        }
        other => {
            keys.insert(prefix.to_owned());
            assert!(!other.is_null(), "{path}: `{prefix}` is null");
        }
    }
}

#[test]
fn english_and_arabic_have_the_same_keys() {
    let en = keys("en.json");
    let ar = keys("ar.json");
    let only_en: Vec<_> = en.difference(&ar).collect();
    let only_ar: Vec<_> = ar.difference(&en).collect();
    assert!(
        only_en.is_empty() && only_ar.is_empty(),
        "missing in ar.json: {only_en:?}; missing in en.json: {only_ar:?}"
    );
    assert!(!en.is_empty());
}
