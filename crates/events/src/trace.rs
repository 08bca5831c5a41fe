//! Validation of W3C trace context (<https://www.w3.org/TR/trace-context/>) before it is stored.
//!
//! A `traceparent` comes from clients (the ingress) and from Kafka headers that anyone with
//! produce rights can write; it is copied into the log and into exported spans, so only values of
//! the documented shape are kept: anything else is dropped (a new trace starts), never rejected.

use crate::TraceContext;

/// Longest `tracestate` kept (the W3C limit is 512 characters).
pub const MAX_TRACESTATE_LEN: usize = 512;

/// The Kafka header / HTTP header names of the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";
/// See [`TRACEPARENT`].
pub const TRACESTATE: &str = "tracestate";

impl TraceContext {
    /// A trace context from header values, or `None` when `traceparent` is absent or malformed.
    /// A malformed or oversized `tracestate` is dropped on its own (the spec says so: the
    /// parent stays valid without it).
    pub fn parse(traceparent: Option<&str>, tracestate: Option<&str>) -> Option<TraceContext> {
        let traceparent = traceparent?.trim();
        if !valid_traceparent(traceparent) {
            return None;
        }
        let tracestate = tracestate.map(str::trim).filter(|s| valid_tracestate(s)).map(str::to_owned);
        Some(TraceContext { traceparent: traceparent.to_owned(), tracestate })
    }

    /// The 32-hex-digit trace id (valid contexts only; see [`TraceContext::parse`]).
    pub fn trace_id(&self) -> &str {
        self.traceparent.get(3..35).unwrap_or_default()
    }

    /// The 16-hex-digit id of the parent span.
    pub fn parent_span_id(&self) -> &str {
        self.traceparent.get(36..52).unwrap_or_default()
    }

    /// The (name, value) header pairs that carry this context: `traceparent`, then `tracestate`
    /// when present.
    pub fn header_pairs(&self) -> impl Iterator<Item = (&'static str, &str)> {
        std::iter::once((TRACEPARENT, self.traceparent.as_str()))
            .chain(self.tracestate.as_deref().map(|ts| (TRACESTATE, ts)))
    }
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn all_zero(s: &str) -> bool {
    s.bytes().all(|b| b == b'0')
}

/// `version-traceid-parentid-flags`, lower-case hex; version `ff` and all-zero ids are invalid;
/// version `00` has exactly four fields, later versions may append more after a `-`.
fn valid_traceparent(s: &str) -> bool {
    if s.len() < 55 || !s.is_ascii() {
        return false;
    }
    let (head, rest) = s.split_at(55);
    let mut parts = head.split('-');
    let (Some(version), Some(trace_id), Some(parent_id), Some(flags), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let shapes_ok = version.len() == 2
        && trace_id.len() == 32
        && parent_id.len() == 16
        && flags.len() == 2
        && [version, trace_id, parent_id, flags].iter().all(|p| is_lower_hex(p));
    if !shapes_ok || version == "ff" || all_zero(trace_id) || all_zero(parent_id) {
        return false;
    }
    match version {
        "00" => rest.is_empty(),
        _ => rest.is_empty() || rest.starts_with('-'),
    }
}

/// Printable ASCII, at most [`MAX_TRACESTATE_LEN`] characters, not empty.
fn valid_tracestate(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_TRACESTATE_LEN && s.bytes().all(|b| (0x20..0x7f).contains(&b))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]

    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_well_formed_traceparent_is_kept_with_its_tracestate() {
        let tc = TraceContext::parse(Some(TP), Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"));
        assert_eq!(
            tc,
            Some(TraceContext {
                traceparent: TP.into(),
                tracestate: Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE".into())
            })
        );
    }

    #[test]
    fn ids_are_read_from_the_traceparent() {
        let tc = TraceContext::parse(Some(TP), None).expect("valid");
        assert_eq!(tc.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(tc.parent_span_id(), "00f067aa0ba902b7");
    }

    #[test]
    fn surrounding_whitespace_is_trimmed() {
        let tc = TraceContext::parse(Some(&format!("  {TP} ")), None).expect("valid");
        assert_eq!(tc.traceparent, TP);
    }

    #[test]
    fn a_missing_traceparent_gives_no_context_even_with_a_tracestate() {
        assert_eq!(TraceContext::parse(None, Some("a=b")), None);
    }

    #[test]
    fn malformed_traceparents_are_dropped() {
        let bad = [
            "",
            "garbage",
            // upper-case hex
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            // all-zero trace id / parent id
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // forbidden version
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // wrong field lengths
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "0-04bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // version 00 with trailing data
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            // a later version whose extra data is not separated by a dash
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            // non-hex characters
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            // non-ASCII (must not panic on a char boundary either)
            "00-4bf92f3577b34da6a3ce929d0e0e47é-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
        ];
        for s in bad {
            assert_eq!(TraceContext::parse(Some(s), None), None, "{s:?} must be dropped");
        }
    }

    #[test]
    fn a_later_version_may_carry_more_fields() {
        let s = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds";
        assert!(TraceContext::parse(Some(s), None).is_some());
    }

    #[test]
    fn a_bad_tracestate_is_dropped_but_the_parent_kept() {
        let long = "a=".to_string() + &"b".repeat(MAX_TRACESTATE_LEN);
        for ts in ["", "a=b\nc=d", long.as_str()] {
            let tc = TraceContext::parse(Some(TP), Some(ts)).expect("the traceparent is valid");
            assert_eq!(tc.tracestate, None, "tracestate {ts:?} must be dropped");
        }
    }

    #[test]
    fn header_pairs_list_traceparent_then_tracestate() {
        let tc = TraceContext::parse(Some(TP), Some("a=b")).expect("valid");
        assert_eq!(tc.header_pairs().collect::<Vec<_>>(), vec![(TRACEPARENT, TP), (TRACESTATE, "a=b")]);
        let tc = TraceContext::parse(Some(TP), None).expect("valid");
        assert_eq!(tc.header_pairs().collect::<Vec<_>>(), vec![(TRACEPARENT, TP)]);
    }
}
