//! Parsing request bodies into JSON, strictly.
//!
//! Differs from `serde_json::from_slice::<Value>` in one way: an object that names the same key
//! twice is rejected (400 `invalidSyntax`) instead of keeping the last value. A body with
//! duplicate keys has no single meaning: a proxy, a WAF or an audit log reading the first value
//! would see a different request than the one Roster applies, so the only safe answer is to refuse
//! it. Entra never sends duplicate keys. Keys that differ only in case (`userName`/`USERNAME`) are
//! different JSON keys and are left to the resource rules (RFC 7643 §2.1).
//!
//! Strings containing U+0000 are 400 `invalidValue`: Postgres cannot store them.
//!
//! Nesting is limited to a configurable depth (`ROSTER_MAX_JSON_DEPTH`, default [`MAX_DEPTH`], at
//! most [`MAX_JSON_DEPTH_LIMIT`]), checked on the bytes before any JSON is built (400
//! `invalidSyntax` naming the limit). serde_json's own limit of 128 protects the parser's stack, but
//! a body that uses all 128 levels no longer decodes once the ingress wraps it in an event envelope
//! (a PATCH body sits three levels down), so the projector could never apply it. SCIM resources and
//! PATCH messages nest six levels at most.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::ScimError;

/// The default deepest nesting of arrays and objects a request body may have; the root object is
/// level 1.
pub const MAX_DEPTH: usize = 32;

/// The largest nesting limit that may be configured: the event envelope adds a few levels, and
/// the projector's `serde_json` refuses more than 128.
pub const MAX_JSON_DEPTH_LIMIT: usize = 100;

/// How deeply `bytes` nests arrays and objects (`{}` is 1, `{"a":[1]}` is 2), counting only
/// brackets outside strings; stops counting once `max` is exceeded and returns `max + 1`.
pub fn nesting_depth(bytes: &[u8], max: usize) -> usize {
    let mut depth = 0usize;
    let mut deepest = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > deepest {
                    deepest = depth;
                    if deepest > max {
                        return max + 1;
                    }
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Parses a request body as one JSON value; invalid JSON (including invalid UTF-8, trailing data
/// and duplicate object keys) and nesting deeper than `max_depth` (clamped to
/// [`MAX_JSON_DEPTH_LIMIT`]) are 400 `invalidSyntax`; a NUL character is 400 `invalidValue`.
pub fn parse_json(bytes: &[u8], max_depth: usize) -> Result<Value, ScimError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ScimError::invalid_syntax("The request body is empty; a JSON object is required."));
    }
    let max_depth = max_depth.clamp(1, MAX_JSON_DEPTH_LIMIT);
    if nesting_depth(bytes, max_depth) > max_depth {
        return Err(ScimError::invalid_syntax(format!(
            "The request body nests JSON objects and arrays deeper than the limit of {max_depth} levels."
        )));
    }
    let v = serde_json::from_slice::<StrictValue>(bytes)
        .map(|v| v.0)
        .map_err(|e| ScimError::invalid_syntax(format!("The request body is not valid JSON: {e}")))?;
    check(&v)?;
    Ok(v)
}

/// Checks for NUL characters in keys and strings. Recursion is bounded by the nesting limit.
fn check(v: &Value) -> Result<(), ScimError> {
    match v {
        Value::String(s) => no_nul(s),
        Value::Array(a) => a.iter().try_for_each(check),
        Value::Object(m) => m.iter().try_for_each(|(k, e)| no_nul(k).and_then(|()| check(e))),
        _ => Ok(()),
    }
}

/// U+0000 is valid JSON but cannot be stored (Postgres text and jsonb refuse it): accepting it
/// would leave the projector an event it can never apply.
fn no_nul(s: &str) -> Result<(), ScimError> {
    if s.contains('\0') {
        return Err(ScimError::invalid_value(
            "The request body contains a NUL character (U+0000), which cannot be stored.",
        ));
    }
    Ok(())
}

/// A JSON value whose objects have unique keys.
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // JSON text cannot spell NaN or infinity; serde_json's own `Value` makes them null too.
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        StrictValue::deserialize(d).map(|v| v.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(StrictValue(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                let shown: String = key.chars().take(60).collect();
                return Err(de::Error::custom(format_args!("the key {shown:?} appears twice in one object")));
            }
            let StrictValue(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]

    use serde_json::json;

    use super::*;
    use crate::ScimType;

    fn syntax_error(bytes: &[u8]) -> ScimError {
        let e = parse_json(bytes, MAX_DEPTH).expect_err("the body must be rejected");
        assert_eq!((e.status, e.scim_type), (400, Some(ScimType::InvalidSyntax)), "{e:?}");
        e
    }

    #[test]
    fn parses_what_serde_json_parses() {
        let text = concat!(
            r#"{"schemas":["urn:x"],"userName":"a\u00e9\"b","n":-1,"u":18446744073709551615,"f":1.5e3,"#,
            r#""z":null,"t":true,"a":[[],{}],"o":{"k":{"k":1}}}"#
        );
        assert_eq!(
            parse_json(text.as_bytes(), MAX_DEPTH).expect("valid"),
            serde_json::from_str::<Value>(text).expect("valid")
        );
    }

    #[test]
    fn duplicate_top_level_key_is_invalid_syntax() {
        let e = syntax_error(br#"{"userName":"alice","userName":"mallory"}"#);
        assert!(e.detail.contains("\"userName\" appears twice"), "{}", e.detail);
    }

    #[test]
    fn duplicate_nested_key_is_invalid_syntax() {
        syntax_error(br#"{"userName":"a","name":{"givenName":"x","givenName":"y"}}"#);
        syntax_error(br#"{"Operations":[{"op":"add","op":"remove","path":"members"}]}"#);
    }

    #[test]
    fn keys_differing_in_case_are_not_duplicates() {
        let v = parse_json(br#"{"userName":"a","USERNAME":"b"}"#, MAX_DEPTH).expect("distinct keys");
        assert_eq!(v, json!({"userName": "a", "USERNAME": "b"}));
    }

    #[test]
    fn same_key_in_sibling_objects_is_fine() {
        parse_json(br#"{"emails":[{"value":"a"},{"value":"b"}]}"#, MAX_DEPTH).expect("siblings may share keys");
    }

    #[test]
    fn empty_and_blank_bodies_are_invalid_syntax() {
        for b in [&b""[..], b"   \r\n\t"] {
            assert!(syntax_error(b).detail.contains("empty"));
        }
    }

    #[test]
    fn invalid_utf8_trailing_data_and_truncation_are_invalid_syntax() {
        syntax_error(b"{\"userName\":\"\xff\xfe\"}");
        syntax_error(br#"{"userName":"a"} {"#);
        syntax_error(br#"{"userName":"a""#);
        syntax_error(b"\xef\xbb\xbf{}");
        syntax_error(br#"{'userName':'a'}"#);
        syntax_error(br#"{"userName":"a",}"#);
        syntax_error(br#"{"n":NaN}"#);
    }

    #[test]
    fn nesting_beyond_128_levels_is_invalid_syntax_not_a_stack_overflow() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        syntax_error(deep.as_bytes());
        let objects = format!("{}1{}", r#"{"a":"#.repeat(200), "}".repeat(200));
        syntax_error(objects.as_bytes());
    }

    #[test]
    fn nul_characters_in_values_and_keys_are_invalid_value() {
        for body in
            [&br#"{"displayName":"a\u0000b"}"#[..], br#"{"a\u0000":1}"#, br#"{"Operations":[{"value":["\u0000"]}]}"#]
        {
            let e = parse_json(body, MAX_DEPTH).expect_err("NUL must be rejected");
            assert_eq!((e.status, e.scim_type), (400, Some(ScimType::InvalidValue)), "{e:?}");
            assert!(e.detail.contains("U+0000"), "{}", e.detail);
        }
        parse_json(br#"{"displayName":"a\u0001b"}"#, MAX_DEPTH).expect("other control characters are stored fine");
    }

    #[test]
    fn nesting_is_limited_to_max_depth() {
        let at_limit = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        parse_json(at_limit.as_bytes(), MAX_DEPTH).expect("MAX_DEPTH levels are accepted");
        let beyond = format!(r#"{{"userName":"a","x":{}{}}}"#, "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(syntax_error(beyond.as_bytes()).detail.contains("limit of 32 levels"));
    }

    #[test]
    fn deepest_accepted_patch_body_still_decodes_inside_an_event_envelope() {
        // The envelope puts a PATCH body at `payload.patch`: two more levels, plus serde_json's
        // 128-level limit on the whole record. Simulate the record around the deepest body.
        let body = format!(
            r#"{{"schemas":["x"],"Operations":[{{"op":"add","path":"p","value":{}1{}}}]}}"#,
            "[".repeat(MAX_DEPTH - 3),
            "]".repeat(MAX_DEPTH - 3)
        );
        let parsed = parse_json(body.as_bytes(), MAX_DEPTH).expect("within MAX_DEPTH");
        let record = json!({"v": 1, "type": "user.patched", "payload": {"patch": parsed}}).to_string();
        serde_json::from_str::<Value>(&record).expect("the event record decodes");
    }

    fn nested(levels: usize) -> String {
        format!("{}{}", "[".repeat(levels), "]".repeat(levels))
    }

    #[test]
    fn depth_counts_objects_and_arrays() {
        assert_eq!(nesting_depth(b"1", 10), 0);
        assert_eq!(nesting_depth(b"{}", 10), 1);
        assert_eq!(nesting_depth(br#"{"a":[1,{"b":2}],"c":{}}"#, 10), 3);
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        assert_eq!(nesting_depth(br#"{"a":"[[[{{{"}"#, 10), 1);
        assert_eq!(nesting_depth(br#"{"a":"\"[[[", "b":[]}"#, 10), 2);
        assert_eq!(nesting_depth(br#"{"a":"\\", "b":[[]]}"#, 10), 3);
    }

    #[test]
    fn counting_stops_just_past_the_limit() {
        assert_eq!(nesting_depth(nested(100_000).as_bytes(), 5), 6);
    }

    #[test]
    fn a_body_at_the_limit_parses() {
        assert!(parse_json(nested(5).as_bytes(), 5).is_ok());
    }

    #[test]
    fn a_body_past_the_limit_is_invalid_syntax_naming_the_limit() {
        let err = parse_json(nested(6).as_bytes(), 5).err();
        assert_eq!(err.as_ref().and_then(|e| e.scim_type), Some(ScimType::InvalidSyntax));
        assert!(err.is_some_and(|e| e.status == 400 && e.detail.contains("limit of 5 levels")));
    }

    #[test]
    fn a_deep_body_never_reaches_serde_jsons_recursion_limit() {
        let err = parse_json(nested(10_000).as_bytes(), 1000).err();
        assert!(err.is_some_and(|e| e.detail.contains(&format!("limit of {MAX_JSON_DEPTH_LIMIT} levels"))));
    }

    #[test]
    fn an_empty_or_blank_body_is_invalid_syntax() {
        for body in ["", "  \n"] {
            let err = parse_json(body.as_bytes(), 10).err();
            assert!(err.is_some_and(|e| e.scim_type == Some(ScimType::InvalidSyntax) && e.detail.contains("empty")));
        }
    }

    #[test]
    fn malformed_json_is_invalid_syntax() {
        let err = parse_json(b"{\"a\":", 10).err();
        assert!(
            err.is_some_and(|e| e.scim_type == Some(ScimType::InvalidSyntax) && e.detail.contains("not valid JSON"))
        );
    }
}
