//! Primitive writes on Roster's stored form, shared by PATCH and by POST/PUT normalization.
//!
//! The stored form keeps canonical attribute names and nests extension attributes under their
//! schema URN. Every primitive here leaves it that way: extension objects are created on demand
//! and dropped when they become empty.

use serde_json::{Map, Value};

use crate::ScimError;
use crate::filter::{CompValue, Filter, matches_element, resolve_sub_path};
use crate::json::{eq_fold, get_ci, take_ci};
use crate::resource::coerce::{coerce_attribute, coerce_element, coerce_scalar, is_reference_like, shown};
use crate::schema::{AttrType, AttributeDef, ResolvedAttr, Schema};

/// Add (append to multi-valued attributes) or replace (overwrite them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// RFC 7644 §3.5.2.1.
    Add,
    /// RFC 7644 §3.5.2.3.
    Replace,
}

/// Runs `f` on the object holding `schema`'s attributes: the root for core attributes, the
/// object under the URN key for extensions (created on demand, removed when left empty).
pub(crate) fn with_container<R>(
    root: &mut Map<String, Value>,
    schema: &'static Schema,
    f: impl FnOnce(&mut Map<String, Value>) -> R,
) -> R {
    if schema.id == crate::schema::USER_SCHEMA || schema.id == crate::schema::GROUP_SCHEMA {
        return f(root);
    }
    let mut ext = match take_ci(root, schema.id) {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let out = f(&mut ext);
    if !ext.is_empty() {
        root.insert(schema.id.to_string(), Value::Object(ext));
    }
    out
}

/// Writes `value` at `ra` (optionally through a value filter); `null` removes the target.
pub(crate) fn set(
    root: &mut Map<String, Value>,
    ra: &ResolvedAttr,
    filter: Option<&Filter>,
    value: &Value,
    mode: Mode,
) -> Result<(), ScimError> {
    if value.is_null() {
        return remove(root, ra, filter, None);
    }
    let name = shown(ra);
    with_container(root, ra.schema, |c| {
        if ra.attr.multi_valued && (filter.is_some() || ra.sub.is_some()) {
            return upsert(c, ra.attr, filter, ra.sub, value, &name);
        }
        match ra.sub {
            Some(sub) => set_sub(c, ra.attr, sub, value, &name),
            None => set_whole(c, ra.attr, value, mode, &name),
        }
    })
}

fn set_whole(
    c: &mut Map<String, Value>,
    attr: &'static AttributeDef,
    value: &Value,
    mode: Mode,
    name: &str,
) -> Result<(), ScimError> {
    let new = coerce_attribute(attr, value, name)?;
    let existing = take_ci(c, attr.name);
    let result = match (new, mode) {
        // `{}` names no sub-attribute of a mergeable complex attribute: nothing changes.
        (None, Mode::Replace) if attr.ty == AttrType::Complex && !attr.multi_valued && !is_reference_like(attr) => {
            existing
        }
        (None, Mode::Replace) => None,
        (None, Mode::Add) => existing,
        (Some(new), Mode::Replace) if attr.multi_valued => Some(new),
        (Some(new), Mode::Add) if attr.multi_valued => Some(append(existing, new)),
        (Some(new), _) if attr.ty == AttrType::Complex && !is_reference_like(attr) => Some(merge(existing, new)),
        (Some(new), _) => Some(new),
    };
    if let Some(r) = result {
        c.insert(attr.name.to_string(), r);
    }
    Ok(())
}

/// Appends new elements that are not already present; a new primary demotes the old ones.
fn append(existing: Option<Value>, new: Value) -> Value {
    let mut elems = into_elements(existing);
    let fresh: Vec<Value> = into_elements(Some(new)).into_iter().filter(|e| !elems.contains(e)).collect();
    if fresh.iter().any(is_primary) {
        elems.iter_mut().for_each(demote);
    }
    elems.extend(fresh);
    Value::Array(elems)
}

/// Merges the sub-attributes of `new` into `existing` (RFC 7644: unspecified ones are kept).
fn merge(existing: Option<Value>, new: Value) -> Value {
    let (Some(Value::Object(mut base)), Value::Object(new)) = (existing, new.clone()) else {
        return new;
    };
    for (k, v) in new {
        take_ci(&mut base, &k);
        base.insert(k, v);
    }
    Value::Object(base)
}

fn set_sub(
    c: &mut Map<String, Value>,
    attr: &'static AttributeDef,
    sub: &'static AttributeDef,
    value: &Value,
    name: &str,
) -> Result<(), ScimError> {
    let v = coerce_scalar(sub, single(value), name)?;
    let mut obj = match take_ci(c, attr.name) {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    take_ci(&mut obj, sub.name);
    if let Some(v) = v {
        obj.insert(sub.name.to_string(), v);
    }
    if !obj.is_empty() {
        c.insert(attr.name.to_string(), Value::Object(obj));
    }
    Ok(())
}

/// Sets `sub` (or merges an object) on every element matching `filter` (all elements when
/// there is no filter); when none matches, creates one from the filter's `eq` comparisons.
fn upsert(
    c: &mut Map<String, Value>,
    attr: &'static AttributeDef,
    filter: Option<&Filter>,
    sub: Option<&'static AttributeDef>,
    value: &Value,
    name: &str,
) -> Result<(), ScimError> {
    let value = single(value);
    let patch: Map<String, Value> = match sub {
        Some(sub) => match coerce_scalar(sub, value, name)? {
            Some(v) => Map::from_iter([(sub.name.to_string(), v)]),
            None => Map::new(),
        },
        None => match coerce_element(attr, value, name)? {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        },
    };
    if patch.is_empty() {
        return Ok(());
    }
    let mut elems = into_elements(take_ci(c, attr.name));
    let matched: Vec<usize> = elems
        .iter()
        .enumerate()
        .filter(|(_, e)| filter.is_none_or(|f| matches_element(f, attr, e)))
        .map(|(i, _)| i)
        .collect();
    let touched = if matched.is_empty() {
        let mut fresh = match filter {
            None => Map::new(),
            Some(f) => match equalities(f, attr)? {
                Some(m) => m,
                None => {
                    c.insert(attr.name.to_string(), Value::Array(elems));
                    return Err(ScimError::no_target(format!(
                        "No element of '{}' matches the filter, and a new element cannot be built from it (only 'eq' comparisons joined by 'and' can).",
                        attr.name
                    )));
                }
            },
        };
        for (k, v) in patch {
            take_ci(&mut fresh, &k);
            fresh.insert(k, v);
        }
        elems.push(Value::Object(fresh));
        vec![elems.len() - 1]
    } else {
        for &i in &matched {
            if let Some(Value::Object(m)) = elems.get_mut(i) {
                for (k, v) in &patch {
                    take_ci(m, k);
                    m.insert(k.clone(), v.clone());
                }
            }
        }
        matched
    };
    if touched.iter().any(|&i| elems.get(i).is_some_and(is_primary)) {
        // A set: `touched` can hold every element of a very large attribute.
        let touched: std::collections::HashSet<usize> = touched.into_iter().collect();
        for (i, e) in elems.iter_mut().enumerate() {
            if !touched.contains(&i) {
                demote(e);
            }
        }
    }
    c.insert(attr.name.to_string(), Value::Array(elems));
    Ok(())
}

/// The element a filter such as `type eq "work" and primary eq true` describes, if it is
/// made only of `eq` comparisons joined by `and`.
fn equalities(f: &Filter, attr: &'static AttributeDef) -> Result<Option<Map<String, Value>>, ScimError> {
    match f {
        Filter::Compare { path, op: crate::filter::CompareOp::Eq, value } => {
            let leaf = resolve_sub_path(attr, path).map_err(|e| ScimError::invalid_path(e.detail))?;
            let raw = match value {
                CompValue::String(s) => Value::String(s.clone()),
                CompValue::Bool(b) => Value::Bool(*b),
                CompValue::Number(n) => Value::Number(n.clone()),
                CompValue::Null => return Ok(None),
            };
            let shown = format!("{}.{}", attr.name, leaf.name);
            Ok(coerce_scalar(leaf, &raw, &shown)?.map(|v| Map::from_iter([(leaf.name.to_string(), v)])))
        }
        Filter::And(a, b) => match (equalities(a, attr)?, equalities(b, attr)?) {
            (Some(mut a), Some(b)) => {
                a.extend(b);
                Ok(Some(a))
            }
            _ => Ok(None),
        },
        _ => Ok(None),
    }
}

/// Removes the target of `ra` (through `filter` if any). With a `value` on a multi-valued
/// attribute and no filter, removes only the elements equal to the given ones. Removing
/// something absent is a no-op.
pub(crate) fn remove(
    root: &mut Map<String, Value>,
    ra: &ResolvedAttr,
    filter: Option<&Filter>,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let name = shown(ra);
    with_container(root, ra.schema, |c| {
        let Some(existing) = take_ci(c, ra.attr.name) else {
            return Ok(());
        };
        let attr = ra.attr;
        let remaining = match (attr.multi_valued, filter, ra.sub) {
            (false, _, None) => None,
            (false, _, Some(sub)) => match existing {
                Value::Object(mut m) => {
                    take_ci(&mut m, sub.name);
                    (!m.is_empty()).then_some(Value::Object(m))
                }
                _ => None,
            },
            (true, None, None) => match value.filter(|v| !v.is_null()) {
                None => None,
                Some(v) => {
                    let targets = into_elements(coerce_attribute(attr, v, &name)?);
                    let mut elems = into_elements(Some(existing));
                    elems.retain(|e| !targets.iter().any(|t| same_element(attr, e, t)));
                    (!elems.is_empty()).then_some(Value::Array(elems))
                }
            },
            (true, filter, sub) => {
                let mut elems = into_elements(Some(existing));
                let mut kept = Vec::with_capacity(elems.len());
                for mut e in elems.drain(..) {
                    if !filter.is_none_or(|f| matches_element(f, attr, &e)) {
                        kept.push(e);
                        continue;
                    }
                    if let (Some(sub), Value::Object(m)) = (sub, &mut e) {
                        take_ci(m, sub.name);
                        if !m.is_empty() {
                            kept.push(e);
                        }
                    }
                }
                (!kept.is_empty()).then_some(Value::Array(kept))
            }
        };
        if let Some(r) = remaining {
            c.insert(attr.name.to_string(), r);
        }
        Ok(())
    })
}

/// Whether stored element `e` equals template `t` on every sub-attribute `t` names.
fn same_element(attr: &AttributeDef, e: &Value, t: &Value) -> bool {
    match t {
        Value::Object(tm) => tm.iter().all(|(k, tv)| {
            let exact = attr.sub(k).is_some_and(|d| d.case_exact);
            match (get_ci(e, k), tv) {
                (Some(Value::String(a)), Value::String(b)) if !exact => eq_fold(a, b),
                (Some(a), b) => a == b,
                (None, _) => false,
            }
        }),
        other => e == other,
    }
}

/// A one-element array stands for its element (clients wrap single values inconsistently).
fn single(v: &Value) -> &Value {
    match v {
        Value::Array(a) if a.len() == 1 => a.first().unwrap_or(v),
        other => other,
    }
}

fn into_elements(v: Option<Value>) -> Vec<Value> {
    match v {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a,
        Some(other) => vec![other],
    }
}

fn is_primary(e: &Value) -> bool {
    matches!(get_ci(e, "primary"), Some(Value::Bool(true)))
}

fn demote(e: &mut Value) {
    if let Value::Object(m) = e
        && matches!(crate::json::map_get_ci(m, "primary"), Some(Value::Bool(true)))
    {
        take_ci(m, "primary");
        m.insert("primary".into(), Value::Bool(false));
    }
}
