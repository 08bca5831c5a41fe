//! Request-body parsing with a nesting limit checked before any JSON is built.
//!
//! `serde_json` stops at 128 levels with a terse "recursion limit exceeded"; Roster wants a
//! smaller, configurable limit with a clear SCIM error, and headroom below serde_json's limit for
//! the envelope an accepted body is wrapped in on the event log (a body the ingress accepts must
//! always deserialize again in the projector).

use serde_json::Value;

use crate::ScimError;

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

/// Parses a request body: 400 `invalidSyntax` when it is empty, nested deeper than `max_depth`
/// or not JSON, with a message a person reading Entra's provisioning log can act on.
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
    serde_json::from_slice(bytes)
        .map_err(|e| ScimError::invalid_syntax(format!("The request body is not valid JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ScimType;

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
