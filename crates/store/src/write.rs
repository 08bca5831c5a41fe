//! The read model's rows and the statements the projector runs inside its transaction.
//!
//! Everything here takes a `ConnectionTrait` so it runs inside the projector's batch
//! transaction: state, outcomes and the consumer position commit together or not at all.

use std::collections::HashMap;

use roster_db::{IndexedRow, StoreError, stmt};

use crate::sql::{IN_CHUNK, keyed_rows, placeholders, probed_rows, value_rows};
use sea_orm::{ConnectionTrait, DbBackend, Value};
use serde_json::{Map, Value as Json};

/// A user row: indexed columns plus the stored-form attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRow {
    /// Resource id.
    pub id: String,
    /// `userName` as given.
    pub user_name: String,
    /// `externalId`.
    pub external_id: Option<String>,
    /// `displayName`.
    pub display_name: Option<String>,
    /// `active` (absent counts as active).
    pub active: bool,
    /// `meta.created`.
    pub created: String,
    /// `meta.lastModified`.
    pub last_modified: String,
    /// `meta.version` number.
    pub version: i64,
    /// License assigned by the licensing worker.
    pub license_type: Option<String>,
    /// Stored-form attributes (no id/meta/schemas/groups).
    pub resource: Map<String, Json>,
}

/// A group row: indexed columns plus the stored-form attributes (members live in `scim_members`).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRow {
    /// Resource id.
    pub id: String,
    /// `displayName`.
    pub display_name: String,
    /// `externalId`.
    pub external_id: Option<String>,
    /// `meta.created`.
    pub created: String,
    /// `meta.lastModified`.
    pub last_modified: String,
    /// `meta.version` number.
    pub version: i64,
    /// Stored-form attributes (no id/meta/schemas/members).
    pub resource: Map<String, Json>,
}

fn str_attr(m: &Map<String, Json>, k: &str) -> Option<String> {
    m.get(k).and_then(Json::as_str).map(str::to_string)
}

impl UserRow {
    /// Builds a row from stored-form attributes, deriving the indexed columns from them.
    pub fn from_attributes(
        id: String,
        resource: Map<String, Json>,
        created: String,
        last_modified: String,
        version: i64,
        license_type: Option<String>,
    ) -> Self {
        Self {
            id,
            user_name: str_attr(&resource, "userName").unwrap_or_default(),
            external_id: str_attr(&resource, "externalId"),
            display_name: str_attr(&resource, "displayName"),
            active: resource.get("active").and_then(Json::as_bool).unwrap_or(true),
            created,
            last_modified,
            version,
            license_type,
            resource,
        }
    }
}

impl GroupRow {
    /// Builds a row from stored-form attributes, deriving the indexed columns from them.
    pub fn from_attributes(
        id: String,
        resource: Map<String, Json>,
        created: String,
        last_modified: String,
        version: i64,
    ) -> Self {
        Self {
            id,
            display_name: str_attr(&resource, "displayName").unwrap_or_default(),
            external_id: str_attr(&resource, "externalId"),
            created,
            last_modified,
            version,
            resource,
        }
    }
}

/// Case-insensitive key for uniqueness and lookups (full Unicode lowercase, computed in Rust so
/// SQLite and Postgres agree).
pub fn fold(s: &str) -> String {
    s.to_lowercase()
}

pub(crate) const USER_COLUMNS: &str =
    "id, user_name, external_id, display_name, active, created, last_modified, version, license_type, resource";
pub(crate) const GROUP_COLUMNS: &str = "id, display_name, external_id, created, last_modified, version, resource";

fn parse_resource(text: &str) -> Result<Map<String, Json>, StoreError> {
    match serde_json::from_str::<Json>(text) {
        Ok(Json::Object(m)) => Ok(m),
        Ok(_) => Err(StoreError::Corrupt("stored resource is not a JSON object".into())),
        Err(e) => Err(StoreError::Corrupt(format!("stored resource is not JSON: {e}"))),
    }
}

pub(crate) fn user_from_row<R: IndexedRow>(r: &R) -> Result<UserRow, StoreError> {
    Ok(UserRow {
        id: r.get(0)?,
        user_name: r.get(1)?,
        external_id: r.get(2)?,
        display_name: r.get(3)?,
        active: r.get(4)?,
        created: r.get(5)?,
        last_modified: r.get(6)?,
        version: r.get(7)?,
        license_type: r.get(8)?,
        resource: parse_resource(&r.get::<String>(9)?)?,
    })
}

pub(crate) fn group_from_row<R: IndexedRow>(r: &R) -> Result<GroupRow, StoreError> {
    Ok(GroupRow {
        id: r.get(0)?,
        display_name: r.get(1)?,
        external_id: r.get(2)?,
        created: r.get(3)?,
        last_modified: r.get(4)?,
        version: r.get(5)?,
        resource: parse_resource(&r.get::<String>(6)?)?,
    })
}

/// One user by id (the writer's and the reader's lookups are the same statement).
pub(crate) fn user_by_id_sql() -> String {
    format!("SELECT {USER_COLUMNS} FROM scim_users WHERE account_id = ? AND id = ?")
}

/// One group by id.
pub(crate) fn group_by_id_sql() -> String {
    format!("SELECT {GROUP_COLUMNS} FROM scim_groups WHERE account_id = ? AND id = ?")
}

/// The stored form of a resource's attributes. Serialised in place: wrapping the map in a `Value`
/// first cloned every attribute of every row written.
fn json_text(m: &Map<String, Json>) -> Result<String, StoreError> {
    serde_json::to_string(m).map_err(|e| StoreError::Corrupt(format!("resource attributes: {e}")))
}

/// Loads a user.
pub async fn find_user<C: ConnectionTrait>(c: &C, account: &str, id: &str) -> Result<Option<UserRow>, StoreError> {
    let b = c.get_database_backend();
    let row = c.query_one_raw(stmt(b, &user_by_id_sql(), [account.into(), id.into()])).await?;
    row.as_ref().map(user_from_row).transpose()
}

/// The users of the account among `ids` (one query per 500 ids); absent ids have no row.
pub async fn find_users<C: ConnectionTrait>(c: &C, account: &str, ids: &[&str]) -> Result<Vec<UserRow>, StoreError> {
    let b = c.get_database_backend();
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(IN_CHUNK) {
        let values = std::iter::once(Value::from(account)).chain(chunk.iter().map(|id| Value::from(*id)));
        let sql = format!("SELECT {USER_COLUMNS} {}", keyed_rows(b, "scim_users", "u", &["id"], chunk.len()));
        for r in c.query_all_raw(stmt(b, &sql, values)).await? {
            out.push(user_from_row(&r)?);
        }
    }
    Ok(out)
}

/// The id of the user holding this (case-folded) userName, if any.
pub async fn user_id_by_name<C: ConnectionTrait>(
    c: &C,
    account: &str,
    folded: &str,
) -> Result<Option<String>, StoreError> {
    let b = c.get_database_backend();
    let row = c
        .query_one_raw(stmt(
            b,
            "SELECT id FROM scim_users WHERE account_id = ? AND user_name_lower = ?",
            [account.into(), folded.into()],
        ))
        .await?;
    Ok(row.map(|r| r.try_get_by_index::<String>(0)).transpose()?)
}

/// Which of `ids` are users of the account, and which of the case-folded `names` are held, with
/// the id of the user holding each: the checks of a run of creates, in one round trip per 250 of
/// each.
pub async fn taken_ids_and_names<C: ConnectionTrait>(
    c: &C,
    account: &str,
    ids: &[&str],
    folded: &[&str],
) -> Result<(Vec<String>, Vec<(String, String)>), StoreError> {
    let b = c.get_database_backend();
    let (mut taken_ids, mut taken_names) = (Vec::new(), Vec::new());
    let half = IN_CHUNK / 2;
    let chunks = ids.len().max(folded.len()).div_ceil(half);
    for i in 0..chunks {
        let part = |list: &[&str]| -> Vec<String> {
            list.iter().skip(i * half).take(half).map(|s| (*s).to_string()).collect()
        };
        let (id_part, name_part) = (part(ids), part(folded));
        let mut selects = Vec::with_capacity(2);
        let mut values: Vec<Value> = Vec::with_capacity(id_part.len() + name_part.len() + 2);
        // A list with nothing to look up gets no query at all: an empty `IN ()` is not SQL.
        if !id_part.is_empty() {
            selects
                .push(format!("SELECT 'id', u.id, u.id {}", keyed_rows(b, "scim_users", "u", &["id"], id_part.len())));
            values.push(account.into());
            values.extend(id_part.into_iter().map(Value::from));
        }
        if !name_part.is_empty() {
            let rows = keyed_rows(b, "scim_users", "n", &["user_name_lower"], name_part.len());
            selects.push(format!("SELECT 'name', n.user_name_lower, n.id {rows}"));
            values.push(account.into());
            values.extend(name_part.into_iter().map(Value::from));
        }
        let sql = selects.join(" UNION ALL ");
        for r in c.query_all_raw(stmt(b, &sql, values)).await? {
            let value = r.try_get_by_index::<String>(1)?;
            if r.try_get_by_index::<String>(0)? == "id" {
                taken_ids.push(value)
            } else {
                taken_names.push((value, r.try_get_by_index::<String>(2)?))
            }
        }
    }
    Ok((taken_ids, taken_names))
}

/// Inserts a new user.
pub async fn insert_user<C: ConnectionTrait>(c: &C, account: &str, u: &UserRow) -> Result<(), StoreError> {
    insert_users(c, &[(account, u)]).await
}

/// Rows per `INSERT` of users: 12 parameters each, far below the databases' parameter limits.
const USER_ROWS_PER_INSERT: usize = 200;

/// Inserts new users, many rows per statement (a run of creates is one round trip, not hundreds).
pub async fn insert_users<C: ConnectionTrait>(c: &C, rows: &[(&str, &UserRow)]) -> Result<(), StoreError> {
    let b = c.get_database_backend();
    for chunk in rows.chunks(USER_ROWS_PER_INSERT) {
        let (sql, values) = users_insert(chunk)?;
        c.execute_raw(stmt(b, &sql, values)).await?;
    }
    Ok(())
}

/// Inserts a new user unless its id or its userName is taken in the account: the unique indexes
/// answer in the same statement. Returns whether it was inserted.
pub async fn insert_user_if_free<C: ConnectionTrait>(c: &C, account: &str, u: &UserRow) -> Result<bool, StoreError> {
    let b = c.get_database_backend();
    let (sql, values) = users_insert(&[(account, u)])?;
    let done = c.execute_raw(stmt(b, &format!("{sql} ON CONFLICT DO NOTHING"), values)).await?;
    Ok(done.rows_affected() == 1)
}

/// The `INSERT` of `rows` of users, and its parameters.
fn users_insert(rows: &[(&str, &UserRow)]) -> Result<(String, Vec<Value>), StoreError> {
    let mut values = Vec::with_capacity(rows.len() * 12);
    for (account, u) in rows {
        values.extend([
            Value::from(*account),
            u.id.clone().into(),
            u.user_name.clone().into(),
            fold(&u.user_name).into(),
            u.external_id.clone().into(),
            u.display_name.clone().into(),
            u.active.into(),
            u.created.clone().into(),
            u.last_modified.clone().into(),
            u.version.into(),
            u.license_type.clone().into(),
            json_text(&u.resource)?.into(),
        ]);
    }
    let sql = format!(
        "INSERT INTO scim_users (account_id, id, user_name, user_name_lower, external_id, display_name, active, created, last_modified, version, license_type, resource) VALUES {}",
        value_rows(rows.len(), 12)
    );
    Ok((sql, values))
}

/// Overwrites a user's attributes, version and lastModified.
pub async fn update_user<C: ConnectionTrait>(c: &C, account: &str, u: &UserRow) -> Result<(), StoreError> {
    update_users(c, account, &[u]).await
}

/// Parameters per multi-row `UPDATE … FROM (VALUES …)`: far below both databases' limits.
const PARAMS_PER_UPDATE: usize = 2000;

/// `UPDATE table SET … FROM (VALUES …)` for rows of one account, many per statement: each row is
/// the resource id followed by the new values of `set`, in order. Each id at most once.
pub(crate) async fn update_many<C: ConnectionTrait>(
    c: &C,
    table: &str,
    set: &[&str],
    account: &str,
    rows: Vec<Vec<Value>>,
) -> Result<(), StoreError> {
    let b = c.get_database_backend();
    let width = set.len() + 1;
    let assignments: Vec<String> =
        set.iter().enumerate().map(|(i, col)| format!("{col} = v.column{}", i + 2)).collect();
    let assignments = assignments.join(", ");
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<Vec<Value>> = rows.by_ref().take((PARAMS_PER_UPDATE / width).max(1)).collect();
        let n = chunk.len();
        let (sql, values) = match b {
            // Each row found by its own probe (see `keyed_rows`), then written by its `ctid`.
            DbBackend::Postgres => {
                let rows = probed_rows(table, "t", &["id"], width, n);
                let values = std::iter::once(account.into()).chain(chunk.into_iter().flatten()).collect::<Vec<_>>();
                (
                    format!(
                        "UPDATE {table} SET {assignments} FROM (SELECT k.*, t.row_ctid {rows}) AS v WHERE {table}.ctid = v.row_ctid"
                    ),
                    values,
                )
            }
            _ => {
                let mut values: Vec<Value> = chunk.into_iter().flatten().collect();
                values.push(account.into());
                let sql = format!(
                    "UPDATE {table} SET {assignments} FROM (VALUES {}) AS v \
                     WHERE {table}.account_id = ? AND {table}.id = v.column1",
                    value_rows(n, width)
                );
                (sql, values)
            }
        };
        c.execute_raw(stmt(b, &sql, values)).await?;
    }
    Ok(())
}

/// [`update_user`] for many users of one account, many rows per statement. Each user at most once.
pub async fn update_users<C: ConnectionTrait>(c: &C, account: &str, rows: &[&UserRow]) -> Result<(), StoreError> {
    let rows = rows
        .iter()
        .map(|u| {
            Ok(vec![
                u.id.clone().into(),
                u.user_name.clone().into(),
                fold(&u.user_name).into(),
                u.external_id.clone().into(),
                u.display_name.clone().into(),
                u.active.into(),
                u.last_modified.clone().into(),
                u.version.into(),
                u.license_type.clone().into(),
                json_text(&u.resource)?.into(),
            ])
        })
        .collect::<Result<_, StoreError>>()?;
    let set = [
        "user_name",
        "user_name_lower",
        "external_id",
        "display_name",
        "active",
        "last_modified",
        "version",
        "license_type",
        "resource",
    ];
    update_many(c, "scim_users", &set, account, rows).await
}

/// Deletes a user with its memberships and its license pin (a pin for a user that no longer
/// exists is meaningless).
pub async fn delete_user<C: ConnectionTrait>(c: &C, account: &str, id: &str) -> Result<(), StoreError> {
    delete_users(c, account, &[id]).await
}

/// Deletes users of an account with their memberships and license pins: one statement per 500
/// users on Postgres, where Entra's deprovisioning made it three round trips per user, then one
/// per user. Several users are probes, as in [`keyed_rows`].
pub async fn delete_users<C: ConnectionTrait>(c: &C, account: &str, ids: &[&str]) -> Result<(), StoreError> {
    let b = c.get_database_backend();
    let tables = [("scim_members", "m", "member_id"), ("license_overrides", "o", "user_id"), ("scim_users", "u", "id")];
    for chunk in ids.chunks(IN_CHUNK) {
        let n = chunk.len();
        let values = || std::iter::once(Value::from(account)).chain(chunk.iter().map(|id| Value::from(*id)));
        if b == DbBackend::Postgres {
            let rows = |(table, alias, key): (&str, &str, &str)| match n {
                1 => format!("account_id = ? AND {key} = ?"),
                _ => format!("ctid IN (SELECT {alias}.row_ctid {})", probed_rows(table, alias, &[key], 1, n)),
            };
            // Data-modifying CTEs run to completion whether or not the query reads them.
            let sql = format!(
                "WITH members AS (DELETE FROM scim_members WHERE {}), pin AS (DELETE FROM license_overrides WHERE {}) \
                 DELETE FROM scim_users WHERE {}",
                rows(tables[0]),
                rows(tables[1]),
                rows(tables[2])
            );
            c.execute_raw(stmt(b, &sql, values().chain(values()).chain(values()))).await?;
        } else {
            for (table, _, key) in tables {
                let sql = format!("DELETE FROM {table} WHERE account_id = ? AND {key} IN ({})", placeholders(n));
                c.execute_raw(stmt(b, &sql, values())).await?;
            }
        }
    }
    Ok(())
}

/// Loads a group (without members).
pub async fn find_group<C: ConnectionTrait>(c: &C, account: &str, id: &str) -> Result<Option<GroupRow>, StoreError> {
    let b = c.get_database_backend();
    let row = c.query_one_raw(stmt(b, &group_by_id_sql(), [account.into(), id.into()])).await?;
    row.as_ref().map(group_from_row).transpose()
}

/// The groups of the account among `ids` (one query per 500 ids); absent ids have no row.
pub async fn find_groups<C: ConnectionTrait>(c: &C, account: &str, ids: &[&str]) -> Result<Vec<GroupRow>, StoreError> {
    let b = c.get_database_backend();
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(IN_CHUNK) {
        let values = std::iter::once(Value::from(account)).chain(chunk.iter().map(|id| Value::from(*id)));
        let sql = format!("SELECT {GROUP_COLUMNS} {}", keyed_rows(b, "scim_groups", "g", &["id"], chunk.len()));
        for r in c.query_all_raw(stmt(b, &sql, values)).await? {
            out.push(group_from_row(&r)?);
        }
    }
    Ok(out)
}

/// The id of the group holding this (case-folded) displayName, if any.
pub async fn group_id_by_name<C: ConnectionTrait>(
    c: &C,
    account: &str,
    folded: &str,
) -> Result<Option<String>, StoreError> {
    let b = c.get_database_backend();
    let row = c
        .query_one_raw(stmt(
            b,
            "SELECT id FROM scim_groups WHERE account_id = ? AND display_name_lower = ?",
            [account.into(), folded.into()],
        ))
        .await?;
    Ok(row.map(|r| r.try_get_by_index::<String>(0)).transpose()?)
}

/// Inserts a new group.
pub async fn insert_group<C: ConnectionTrait>(c: &C, account: &str, g: &GroupRow) -> Result<(), StoreError> {
    let b = c.get_database_backend();
    c.execute_raw(stmt(
        b,
        "INSERT INTO scim_groups (account_id, id, display_name, display_name_lower, external_id, created, last_modified, version, resource) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            account.into(),
            g.id.clone().into(),
            g.display_name.clone().into(),
            fold(&g.display_name).into(),
            g.external_id.clone().into(),
            g.created.clone().into(),
            g.last_modified.clone().into(),
            g.version.into(),
            json_text(&g.resource)?.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Overwrites a group's attributes, version and lastModified.
pub async fn update_group<C: ConnectionTrait>(c: &C, account: &str, g: &GroupRow) -> Result<(), StoreError> {
    update_groups(c, account, &[g]).await
}

/// [`update_group`] for many groups of one account, many rows per statement. Each group at most once.
pub async fn update_groups<C: ConnectionTrait>(c: &C, account: &str, rows: &[&GroupRow]) -> Result<(), StoreError> {
    let rows = rows
        .iter()
        .map(|g| {
            Ok(vec![
                g.id.clone().into(),
                g.display_name.clone().into(),
                fold(&g.display_name).into(),
                g.external_id.clone().into(),
                g.last_modified.clone().into(),
                g.version.into(),
                json_text(&g.resource)?.into(),
            ])
        })
        .collect::<Result<_, StoreError>>()?;
    let set = ["display_name", "display_name_lower", "external_id", "last_modified", "version", "resource"];
    update_many(c, "scim_groups", &set, account, rows).await
}

/// Deletes a group, its memberships and its membership in other groups.
pub async fn delete_group<C: ConnectionTrait>(c: &C, account: &str, id: &str) -> Result<(), StoreError> {
    let b = c.get_database_backend();
    c.execute_raw(stmt(
        b,
        "DELETE FROM scim_members WHERE account_id = ? AND (group_id = ? OR member_id = ?)",
        [account.into(), id.into(), id.into()],
    ))
    .await?;
    c.execute_raw(stmt(b, "DELETE FROM scim_groups WHERE account_id = ? AND id = ?", [account.into(), id.into()]))
        .await?;
    Ok(())
}

/// Which of `ids` exist in the account, and as what (`User` or `Group`).
pub async fn resource_kinds<C: ConnectionTrait>(
    c: &C,
    account: &str,
    ids: &[String],
) -> Result<HashMap<String, &'static str>, StoreError> {
    let b = c.get_database_backend();
    let mut found = HashMap::new();
    for chunk in ids.chunks(IN_CHUNK) {
        // One round trip for both tables: a member add resolved its ids with two.
        let sql = format!(
            "SELECT u.id, 'User' {} UNION ALL SELECT g.id, 'Group' {}",
            keyed_rows(b, "scim_users", "u", &["id"], chunk.len()),
            keyed_rows(b, "scim_groups", "g", &["id"], chunk.len())
        );
        let mut values: Vec<Value> = Vec::with_capacity(2 * chunk.len() + 2);
        for _ in 0..2 {
            values.push(account.into());
            values.extend(chunk.iter().map(|s| Value::from(s.clone())));
        }
        for r in c.query_all_raw(stmt(b, &sql, values)).await? {
            let kind = if r.try_get_by_index::<String>(1)? == "Group" { "Group" } else { "User" };
            // An id that names both a user and a group (never, with generated ids) resolves to the
            // group, as it always has, whatever order the rows arrive in.
            let id = r.try_get_by_index::<String>(0)?;
            if kind == "Group" || !found.contains_key(&id) {
                found.insert(id, kind);
            }
        }
    }
    Ok(found)
}

/// Adds memberships (already present ones are left alone).
pub async fn add_members<C: ConnectionTrait>(
    c: &C,
    account: &str,
    group: &str,
    members: &[(String, &'static str)],
) -> Result<(), StoreError> {
    let b = c.get_database_backend();
    for chunk in members.chunks(500) {
        let rows = value_rows(chunk.len(), 4);
        let sql = format!(
            "INSERT INTO scim_members (account_id, group_id, member_id, member_type) VALUES {rows} ON CONFLICT (account_id, group_id, member_id) DO NOTHING"
        );
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 4);
        for (id, kind) in chunk {
            values.push(account.into());
            values.push(group.into());
            values.push(id.clone().into());
            values.push((*kind).into());
        }
        c.execute_raw(stmt(b, &sql, values)).await?;
    }
    Ok(())
}

/// Removes the named memberships (absent ones are ignored).
pub async fn remove_members<C: ConnectionTrait>(
    c: &C,
    account: &str,
    group: &str,
    ids: &[String],
) -> Result<(), StoreError> {
    let b = c.get_database_backend();
    for chunk in ids.chunks(IN_CHUNK) {
        let sql = format!(
            "DELETE FROM scim_members WHERE account_id = ? AND group_id = ? AND member_id IN ({})",
            placeholders(chunk.len())
        );
        let mut values: Vec<Value> = vec![account.into(), group.into()];
        values.extend(chunk.iter().map(|s| Value::from(s.clone())));
        c.execute_raw(stmt(b, &sql, values)).await?;
    }
    Ok(())
}

/// A batch's membership changes of one account, written together: `adds` as (group, member,
/// type), kept as they are when already there, and `removes` as (group, member), absent ones
/// ignored. The projector holds a batch's member changes and writes them with this instead of
/// two statements per PATCH. A membership is in at most one of the two lists.
pub async fn change_members<C: ConnectionTrait>(
    c: &C,
    account: &str,
    adds: &[(&str, &str, &'static str)],
    removes: &[(&str, &str)],
) -> Result<(), StoreError> {
    let b = c.get_database_backend();
    for chunk in adds.chunks(500) {
        let sql = format!(
            "INSERT INTO scim_members (account_id, group_id, member_id, member_type) VALUES {} \
             ON CONFLICT (account_id, group_id, member_id) DO NOTHING",
            value_rows(chunk.len(), 4)
        );
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 4);
        for (group, member, kind) in chunk {
            values.extend([account.into(), (*group).into(), (*member).into(), (*kind).into()]);
        }
        c.execute_raw(stmt(b, &sql, values)).await?;
    }
    for chunk in removes.chunks(IN_CHUNK) {
        let rows = keyed_rows(b, "scim_members", "m", &["group_id", "member_id"], chunk.len());
        let sql = match b {
            DbBackend::Postgres => format!("DELETE FROM scim_members WHERE ctid IN (SELECT m.row_ctid {rows})"),
            _ => format!("DELETE {rows}"),
        };
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 2 + 1);
        values.push(account.into());
        for (group, member) in chunk {
            values.extend([(*group).into(), (*member).into()]);
        }
        c.execute_raw(stmt(b, &sql, values)).await?;
    }
    Ok(())
}

/// Removes every member of a group.
pub async fn remove_all_members<C: ConnectionTrait>(c: &C, account: &str, group: &str) -> Result<(), StoreError> {
    let b = c.get_database_backend();
    c.execute_raw(stmt(
        b,
        "DELETE FROM scim_members WHERE account_id = ? AND group_id = ?",
        [account.into(), group.into()],
    ))
    .await?;
    Ok(())
}

/// The members of a group as (id, type), for the rare PATCH filters that need to inspect them.
pub async fn member_rows<C: ConnectionTrait>(
    c: &C,
    account: &str,
    group: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    let b = c.get_database_backend();
    let rows = c
        .query_all_raw(stmt(
            b,
            "SELECT member_id, member_type FROM scim_members WHERE account_id = ? AND group_id = ? ORDER BY member_id",
            [account.into(), group.into()],
        ))
        .await?;
    rows.iter().map(|r| Ok((r.try_get_by_index(0)?, r.try_get_by_index(1)?))).collect()
}

/// The next offset a consumer should read from a partition (0 when it has never run).
pub async fn consumer_position<C: ConnectionTrait>(
    c: &C,
    consumer: &str,
    partition: i32,
) -> Result<Option<i64>, StoreError> {
    let b = c.get_database_backend();
    let row = c
        .query_one_raw(stmt(
            b,
            "SELECT next_offset FROM consumer_positions WHERE consumer = ? AND partition = ?",
            [consumer.into(), partition.into()],
        ))
        .await?;
    Ok(row.map(|r| r.try_get_by_index::<i64>(0)).transpose()?)
}

/// Locks a consumer's position row (creating it at `initial` when absent) and returns the stored
/// next offset. It is the first statement of the projector's transaction: a write, so on SQLite
/// the transaction holds the write lock before it reads anything, and on Postgres concurrent
/// replicas of the same partition serialise on the row.
pub async fn lock_consumer_position<C: ConnectionTrait>(
    c: &C,
    consumer: &str,
    partition: i32,
    initial: i64,
) -> Result<i64, StoreError> {
    let b = c.get_database_backend();
    let row = c
        .query_one_raw(stmt(
            b,
            "INSERT INTO consumer_positions (consumer, partition, next_offset) VALUES (?, ?, ?) ON CONFLICT (consumer, partition) DO UPDATE SET next_offset = consumer_positions.next_offset RETURNING next_offset",
            [consumer.into(), partition.into(), initial.into()],
        ))
        .await?
        .ok_or_else(|| StoreError::Corrupt("position upsert returned no row".into()))?;
    Ok(row.try_get_by_index::<i64>(0)?)
}

/// The channel the projector notifies at each batch commit (Postgres only): ingress replicas
/// waiting for outcomes listen on it.
pub const APPLIED_CHANNEL: &str = "roster_applied";

/// Ends a projector batch: adds each account's applied events to its change counter (the
/// licensing worker's trigger), records the partition's next offset as `position` (consumer,
/// partition, next offset; a replay lane records none) and, on Postgres when `notify`, wakes the
/// waiting ingress replicas at commit. On Postgres it is one statement: a batch is a dozen round
/// trips, and these were three of them. `bumps` names each account once.
pub async fn finish_batch<C: ConnectionTrait>(
    c: &C,
    position: Option<(&str, i32, i64)>,
    bumps: &[(&str, i64)],
    notify: bool,
) -> Result<(), StoreError> {
    let b = c.get_database_backend();
    let bump_sql = |n: usize| {
        format!(
            "INSERT INTO account_state (account_id, seq) VALUES {} ON CONFLICT (account_id) DO UPDATE SET seq = account_state.seq + excluded.seq",
            value_rows(n, 2)
        )
    };
    let values = |chunk: &[(&str, i64)]| -> Vec<Value> {
        chunk.iter().flat_map(|(account, n)| [Value::from(*account), Value::from(*n)]).collect()
    };
    let mut chunks: Vec<&[(&str, i64)]> = bumps.chunks(IN_CHUNK).collect();
    let last = chunks.pop().unwrap_or_default();
    for chunk in chunks {
        c.execute_raw(stmt(b, &bump_sql(chunk.len()), values(chunk))).await?;
    }
    let position_values =
        position.map(|(consumer, partition, next)| vec![consumer.into(), partition.into(), next.into()]);
    if b == sea_orm::DbBackend::Postgres {
        // Data-modifying CTEs run to completion whether or not the query reads them, and
        // `pg_notify` in a transaction is delivered at commit, like `NOTIFY`.
        let mut ctes = Vec::new();
        if !last.is_empty() {
            ctes.push(format!("bumped AS ({})", bump_sql(last.len())));
        }
        if position.is_some() {
            ctes.push(format!("positioned AS ({})", position_sql(1)));
        }
        let result = if notify { format!("pg_notify('{APPLIED_CHANNEL}', '')") } else { "1".into() };
        if ctes.is_empty() && !notify {
            return Ok(());
        }
        let with = if ctes.is_empty() { String::new() } else { format!("WITH {} ", ctes.join(", ")) };
        let mut all = values(last);
        all.extend(position_values.into_iter().flatten());
        c.execute_raw(stmt(b, &format!("{with}SELECT {result}"), all)).await?;
    } else {
        if !last.is_empty() {
            c.execute_raw(stmt(b, &bump_sql(last.len()), values(last))).await?;
        }
        if let Some(values) = position_values {
            c.execute_raw(stmt(b, &position_sql(1), values)).await?;
        }
    }
    Ok(())
}

/// Upserts `n` consumer positions (consumer, partition, next offset).
fn position_sql(n: usize) -> String {
    format!(
        "INSERT INTO consumer_positions (consumer, partition, next_offset) VALUES {} ON CONFLICT (consumer, partition) DO UPDATE SET next_offset = excluded.next_offset",
        value_rows(n, 3)
    )
}

/// Stores a consumer's next offset in each of `positions` (partition, next offset): what a replay
/// records once all its lanes have finished, so a projector started on the rebuilt database
/// continues where the replay stopped.
pub async fn store_consumer_positions<C: ConnectionTrait>(
    c: &C,
    consumer: &str,
    positions: &[(i32, i64)],
) -> Result<(), StoreError> {
    let b = c.get_database_backend();
    for chunk in positions.chunks(IN_CHUNK) {
        let values: Vec<Value> = chunk
            .iter()
            .flat_map(|(partition, next)| [Value::from(consumer), Value::from(*partition), Value::from(*next)])
            .collect();
        c.execute_raw(stmt(b, &position_sql(chunk.len()), values)).await?;
    }
    Ok(())
}
