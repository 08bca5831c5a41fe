//! Applying a parsed PATCH request to a resource's stored form.

use serde_json::{Map, Value};

use super::members::{MemberOp, parse_members, value_eq_disjunction};
use super::ops::{self, Mode};
use super::{PatchOp, PatchOpKind, PatchPath, PatchRequest, in_operation, relabel};
use crate::filter::{Filter, validate_relative};
use crate::json::brief;
use crate::resource::coerce::{KeyTarget, is_read_only, is_write_only, resolve_in_schema, resolve_key, shown};
use crate::schema::{self, AttrType, ROSTER_USER_SCHEMA, ResolvedAttr, ResourceKind, Schema};
use crate::{ScimError, ScimType};

/// Applies `req` to `resource` (Roster's stored form) and returns the membership changes.
///
/// Operations run in order on a copy; `resource` is only updated when all of them succeed and the
/// result passes the same validation as a create, so an error leaves it untouched.
pub fn apply(
    kind: ResourceKind,
    resource: &mut Map<String, Value>,
    req: &PatchRequest,
) -> Result<Vec<MemberOp>, ScimError> {
    let mut work = resource.clone();
    let mut members = Vec::new();
    for (i, op) in req.operations.iter().enumerate() {
        apply_op(kind, &mut work, op, &mut members).map_err(|e| in_operation(e, i))?;
    }
    let normalized = crate::resource::normalize_stored(kind, &work)?;
    *resource = normalized;
    Ok(members)
}

/// What a PATCH path designates.
enum Target<'p> {
    /// An attribute or sub-attribute, optionally through a value filter.
    Attr { ra: ResolvedAttr, filter: Option<&'p Filter> },
    /// A whole extension object (`path: "urn:…:enterprise:2.0:User"`).
    Schema(&'static Schema),
    /// A group's `members`, which are not in the stored map.
    Members { filter: Option<&'p Filter>, sub: Option<&'p str> },
}

fn apply_op(
    kind: ResourceKind,
    root: &mut Map<String, Value>,
    op: &PatchOp,
    members: &mut Vec<MemberOp>,
) -> Result<(), ScimError> {
    let mode = match op.op {
        PatchOpKind::Add => Mode::Add,
        PatchOpKind::Replace => Mode::Replace,
        PatchOpKind::Remove => {
            let Some(path) = &op.path else {
                return Err(ScimError::no_target("The remove operation has no 'path'; it needs a target."));
            };
            return remove(kind, root, path, op.value.as_ref(), members);
        }
    };
    let Some(value) = &op.value else {
        return Err(ScimError::invalid_value(format!("The {} operation has no 'value'.", op.op.as_str())));
    };
    match &op.path {
        None => pathless(kind, root, mode, value, members),
        Some(path) => match resolve_target(kind, path)? {
            Target::Members { filter, sub } => member_write(mode, filter, sub, value).map(|m| members.extend(m)),
            Target::Schema(s) => write_schema(root, s, value, mode),
            Target::Attr { ra, filter } => write_attr(root, &ra, filter, value, mode),
        },
    }
}

fn remove(
    kind: ResourceKind,
    root: &mut Map<String, Value>,
    path: &PatchPath,
    value: Option<&Value>,
    members: &mut Vec<MemberOp>,
) -> Result<(), ScimError> {
    match resolve_target(kind, path)? {
        Target::Members { filter, sub } => {
            if sub.is_some() {
                return Err(member_sub_error());
            }
            let op = match (filter, value) {
                (Some(f), _) => match value_eq_disjunction(f) {
                    Some(ids) => MemberOp::Remove(ids),
                    None => MemberOp::RemoveMatching(f.clone()),
                },
                (None, None | Some(Value::Null)) => MemberOp::RemoveAll,
                (None, Some(v)) => {
                    let ids: Vec<String> = parse_members(v)?.into_iter().map(|m| m.value).collect();
                    if ids.is_empty() {
                        return Ok(());
                    }
                    MemberOp::Remove(ids)
                }
            };
            members.push(op);
            Ok(())
        }
        Target::Schema(s) => {
            check_schema_writable(s)?;
            crate::json::take_ci(root, s.id);
            Ok(())
        }
        Target::Attr { ra, filter } => {
            check_writable(&ra)?;
            if is_write_only(&ra) {
                return Ok(());
            }
            ops::remove(root, &ra, filter, value)
        }
    }
}

/// Resolves a PATCH path against `kind` (unknown attributes are `invalidPath`).
fn resolve_target(kind: ResourceKind, path: &PatchPath) -> Result<Target<'_>, ScimError> {
    let ap = &path.attr;
    if let Some(urn) = &ap.urn
        && ap.sub_attr.is_none()
        && path.filter.is_none()
        && path.sub_attr.is_none()
        && let Some(s) = schema::schema_by_urn(kind, &format!("{urn}:{}", ap.attr))
        && is_extension(s)
    {
        return Ok(Target::Schema(s));
    }
    if ap.urn.is_none() && ap.attr.eq_ignore_ascii_case("schemas") {
        return Err(ScimError::mutability("'schemas' is maintained by the server and cannot be patched."));
    }
    let Some(mut ra) = schema::resolve_lenient(kind, ap.urn.as_deref(), &ap.attr, None) else {
        return Err(ScimError::invalid_path(format!(
            "Unknown attribute '{ap}' in path: {} resources have no such attribute.",
            kind.as_str()
        )));
    };
    let sub = path.target_sub();
    if kind == ResourceKind::Group && ra.attr.name == "members" {
        if let Some(f) = &path.filter {
            validate_relative(f, ra.attr).map_err(|e| relabel(e, ScimType::InvalidPath))?;
        }
        return Ok(Target::Members { filter: path.filter.as_ref(), sub });
    }
    if let Some(sub) = sub {
        if ra.attr.ty != AttrType::Complex {
            return Err(ScimError::invalid_path(format!(
                "'{}' has no sub-attributes, so the path '{path}' is invalid.",
                ra.attr.name
            )));
        }
        ra.sub = Some(ra.attr.sub(sub).ok_or_else(|| {
            ScimError::invalid_path(format!(
                "Unknown attribute in path '{path}': '{}' has no sub-attribute '{sub}'.",
                ra.attr.name
            ))
        })?);
    }
    if let Some(f) = &path.filter {
        if !ra.attr.multi_valued {
            return Err(ScimError::invalid_path(format!(
                "'{}' is not multi-valued, so a value filter '[ ]' does not apply to it.",
                ra.attr.name
            )));
        }
        validate_relative(f, ra.attr).map_err(|e| relabel(e, ScimType::InvalidPath))?;
    }
    Ok(Target::Attr { ra, filter: path.filter.as_ref() })
}

fn check_writable(ra: &ResolvedAttr) -> Result<(), ScimError> {
    if is_read_only(ra) {
        return Err(ScimError::mutability(format!("'{}' is read-only and cannot be modified.", shown(ra))));
    }
    Ok(())
}

fn check_schema_writable(s: &'static Schema) -> Result<(), ScimError> {
    if s.id == ROSTER_USER_SCHEMA {
        return Err(ScimError::mutability(format!("'{}' is read-only and cannot be modified.", s.id)));
    }
    Ok(())
}

fn write_attr(
    root: &mut Map<String, Value>,
    ra: &ResolvedAttr,
    filter: Option<&Filter>,
    value: &Value,
    mode: Mode,
) -> Result<(), ScimError> {
    check_writable(ra)?;
    if is_write_only(ra) {
        return Ok(());
    }
    ops::set(root, ra, filter, value, mode)
}

/// `path` = an extension URN: the value is an object of that extension's attributes.
fn write_schema(root: &mut Map<String, Value>, s: &'static Schema, value: &Value, mode: Mode) -> Result<(), ScimError> {
    check_schema_writable(s)?;
    match value {
        Value::Null => {
            crate::json::take_ci(root, s.id);
            Ok(())
        }
        Value::Object(inner) => {
            for (k, v) in inner {
                let ra = resolve_in_schema(s, k).ok_or_else(|| {
                    ScimError::invalid_path(format!("Unknown attribute '{k}' in the extension '{}'.", s.id))
                })?;
                write_attr(root, &ra, None, v, mode)?;
            }
            Ok(())
        }
        other => Err(ScimError::invalid_value(format!(
            "The value for '{}' must be an object of its attributes, not {}.",
            s.id,
            brief(other)
        ))),
    }
}

/// A path-less add/replace: every key of the value object is a path of its own.
fn pathless(
    kind: ResourceKind,
    root: &mut Map<String, Value>,
    mode: Mode,
    value: &Value,
    members: &mut Vec<MemberOp>,
) -> Result<(), ScimError> {
    let Value::Object(obj) = value else {
        return Err(ScimError::invalid_value(format!(
            "Without a 'path', the value must be an object of attributes, not {}.",
            brief(value)
        )));
    };
    for (key, v) in obj {
        if key.eq_ignore_ascii_case("schemas") || key.eq_ignore_ascii_case("meta") {
            continue;
        }
        if key.eq_ignore_ascii_case("id") {
            return Err(ScimError::mutability("'id' is assigned by the server and cannot be changed."));
        }
        match resolve_key(kind, key) {
            KeyTarget::Unknown => {
                return Err(ScimError::invalid_path(format!(
                    "Unknown attribute '{key}': {} resources have no such attribute.",
                    kind.as_str()
                )));
            }
            KeyTarget::Schema(s) if !is_extension(s) => pathless(kind, root, mode, v, members)?,
            KeyTarget::Schema(s) => write_schema(root, s, v, mode)?,
            KeyTarget::Attr(ra) if kind == ResourceKind::Group && ra.attr.name == "members" => {
                let sub = ra.sub.map(|s| s.name);
                members.extend(member_write(mode, None, sub, v)?);
            }
            KeyTarget::Attr(ra) => write_attr(root, &ra, None, v, mode)?,
        }
    }
    Ok(())
}

fn is_extension(s: &'static Schema) -> bool {
    s.id != schema::USER_SCHEMA && s.id != schema::GROUP_SCHEMA
}

fn member_sub_error() -> ScimError {
    ScimError::mutability("Member sub-attributes cannot be modified; add or remove whole members.")
}

/// `add`/`replace` on `members`.
fn member_write(
    mode: Mode,
    filter: Option<&Filter>,
    sub: Option<&str>,
    value: &Value,
) -> Result<Option<MemberOp>, ScimError> {
    if sub.is_some() {
        return Err(member_sub_error());
    }
    if filter.is_some() {
        return Err(ScimError::invalid_path(
            "Members can only be added or replaced as a list; use the path 'members' and a value array.",
        ));
    }
    let refs = parse_members(value)?;
    Ok(match mode {
        Mode::Add if refs.is_empty() => None,
        Mode::Add => Some(MemberOp::Add(refs)),
        Mode::Replace if value.is_null() => Some(MemberOp::RemoveAll),
        Mode::Replace => Some(MemberOp::Replace(refs)),
    })
}
