//! Filter → WHERE translation.
//!
//! Every leaf this module emits is two-valued (TRUE or FALSE, never SQL NULL), so `NOT (…)`
//! composes correctly under SQL's three-valued logic: comparisons on nullable operands carry an
//! explicit `IS NULL` / `IS NOT NULL` guard, and collection tests are `EXISTS` (never NULL).

use chrono::{Datelike, Timelike};
use roster_scim::ScimError;
use roster_scim::filter::{AttrPath, CompValue, CompareOp, Filter};
use roster_scim::schema::{AttributeDef, ResourceKind, Schema};
use roster_scim::time::{format_datetime, parse_datetime};

use crate::sql::Sql;
use crate::target::{Collection, Fold, Kind, Leaf, Operand, Target, complex_sub_target, row_target, value_path_target};
use crate::{Dialect, SqlParam};

/// Where paths are resolved.
#[derive(Clone, Copy)]
enum Scope<'c> {
    /// The resource row.
    Row,
    /// One element of a collection, inside `attr[...]`.
    Elem(&'c Collection),
    /// Inside `attr[...]` on a single-valued complex attribute: paths name its sub-attributes.
    Complex { schema: &'static Schema, attr: &'static AttributeDef },
}

/// Translates filters for one query.
pub(crate) struct Translator<'a> {
    pub(crate) sql: Sql<'a>,
    pub(crate) kind: ResourceKind,
}

fn complex_needs_sub(attr: &AttributeDef) -> ScimError {
    ScimError::invalid_filter(format!(
        "'{0}' is a complex attribute; filter on one of its sub-attributes, such as '{0}.{1}'.",
        attr.name,
        attr.sub_attributes.first().map_or("value", |s| s.name)
    ))
}

/// The SQL operator of an ordering or equality comparison.
fn op_symbol(op: CompareOp) -> &'static str {
    match op {
        CompareOp::Eq => "=",
        CompareOp::Ne => "<>",
        CompareOp::Gt => ">",
        CompareOp::Ge => ">=",
        CompareOp::Lt => "<",
        CompareOp::Le => "<=",
        // Callers handle co/sw/ew before asking for a symbol.
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => "=",
    }
}

fn value_text(v: &CompValue) -> String {
    match v {
        CompValue::String(s) => format!("{s:?}"),
        CompValue::Bool(b) => b.to_string(),
        CompValue::Number(n) => n.to_string(),
        CompValue::Null => "null".into(),
    }
}

/// Normalizes a dateTime literal to the stored canonical form with the shared
/// [`roster_scim::time`] rules; `true` when it has sub-millisecond precision (which the stored
/// form cannot hold). Years outside 0000–9999 are rejected: their text would not sort by time.
pub(crate) fn canonical_datetime(s: &str) -> Option<(String, bool)> {
    let dt = parse_datetime(s).ok()?;
    let nanos = dt.nanosecond();
    if nanos >= 1_000_000_000 || !(0..=9999).contains(&dt.year()) {
        return None;
    }
    Some((format_datetime(dt), nanos % 1_000_000 != 0))
}

/// Evaluates a comparison against a constant in Rust, with the same semantics as the SQL.
fn const_compare(c: &str, op: CompareOp, lit: &str, case_exact: bool) -> bool {
    let (a, b) = if case_exact { (c.to_string(), lit.to_string()) } else { (c.to_lowercase(), lit.to_lowercase()) };
    match op {
        CompareOp::Eq => a == b,
        CompareOp::Ne => a != b,
        CompareOp::Co => a.contains(&b),
        CompareOp::Sw => a.starts_with(&b),
        CompareOp::Ew => a.ends_with(&b),
        CompareOp::Gt => a > b,
        CompareOp::Ge => a >= b,
        CompareOp::Lt => a < b,
        CompareOp::Le => a <= b,
    }
}

impl Translator<'_> {
    /// Translates a whole filter on the resource row.
    pub(crate) fn translate(&mut self, f: &Filter) -> Result<String, ScimError> {
        self.filter(Scope::Row, f)
    }

    fn filter(&mut self, scope: Scope<'_>, f: &Filter) -> Result<String, ScimError> {
        match f {
            Filter::And(a, b) => {
                let a = self.filter(scope, a)?;
                let b = self.filter(scope, b)?;
                Ok(format!("({a} AND {b})"))
            }
            Filter::Or(a, b) => {
                let a = self.filter(scope, a)?;
                let b = self.filter(scope, b)?;
                Ok(format!("({a} OR {b})"))
            }
            Filter::Not(a) => Ok(format!("NOT ({})", self.filter(scope, a)?)),
            Filter::Present(path) => self.present(scope, path),
            Filter::Compare { path, op, value } => self.compare(scope, path, *op, value),
            Filter::ValuePath { path, filter } => self.value_path(scope, path, filter),
        }
    }

    fn target(&self, scope: Scope<'_>, path: &AttrPath) -> Result<Target, ScimError> {
        match scope {
            Scope::Row => row_target(&self.sql, self.kind, path),
            Scope::Elem(coll) => Ok(Target::Leaf(coll.elem_leaf(&self.sql, coll.sub_by_name(path)?)?)),
            Scope::Complex { schema, attr } => complex_sub_target(&self.sql, self.kind, schema, attr, path),
        }
    }

    /// `EXISTS (SELECT 1 FROM <elements> WHERE <correlation> AND <cond>)`.
    fn exists(
        &mut self,
        coll: &Collection,
        cond: impl FnOnce(&mut Self) -> Result<Option<String>, ScimError>,
    ) -> Result<String, ScimError> {
        let (from, corr) = coll.source_sql(&self.sql);
        let cond = cond(self)?;
        let wh: Vec<String> = corr.into_iter().chain(cond).collect();
        Ok(if wh.is_empty() {
            format!("EXISTS (SELECT 1 FROM {from})")
        } else {
            format!("EXISTS (SELECT 1 FROM {from} WHERE {})", wh.join(" AND "))
        })
    }

    /// `pr`: some reached value is present (not NULL, not "").
    fn present(&mut self, scope: Scope<'_>, path: &AttrPath) -> Result<String, ScimError> {
        match self.target(scope, path)? {
            Target::Leaf(leaf) => Ok(self.present_leaf(&leaf)),
            Target::Multi { coll, sub } => {
                let leaf = coll.elem_leaf(&self.sql, sub)?;
                self.exists(&coll, |t| Ok(Some(t.present_leaf(&leaf))))
            }
            Target::Complex { attr, .. } => Err(complex_needs_sub(attr)),
        }
    }

    fn present_leaf(&self, leaf: &Leaf) -> String {
        match leaf {
            Leaf::Const { .. } => self.sql.truth(true),
            Leaf::Expr(o) => match (o.kind, o.nullable) {
                (Kind::Text(_), true) => format!("({x} IS NOT NULL AND {x} <> '')", x = o.sql),
                (Kind::Text(_), false) => format!("{} <> ''", o.sql),
                (_, true) => format!("{} IS NOT NULL", o.sql),
                (_, false) => self.sql.truth(true),
            },
        }
    }

    /// The condition "this leaf has a value" (`None`: always), for `eq null`/`ne null` and `ne`.
    fn not_null(leaf: &Leaf) -> Option<String> {
        match leaf {
            Leaf::Expr(o) if o.nullable => Some(format!("{} IS NOT NULL", o.sql)),
            _ => None,
        }
    }

    /// Some reached value is non-null (`ne null`); its negation is `eq null`.
    fn has_value(&mut self, target: &Target) -> Result<String, ScimError> {
        match target {
            Target::Leaf(leaf) => Ok(Self::not_null(leaf).unwrap_or_else(|| self.sql.truth(true))),
            Target::Multi { coll, sub } => {
                let leaf = coll.elem_leaf(&self.sql, *sub)?;
                self.exists(coll, |_| Ok(Self::not_null(&leaf)))
            }
            Target::Complex { attr, .. } => Err(complex_needs_sub(attr)),
        }
    }

    fn compare(
        &mut self,
        scope: Scope<'_>,
        path: &AttrPath,
        op: CompareOp,
        value: &CompValue,
    ) -> Result<String, ScimError> {
        let target = self.target(scope, path)?;
        if *value == CompValue::Null {
            // `eq null`: no value at all; `ne null`: some value (as the in-memory evaluator).
            return match op {
                CompareOp::Eq => Ok(format!("NOT ({})", self.has_value(&target)?)),
                CompareOp::Ne => self.has_value(&target),
                _ => Err(ScimError::invalid_filter(format!(
                    "'{path} {} null': null can only be compared with eq or ne.",
                    op.as_str()
                ))),
            };
        }
        match target {
            Target::Leaf(leaf) => self.compare_leaf(&leaf, path, op, value),
            Target::Complex { attr, .. } => Err(complex_needs_sub(attr)),
            // Any value satisfying the comparison matches (RFC 7644 §3.4.2.2); with no value at
            // all, only `ne` holds (the attribute is absent).
            Target::Multi { coll, sub } => {
                let leaf = coll.elem_leaf(&self.sql, sub)?;
                if op == CompareOp::Ne {
                    let none = self.exists(&coll, |_| Ok(Self::not_null(&leaf)))?;
                    let some = self.exists(&coll, |t| {
                        let cond = t.compare_leaf(&leaf, path, op, value)?;
                        Ok(Some(match Self::not_null(&leaf) {
                            Some(nn) => format!("{nn} AND {cond}"),
                            None => cond,
                        }))
                    })?;
                    Ok(format!("(NOT {none} OR {some})"))
                } else {
                    self.exists(&coll, |t| t.compare_leaf(&leaf, path, op, value).map(Some))
                }
            }
        }
    }

    fn value_path(&mut self, scope: Scope<'_>, path: &AttrPath, inner: &Filter) -> Result<String, ScimError> {
        if !matches!(scope, Scope::Row) {
            return Err(ScimError::invalid_filter(format!("Nested value filters are not allowed ('{path}[ ]').")));
        }
        match value_path_target(&self.sql, self.kind, path)? {
            Target::Multi { coll, .. } => self.exists(&coll, |t| t.filter(Scope::Elem(&coll), inner).map(Some)),
            Target::Complex { schema, attr } => self.filter(Scope::Complex { schema, attr }, inner),
            Target::Leaf(_) => Err(ScimError::invalid_filter(format!(
                "'{path}' is neither multi-valued nor complex, so a value filter '[ ]' does not apply to it."
            ))),
        }
    }

    fn compare_leaf(
        &mut self,
        leaf: &Leaf,
        path: &AttrPath,
        op: CompareOp,
        value: &CompValue,
    ) -> Result<String, ScimError> {
        let o = match leaf {
            Leaf::Const { value: c, case_exact } => {
                let Some(lit) = value.as_text() else {
                    return Err(self.wrong_type(path, "a string", value));
                };
                return Ok(self.sql.truth(const_compare(c, op, &lit, *case_exact)));
            }
            Leaf::Expr(o) => o,
        };
        match o.kind {
            Kind::Text(fold) => self.compare_text(o, fold, path, op, value),
            Kind::DateTime => self.compare_datetime(o, path, op, value),
            Kind::Bool => self.compare_bool(o, path, op, value),
            Kind::Number => self.compare_number(o, path, op, value),
        }
    }

    fn wrong_type(&self, path: &AttrPath, expected: &str, value: &CompValue) -> ScimError {
        ScimError::invalid_filter(format!("'{path}' must be compared with {expected}, not {}.", value_text(value)))
    }

    fn bad_op(&self, path: &AttrPath, op: CompareOp, ty: &str, allowed: &str) -> ScimError {
        ScimError::invalid_filter(format!(
            "'{path}' is {ty}; the operator '{}' does not apply (use {allowed}).",
            op.as_str()
        ))
    }

    /// Wraps a condition on a nullable operand so the result is never NULL: absent values satisfy
    /// `ne` and nothing else.
    fn guard(&self, o: &Operand, op: CompareOp, cond: String) -> String {
        match (o.nullable, op) {
            (false, _) => cond,
            (true, CompareOp::Ne) => format!("({} IS NULL OR {cond})", o.sql),
            (true, _) => format!("({} IS NOT NULL AND {cond})", o.sql),
        }
    }

    fn compare_text(
        &mut self,
        o: &Operand,
        fold: Fold,
        path: &AttrPath,
        op: CompareOp,
        value: &CompValue,
    ) -> Result<String, ScimError> {
        // Unquoted numbers and booleans compare as their text (`externalId eq 12345`).
        let Some(lit) = value.as_text() else {
            return Err(self.wrong_type(path, "a string", value));
        };
        let lit = if fold == Fold::PreLowered { lit.to_lowercase() } else { lit.into_owned() };
        if lit.is_empty() && matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew) {
            // Every string contains, starts and ends with "".
            return Ok(if o.nullable { format!("{} IS NOT NULL", o.sql) } else { self.sql.truth(true) });
        }
        let x = if fold == Fold::Lower { format!("lower({})", o.sql) } else { o.sql.clone() };
        let wrap = |p: String| {
            if fold == Fold::Lower { format!("lower({p})") } else { p }
        };
        let pg = self.sql.dialect == Dialect::Postgres;
        let cond = match op {
            CompareOp::Co => {
                let p = wrap(self.sql.bind(SqlParam::Text(lit)));
                if pg { format!("strpos({x}, {p}) > 0") } else { format!("instr({x}, {p}) > 0") }
            }
            CompareOp::Sw | CompareOp::Ew => {
                let (p1, p2) = self.sql.bind_twice(SqlParam::Text(lit));
                let (p1, p2) = (wrap(p1), wrap(p2));
                match (op, pg) {
                    (CompareOp::Sw, true) => format!("left({x}, length({p1})) = {p2}"),
                    (CompareOp::Sw, false) => format!("substr({x}, 1, length({p1})) = {p2}"),
                    (_, true) => format!("right({x}, length({p1})) = {p2}"),
                    // substr(x, -n) is all of x when n > length(x), which then differs from the
                    // longer literal.
                    (_, false) => format!("substr({x}, -length({p1})) = {p2}"),
                }
            }
            CompareOp::Eq | CompareOp::Ne => {
                let p = wrap(self.sql.bind(SqlParam::Text(lit)));
                format!("{x} {} {p}", op_symbol(op))
            }
            CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le => {
                let p = wrap(self.sql.bind(SqlParam::Text(lit)));
                format!("{x}{} {} {p}", self.sql.collate_c(), op_symbol(op))
            }
        };
        Ok(self.guard(o, op, cond))
    }

    fn compare_datetime(
        &mut self,
        o: &Operand,
        path: &AttrPath,
        op: CompareOp,
        value: &CompValue,
    ) -> Result<String, ScimError> {
        let Some(lit) = value.as_text() else {
            return Err(self.wrong_type(path, "a dateTime string", value));
        };
        if matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew) {
            return Err(self.bad_op(path, op, "a dateTime", "eq, ne, gt, ge, lt or le"));
        }
        let Some((canon, sub_ms)) = canonical_datetime(&lit) else {
            return Err(ScimError::invalid_filter(format!(
                "'{lit}' is not an RFC 3339 dateTime (such as \"2026-01-31T12:00:00Z\"), so it cannot be compared with '{path}'."
            )));
        };
        // Stored times have millisecond precision; t has more, and m = t truncated to ms:
        // x = t never holds, x >= t ⇔ x > m, x < t ⇔ x <= m (gt and le are unchanged).
        let op = match (sub_ms, op) {
            (true, CompareOp::Eq) => return Ok(self.sql.truth(false)),
            (true, CompareOp::Ne) => return Ok(self.sql.truth(true)),
            (true, CompareOp::Ge) => CompareOp::Gt,
            (true, CompareOp::Lt) => CompareOp::Le,
            (_, op) => op,
        };
        let p = self.sql.bind(SqlParam::Text(canon));
        let cond = format!("{} {} {p}", o.sql, op_symbol(op));
        Ok(self.guard(o, op, cond))
    }

    fn compare_bool(
        &mut self,
        o: &Operand,
        path: &AttrPath,
        op: CompareOp,
        value: &CompValue,
    ) -> Result<String, ScimError> {
        if !matches!(op, CompareOp::Eq | CompareOp::Ne) {
            return Err(self.bad_op(path, op, "a boolean", "eq or ne"));
        }
        // Entra sends "True"/"False" strings for booleans; as_bool accepts them.
        let Some(b) = value.as_bool() else {
            return Err(self.wrong_type(path, "true or false", value));
        };
        let p = self.sql.bind(SqlParam::Bool(b));
        let cond = format!("{} {} {p}", o.sql, op_symbol(op));
        Ok(self.guard(o, op, cond))
    }

    fn compare_number(
        &mut self,
        o: &Operand,
        path: &AttrPath,
        op: CompareOp,
        value: &CompValue,
    ) -> Result<String, ScimError> {
        let CompValue::Number(n) = value else {
            return Err(self.wrong_type(path, "a number", value));
        };
        if matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew) {
            return Err(self.bad_op(path, op, "a number", "eq, ne, gt, ge, lt or le"));
        }
        let param = match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => SqlParam::Int(i),
            (None, Some(f)) => SqlParam::Float(f),
            (None, None) => return Err(self.wrong_type(path, "a number in range", value)),
        };
        let p = self.sql.bind(param);
        let cond = format!("{} {} {p}", o.sql, op_symbol(op));
        Ok(self.guard(o, op, cond))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn number_leaf(dialect: Dialect, op: CompareOp, value: CompValue) -> Result<(String, Vec<SqlParam>), ScimError> {
        let mut t = Translator { sql: Sql::new(dialect, "t", 1)?, kind: ResourceKind::User };
        let leaf = Leaf::Expr(Operand { sql: "n".into(), kind: Kind::Number, nullable: true });
        let sql = t.compare_leaf(&leaf, &AttrPath::simple("n"), op, &value)?;
        Ok((sql, t.sql.params))
    }

    #[test]
    fn numbers_compare_numerically_with_typed_parameters() {
        let int = CompValue::Number(serde_json::Number::from(42));
        assert_eq!(
            number_leaf(Dialect::Postgres, CompareOp::Ge, int.clone()).unwrap(),
            ("(n IS NOT NULL AND n >= $1::bigint)".to_string(), vec![SqlParam::Int(42)])
        );
        let float = CompValue::Number(serde_json::Number::from_f64(1.5).unwrap());
        assert_eq!(number_leaf(Dialect::Sqlite, CompareOp::Ne, float).unwrap().1, vec![SqlParam::Float(1.5)]);
        assert!(number_leaf(Dialect::Sqlite, CompareOp::Co, int).is_err());
        assert!(number_leaf(Dialect::Sqlite, CompareOp::Eq, CompValue::String("4".into())).is_err());
    }

    #[test]
    fn canonical_datetime_accepts_rfc3339_with_any_offset_and_rejects_the_rest() {
        assert_eq!(
            canonical_datetime("2026-11-29T18:49:20.1234+01:00"),
            Some(("2026-11-29T17:49:20.123Z".into(), true))
        );
        assert_eq!(canonical_datetime("2026-11-29T17:49:20Z"), Some(("2026-11-29T17:49:20.000Z".into(), false)));
        assert_eq!(canonical_datetime("2026-11-29T17:49:20"), None, "RFC 3339 requires an offset");
        assert_eq!(canonical_datetime("2026-11-29"), None);
        assert_eq!(canonical_datetime("tomorrow"), None);
    }

    #[test]
    fn constants_compare_like_the_sql_would() {
        assert!(const_compare("User", CompareOp::Sw, "us", false));
        assert!(!const_compare("User", CompareOp::Eq, "user", true));
        assert!(const_compare("direct", CompareOp::Gt, "a", false));
    }
}
