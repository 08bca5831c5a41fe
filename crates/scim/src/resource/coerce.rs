//! Type coercion of incoming attribute values into Roster's stored form.
//!
//! One place decides what a value of each SCIM type may look like on input: Entra's string
//! booleans (`"True"`), a single object for a multi-valued attribute, a bare id string for a
//! `value`-bearing complex attribute (`manager`), nulls meaning "unassigned". Errors are 400
//! `invalidValue` and name the attribute.

use serde_json::{Map, Value};

use crate::ScimError;
use crate::json::{brief, dedup};
use crate::schema::{self, AttrType, AttributeDef, Mutability, ResolvedAttr, ResourceKind, Schema, split_urn};

/// Where a key of a request object (or a PATCH path without filter) points.
#[derive(Debug, Clone, Copy)]
pub(crate) enum KeyTarget {
    /// An attribute, possibly with a sub-attribute (`name.givenName`).
    Attr(ResolvedAttr),
    /// A whole schema named by its URN (the nested extension object form).
    Schema(&'static Schema),
    /// Nothing this resource kind knows.
    Unknown,
}

/// Resolves a request key: `userName`, `name.givenName`, `urn:…:User:employeeNumber`,
/// `urn:…:User:manager.value` or an extension URN on its own. Names match case-insensitively.
pub(crate) fn resolve_key(kind: ResourceKind, key: &str) -> KeyTarget {
    if let Some(s) = schema::schema_by_urn(kind, key) {
        return KeyTarget::Schema(s);
    }
    let (urn, rest) = match split_urn(kind, key) {
        Some((urn, rest)) => (Some(urn), rest),
        None if key.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:")) => {
            return KeyTarget::Unknown;
        }
        None => (None, key.to_string()),
    };
    let (attr, sub) = match rest.split_once('.') {
        Some((a, s)) => (a, Some(s)),
        None => (rest.as_str(), None),
    };
    match schema::resolve_lenient(kind, urn, attr, sub) {
        Some(ra) => KeyTarget::Attr(ra),
        None => KeyTarget::Unknown,
    }
}

/// Resolves a key inside a nested extension object (`{"urn:…:User": {"manager": …}}`).
pub(crate) fn resolve_in_schema(schema: &'static Schema, key: &str) -> Option<ResolvedAttr> {
    let (attr, sub) = match key.split_once('.') {
        Some((a, s)) => (a, Some(s)),
        None => (key, None),
    };
    let attr = schema.attr(attr)?;
    let sub = match sub {
        Some(s) => Some(attr.sub(s)?),
        None => None,
    };
    Some(ResolvedAttr { schema, attr, sub })
}

/// The display name of a resolved path for error details (`name.givenName`).
pub(crate) fn shown(ra: &ResolvedAttr) -> String {
    match ra.sub {
        Some(sub) => format!("{}.{}", ra.attr.name, sub.name),
        None => ra.attr.name.to_string(),
    }
}

/// Whether clients may write the path (not `readOnly`, at top level or sub-attribute).
pub(crate) fn is_read_only(ra: &ResolvedAttr) -> bool {
    ra.attr.mutability == Mutability::ReadOnly || ra.sub.is_some_and(|s| s.mutability == Mutability::ReadOnly)
}

/// Whether values are accepted but never stored (`password`).
pub(crate) fn is_write_only(ra: &ResolvedAttr) -> bool {
    ra.leaf().mutability == Mutability::WriteOnly
}

/// Whether a complex attribute is a reference-like object (`manager`): written as a whole,
/// and a bare string stands for its `value`.
pub(crate) fn is_reference_like(def: &AttributeDef) -> bool {
    def.ty == AttrType::Complex && def.sub("value").is_some()
}

/// Coerces a whole attribute value; `Ok(None)` means "unassigned" (null, `[]`, `{}`).
pub(crate) fn coerce_attribute(def: &'static AttributeDef, v: &Value, name: &str) -> Result<Option<Value>, ScimError> {
    if def.multi_valued {
        let items: Vec<&Value> = match v {
            Value::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        let mut out: Vec<Value> = Vec::with_capacity(items.len());
        for item in items {
            if let Some(c) = coerce_element(def, item, name)? {
                out.push(c);
            }
        }
        let out = dedup(out);
        return Ok((!out.is_empty()).then_some(Value::Array(out)));
    }
    match v {
        Value::Array(a) if def.ty == AttrType::Complex => match a.iter().find(|x| !x.is_null()) {
            Some(first) => coerce_element(def, first, name),
            None => Ok(None),
        },
        Value::Array(a) => match a.as_slice() {
            [] => Ok(None),
            [one] => coerce_element(def, one, name),
            _ => {
                Err(ScimError::invalid_value(format!("'{name}' is single-valued, but {} values were given.", a.len())))
            }
        },
        other => coerce_element(def, other, name),
    }
}

/// Coerces one value of `def`'s type (one element of a multi-valued attribute).
pub(crate) fn coerce_element(def: &'static AttributeDef, v: &Value, name: &str) -> Result<Option<Value>, ScimError> {
    if def.ty != AttrType::Complex {
        return coerce_scalar(def, v, name);
    }
    match v {
        Value::Null => Ok(None),
        Value::Object(m) => coerce_complex(def, m, name),
        Value::String(s) if def.sub("value").is_some() => {
            let mut m = Map::new();
            m.insert("value".into(), Value::String(s.clone()));
            coerce_complex(def, &m, name)
        }
        other => Err(ScimError::invalid_value(format!(
            "'{name}' must be an object with sub-attributes, not {}.",
            brief(other)
        ))),
    }
}

/// Coerces a complex value: canonical sub-attribute names, unknown and read-only keys dropped.
fn coerce_complex(def: &'static AttributeDef, m: &Map<String, Value>, name: &str) -> Result<Option<Value>, ScimError> {
    let mut out = Map::new();
    for (k, sv) in m {
        let Some(sd) = def.sub(k) else { continue };
        if sd.mutability == Mutability::ReadOnly {
            continue;
        }
        if let Some(c) = coerce_scalar(sd, sv, &format!("{name}.{}", sd.name))? {
            out.insert(sd.name.to_string(), c);
        }
    }
    Ok((!out.is_empty()).then_some(Value::Object(out)))
}

/// Coerces a simple (non-complex) value by type; `Ok(None)` for null.
pub(crate) fn coerce_scalar(def: &'static AttributeDef, v: &Value, name: &str) -> Result<Option<Value>, ScimError> {
    if v.is_null() {
        return Ok(None);
    }
    let bad = |what: &str| ScimError::invalid_value(format!("'{name}' must be {what}, not {}.", brief(v)));
    let out = match def.ty {
        AttrType::String | AttrType::Reference | AttrType::Binary => match v {
            Value::String(_) => v.clone(),
            _ => return Err(bad("a string")),
        },
        AttrType::Boolean => match v {
            Value::Bool(_) => v.clone(),
            Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Value::Bool(true),
            Value::String(s) if s.trim().eq_ignore_ascii_case("false") => Value::Bool(false),
            _ => return Err(bad("a boolean (true or false)")),
        },
        AttrType::Integer => match v {
            Value::Number(n) if n.is_i64() || n.is_u64() => v.clone(),
            _ => return Err(bad("an integer")),
        },
        AttrType::Decimal => match v {
            Value::Number(_) => v.clone(),
            _ => return Err(bad("a number")),
        },
        AttrType::DateTime => match v {
            Value::String(s) => match crate::time::normalize_datetime(s) {
                Ok(t) => Value::String(t),
                Err(_) => return Err(bad("an RFC 3339 dateTime such as \"2026-11-29T17:49:20Z\"")),
            },
            _ => return Err(bad("an RFC 3339 dateTime string")),
        },
        AttrType::Complex => return coerce_element(def, v, name),
    };
    Ok(Some(out))
}
