//! Group membership changes.
//!
//! A group may have 100,000 members, so they never live in the stored attribute map: PATCH and
//! PUT/POST turn membership into [`MemberRef`]s and [`MemberOp`]s that the store applies with SQL.

use serde_json::Value;

use crate::ScimError;
use crate::filter::{CompValue, CompareOp, Filter};
use crate::json::{brief, map_get_ci};

/// One member named by a request: the member's id and, when given, its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRef {
    /// The member's Roster id (`members[].value`).
    pub value: String,
    /// `"User"` or `"Group"` from the member's `type`, when the client sent one.
    pub kind: Option<String>,
}

impl MemberRef {
    /// A member reference without a type, as Entra sends them.
    pub fn new(value: impl Into<String>) -> Self {
        Self { value: value.into(), kind: None }
    }
}

/// A change to a group's membership, in request order.
#[derive(Debug, Clone, PartialEq)]
pub enum MemberOp {
    /// Add these members (already-present members are not an error).
    Add(Vec<MemberRef>),
    /// Remove the members with these ids (absent ids are not an error).
    Remove(Vec<String>),
    /// Remove every member (`remove` with path `members` and no value).
    RemoveAll,
    /// Make the membership exactly this list.
    Replace(Vec<MemberRef>),
    /// Remove the members matching a value filter whose paths are relative to a member
    /// (`value`, `type`, `display`, `$ref`), e.g. `members[type eq "Group"]`.
    RemoveMatching(Filter),
}

impl MemberOp {
    /// How many member references the operation carries (for the per-request limit).
    pub fn len(&self) -> usize {
        match self {
            MemberOp::Add(v) | MemberOp::Replace(v) => v.len(),
            MemberOp::Remove(v) => v.len(),
            MemberOp::RemoveAll | MemberOp::RemoveMatching(_) => 0,
        }
    }

    /// Whether the operation names no members (an empty add/remove list is a no-op).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Parses a `members` value: an array (or a single item) of `{"value": id, "type"?, "$ref"?,
/// "display"?}` objects or bare id strings. `null` is an empty list. Duplicate ids are dropped.
pub fn parse_members(v: &Value) -> Result<Vec<MemberRef>, ScimError> {
    let items: Vec<&Value> = match v {
        Value::Null => Vec::new(),
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    let mut out: Vec<MemberRef> = Vec::with_capacity(items.len());
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    for item in items {
        let member = parse_member(item)?;
        if seen.insert(member.value.clone()) {
            out.push(member);
        }
    }
    Ok(out)
}

fn parse_member(item: &Value) -> Result<MemberRef, ScimError> {
    let (value, kind) = match item {
        Value::String(_) => (Some(item), None),
        Value::Object(m) => (map_get_ci(m, "value"), map_get_ci(m, "type")),
        other => {
            return Err(ScimError::invalid_value(format!(
                "Each member must be an object such as {{\"value\": \"<id>\"}}, not {}.",
                brief(other)
            )));
        }
    };
    let value = match value {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        Some(Value::String(_)) | Some(Value::Null) | None => {
            return Err(ScimError::invalid_value(format!(
                "A member has no 'value' (the member's id): {}.",
                brief(item)
            )));
        }
        Some(other) => {
            return Err(ScimError::invalid_value(format!(
                "A member's 'value' must be a string id, not {}.",
                brief(other)
            )));
        }
    };
    let kind = match kind {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) if t.eq_ignore_ascii_case("user") => Some("User".to_string()),
        Some(Value::String(t)) if t.eq_ignore_ascii_case("group") => Some("Group".to_string()),
        Some(other) => {
            return Err(ScimError::invalid_value(format!(
                "A member's 'type' must be \"User\" or \"Group\", not {}.",
                brief(other)
            )));
        }
    };
    Ok(MemberRef { value, kind })
}

/// The ids of a filter made only of `value eq "…"` comparisons joined by `or`.
pub(crate) fn value_eq_disjunction(f: &Filter) -> Option<Vec<String>> {
    match f {
        Filter::Compare { path, op: CompareOp::Eq, value: CompValue::String(s) }
            if path.attr.eq_ignore_ascii_case("value") && path.urn.is_none() && path.sub_attr.is_none() =>
        {
            Some(vec![s.clone()])
        }
        Filter::Or(a, b) => {
            let mut ids = value_eq_disjunction(a)?;
            for id in value_eq_disjunction(b)? {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            Some(ids)
        }
        _ => None,
    }
}
