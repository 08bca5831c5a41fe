//! SCIM PATCH (RFC 7644 §3.5.2) with every dialect Entra speaks.
//!
//! [`PatchRequest::parse`] checks the message syntax (no schema needed, so the ingress can reject
//! bad requests early); [`apply`] runs the operations against a resource's stored form and returns
//! the group membership changes, which never touch the stored map.
//!
//! Choices where the RFC is silent or Entra disagrees with it:
//! - `op` and the message's keys (`Operations`, `path`, `value`) are case-insensitive.
//! - An empty or `null` `path` is treated as absent.
//! - Too many operations or members: 400 `tooMany`, naming the limit.
//! - `remove` of a required attribute (`userName`, a group's `displayName`): 400 `invalidValue`,
//!   the same error a create without it gets.
//! - A path-less value object: `schemas` and `meta` are ignored, `id` is a `mutability` error,
//!   unknown keys are `invalidPath`.

mod apply;
mod members;
pub(crate) mod ops;
mod path;

use serde_json::{Map, Value};

use crate::json::{brief, map_get_ci};
use crate::schema::PATCH_OP_SCHEMA;
use crate::{ScimError, ScimType};

pub use apply::apply;
pub use members::{MemberOp, MemberRef, parse_members};
pub use path::{PatchPath, parse_path};

/// Bounds on one PATCH request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchLimits {
    /// Maximum number of operations.
    pub max_operations: usize,
    /// Maximum number of group members named across all operations.
    pub max_members_per_request: usize,
}

impl Default for PatchLimits {
    fn default() -> Self {
        Self { max_operations: 1000, max_members_per_request: 10_000 }
    }
}

impl PatchLimits {
    /// No bounds: for the projector, which decides PATCHes the ingress already accepted under its
    /// configured limits; re-checking them there would reject acknowledged-to-the-log events
    /// whenever an operator raised a limit.
    pub const UNBOUNDED: PatchLimits = PatchLimits { max_operations: usize::MAX, max_members_per_request: usize::MAX };
}

/// The three PATCH operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchOpKind {
    /// `add`
    Add,
    /// `replace`
    Replace,
    /// `remove`
    Remove,
}

impl PatchOpKind {
    /// The RFC spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PatchOpKind::Add => "add",
            PatchOpKind::Replace => "replace",
            PatchOpKind::Remove => "remove",
        }
    }
}

/// One operation of a PATCH request.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOp {
    /// What to do.
    pub op: PatchOpKind,
    /// Where; `None` means the resource itself (add/replace with an object value).
    pub path: Option<PatchPath>,
    /// The value as sent; `Some(Value::Null)` is an explicit `null` (remove, for add/replace).
    pub value: Option<Value>,
}

/// A parsed PATCH request body (`urn:ietf:params:scim:api:messages:2.0:PatchOp`).
#[derive(Debug, Clone, PartialEq)]
pub struct PatchRequest {
    /// The operations, applied in order.
    pub operations: Vec<PatchOp>,
}

impl PatchRequest {
    /// Parses and syntax-checks a PATCH body.
    pub fn parse(body: &Value, limits: &PatchLimits) -> Result<PatchRequest, ScimError> {
        let Value::Object(obj) = body else {
            return Err(ScimError::invalid_syntax("The PATCH body must be a JSON object."));
        };
        check_schemas(obj)?;
        let ops = match map_get_ci(obj, "Operations") {
            None | Some(Value::Null) => {
                return Err(ScimError::invalid_syntax("The PATCH body has no 'Operations' array."));
            }
            Some(Value::Array(a)) if a.is_empty() => {
                return Err(ScimError::invalid_syntax("The PATCH body's 'Operations' array is empty."));
            }
            Some(Value::Array(a)) => a,
            Some(other) => {
                return Err(ScimError::invalid_syntax(format!("'Operations' must be an array, not {}.", brief(other))));
            }
        };
        if ops.len() > limits.max_operations {
            return Err(ScimError::too_many(format!(
                "The PATCH request has {} operations; at most {} are accepted per request.",
                ops.len(),
                limits.max_operations
            )));
        }
        let operations = ops
            .iter()
            .enumerate()
            .map(|(i, op)| parse_op(op).map_err(|e| in_operation(e, i)))
            .collect::<Result<Vec<_>, _>>()?;
        let members: usize = operations.iter().map(member_count).sum();
        if members > limits.max_members_per_request {
            return Err(ScimError::too_many(format!(
                "The PATCH request names {members} group members; at most {} are accepted per request. Split it into several requests.",
                limits.max_members_per_request
            )));
        }
        Ok(PatchRequest { operations })
    }
}

/// Prefixes an error detail with the (1-based) operation number.
pub(crate) fn in_operation(mut e: ScimError, index: usize) -> ScimError {
    e.detail = format!("Operation {}: {}", index + 1, e.detail);
    e
}

fn check_schemas(obj: &Map<String, Value>) -> Result<(), ScimError> {
    let has_patch_op = |v: &Value| v.as_str().is_some_and(|s| s.trim().eq_ignore_ascii_case(PATCH_OP_SCHEMA));
    match map_get_ci(obj, "schemas") {
        None | Some(Value::Null) => Err(ScimError::invalid_syntax(format!(
            "The PATCH body has no 'schemas'; it must contain \"{PATCH_OP_SCHEMA}\"."
        ))),
        Some(Value::Array(a)) if a.iter().any(has_patch_op) => Ok(()),
        Some(s) if has_patch_op(s) => Ok(()),
        Some(_) => {
            Err(ScimError::invalid_syntax(format!("The PATCH body's 'schemas' must contain \"{PATCH_OP_SCHEMA}\".")))
        }
    }
}

fn parse_op(op: &Value) -> Result<PatchOp, ScimError> {
    let Value::Object(m) = op else {
        return Err(ScimError::invalid_syntax(format!("An operation must be an object, not {}.", brief(op))));
    };
    let kind = match map_get_ci(m, "op") {
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "add" => PatchOpKind::Add,
            "replace" => PatchOpKind::Replace,
            "remove" => PatchOpKind::Remove,
            _ => {
                return Err(ScimError::invalid_syntax(format!(
                    "Unsupported op \"{s}\"; expected add, replace or remove."
                )));
            }
        },
        None | Some(Value::Null) => {
            return Err(ScimError::invalid_syntax("The operation has no 'op' (add, replace or remove)."));
        }
        Some(other) => {
            return Err(ScimError::invalid_syntax(format!("'op' must be a string, not {}.", brief(other))));
        }
    };
    let path = match map_get_ci(m, "path") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(parse_path(s)?),
        Some(other) => {
            return Err(ScimError::invalid_path(format!("'path' must be a string, not {}.", brief(other))));
        }
    };
    let value = map_get_ci(m, "value").cloned();
    match kind {
        PatchOpKind::Add | PatchOpKind::Replace if value.is_none() => {
            return Err(ScimError::invalid_value(format!("The {} operation has no 'value'.", kind.as_str())));
        }
        PatchOpKind::Remove if path.is_none() => {
            return Err(ScimError::no_target("The remove operation has no 'path'; it needs a target."));
        }
        _ => {}
    }
    Ok(PatchOp { op: kind, path, value })
}

/// How many member references an operation carries (a syntactic count: `members` paths and
/// path-less `members` keys).
fn member_count(op: &PatchOp) -> usize {
    let count = |v: &Value| match v {
        Value::Array(a) => a.len(),
        Value::Null => 0,
        _ => 1,
    };
    match (&op.path, &op.value) {
        (Some(p), Some(v)) if p.attr.attr.eq_ignore_ascii_case("members") => count(v),
        (None, Some(Value::Object(m))) => map_get_ci(m, "members").map_or(0, count),
        _ => 0,
    }
}

/// Re-labels an error with `scimType` (used when a filter error surfaces in a PATCH path).
pub(crate) fn relabel(mut e: ScimError, t: ScimType) -> ScimError {
    e.scim_type = Some(t);
    e
}

#[cfg(test)]
mod parse_tests;

#[cfg(test)]
mod apply_tests;

#[cfg(test)]
mod entra_tests;
