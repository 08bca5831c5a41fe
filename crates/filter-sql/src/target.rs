//! Resolving an attribute path against the schema into what the SQL compares: a column, a JSON
//! value in `resource`, a constant, or a collection (JSON array or membership rows) whose elements
//! are tested inside an `EXISTS`.

use roster_scim::ScimError;
use roster_scim::filter::{AttrPath, resolve_path, resolve_sub_path};
use roster_scim::schema::{
    AttrType, AttributeDef, ROSTER_USER_SCHEMA, ResolvedAttr, ResourceKind, Schema, resolve_lenient,
};

use crate::sql::{Base, JsonPath, MEMBER, Sql};

/// How a string operand is folded for case-insensitive comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fold {
    /// caseExact: compared as stored.
    Exact,
    /// `lower()` applied in SQL to both the operand and the bound literal.
    Lower,
    /// The column already holds Rust's `to_lowercase()`; the literal is lowercased in Rust.
    PreLowered,
}

/// The comparison semantics of an operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Text(Fold),
    /// Canonical `YYYY-MM-DDTHH:MM:SS.mmmZ` text, ordered as strings.
    DateTime,
    /// 1/0 on SQLite, boolean on Postgres.
    Bool,
    Number,
}

/// A SQL expression free of bind parameters, with its semantics.
#[derive(Debug, Clone)]
pub(crate) struct Operand {
    pub(crate) sql: String,
    pub(crate) kind: Kind,
    /// Whether the expression can be NULL (absent attribute); leaves over it need NULL guards.
    pub(crate) nullable: bool,
}

/// What a comparison's left-hand side is.
#[derive(Debug, Clone)]
pub(crate) enum Leaf {
    Expr(Operand),
    /// A value the same for every row (`meta.resourceType`, `groups.type`), evaluated in Rust.
    Const {
        value: &'static str,
        case_exact: bool,
    },
}

/// Where the elements of a multi-valued attribute live.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    /// A JSON array in `resource`.
    Json(JsonPath),
    /// Group `members`: `scim_members` rows whose `group_id` is the row's id.
    GroupMembers,
    /// User `groups`: `scim_members` rows whose `member_id` is the row's id.
    UserGroups,
}

/// A multi-valued attribute whose elements are tested inside `EXISTS`.
#[derive(Debug, Clone)]
pub(crate) struct Collection {
    pub(crate) attr: &'static AttributeDef,
    pub(crate) source: Source,
}

/// A resolved path.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Leaf(Leaf),
    /// A single-valued complex attribute before a value filter (`name[givenName eq "x"]`).
    Complex {
        schema: &'static Schema,
        attr: &'static AttributeDef,
    },
    /// A multi-valued attribute, optionally with the sub-attribute named (`emails.value`).
    Multi {
        coll: Collection,
        sub: Option<&'static AttributeDef>,
    },
}

fn text(sql: String, fold: Fold, nullable: bool) -> Leaf {
    Leaf::Expr(Operand { sql, kind: Kind::Text(fold), nullable })
}

/// The semantics a schema attribute's values get.
fn kind_of(def: &AttributeDef) -> Result<Kind, ScimError> {
    Ok(match def.ty {
        AttrType::String | AttrType::Reference => Kind::Text(if def.case_exact { Fold::Exact } else { Fold::Lower }),
        AttrType::Binary => Kind::Text(Fold::Exact),
        AttrType::DateTime => Kind::DateTime,
        AttrType::Boolean => Kind::Bool,
        AttrType::Decimal | AttrType::Integer => Kind::Number,
        AttrType::Complex => {
            return Err(ScimError::invalid_filter(format!(
                "'{}' is a complex attribute; filter on one of its sub-attributes.",
                def.name
            )));
        }
    })
}

/// A JSON-stored value of type `def.ty` at `keys` under `base`.
fn json_leaf(sql: &Sql<'_>, base: Base, keys: Vec<&'static str>, def: &AttributeDef) -> Result<Leaf, ScimError> {
    let path = JsonPath::new(keys)?;
    let kind = kind_of(def)?;
    let expr = match kind {
        Kind::Text(_) | Kind::DateTime => sql.json_text(base, &path),
        Kind::Bool => sql.json_bool(base, &path),
        Kind::Number => sql.json_number(base, &path),
    };
    Ok(Leaf::Expr(Operand { sql: expr, kind, nullable: true }))
}

/// Resolves a path on the resource row (outside any value filter) with the shared
/// [`resolve_path`], so SQL and in-memory evaluation agree on what a path means (implicit
/// `.value`, un-prefixed extension attributes, write-only attributes rejected).
pub(crate) fn row_target(sql: &Sql<'_>, kind: ResourceKind, path: &AttrPath) -> Result<Target, ScimError> {
    resolved_target(sql, kind, resolve_path(kind, path)?)
}

/// Resolves the attribute a value filter `path[...]` applies to.
pub(crate) fn value_path_target(sql: &Sql<'_>, kind: ResourceKind, path: &AttrPath) -> Result<Target, ScimError> {
    if path.sub_attr.is_some() {
        return Err(ScimError::invalid_filter(format!(
            "A value filter '[ ]' must follow an attribute, not the sub-attribute '{path}'."
        )));
    }
    let ra = resolve_lenient(kind, path.urn.as_deref(), &path.attr, None).ok_or_else(|| {
        ScimError::invalid_filter(format!(
            "Unknown attribute '{path}' in filter: {} resources have no such attribute.",
            kind.as_str()
        ))
    })?;
    match (ra.attr.multi_valued, ra.attr.ty) {
        (true, _) => resolved_target(sql, kind, ra),
        (false, AttrType::Complex) => Ok(Target::Complex { schema: ra.schema, attr: ra.attr }),
        (false, _) => Err(ScimError::invalid_filter(format!(
            "'{}' is neither multi-valued nor complex, so a value filter '[ ]' does not apply to it.",
            ra.attr.name
        ))),
    }
}

/// Resolves `sub` inside a value filter on the single-valued complex `attr`
/// (`name[givenName eq "x"]`).
pub(crate) fn complex_sub_target(
    sql: &Sql<'_>,
    kind: ResourceKind,
    schema: &'static Schema,
    attr: &'static AttributeDef,
    sub: &AttrPath,
) -> Result<Target, ScimError> {
    let sub = resolve_sub_path(attr, sub)?;
    resolved_target(sql, kind, ResolvedAttr { schema, attr, sub: Some(sub) })
}

fn resolved_target(sql: &Sql<'_>, kind: ResourceKind, ra: ResolvedAttr) -> Result<Target, ScimError> {
    let ResolvedAttr { schema, attr: def, sub } = ra;
    let a = sql.alias;
    let is_core = !ra.is_extension();
    if is_core {
        let leaf = match (def.name, sub.map(|s| s.name), kind) {
            ("id", _, _) => Some(text(format!("{a}.id"), Fold::Exact, false)),
            ("externalId", _, _) => Some(text(format!("{a}.external_id"), Fold::Exact, true)),
            ("meta", Some("created"), _) => {
                Some(Leaf::Expr(Operand { sql: format!("{a}.created"), kind: Kind::DateTime, nullable: false }))
            }
            ("meta", Some("lastModified"), _) => {
                Some(Leaf::Expr(Operand { sql: format!("{a}.last_modified"), kind: Kind::DateTime, nullable: false }))
            }
            ("meta", Some("resourceType"), _) => Some(Leaf::Const { value: kind.as_str(), case_exact: true }),
            ("meta", Some("version"), _) => {
                Some(text(format!("('W/\"' || CAST({a}.version AS TEXT) || '\"')"), Fold::Exact, false))
            }
            ("meta", Some(other), _) => {
                return Err(ScimError::invalid_filter(format!("Filtering on 'meta.{other}' is not supported.")));
            }
            ("userName", _, ResourceKind::User) => Some(text(format!("{a}.user_name_lower"), Fold::PreLowered, false)),
            ("displayName", _, ResourceKind::User) => Some(text(format!("{a}.display_name"), Fold::Lower, true)),
            ("displayName", _, ResourceKind::Group) => {
                Some(text(format!("{a}.display_name_lower"), Fold::PreLowered, false))
            }
            ("active", _, ResourceKind::User) => {
                Some(Leaf::Expr(Operand { sql: format!("{a}.active"), kind: Kind::Bool, nullable: false }))
            }
            ("groups", _, ResourceKind::User) => {
                return Ok(Target::Multi { coll: Collection { attr: def, source: Source::UserGroups }, sub });
            }
            ("members", _, ResourceKind::Group) => {
                return Ok(Target::Multi { coll: Collection { attr: def, source: Source::GroupMembers }, sub });
            }
            _ => None,
        };
        if let Some(leaf) = leaf {
            return Ok(Target::Leaf(leaf));
        }
    } else if schema.id == ROSTER_USER_SCHEMA && def.name == "licenseType" {
        return Ok(Target::Leaf(text(format!("{a}.license_type"), Fold::Lower, true)));
    }

    // Everything else lives in the JSON `resource`, extension attributes under their URN key.
    let mut keys = Vec::with_capacity(3);
    if !is_core {
        keys.push(schema.id);
    }
    keys.push(def.name);
    if def.multi_valued {
        let coll = Collection { attr: def, source: Source::Json(JsonPath::new(keys)?) };
        return Ok(Target::Multi { coll, sub });
    }
    match sub {
        Some(s) => {
            keys.push(s.name);
            Ok(Target::Leaf(json_leaf(sql, Base::Row, keys, s)?))
        }
        // resolve_path only leaves a complex attribute bare when it is the value-filter target.
        None => Ok(Target::Leaf(json_leaf(sql, Base::Row, keys, def)?)),
    }
}

impl Collection {
    /// Resolves a sub-attribute named inside a value filter (`type` in `emails[type eq "work"]`);
    /// `None` means the element itself (collections of simple values).
    pub(crate) fn sub_by_name(&self, path: &AttrPath) -> Result<Option<&'static AttributeDef>, ScimError> {
        let def = resolve_sub_path(self.attr, path)?;
        Ok((!std::ptr::eq(def, self.attr)).then_some(def))
    }

    /// The FROM item and correlation condition that enumerate this collection's elements.
    pub(crate) fn source_sql(&self, sql: &Sql<'_>) -> (String, Option<String>) {
        let a = sql.alias;
        match &self.source {
            Source::Json(path) => (sql.json_elements(path), None),
            Source::GroupMembers => (
                format!("scim_members {MEMBER}"),
                Some(format!("{MEMBER}.account_id = {a}.account_id AND {MEMBER}.group_id = {a}.id")),
            ),
            Source::UserGroups => (
                format!("scim_members {MEMBER}"),
                Some(format!(
                    "{MEMBER}.account_id = {a}.account_id AND {MEMBER}.member_id = {a}.id AND {MEMBER}.member_type = 'User'"
                )),
            ),
        }
    }

    /// The operand for `sub` of the current element (`None`: the element itself, for collections of
    /// simple values).
    pub(crate) fn elem_leaf(&self, sql: &Sql<'_>, sub: Option<&'static AttributeDef>) -> Result<Leaf, ScimError> {
        let unsupported = |s: &str| {
            ScimError::invalid_filter(format!(
                "Filtering on '{}.{s}' is not supported; filter on '{}.value'.",
                self.attr.name, self.attr.name
            ))
        };
        match (&self.source, sub) {
            (Source::Json(_), Some(s)) => json_leaf(sql, Base::Elem, vec![s.name], s),
            (Source::Json(_), None) => json_leaf(sql, Base::Elem, Vec::new(), self.attr),
            (Source::GroupMembers | Source::UserGroups, None) => Err(unsupported("")),
            (Source::GroupMembers, Some(s)) => match s.name {
                "value" => Ok(text(format!("{MEMBER}.member_id"), Fold::Exact, false)),
                "type" => Ok(text(format!("{MEMBER}.member_type"), Fold::Lower, false)),
                "display" => Ok(text(
                    format!(
                        "(CASE WHEN {MEMBER}.member_type = 'Group' \
                         THEN (SELECT fsql_g.display_name FROM scim_groups fsql_g \
                         WHERE fsql_g.account_id = {MEMBER}.account_id AND fsql_g.id = {MEMBER}.member_id) \
                         ELSE (SELECT fsql_u.display_name FROM scim_users fsql_u \
                         WHERE fsql_u.account_id = {MEMBER}.account_id AND fsql_u.id = {MEMBER}.member_id) END)"
                    ),
                    Fold::Lower,
                    true,
                )),
                other => Err(unsupported(other)),
            },
            (Source::UserGroups, Some(s)) => match s.name {
                "value" => Ok(text(format!("{MEMBER}.group_id"), Fold::Exact, false)),
                "display" => Ok(text(
                    format!(
                        "(SELECT fsql_g.display_name_lower FROM scim_groups fsql_g \
                         WHERE fsql_g.account_id = {MEMBER}.account_id AND fsql_g.id = {MEMBER}.group_id)"
                    ),
                    Fold::PreLowered,
                    true,
                )),
                // Roster's read model holds direct memberships only.
                "type" => Ok(Leaf::Const { value: "direct", case_exact: false }),
                other => Err(unsupported(other)),
            },
        }
    }

    /// Whether elements have a `primary` flag (sorting picks the primary element first).
    pub(crate) fn has_primary(&self) -> bool {
        matches!(self.source, Source::Json(_)) && self.attr.sub("primary").is_some()
    }
}
