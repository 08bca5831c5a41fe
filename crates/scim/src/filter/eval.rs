//! In-memory filter evaluation against JSON resources (RFC 7644 §3.4.2.2 semantics).
//!
//! Used by the PATCH engine (value filters on one element) and wherever a resource is already in
//! memory. A filter that does not resolve against the schema never matches; run
//! [`super::validate`] first to report such filters as errors.

use std::cmp::Ordering;

use serde_json::Value;

use super::ast::{CompValue, CompareOp, Filter};
use super::validate::{resolve_path, resolve_sub_path};
use crate::json::{get_ci, is_present};
use crate::schema::{self, AttrType, AttributeDef, ResolvedAttr, ResourceKind};

/// Whether `resource` (a rendered or stored resource of `kind`) satisfies `filter`.
pub fn matches(filter: &Filter, kind: ResourceKind, resource: &Value) -> bool {
    match filter {
        Filter::Compare { path, op, value } => match resolve_path(kind, path) {
            Ok(ra) => compare_any(ra.leaf(), *op, value, &leaf_values(resource, &ra)),
            Err(_) => false,
        },
        Filter::Present(path) => match resolve_path(kind, path) {
            Ok(ra) => leaf_values(resource, &ra).into_iter().any(is_present),
            Err(_) => false,
        },
        Filter::And(a, b) => matches(a, kind, resource) && matches(b, kind, resource),
        Filter::Or(a, b) => matches(a, kind, resource) || matches(b, kind, resource),
        Filter::Not(inner) => !matches(inner, kind, resource),
        Filter::ValuePath { path, filter } => {
            let Some(ra) = schema::resolve_lenient(kind, path.urn.as_deref(), &path.attr, None) else {
                return false;
            };
            elements(attr_value(resource, &ra)).into_iter().any(|e| matches_element(filter, ra.attr, e))
        }
    }
}

/// Whether one element of the multi-valued (or complex) attribute `parent` satisfies a value
/// filter whose paths are relative (`type eq "work"` for an element of `emails`).
pub fn matches_element(filter: &Filter, parent: &'static AttributeDef, element: &Value) -> bool {
    match filter {
        Filter::Compare { path, op, value } => match resolve_sub_path(parent, path) {
            Ok(leaf) => compare_any(leaf, *op, value, &element_leaf(parent, leaf, element)),
            Err(_) => false,
        },
        Filter::Present(path) => match resolve_sub_path(parent, path) {
            Ok(leaf) => element_leaf(parent, leaf, element).into_iter().any(is_present),
            Err(_) => false,
        },
        Filter::And(a, b) => matches_element(a, parent, element) && matches_element(b, parent, element),
        Filter::Or(a, b) => matches_element(a, parent, element) || matches_element(b, parent, element),
        Filter::Not(inner) => !matches_element(inner, parent, element),
        Filter::ValuePath { .. } => false,
    }
}

/// The value of `ra.attr` in `resource` (under its extension URN key when it has one).
fn attr_value<'v>(resource: &'v Value, ra: &ResolvedAttr) -> Option<&'v Value> {
    let container = if ra.is_extension() { get_ci(resource, ra.schema.id)? } else { resource };
    get_ci(container, ra.attr.name)
}

/// The elements of a (possibly multi-valued) attribute value; a single value is one element.
fn elements(v: Option<&Value>) -> Vec<&Value> {
    match v {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.iter().collect(),
        Some(other) => vec![other],
    }
}

/// Every value the path reaches: one per element for multi-valued attributes.
fn leaf_values<'v>(resource: &'v Value, ra: &ResolvedAttr) -> Vec<&'v Value> {
    let elems = elements(attr_value(resource, ra));
    match ra.sub {
        None => elems,
        Some(sub) => elems.into_iter().filter_map(|e| get_ci(e, sub.name)).collect(),
    }
}

fn element_leaf<'v>(parent: &AttributeDef, leaf: &AttributeDef, element: &'v Value) -> Vec<&'v Value> {
    if parent.sub_attributes.is_empty() {
        return vec![element];
    }
    get_ci(element, leaf.name).into_iter().collect()
}

/// Any-of semantics over the reached values; an absent attribute satisfies only `ne x` and `eq null`.
fn compare_any(def: &AttributeDef, op: CompareOp, expected: &CompValue, actual: &[&Value]) -> bool {
    let present: Vec<&&Value> = actual.iter().filter(|v| !v.is_null()).collect();
    if matches!(expected, CompValue::Null) {
        return match op {
            CompareOp::Eq => present.is_empty(),
            CompareOp::Ne => !present.is_empty(),
            _ => false,
        };
    }
    if present.is_empty() {
        return op == CompareOp::Ne;
    }
    present.into_iter().any(|v| compare_one(def, op, expected, v))
}

fn compare_one(def: &AttributeDef, op: CompareOp, expected: &CompValue, actual: &Value) -> bool {
    match def.ty {
        AttrType::Boolean => {
            let a = match actual {
                Value::Bool(b) => Some(*b),
                Value::String(s) => CompValue::String(s.clone()).as_bool(),
                _ => None,
            };
            match (a, expected.as_bool(), op) {
                (Some(a), Some(b), CompareOp::Eq) => a == b,
                (Some(a), Some(b), CompareOp::Ne) => a != b,
                _ => false,
            }
        }
        AttrType::Integer | AttrType::Decimal => {
            let a = actual.as_f64();
            let b = match expected {
                CompValue::Number(n) => n.as_f64(),
                _ => None,
            };
            match (a, b) {
                (Some(a), Some(b)) => a.partial_cmp(&b).is_some_and(|o| ordered(op, o)),
                _ => false,
            }
        }
        AttrType::DateTime => {
            let a = actual.as_str().and_then(|s| crate::time::parse_datetime(s).ok());
            let b = expected.as_text().and_then(|s| crate::time::parse_datetime(&s).ok());
            match (a, b) {
                (Some(a), Some(b)) => ordered(op, a.cmp(&b)),
                _ => false,
            }
        }
        _ => {
            let Some(expected) = expected.as_text() else {
                return false;
            };
            let actual = match actual {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => return false,
            };
            let (a, b) = if def.case_exact {
                (actual, expected.into_owned())
            } else {
                (actual.to_lowercase(), expected.to_lowercase())
            };
            match op {
                CompareOp::Co => a.contains(&b),
                CompareOp::Sw => a.starts_with(&b),
                CompareOp::Ew => a.ends_with(&b),
                _ => ordered(op, a.cmp(&b)),
            }
        }
    }
}

/// Applies an equality/ordering operator to an ordering; substring operators are false.
fn ordered(op: CompareOp, o: Ordering) -> bool {
    match op {
        CompareOp::Eq => o == Ordering::Equal,
        CompareOp::Ne => o != Ordering::Equal,
        CompareOp::Gt => o == Ordering::Greater,
        CompareOp::Ge => o != Ordering::Less,
        CompareOp::Lt => o == Ordering::Less,
        CompareOp::Le => o != Ordering::Greater,
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
    }
}
