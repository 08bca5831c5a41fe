//! Resources: normalizing POST/PUT bodies into Roster's stored form, validating it, and
//! projecting rendered resources (`attributes` / `excludedAttributes`).
//!
//! The **stored form** is a JSON object with canonical attribute names, extension attributes
//! nested under their schema URN key, values coerced to their SCIM types, and no `id`, `meta`,
//! `schemas`, `groups`, `members`, `password` or Roster extension (the server owns those).
//!
//! Input tolerance (Entra and friends): names are case-insensitive; `null`, `[]` and `{}` mean
//! "unassigned" and are dropped; string booleans (`"True"`) are coerced; a single object for a
//! multi-valued attribute is wrapped; unknown attributes and unknown `urn:` keys are dropped; a
//! client-supplied `id`, `meta` and `schemas` (including Entra's typo'd `…:enterprise:2.0User`)
//! are ignored. Extension attributes may come nested (`{"urn:…:User": {…}}`), flat
//! (`"urn:…:User:employeeNumber"`) or un-prefixed (`"employeeNumber"`).

pub(crate) mod coerce;
mod projection;

use serde_json::{Map, Value};

use crate::ScimError;
use crate::patch::ops::{self, Mode};
use crate::patch::{MemberRef, parse_members};
use crate::schema::{ROSTER_USER_SCHEMA, ResolvedAttr, ResourceKind, Schema};
use coerce::{KeyTarget, is_read_only, is_write_only, resolve_in_schema, resolve_key};

pub use projection::AttributeSelection;

/// The result of normalizing a POST or PUT body.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalized {
    /// The stored form of the resource's attributes.
    pub attributes: Map<String, Value>,
    /// Groups only: the members named by the body; `Some` whenever the body had a `members` key
    /// (`null` gives an empty list), so PUT can tell "replace with none" from "not mentioned".
    pub members: Option<Vec<MemberRef>>,
}

/// Normalizes and validates a POST or PUT body of `kind` into the stored form.
///
/// Errors: a body that is not an object is `invalidSyntax`; type mismatches, a missing
/// `userName`/`displayName` and several `primary: true` values in one attribute are
/// `invalidValue`; malformed members are `invalidValue`.
pub fn normalize(kind: ResourceKind, body: &Value) -> Result<Normalized, ScimError> {
    let Value::Object(obj) = body else {
        return Err(ScimError::invalid_syntax("The request body must be a JSON object."));
    };
    let mut attributes = Map::new();
    let mut members = None;
    for (key, value) in obj {
        if is_server_key(key) {
            continue;
        }
        if kind == ResourceKind::Group && key.eq_ignore_ascii_case("members") {
            members = Some(parse_members(value)?);
            continue;
        }
        match resolve_key(kind, key) {
            KeyTarget::Unknown => {}
            KeyTarget::Schema(s) => write_extension(&mut attributes, s, value)?,
            KeyTarget::Attr(ra) => write_input(&mut attributes, &ra, value)?,
        }
    }
    check_stored(kind, &attributes)?;
    Ok(Normalized { attributes, members })
}

/// The longest resource id Roster will look up; its own ids are 36-character UUIDs.
pub const MAX_ID_LEN: usize = 256;

/// Whether `id` (from a URL) could name a stored resource. Ids are assigned by the server, so an
/// empty or overlong id, or one with control characters (Postgres cannot even compare U+0000), is
/// answered 404 without a database query or an event that no projector could apply.
pub fn is_possible_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && !id.chars().any(char::is_control)
}

/// Checks that a stored form (e.g. the result of a PATCH) obeys the same rules as a create.
pub fn validate_stored(kind: ResourceKind, stored: &Map<String, Value>) -> Result<(), ScimError> {
    normalize_stored(kind, stored).map(|_| ())
}

/// Re-normalizes a stored form (canonical names, coerced values, empties dropped) and validates it.
pub(crate) fn normalize_stored(
    kind: ResourceKind,
    stored: &Map<String, Value>,
) -> Result<Map<String, Value>, ScimError> {
    let mut out = Map::new();
    for (key, value) in stored {
        if is_server_key(key) || (kind == ResourceKind::Group && key.eq_ignore_ascii_case("members")) {
            continue;
        }
        match resolve_key(kind, key) {
            KeyTarget::Unknown => {}
            KeyTarget::Schema(s) => write_extension(&mut out, s, value)?,
            KeyTarget::Attr(ra) => write_input(&mut out, &ra, value)?,
        }
    }
    check_stored(kind, &out)?;
    Ok(out)
}

/// The `schemas` of a resource: its core URN, then each extension present in the stored form.
pub fn schemas_for(kind: ResourceKind, stored: &Map<String, Value>) -> Vec<&'static str> {
    std::iter::once(kind.core_schema().id)
        .chain(
            kind.extensions()
                .iter()
                .filter(|s| crate::json::map_get_ci(stored, s.id).is_some_and(Value::is_object))
                .map(|s| s.id),
        )
        .collect()
}

/// Keys the server owns; ignored on input.
fn is_server_key(key: &str) -> bool {
    ["schemas", "meta", "id"].iter().any(|k| key.eq_ignore_ascii_case(k))
}

fn write_input(out: &mut Map<String, Value>, ra: &ResolvedAttr, value: &Value) -> Result<(), ScimError> {
    if is_read_only(ra) || is_write_only(ra) {
        return Ok(());
    }
    ops::set(out, ra, None, value, Mode::Replace)
}

fn write_extension(out: &mut Map<String, Value>, s: &'static Schema, value: &Value) -> Result<(), ScimError> {
    if s.id == ROSTER_USER_SCHEMA {
        return Ok(());
    }
    match value {
        Value::Null => Ok(()),
        Value::Object(inner) => {
            for (k, v) in inner {
                if let Some(ra) = resolve_in_schema(s, k) {
                    write_input(out, &ra, v)?;
                }
            }
            Ok(())
        }
        other => Err(ScimError::invalid_value(format!(
            "'{}' must be an object of extension attributes, not {}.",
            s.id,
            crate::json::brief(other)
        ))),
    }
}

/// Required attributes present and non-empty; at most one `primary: true` per attribute.
fn check_stored(kind: ResourceKind, stored: &Map<String, Value>) -> Result<(), ScimError> {
    let required = match kind {
        ResourceKind::User => "userName",
        ResourceKind::Group => "displayName",
    };
    match stored.get(required) {
        Some(Value::String(s)) if !s.trim().is_empty() => {}
        _ => {
            return Err(ScimError::invalid_value(format!("{required} is required and must be a non-empty string.")));
        }
    }
    let schemas = std::iter::once(kind.core_schema()).chain(kind.extensions().iter().copied());
    for schema in schemas {
        let container = if schema.id == kind.core_schema().id {
            Some(stored)
        } else {
            stored.get(schema.id).and_then(Value::as_object)
        };
        let Some(container) = container else { continue };
        for attr in schema.attributes.iter().filter(|a| a.multi_valued) {
            let primaries = container
                .get(attr.name)
                .and_then(Value::as_array)
                .map_or(0, |a| a.iter().filter(|e| e.get("primary") == Some(&Value::Bool(true))).count());
            if primaries > 1 {
                return Err(ScimError::invalid_value(format!(
                    "'{}' has {primaries} values marked primary; at most one may be.",
                    attr.name
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
