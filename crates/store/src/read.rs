//! Read-model queries and SCIM rendering: what GET and list requests answer.
//!
//! Lists translate the SCIM filter to SQL (never loading a whole account); members and a user's
//! groups are loaded only when the response will include them.

use std::sync::LazyLock;

use roster_db::{IndexedRow, ReadRow, Reads, StoreError, stmt};
use roster_filter_sql::{Dialect, SortOrder, SqlParam};
use roster_scim::ScimError;
use roster_scim::filter::{AttrPath, Filter};
use roster_scim::schema::{ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, ROSTER_USER_SCHEMA, ResourceKind, USER_SCHEMA};
use sea_orm::{DbBackend, Statement, Value};
use serde_json::{Map, Value as Json, json};

use crate::sql::{IN_CHUNK, members_with_groups};
use crate::write::{
    GROUP_COLUMNS, GroupRow, USER_COLUMNS, UserRow, group_by_id_sql, group_from_row, user_by_id_sql, user_from_row,
};

/// Errors of list queries: a bad filter is the client's fault, a database failure is not.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The filter or sort is invalid (400).
    #[error(transparent)]
    Scim(#[from] ScimError),
    /// The database failed (500/503).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sea_orm::DbErr> for QueryError {
    fn from(e: sea_orm::DbErr) -> Self {
        QueryError::Store(StoreError::Db(e))
    }
}

/// A page request.
#[derive(Debug, Clone)]
pub struct ListQuery<'a> {
    /// Parsed and validated filter.
    pub filter: Option<&'a Filter>,
    /// `sortBy`.
    pub sort_by: Option<&'a AttrPath>,
    /// `sortOrder` is descending.
    pub descending: bool,
    /// 1-based `startIndex`.
    pub start_index: u64,
    /// Page size (already capped).
    pub count: u64,
}

/// A group member as rendered.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberView {
    /// Member id.
    pub value: String,
    /// `User` or `Group`.
    pub kind: String,
    /// Display name of the member.
    pub display: Option<String>,
}

fn dialect(b: DbBackend) -> Dialect {
    if b == DbBackend::Postgres { Dialect::Postgres } else { Dialect::Sqlite }
}

fn param_value(p: SqlParam) -> Value {
    match p {
        SqlParam::Text(s) => s.into(),
        SqlParam::Bool(b) => b.into(),
        SqlParam::Int(i) => i.into(),
        SqlParam::Float(f) => f.into(),
    }
}

/// Builds `SELECT … FROM table t WHERE t.account_id = <p1> [AND (filter)]` plus its values.
fn filtered(
    b: DbBackend,
    select: &str,
    table: &str,
    kind: ResourceKind,
    account: &str,
    filter: Option<&Filter>,
) -> Result<(String, Vec<Value>), QueryError> {
    let first = if b == DbBackend::Postgres { "$1" } else { "?" };
    let mut sql = format!("SELECT {select} FROM {table} t WHERE t.account_id = {first}");
    let mut values: Vec<Value> = vec![account.into()];
    if let Some(f) = filter {
        let frag = roster_filter_sql::where_clause(f, kind, dialect(b), "t", 2)?;
        sql.push_str(" AND (");
        sql.push_str(&frag.sql);
        sql.push(')');
        values.extend(frag.params.into_iter().map(param_value));
    }
    Ok((sql, values))
}

fn prefixed(columns: &str) -> String {
    columns.split(", ").map(|c| format!("t.{c}")).collect::<Vec<_>>().join(", ")
}

/// The page statements' column lists, built once: every list request used to build its own.
static USER_PAGE_COLUMNS: LazyLock<String> = LazyLock::new(|| prefixed(USER_COLUMNS));
static GROUP_PAGE_COLUMNS: LazyLock<String> = LazyLock::new(|| prefixed(GROUP_COLUMNS));

async fn page<T, R: Reads>(
    db: &R,
    kind: ResourceKind,
    table: &str,
    columns: &str,
    account: &str,
    q: &ListQuery<'_>,
    decode: fn(&ReadRow) -> Result<T, StoreError>,
) -> Result<(u64, Vec<T>), QueryError> {
    let b = db.backend();
    let offset = q.start_index.saturating_sub(1);
    let items = if q.count == 0 {
        Vec::new()
    } else {
        let order = roster_filter_sql::order_by(
            q.sort_by,
            if q.descending { SortOrder::Descending } else { SortOrder::Ascending },
            kind,
            dialect(b),
            "t",
        )?;
        let (mut sql, values) = filtered(b, columns, table, kind, account, q.filter)?;
        sql.push_str(&format!(" ORDER BY {order} LIMIT {} OFFSET {offset}", q.count));
        let rows = db.rows(Statement::from_sql_and_values(b, sql, values)).await?;
        rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?
    };
    // A page that is not full and not past the end holds the last matches: the total follows
    // without counting (Entra's `userName eq` lookups are all such pages, so they cost one query).
    let short = (items.len() as u64) < q.count;
    if short && (!items.is_empty() || offset == 0) {
        return Ok((offset + items.len() as u64, items));
    }
    let (count_sql, values) = filtered(b, "COUNT(*)", table, kind, account, q.filter)?;
    let total: i64 = db
        .row(Statement::from_sql_and_values(b, count_sql, values))
        .await?
        .map(|r| r.get::<i64>(0))
        .transpose()?
        .unwrap_or(0);
    Ok((total as u64, items))
}

/// A page of users matching the query, with the total count.
pub async fn list_users<R: Reads>(db: &R, account: &str, q: &ListQuery<'_>) -> Result<(u64, Vec<UserRow>), QueryError> {
    page(db, ResourceKind::User, "scim_users", &USER_PAGE_COLUMNS, account, q, user_from_row).await
}

/// A page of groups matching the query, with the total count.
pub async fn list_groups<R: Reads>(
    db: &R,
    account: &str,
    q: &ListQuery<'_>,
) -> Result<(u64, Vec<GroupRow>), QueryError> {
    page(db, ResourceKind::Group, "scim_groups", &GROUP_PAGE_COLUMNS, account, q, group_from_row).await
}

/// One user.
pub async fn get_user<R: Reads>(db: &R, account: &str, id: &str) -> Result<Option<UserRow>, StoreError> {
    let row = db.row(stmt(db.backend(), &user_by_id_sql(), [account.into(), id.into()])).await?;
    row.as_ref().map(user_from_row).transpose()
}

/// One group (without members).
pub async fn get_group<R: Reads>(db: &R, account: &str, id: &str) -> Result<Option<GroupRow>, StoreError> {
    let row = db.row(stmt(db.backend(), &group_by_id_sql(), [account.into(), id.into()])).await?;
    row.as_ref().map(group_from_row).transpose()
}

/// The members of a group with their display names, ordered by id.
pub async fn group_members<R: Reads>(db: &R, account: &str, group: &str) -> Result<Vec<MemberView>, StoreError> {
    let b = db.backend();
    let rows = db
        .rows(stmt(
            b,
            "SELECT m.member_id, m.member_type, COALESCE(u.display_name, u.user_name, g.display_name) \
             FROM scim_members m \
             LEFT JOIN scim_users u ON u.account_id = m.account_id AND u.id = m.member_id \
             LEFT JOIN scim_groups g ON g.account_id = m.account_id AND g.id = m.member_id \
             WHERE m.account_id = ? AND m.group_id = ? ORDER BY m.member_id",
            [account.into(), group.into()],
        ))
        .await?;
    rows.iter().map(|r| Ok(MemberView { value: r.get(0)?, kind: r.get(1)?, display: r.get(2)? })).collect()
}

/// The groups a user (or group) is a direct member of, as (id, displayName), ordered by id.
pub async fn member_of<R: Reads>(db: &R, account: &str, member: &str) -> Result<Vec<(String, String)>, StoreError> {
    Ok(member_of_many(db, account, &[member]).await?.remove(member).unwrap_or_default())
}

/// [`member_of`] for several members at once (a page of users): one query per 500 members.
pub async fn member_of_many<R: Reads>(
    db: &R,
    account: &str,
    members: &[&str],
) -> Result<std::collections::HashMap<String, Vec<(String, String)>>, StoreError> {
    let b = db.backend();
    let mut out: std::collections::HashMap<String, Vec<(String, String)>> =
        members.iter().map(|m| ((*m).to_string(), Vec::new())).collect();
    for chunk in members.chunks(IN_CHUNK) {
        let values = std::iter::once(Value::from(account)).chain(chunk.iter().map(|m| Value::from(*m)));
        let sql = format!("SELECT m.member_id, g.id, g.display_name {}", members_with_groups(b, chunk.len()));
        for r in db.rows(stmt(b, &sql, values)).await? {
            let member: String = r.get(0)?;
            out.entry(member).or_default().push((r.get(1)?, r.get(2)?));
        }
    }
    for groups in out.values_mut() {
        groups.sort();
    }
    Ok(out)
}

/// The weak ETag of a version.
pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

fn meta(kind: ResourceKind, base: &str, id: &str, created: &str, last_modified: &str, version: i64) -> Json {
    let path = match kind {
        ResourceKind::User => "Users",
        ResourceKind::Group => "Groups",
    };
    // Built by hand: `json!` serialises each value it is given into a new one.
    let mut m = Map::new();
    m.insert("resourceType".into(), kind.as_str().into());
    m.insert("created".into(), created.into());
    m.insert("lastModified".into(), last_modified.into());
    m.insert("version".into(), etag(version).into());
    m.insert("location".into(), format!("{base}/{path}/{id}").into());
    Json::Object(m)
}

/// Renders a user as a full SCIM resource. `groups` is `None` when the caller will not return them.
/// It takes the row by value: its stored attributes become the answer without a copy.
pub fn render_user(u: UserRow, base: &str, groups: Option<&[(String, String)]>) -> Json {
    let mut out: Map<String, Json> = u.resource;
    let mut schemas = vec![Json::from(USER_SCHEMA)];
    if out.contains_key(ENTERPRISE_USER_SCHEMA) {
        schemas.push(ENTERPRISE_USER_SCHEMA.into());
    }
    // An inactive user holds no license (SPEC): its seat is already free for the seat guard.
    if let Some(lic) = u.license_type.as_ref().filter(|_| u.active) {
        schemas.push(ROSTER_USER_SCHEMA.into());
        out.insert(ROSTER_USER_SCHEMA.into(), json!({ "licenseType": lic }));
    }
    out.insert("schemas".into(), Json::Array(schemas));
    if let Some(groups) = groups
        && !groups.is_empty()
    {
        let list = groups
                .iter()
                .map(|(id, name)| json!({"value": id, "$ref": format!("{base}/Groups/{id}"), "display": name, "type": "direct"}))
                .collect();
        out.insert("groups".into(), Json::Array(list));
    }
    out.insert("meta".into(), meta(ResourceKind::User, base, &u.id, &u.created, &u.last_modified, u.version));
    out.insert("id".into(), u.id.into());
    Json::Object(out)
}

/// Renders a group as a full SCIM resource. `members` is `None` when the caller will not return them.
/// It takes the row by value, as [`render_user`] does.
pub fn render_group(g: GroupRow, base: &str, members: Option<&[MemberView]>) -> Json {
    let mut out: Map<String, Json> = g.resource;
    out.insert("schemas".into(), json!([GROUP_SCHEMA]));
    if let Some(members) = members {
        let list = members
            .iter()
            .map(|m| {
                let path = if m.kind == "Group" { "Groups" } else { "Users" };
                let mut v = json!({"value": m.value, "$ref": format!("{base}/{path}/{}", m.value), "type": m.kind});
                if let (Some(d), Some(obj)) = (&m.display, v.as_object_mut()) {
                    obj.insert("display".into(), d.clone().into());
                }
                v
            })
            .collect();
        out.insert("members".into(), Json::Array(list));
    }
    out.insert("meta".into(), meta(ResourceKind::Group, base, &g.id, &g.created, &g.last_modified, g.version));
    out.insert("id".into(), g.id.into());
    Json::Object(out)
}
