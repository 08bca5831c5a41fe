//! `attributes` / `excludedAttributes` (RFC 7644 §3.4.2.5, §3.9).

use serde_json::{Map, Value};

use super::coerce::{KeyTarget, resolve_in_schema, resolve_key};
use crate::ScimError;
use crate::schema::{AttributeDef, ResourceKind, Returned};

/// Which attributes a response should carry, parsed from the query parameters.
///
/// `attributes` wins when both parameters are given. Unknown attribute names are ignored
/// (tolerance); names with characters no attribute path can contain are `invalidValue`.
/// `id` (returned "always") and `schemas` are always kept; `password` is never returned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AttributeSelection {
    mode: Mode,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
enum Mode {
    /// Every attribute returned by default.
    #[default]
    All,
    /// Only these (plus those returned always).
    Include(Vec<Sel>),
    /// All defaults except these.
    Exclude(Vec<Sel>),
}

/// One selected path: a whole schema (`attr = None`), an attribute, or a sub-attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sel {
    schema: &'static str,
    attr: Option<&'static str>,
    sub: Option<&'static str>,
}

impl Sel {
    /// Whether the selection concerns `attr` of `schema`.
    fn covers(&self, schema: &str, attr: &str) -> bool {
        self.schema == schema && self.attr.is_none_or(|a| a == attr)
    }
    /// Whether it selects the attribute as a whole (not just one sub-attribute).
    fn whole(&self) -> bool {
        self.attr.is_none() || self.sub.is_none()
    }
}

impl AttributeSelection {
    /// The selection that returns every attribute returned by default.
    pub fn all() -> Self {
        Self::default()
    }

    /// Parses the `attributes` and `excludedAttributes` query parameters (comma-separated paths,
    /// optionally URN-qualified, sub-attributes allowed).
    pub fn parse(kind: ResourceKind, attributes: Option<&str>, excluded: Option<&str>) -> Result<Self, ScimError> {
        let attributes = attributes.filter(|s| !s.trim().is_empty());
        let excluded = excluded.filter(|s| !s.trim().is_empty());
        let mode = match (attributes, excluded) {
            (Some(a), _) => Mode::Include(parse_list(kind, a, "attributes")?),
            (None, Some(e)) => Mode::Exclude(parse_list(kind, e, "excludedAttributes")?),
            (None, None) => Mode::All,
        };
        Ok(Self { mode })
    }

    /// Whether the top-level attribute `attr` (e.g. `members`, `groups`, or a URN-qualified
    /// extension attribute) will be returned at all, so the caller can skip loading it.
    pub fn wants(&self, kind: ResourceKind, attr: &str) -> bool {
        match resolve_key(kind, attr) {
            KeyTarget::Attr(ra) => self.keeps(ra.schema.id, ra.attr),
            KeyTarget::Schema(s) => match &self.mode {
                Mode::All => true,
                Mode::Include(list) => list.iter().any(|sel| sel.schema == s.id),
                Mode::Exclude(list) => !list.iter().any(|sel| sel.schema == s.id && sel.attr.is_none()),
            },
            KeyTarget::Unknown => false,
        }
    }

    fn keeps(&self, schema: &str, def: &AttributeDef) -> bool {
        match (def.returned, &self.mode) {
            (Returned::Never, _) => false,
            (Returned::Always, _) => true,
            (r, Mode::All) => r != Returned::Request,
            (_, Mode::Include(list)) => list.iter().any(|s| s.covers(schema, def.name)),
            (r, Mode::Exclude(list)) => {
                r != Returned::Request && !list.iter().any(|s| s.covers(schema, def.name) && s.whole())
            }
        }
    }

    /// Trims a fully rendered resource to the selection. It takes the resource by value so that
    /// what is kept moves into the answer instead of being copied (lists render many).
    pub fn apply(&self, kind: ResourceKind, resource: Value) -> Value {
        let Value::Object(obj) = resource else {
            return resource;
        };
        let keep_unknown = !matches!(self.mode, Mode::Include(_));
        let mut out = Map::new();
        for (key, value) in obj {
            if key.eq_ignore_ascii_case("schemas") {
                out.insert(key, value);
                continue;
            }
            match resolve_key(kind, &key) {
                KeyTarget::Schema(s) if s.id != kind.core_schema().id => {
                    let Value::Object(inner) = value else {
                        continue;
                    };
                    let mut kept = Map::new();
                    for (ik, iv) in inner {
                        match resolve_in_schema(s, &ik) {
                            Some(ra) if ra.sub.is_none() => {
                                if let Some(v) = self.project(s.id, ra.attr, iv) {
                                    kept.insert(ik, v);
                                }
                            }
                            _ if keep_unknown => {
                                kept.insert(ik, iv);
                            }
                            _ => {}
                        }
                    }
                    if !kept.is_empty() {
                        out.insert(key, Value::Object(kept));
                    }
                }
                KeyTarget::Attr(ra) if ra.sub.is_none() && !key.contains(':') => {
                    if let Some(v) = self.project(ra.schema.id, ra.attr, value) {
                        out.insert(key, v);
                    }
                }
                _ if keep_unknown => {
                    out.insert(key, value);
                }
                _ => {}
            }
        }
        Value::Object(out)
    }

    /// The projected value of one top-level attribute, or `None` to leave it out.
    fn project(&self, schema: &str, def: &AttributeDef, v: Value) -> Option<Value> {
        if !self.keeps(schema, def) {
            return None;
        }
        match &self.mode {
            Mode::Include(list) => {
                let sels: Vec<&Sel> = list.iter().filter(|s| s.covers(schema, def.name)).collect();
                if def.returned == Returned::Always || sels.iter().any(|s| s.whole()) {
                    return Some(v);
                }
                let subs: Vec<&str> = sels.iter().filter_map(|s| s.sub).collect();
                retain_subs(v, |k| subs.iter().any(|s| s.eq_ignore_ascii_case(k)))
            }
            Mode::Exclude(list) => {
                let subs: Vec<&str> =
                    list.iter().filter(|s| s.covers(schema, def.name)).filter_map(|s| s.sub).collect();
                if subs.is_empty() {
                    return Some(v);
                }
                retain_subs(v, |k| !subs.iter().any(|s| s.eq_ignore_ascii_case(k)))
            }
            Mode::All => Some(v),
        }
    }
}

/// Keeps the sub-attributes for which `keep` holds, in an object or each element of an array;
/// emptied objects are dropped, and `None` when nothing is left.
fn retain_subs(v: Value, keep: impl Fn(&str) -> bool + Copy) -> Option<Value> {
    match v {
        Value::Object(m) => {
            let kept: Map<String, Value> = m.into_iter().filter(|(k, _)| keep(k)).collect();
            (!kept.is_empty()).then_some(Value::Object(kept))
        }
        Value::Array(a) => {
            let kept: Vec<Value> = a.into_iter().filter_map(|e| retain_subs(e, keep)).collect();
            (!kept.is_empty()).then_some(Value::Array(kept))
        }
        other => Some(other),
    }
}

fn parse_list(kind: ResourceKind, list: &str, param: &str) -> Result<Vec<Sel>, ScimError> {
    let mut out = Vec::new();
    for raw in list.split(',') {
        // Tolerate `emails[type eq "work"]` (seen in the reference Postman suite): keep the attribute.
        let name = raw.split('[').next().unwrap_or("").trim();
        if name.is_empty() {
            continue;
        }
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '$')) {
            return Err(ScimError::invalid_value(format!(
                "'{name}' in '{param}' is not an attribute name; expected a comma-separated list such as 'userName,name.givenName'."
            )));
        }
        let sel = match resolve_key(kind, name) {
            KeyTarget::Schema(s) => Sel { schema: s.id, attr: None, sub: None },
            KeyTarget::Attr(ra) => Sel { schema: ra.schema.id, attr: Some(ra.attr.name), sub: ra.sub.map(|s| s.name) },
            KeyTarget::Unknown => continue,
        };
        if !out.contains(&sel) {
            out.push(sel);
        }
    }
    Ok(out)
}
