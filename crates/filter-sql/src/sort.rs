//! `sortBy`/`sortOrder` → ORDER BY (RFC 7644 §3.4.2.3).

use roster_scim::filter::AttrPath;
use roster_scim::schema::ResourceKind;
use roster_scim::{ScimError, ScimType};

use crate::sql::{ELEM, Sql};
use crate::target::{Collection, Fold, Kind, Leaf, Operand, Source, Target, row_target};
use crate::{Dialect, SortOrder};

/// Sort errors are about the `sortBy` parameter, not a filter: 400 invalidValue.
fn sort_err(e: ScimError) -> ScimError {
    if e.scim_type == Some(ScimType::InvalidFilter) {
        let detail = e.detail.replace(" in filter", "").replace("filter on", "sort by");
        ScimError::invalid_value(format!("sortBy: {detail}"))
    } else {
        e
    }
}

/// The comparable form of an operand: lowered unless caseExact, byte-ordered on Postgres.
fn key_expr(o: &Operand) -> String {
    match o.kind {
        Kind::Text(Fold::Lower) => format!("lower({})", o.sql),
        _ => o.sql.clone(),
    }
}

fn collate(sql: &Sql<'_>, o: &Operand) -> &'static str {
    match o.kind {
        Kind::Text(_) => sql.collate_c(),
        _ => "",
    }
}

/// The value a multi-valued attribute sorts by: the primary element's, else the first element's
/// (JSON arrays); the smallest (membership rows, which have no order).
fn collection_key(sql: &Sql<'_>, coll: &Collection, o: &Operand) -> String {
    let inner = key_expr(o);
    let c = collate(sql, o);
    match (&coll.source, sql.dialect) {
        (Source::Json(path), Dialect::Sqlite) => {
            let prim = if coll.has_primary() {
                format!("CASE WHEN json_type({ELEM}.value, '$.\"primary\"') = 'true' THEN 0 ELSE 1 END, ")
            } else {
                String::new()
            };
            format!(
                "(SELECT {inner} FROM json_each({}.resource, '{}') {ELEM} ORDER BY {prim}{ELEM}.key LIMIT 1)",
                sql.alias,
                path.sqlite()
            )
        }
        (Source::Json(path), Dialect::Postgres) => {
            let prim = if coll.has_primary() {
                format!("CASE WHEN ({ELEM} -> 'primary') = 'true'::jsonb THEN 0 ELSE 1 END, ")
            } else {
                String::new()
            };
            format!(
                "(SELECT {inner} FROM jsonb_array_elements({}) WITH ORDINALITY AS fsql_o({ELEM}, fsql_n) \
                 ORDER BY {prim}fsql_o.fsql_n LIMIT 1){c}",
                sql.pg_array(path)
            )
        }
        (Source::GroupMembers | Source::UserGroups, _) => {
            let (from, corr) = coll.source_sql(sql);
            let wh = corr.map(|w| format!(" WHERE {w}")).unwrap_or_default();
            format!("(SELECT MIN({inner}{c}) FROM {from}{wh}){c}")
        }
    }
}

/// Builds the ORDER BY body; see [`crate::order_by`].
pub(crate) fn order_by(
    sort_by: Option<&AttrPath>,
    order: SortOrder,
    kind: ResourceKind,
    dialect: Dialect,
    alias: &str,
) -> Result<String, ScimError> {
    let sql = Sql::new(dialect, alias, 1)?;
    let desc = order == SortOrder::Descending;
    let dir = if desc { " DESC" } else { "" };
    let Some(path) = sort_by else {
        return Ok(format!("{alias}.created{dir}, {alias}.id{dir}"));
    };
    let key = match row_target(&sql, kind, path).map_err(sort_err)? {
        // A constant (meta.resourceType) orders nothing: only the tiebreaker remains.
        Target::Leaf(Leaf::Const { .. }) => None,
        Target::Leaf(Leaf::Expr(o)) => Some((format!("{}{}", key_expr(&o), collate(&sql, &o)), o.nullable)),
        Target::Complex { attr, .. } => {
            return Err(ScimError::invalid_value(format!(
                "sortBy: '{path}' is a complex attribute; sort by one of its sub-attributes, such as '{}.{}'.",
                attr.name,
                attr.sub_attributes.first().map_or("value", |s| s.name)
            )));
        }
        Target::Multi { coll, sub } => match coll.elem_leaf(&sql, sub).map_err(sort_err)? {
            Leaf::Const { .. } => None,
            Leaf::Expr(o) => Some((collection_key(&sql, &coll, &o), true)),
        },
    };
    let mut parts = Vec::with_capacity(3);
    match (key, dialect) {
        (None, _) => {}
        (Some((k, false)), _) => parts.push(format!("{k}{dir}")),
        // Missing values sort last ascending and first descending (RFC 7644 §3.4.2.3).
        (Some((k, true)), Dialect::Sqlite) => {
            parts.push(format!("{k} IS NULL{dir}"));
            parts.push(format!("{k}{dir}"));
        }
        (Some((k, true)), Dialect::Postgres) => {
            parts.push(format!("{k}{dir} NULLS {}", if desc { "FIRST" } else { "LAST" }));
        }
    }
    parts.push(format!("{alias}.id{dir}"));
    Ok(parts.join(", "))
}
