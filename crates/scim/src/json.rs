//! Small helpers over `serde_json` values shared by filters, PATCH and normalization.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use serde_json::{Map, Value};

/// Looks `name` up in an object, exactly first, then case-insensitively (RFC 7643 §2.1).
pub(crate) fn get_ci<'v>(v: &'v Value, name: &str) -> Option<&'v Value> {
    v.as_object().and_then(|m| map_get_ci(m, name))
}

/// [`get_ci`] on a map.
pub(crate) fn map_get_ci<'v>(m: &'v Map<String, Value>, name: &str) -> Option<&'v Value> {
    m.get(name).or_else(|| m.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
}

/// Removes every key equal to `name` case-insensitively and returns the last value removed.
pub(crate) fn take_ci(m: &mut Map<String, Value>, name: &str) -> Option<Value> {
    let keys: Vec<String> = m.keys().filter(|k| k.eq_ignore_ascii_case(name)).cloned().collect();
    keys.into_iter().fold(None, |acc, k| m.remove(&k).or(acc))
}

/// Whether a value counts as "present" for `pr` (not null, not "", not [] or {}).
pub(crate) fn is_present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => a.iter().any(is_present),
        Value::Object(o) => o.values().any(is_present),
        _ => true,
    }
}

/// A short rendering of a JSON value for error details (long values are cut).
pub(crate) fn brief(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        let cut: String = s.chars().take(57).collect();
        format!("{cut}...")
    } else {
        s
    }
}

/// Case-insensitive (Unicode) string equality.
pub(crate) fn eq_fold(a: &str, b: &str) -> bool {
    a == b || a.to_lowercase() == b.to_lowercase()
}

/// Removes repeated values (by `==`), keeping the first of each, in linear time: a 1 MiB body can
/// carry 70,000 elements in one multi-valued attribute, and a quadratic scan over them takes
/// minutes of CPU.
pub(crate) fn dedup(values: Vec<Value>) -> Vec<Value> {
    let mut seen: HashMap<u64, Vec<usize>> = HashMap::with_capacity(values.len());
    let mut out: Vec<Value> = Vec::with_capacity(values.len());
    for v in values {
        let mut h = DefaultHasher::new();
        hash_value(&v, &mut h);
        let bucket = seen.entry(h.finish()).or_default();
        if bucket.iter().any(|&i| out.get(i) == Some(&v)) {
            continue;
        }
        bucket.push(out.len());
        out.push(v);
    }
    out
}

/// A hash consistent with `Value`'s `==`: object keys are hashed in sorted order (equal maps may
/// iterate differently when serde_json keeps insertion order) and `0.0 == -0.0`.
fn hash_value(v: &Value, h: &mut impl Hasher) {
    match v {
        Value::Null => 0u8.hash(h),
        Value::Bool(b) => (1u8, b).hash(h),
        Value::Number(n) => {
            2u8.hash(h);
            match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) if !n.is_f64() => (0u8, u).hash(h),
                (_, Some(i), _) if !n.is_f64() => (1u8, i).hash(h),
                (_, _, Some(f)) => (2u8, if f == 0.0 { 0 } else { f.to_bits() }).hash(h),
                _ => 3u8.hash(h),
            }
        }
        Value::String(s) => (3u8, s).hash(h),
        Value::Array(a) => {
            (4u8, a.len()).hash(h);
            a.iter().for_each(|e| hash_value(e, h));
        }
        Value::Object(m) => {
            (5u8, m.len()).hash(h);
            let mut entries: Vec<(&String, &Value)> = m.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            for (k, e) in entries {
                k.hash(h);
                hash_value(e, h);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]

    use serde_json::json;

    use super::*;

    #[test]
    fn dedup_keeps_the_first_of_equal_values_in_order() {
        let got = dedup(vec![
            json!({"value": "a", "type": "work"}),
            json!("x"),
            json!({"type": "work", "value": "a"}),
            json!("x"),
            json!(1),
        ]);
        assert_eq!(got, vec![json!({"value": "a", "type": "work"}), json!("x"), json!(1)]);
    }

    #[test]
    fn dedup_tells_numbers_of_different_kinds_apart_like_eq_does() {
        let got = dedup(vec![json!(1), json!(1.0), json!(-1), json!(0.0), json!(-0.0), json!(1)]);
        assert_eq!(got, vec![json!(1), json!(1.0), json!(-1), json!(0.0)]);
    }

    #[test]
    fn dedup_of_seventy_thousand_distinct_values_is_fast() {
        let values: Vec<Value> = (0..70_000).map(|i| json!({"value": format!("u{i}@x.io")})).collect();
        let started = std::time::Instant::now();
        assert_eq!(dedup(values).len(), 70_000);
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "took {:?}", started.elapsed());
    }
}
