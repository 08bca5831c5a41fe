//! Checking a parsed filter against the schema of a resource kind.
//!
//! Parsing is syntax only; this step decides whether every path names a real attribute and whether
//! each operator makes sense for the attribute's type. Errors are 400 `invalidFilter`.

use super::ast::{AttrPath, CompValue, CompareOp, Filter};
use crate::ScimError;
use crate::schema::{self, AttrType, AttributeDef, ResolvedAttr, ResourceKind, Returned};

/// Resolves a filter path against `kind`'s schemas, applying the implicit-`value` rule.
///
/// A complex attribute compared without a sub-attribute means its `value` sub-attribute
/// (`emails co "x"` is `emails.value co "x"`, `members eq "id"` is `members.value eq "id"`,
/// `manager eq "id"` is `manager.value eq "id"`); a complex attribute without `value` (`name`,
/// `addresses`) must name a sub-attribute. Un-prefixed extension attributes (`employeeNumber`)
/// resolve to their extension.
pub fn resolve_path(kind: ResourceKind, path: &AttrPath) -> Result<ResolvedAttr, ScimError> {
    let Some(mut ra) = schema::resolve_lenient(kind, path.urn.as_deref(), &path.attr, None) else {
        if path.urn.is_none() && path.attr.eq_ignore_ascii_case("schemas") {
            return Err(ScimError::invalid_filter("Filtering on 'schemas' is not supported."));
        }
        return Err(ScimError::invalid_filter(format!(
            "Unknown attribute '{path}' in filter: {} resources have no such attribute.",
            kind.as_str()
        )));
    };
    match &path.sub_attr {
        Some(sub) => {
            let Some(def) = ra.attr.sub(sub) else {
                return Err(ScimError::invalid_filter(format!(
                    "Unknown attribute '{path}' in filter: '{}' has no sub-attribute '{sub}'.",
                    ra.attr.name
                )));
            };
            ra.sub = Some(def);
        }
        None if ra.attr.ty == AttrType::Complex => match ra.attr.sub("value") {
            Some(value) => ra.sub = Some(value),
            None => return Err(complex_needs_sub(ra.attr)),
        },
        None => {}
    }
    if ra.leaf().returned == Returned::Never {
        return Err(ScimError::invalid_filter(format!("The attribute '{path}' cannot be used in filters.")));
    }
    Ok(ra)
}

fn complex_needs_sub(attr: &AttributeDef) -> ScimError {
    let example = attr.sub_attributes.iter().find(|s| s.name != "type").map_or("value", |s| s.name);
    ScimError::invalid_filter(format!(
        "'{0}' is a complex attribute; filter on one of its sub-attributes, such as '{0}.{example}'.",
        attr.name
    ))
}

/// Resolves a path inside a value filter (`type` in `emails[type eq "work"]`) against the
/// enclosing attribute `parent`.
pub fn resolve_sub_path(parent: &'static AttributeDef, path: &AttrPath) -> Result<&'static AttributeDef, ScimError> {
    if path.urn.is_some() || path.sub_attr.is_some() {
        return Err(ScimError::invalid_filter(format!(
            "Inside '{}[ ]' name a sub-attribute of '{}', not the path '{path}'.",
            parent.name, parent.name
        )));
    }
    if parent.sub_attributes.is_empty() && path.attr.eq_ignore_ascii_case("value") {
        return Ok(parent);
    }
    parent.sub(&path.attr).ok_or_else(|| {
        ScimError::invalid_filter(format!(
            "Unknown attribute '{}' in filter: '{}' has no sub-attribute '{}'.",
            path.attr, parent.name, path.attr
        ))
    })
}

/// Checks every path and operator of `filter` against the schemas of `kind`.
pub fn validate(filter: &Filter, kind: ResourceKind) -> Result<(), ScimError> {
    walk(filter, kind, None)
}

/// Checks a filter that is relative to the elements of `parent` (a PATCH value filter).
pub fn validate_relative(filter: &Filter, parent: &'static AttributeDef) -> Result<(), ScimError> {
    match filter {
        Filter::ValuePath { path, .. } => Err(ScimError::invalid_filter(format!(
            "Nested value filters are not allowed ('{path}[ ]' inside '{}[ ]').",
            parent.name
        ))),
        Filter::Compare { path, op, value } => {
            let leaf = resolve_sub_path(parent, path)?;
            check_compare(leaf, &format!("{}.{}", parent.name, leaf.name), *op, value)
        }
        Filter::Present(path) => resolve_sub_path(parent, path).map(|_| ()),
        Filter::And(a, b) | Filter::Or(a, b) => {
            validate_relative(a, parent)?;
            validate_relative(b, parent)
        }
        Filter::Not(inner) => validate_relative(inner, parent),
    }
}

fn walk(filter: &Filter, kind: ResourceKind, parent: Option<&'static AttributeDef>) -> Result<(), ScimError> {
    if let Some(parent) = parent {
        return validate_relative(filter, parent);
    }
    match filter {
        Filter::Compare { path, op, value } => {
            let ra = resolve_path(kind, path)?;
            check_compare(ra.leaf(), &path.to_string(), *op, value)
        }
        Filter::Present(path) => resolve_path(kind, path).map(|_| ()),
        Filter::And(a, b) | Filter::Or(a, b) => {
            walk(a, kind, None)?;
            walk(b, kind, None)
        }
        Filter::Not(inner) => walk(inner, kind, None),
        Filter::ValuePath { path, filter } => {
            let ra = schema::resolve_lenient(kind, path.urn.as_deref(), &path.attr, None).ok_or_else(|| {
                ScimError::invalid_filter(format!(
                    "Unknown attribute '{path}' in filter: {} resources have no such attribute.",
                    kind.as_str()
                ))
            })?;
            if path.sub_attr.is_some() {
                return Err(ScimError::invalid_filter(format!(
                    "A value filter '[ ]' must follow an attribute, not the sub-attribute '{path}'."
                )));
            }
            if !ra.attr.multi_valued && ra.attr.ty != AttrType::Complex {
                return Err(ScimError::invalid_filter(format!(
                    "'{}' is neither multi-valued nor complex, so a value filter '[ ]' does not apply to it.",
                    ra.attr.name
                )));
            }
            walk(filter, kind, Some(ra.attr))
        }
    }
}

/// Whether `op` applies to `leaf`'s type and `value` fits it.
fn check_compare(leaf: &AttributeDef, shown: &str, op: CompareOp, value: &CompValue) -> Result<(), ScimError> {
    use CompareOp::*;
    let ordering = matches!(op, Gt | Ge | Lt | Le);
    let substring = matches!(op, Co | Sw | Ew);
    let op_name = op.as_str();
    if matches!(value, CompValue::Null) {
        if matches!(op, Eq | Ne) {
            return Ok(());
        }
        return Err(ScimError::invalid_filter(format!(
            "'{shown} {op_name} null': null can only be compared with eq or ne."
        )));
    }
    match leaf.ty {
        AttrType::Boolean => {
            if ordering || substring {
                return Err(ScimError::invalid_filter(format!(
                    "'{shown}' is a boolean; the operator '{op_name}' does not apply (use eq or ne)."
                )));
            }
            if value.as_bool().is_none() {
                return Err(ScimError::invalid_filter(format!(
                    "'{shown}' is a boolean; compare it with true or false."
                )));
            }
        }
        AttrType::Binary if ordering => {
            return Err(ScimError::invalid_filter(format!(
                "'{shown}' is binary; the operator '{op_name}' does not apply."
            )));
        }
        AttrType::Integer | AttrType::Decimal => {
            if substring {
                return Err(ScimError::invalid_filter(format!(
                    "'{shown}' is a number; the operator '{op_name}' does not apply."
                )));
            }
            if !matches!(value, CompValue::Number(_)) {
                return Err(ScimError::invalid_filter(format!("'{shown}' is a number; compare it with a number.")));
            }
        }
        AttrType::DateTime => {
            if substring {
                return Err(ScimError::invalid_filter(format!(
                    "'{shown}' is a dateTime; the operator '{op_name}' does not apply."
                )));
            }
            let text = value.as_text().unwrap_or_default();
            if crate::time::parse_datetime(&text).is_err() {
                return Err(ScimError::invalid_filter(format!(
                    "'{text}' is not an RFC 3339 dateTime (such as \"2011-05-13T04:42:34Z\"), so it cannot be compared with '{shown}'."
                )));
            }
        }
        _ => {}
    }
    Ok(())
}
