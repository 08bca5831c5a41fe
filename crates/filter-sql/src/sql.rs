//! The SQL text builder: placeholders and bind parameters in order, dialect constants, and the
//! JSON accessors over the `resource` column.
//!
//! Nothing in here ever formats a user-supplied string into SQL: literals go through [`Sql::bind`],
//! and JSON path keys come from [`JsonPath`], which only accepts the schema's `&'static` names.

use roster_scim::ScimError;

use crate::{Dialect, SqlParam};

/// Alias of the `scim_members` row inside membership sub-queries.
pub(crate) const MEMBER: &str = "fsql_m";
/// Alias of one array element inside multi-valued sub-queries.
pub(crate) const ELEM: &str = "fsql_e";

/// Accumulates bind parameters while SQL text is generated strictly left to right.
///
/// SQLite's `?` placeholders are positional, so every caller must call [`Sql::bind`] in the order
/// the placeholders appear in the final text.
pub(crate) struct Sql<'a> {
    pub(crate) dialect: Dialect,
    pub(crate) alias: &'a str,
    pub(crate) params: Vec<crate::SqlParam>,
    next: usize,
}

impl<'a> Sql<'a> {
    /// A builder for a query whose table alias is `alias` and whose next Postgres placeholder is
    /// `$first_param`.
    pub(crate) fn new(dialect: Dialect, alias: &'a str, first_param: usize) -> Result<Self, ScimError> {
        check_alias(alias)?;
        if dialect == Dialect::Postgres && first_param == 0 {
            return Err(ScimError::status(500, "filter-sql: Postgres placeholders are numbered from 1"));
        }
        Ok(Self { dialect, alias, params: Vec::new(), next: first_param })
    }

    /// Records `p` and returns its placeholder (`?` or `$N::type`).
    pub(crate) fn bind(&mut self, p: SqlParam) -> String {
        match self.dialect {
            Dialect::Sqlite => {
                self.params.push(p);
                "?".to_string()
            }
            Dialect::Postgres => {
                let cast = match p {
                    SqlParam::Text(_) => "text",
                    SqlParam::Bool(_) => "boolean",
                    SqlParam::Int(_) => "bigint",
                    SqlParam::Float(_) => "float8",
                };
                let n = self.next;
                self.next += 1;
                self.params.push(p);
                format!("${n}::{cast}")
            }
        }
    }

    /// Two placeholders for the same value, to be used in this order (Postgres reuses one `$N`).
    pub(crate) fn bind_twice(&mut self, p: SqlParam) -> (String, String) {
        match self.dialect {
            Dialect::Sqlite => {
                let a = self.bind(p.clone());
                let b = self.bind(p);
                (a, b)
            }
            Dialect::Postgres => {
                let a = self.bind(p);
                (a.clone(), a)
            }
        }
    }

    /// A constant condition (SQLite before 3.23 has no `TRUE`/`FALSE` keywords).
    pub(crate) fn truth(&self, b: bool) -> String {
        match (self.dialect, b) {
            (Dialect::Sqlite, true) => "1".into(),
            (Dialect::Sqlite, false) => "0".into(),
            (Dialect::Postgres, true) => "TRUE".into(),
            (Dialect::Postgres, false) => "FALSE".into(),
        }
    }

    /// Suffix forcing byte-order string comparison on Postgres, matching SQLite's BINARY collation.
    pub(crate) fn collate_c(&self) -> &'static str {
        match self.dialect {
            Dialect::Sqlite => "",
            Dialect::Postgres => " COLLATE \"C\"",
        }
    }

    /// The JSON document a path is read from.
    fn doc(&self, base: Base) -> String {
        match (self.dialect, base) {
            (Dialect::Sqlite, Base::Row) => format!("{}.resource", self.alias),
            (Dialect::Postgres, Base::Row) => format!("{}.resource::jsonb", self.alias),
            (Dialect::Sqlite, Base::Elem) => format!("{ELEM}.value"),
            (Dialect::Postgres, Base::Elem) => ELEM.to_string(),
        }
    }

    /// A JSON value as SQL text (strings unquoted), NULL when absent or JSON `null`.
    pub(crate) fn json_text(&self, base: Base, path: &JsonPath) -> String {
        match self.dialect {
            Dialect::Sqlite if base == Base::Elem && path.is_empty() => format!("{ELEM}.value"),
            Dialect::Sqlite => format!("json_extract({}, '{}')", self.doc(base), path.sqlite()),
            Dialect::Postgres => format!("({} #>> '{}')", self.doc(base), path.pg()),
        }
    }

    /// A JSON boolean as SQL (1/0 on SQLite, boolean on Postgres); NULL unless it is a JSON
    /// boolean.
    pub(crate) fn json_bool(&self, base: Base, path: &JsonPath) -> String {
        match self.dialect {
            Dialect::Sqlite => {
                format!("(CASE {} WHEN 'true' THEN 1 WHEN 'false' THEN 0 END)", self.sqlite_json_type(base, path))
            }
            Dialect::Postgres => {
                let doc = self.doc(base);
                let p = path.pg();
                format!("(CASE jsonb_typeof({doc} #> '{p}') WHEN 'boolean' THEN ({doc} #>> '{p}')::boolean END)")
            }
        }
    }

    /// A JSON number as SQL numeric; NULL unless it is a JSON number.
    pub(crate) fn json_number(&self, base: Base, path: &JsonPath) -> String {
        match self.dialect {
            Dialect::Sqlite => format!(
                "(CASE WHEN {} IN ('integer', 'real') THEN {} END)",
                self.sqlite_json_type(base, path),
                self.json_text(base, path)
            ),
            Dialect::Postgres => {
                let doc = self.doc(base);
                let p = path.pg();
                format!("(CASE jsonb_typeof({doc} #> '{p}') WHEN 'number' THEN ({doc} #>> '{p}')::numeric END)")
            }
        }
    }

    fn sqlite_json_type(&self, base: Base, path: &JsonPath) -> String {
        if base == Base::Elem && path.is_empty() {
            format!("{ELEM}.type")
        } else {
            format!("json_type({}, '{}')", self.doc(base), path.sqlite())
        }
    }

    /// The elements of a JSON array on the row, as a FROM item aliased [`ELEM`]; no rows when the
    /// attribute is absent.
    pub(crate) fn json_elements(&self, path: &JsonPath) -> String {
        match self.dialect {
            Dialect::Sqlite => format!("json_each({}, '{}') {ELEM}", self.doc(Base::Row), path.sqlite()),
            Dialect::Postgres => format!("jsonb_array_elements({}) {ELEM}", self.pg_array(path)),
        }
    }

    /// Postgres: the array at `path`, or an empty array when it is absent or not an array (so
    /// `jsonb_array_elements` never raises).
    pub(crate) fn pg_array(&self, path: &JsonPath) -> String {
        let doc = self.doc(Base::Row);
        let p = path.pg();
        format!("CASE WHEN jsonb_typeof({doc} #> '{p}') = 'array' THEN {doc} #> '{p}' ELSE '[]'::jsonb END")
    }
}

/// Where a JSON path starts: the row's `resource`, or the current array element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Base {
    Row,
    Elem,
}

/// A JSON path made only of canonical schema names (never user text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsonPath(Vec<&'static str>);

impl JsonPath {
    /// Builds a path; rejects keys with characters that would need escaping in either dialect
    /// (defence in depth: schema names never contain them).
    pub(crate) fn new(keys: Vec<&'static str>) -> Result<Self, ScimError> {
        for k in &keys {
            let ok = !k.is_empty()
                && k.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '_' | '-' | '$'));
            if !ok {
                return Err(ScimError::status(500, format!("filter-sql: unsupported schema key {k:?}")));
            }
        }
        Ok(Self(keys))
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// SQLite JSON path text: `$."name"."givenName"`.
    pub(crate) fn sqlite(&self) -> String {
        let mut s = String::from("$");
        for k in &self.0 {
            s.push_str(".\"");
            s.push_str(k);
            s.push('"');
        }
        s
    }

    /// Postgres text-array path: `{name,givenName}`, quoting keys with special characters.
    pub(crate) fn pg(&self) -> String {
        let keys: Vec<String> = self
            .0
            .iter()
            .map(|k| {
                if k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    (*k).to_string()
                } else {
                    format!("\"{k}\"")
                }
            })
            .collect();
        format!("{{{}}}", keys.join(","))
    }
}

/// Rejects table aliases that are not plain identifiers or that collide with the sub-query aliases.
fn check_alias(alias: &str) -> Result<(), ScimError> {
    let mut chars = alias.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !alias.to_ascii_lowercase().starts_with("fsql_");
    if ok { Ok(()) } else { Err(ScimError::status(500, format!("filter-sql: invalid table alias {alias:?}"))) }
}
