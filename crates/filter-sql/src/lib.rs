//! Translates a parsed SCIM filter (RFC 7644 §3.4.2.2) and sort order (§3.4.2.3) into SQL over
//! Roster's read model (`scim_users`, `scim_groups`, `scim_members`), for SQLite and Postgres.
//!
//! The crate is pure: it returns SQL text plus bind parameters and never touches a database.
//!
//! # Safety against injection
//! Every literal from a filter becomes a bind parameter ([`SqlParam`]). Column names, table names
//! and JSON path keys in the generated text come only from this crate's constants and the
//! schema's canonical `&'static` attribute names (never from the filter's spelling of them).
//!
//! # Semantics
//! Paths resolve through the shared `roster_scim::filter::resolve_path` (and
//! `resolve_sub_path` inside `[...]`), and the SQL follows `roster_scim::filter::matches`, so
//! filtering in SQL and in memory agree; the real-database tests check that case by case.
//! - **Columns**: `id`, `externalId` (caseExact), User `userName` (`user_name_lower` against the
//!   Rust-lowercased literal — the hot path stays a plain `t.user_name_lower = ?`), User
//!   `displayName` (`lower(display_name)`), Group `displayName` (`display_name_lower`), `active`,
//!   `meta.created`/`meta.lastModified` (canonical-string compare; literals are normalized to
//!   `YYYY-MM-DDTHH:MM:SS.mmmZ` UTC, and sub-millisecond literals still compare exactly),
//!   `meta.version` (against `W/"<version>"`), `meta.resourceType` (a constant, evaluated in
//!   Rust), the roster extension's `licenseType`. `meta.location`, `members.$ref`,
//!   `groups.$ref` and `password` are rejected (400 invalidFilter).
//! - **Everything else** is read from the JSON `resource` column (`json_extract` on SQLite,
//!   `#>>` on jsonb on Postgres); multi-valued attributes are tested with
//!   `EXISTS (SELECT 1 FROM <array elements> …)`, and `members`/`groups` with `EXISTS` over
//!   `scim_members` (`groups.display` reads `scim_groups`, `members.display` the member's
//!   `display_name`; `groups.type` is always `direct`, the only memberships Roster stores).
//! - **Implicit `.value`**: a complex attribute without sub-attribute means its `value`
//!   (`emails co "x"`, `members eq "id"`, `manager eq "id"`); one without `value` (`name`,
//!   `addresses`, `meta`) must name a sub-attribute, also for `pr`.
//! - **Multi-valued attributes match when any of their values satisfies the comparison**
//!   (RFC 7644 §3.4.2.2); with no value at all only `ne` holds. So `emails.value ne "a"` matches
//!   users with another address or with none; `not (emails.value eq "a")` means "no address is
//!   a". A value filter (`emails[type eq "work" and value co "@x"]`) requires all its conditions
//!   on the same element.
//! - **Case**: strings compare case-insensitively unless the attribute is caseExact. For columns
//!   that store a Rust-lowercased copy the literal is lowercased in Rust (Unicode); elsewhere SQL
//!   `lower()` is applied to both the value and the bound literal, so exact-case matches always
//!   work. SQLite's `lower()` folds ASCII only (so does Postgres under the C locale), so there
//!   `"ÉMILE" eq "émile"` does not match outside `userName`, Group `displayName` and
//!   `groups.display`.
//!   Membership ids (`members.value`, `groups.value`) are compared caseExact, like `id`.
//! - **co/sw/ew** use `instr`/`substr` (SQLite) and `strpos`/`left`/`right` (Postgres), never
//!   `LIKE`, so `%` and `_` in literals are ordinary characters; `co ""` means "has a value".
//! - **Ordering comparisons** on strings are by code point (byte order; `COLLATE "C"` on
//!   Postgres), on dateTimes by instant, on numbers numerically; booleans allow `eq`/`ne` only
//!   and also accept the strings `"true"`/`"false"` (any case) that Entra sends. Unquoted
//!   numbers and booleans compared with string attributes compare as their text.
//! - **Absent values**: `ne` is true and every other operator false; `eq null` means "no value"
//!   and `ne null` "some value"; `pr` also excludes `""`. Every leaf is two-valued (never SQL
//!   NULL), so `not (…)` is exact.
//! - **Sorting**: single-valued attributes by value, multi-valued by the primary (else first)
//!   element's value (membership rows: the smallest id or name), strings case-insensitive unless
//!   caseExact and byte-ordered, missing values last ascending / first descending, always ending
//!   with the row id as tiebreaker. `sortBy` errors (unknown attribute, complex attribute without
//!   `value`) are 400 invalidValue: the parameter is not a filter. Without `sortBy`:
//!   `t.created, t.id` (both descending for `sortOrder=descending`).

mod filter;
mod sort;
mod sql;
mod target;

#[cfg(test)]
mod tests;

use roster_scim::ScimError;
use roster_scim::filter::{AttrPath, Filter};
use roster_scim::schema::ResourceKind;

/// The SQL dialect to generate, because SQLite and Postgres differ in JSON functions and
/// placeholders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// SQLite (embedded mode): `?` placeholders, JSON1 functions.
    Sqlite,
    /// Postgres (production): `$N` placeholders with explicit casts, jsonb operators.
    Postgres,
}

/// A bind parameter, so every literal from a filter reaches the database out of band.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlParam {
    /// A string (`::text` on Postgres).
    Text(String),
    /// A boolean (`::boolean` on Postgres; SQLite stores it as 1/0).
    Bool(bool),
    /// An integer (`::bigint` on Postgres).
    Int(i64),
    /// A non-integral number (`::float8` on Postgres).
    Float(f64),
}

/// A SQL condition and its bind parameters in placeholder order, to AND into a query.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlFragment {
    /// The condition, referring to the table through the alias given.
    pub sql: String,
    /// The values of the fragment's placeholders, in order.
    pub params: Vec<SqlParam>,
}

/// The direction of a list request's `sortOrder`, which is a query parameter rather than filter
/// syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SortOrder {
    /// `ascending` (the default).
    #[default]
    Ascending,
    /// `descending`.
    Descending,
}

/// Translates `filter` on resources of `kind` into a WHERE condition over the table aliased
/// `alias`.
///
/// Placeholders are `?` on SQLite and `$N` (with casts) on Postgres, numbered from `first_param`
/// (1-based) because the caller has usually bound the account id already. The caller ANDs the
/// result to `alias.account_id = ?`. Unknown attributes, unsupported operators and literals of the
/// wrong type are 400 invalidFilter; a bad `alias` or `first_param` is a 500 (a programming error).
pub fn where_clause(
    filter: &Filter,
    kind: ResourceKind,
    dialect: Dialect,
    alias: &str,
    first_param: usize,
) -> Result<SqlFragment, ScimError> {
    let mut t = filter::Translator { sql: sql::Sql::new(dialect, alias, first_param)?, kind };
    let sql = t.translate(filter)?;
    Ok(SqlFragment { sql, params: t.sql.params })
}

/// Builds the ORDER BY body (without the keywords) for `sortBy`/`sortOrder`, ending with the
/// row id so that pagination is stable; it has no bind parameters.
pub fn order_by(
    sort_by: Option<&AttrPath>,
    order: SortOrder,
    kind: ResourceKind,
    dialect: Dialect,
    alias: &str,
) -> Result<String, ScimError> {
    sort::order_by(sort_by, order, kind, dialect, alias)
}
