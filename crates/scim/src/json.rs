//! Small helpers over `serde_json` values shared by filters, PATCH and normalization.

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
