//! Deciding and applying one event inside the projector's transaction.

use roster_db::StoreError;
use roster_events::{Envelope, Member, Outcome, OutcomeError, Payload};
use roster_scim::ScimError;
use roster_scim::filter::{AttrPath, Filter};
use roster_scim::patch::{MemberOp, MemberRef, PatchLimits, PatchRequest};
use roster_scim::schema::ResourceKind;
use roster_store::write::{self, GroupRow, UserRow, fold};
use sea_orm::ConnectionTrait;
use serde_json::{Map, Value, json};

type Decision = Result<Outcome, ScimError>;

fn ok(status: u16, version: Option<i64>) -> Decision {
    Ok(Outcome { status, version: version.map(|v| v as u64), error: None })
}

fn rejected(e: ScimError) -> Outcome {
    Outcome {
        status: e.status,
        version: None,
        error: Some(OutcomeError { scim_type: e.scim_type.map(|t| t.as_str().to_string()), detail: e.detail }),
    }
}

fn check_version(if_match: Option<u64>, current: i64) -> Result<(), ScimError> {
    match if_match {
        Some(v) if v as i64 != current => Err(ScimError::precondition_failed(format!(
            "If-Match W/\"{v}\" does not match the current version W/\"{current}\""
        ))),
        _ => Ok(()),
    }
}

/// Decides and applies one event; a rejection is an `Ok` outcome with an error, a database failure
/// is an `Err` that aborts the whole batch (to be retried).
pub async fn apply_event<C: ConnectionTrait>(c: &C, env: &Envelope) -> Result<Outcome, StoreError> {
    let decision = match &env.payload {
        Payload::UserCreated { attributes } => user_created(c, env, attributes).await?,
        Payload::UserReplaced { attributes, if_match } => user_replaced(c, env, attributes.clone(), *if_match).await?,
        Payload::UserPatched { patch, if_match } => user_patched(c, env, patch, *if_match).await?,
        Payload::UserDeleted { if_match } => user_deleted(c, env, *if_match).await?,
        Payload::GroupCreated { attributes, members } => group_created(c, env, attributes, members).await?,
        Payload::GroupReplaced { attributes, members, if_match } => {
            group_replaced(c, env, attributes, members, *if_match).await?
        }
        Payload::GroupPatched { patch, if_match } => group_patched(c, env, patch, *if_match).await?,
        Payload::GroupDeleted { if_match } => group_deleted(c, env, *if_match).await?,
    };
    Ok(decision.unwrap_or_else(rejected))
}

fn user_name_of(attrs: &Map<String, Value>) -> String {
    attrs.get("userName").and_then(Value::as_str).unwrap_or_default().to_string()
}

async fn ensure_user_name_free<C: ConnectionTrait>(
    c: &C,
    account: &str,
    user_name: &str,
    except: &str,
) -> Result<Result<(), ScimError>, StoreError> {
    Ok(match write::user_id_by_name(c, account, &fold(user_name)).await? {
        Some(id) if id != except => Err(ScimError::uniqueness(format!(
            "userName {user_name:?} is already used by another user in this account"
        ))),
        _ => Ok(()),
    })
}

async fn ensure_group_name_free<C: ConnectionTrait>(
    c: &C,
    account: &str,
    name: &str,
    except: &str,
) -> Result<Result<(), ScimError>, StoreError> {
    Ok(match write::group_id_by_name(c, account, &fold(name)).await? {
        Some(id) if id != except => {
            Err(ScimError::uniqueness(format!("displayName {name:?} is already used by another group in this account")))
        }
        _ => Ok(()),
    })
}

async fn user_created<C: ConnectionTrait>(
    c: &C,
    env: &Envelope,
    attrs: &Map<String, Value>,
) -> Result<Decision, StoreError> {
    let account = &env.account_id;
    if write::find_user(c, account, &env.resource_id).await?.is_some() {
        return Ok(Err(ScimError::uniqueness(format!("a user with id {:?} already exists", env.resource_id))));
    }
    if let Err(e) = ensure_user_name_free(c, account, &user_name_of(attrs), "").await? {
        return Ok(Err(e));
    }
    let row =
        UserRow::from_attributes(env.resource_id.clone(), attrs.clone(), env.time.clone(), env.time.clone(), 1, None);
    write::insert_user(c, account, &row).await?;
    Ok(ok(201, Some(1)))
}

fn not_found(kind: &str, id: &str) -> ScimError {
    ScimError::not_found(format!("{kind} {id:?} not found"))
}

async fn save_user<C: ConnectionTrait>(
    c: &C,
    env: &Envelope,
    mut current: UserRow,
    attrs: Map<String, Value>,
) -> Result<Decision, StoreError> {
    if attrs == current.resource {
        return Ok(ok(200, Some(current.version)));
    }
    if fold(&user_name_of(&attrs)) != fold(&current.user_name)
        && let Err(e) = ensure_user_name_free(c, &env.account_id, &user_name_of(&attrs), &current.id).await?
    {
        return Ok(Err(e));
    }
    let version = current.version + 1;
    current =
        UserRow::from_attributes(current.id, attrs, current.created, env.time.clone(), version, current.license_type);
    write::update_user(c, &env.account_id, &current).await?;
    Ok(ok(200, Some(version)))
}

async fn user_replaced<C: ConnectionTrait>(
    c: &C,
    env: &Envelope,
    attrs: Map<String, Value>,
    if_match: Option<u64>,
) -> Result<Decision, StoreError> {
    let Some(current) = write::find_user(c, &env.account_id, &env.resource_id).await? else {
        return Ok(Err(not_found("User", &env.resource_id)));
    };
    if let Err(e) = check_version(if_match, current.version) {
        return Ok(Err(e));
    }
    save_user(c, env, current, attrs).await
}

async fn user_patched<C: ConnectionTrait>(
    c: &C,
    env: &Envelope,
    patch: &Value,
    if_match: Option<u64>,
) -> Result<Decision, StoreError> {
    let Some(current) = write::find_user(c, &env.account_id, &env.resource_id).await? else {
        return Ok(Err(not_found("User", &env.resource_id)));
    };
    if let Err(e) = check_version(if_match, current.version) {
        return Ok(Err(e));
    }
    let mut attrs = current.resource.clone();
    let applied = PatchRequest::parse(patch, &PatchLimits::default())
        .and_then(|req| roster_scim::patch::apply(ResourceKind::User, &mut attrs, &req));
    match applied {
        Err(e) => Ok(Err(e)),
        Ok(ops) if !ops.is_empty() => Ok(Err(ScimError::invalid_path("users have no members attribute"))),
        Ok(_) => save_user(c, env, current, attrs).await,
    }
}

async fn user_deleted<C: ConnectionTrait>(
    c: &C,
    env: &Envelope,
    if_match: Option<u64>,
) -> Result<Decision, StoreError> {
    let Some(current) = write::find_user(c, &env.account_id, &env.resource_id).await? else {
        return Ok(Err(not_found("User", &env.resource_id)));
    };
    if let Err(e) = check_version(if_match, current.version) {
        return Ok(Err(e));
    }
    write::delete_user(c, &env.account_id, &env.resource_id).await?;
    Ok(ok(204, None))
}

/// Resolves member ids to their kinds; any id that is not a user or group of this account (or is
/// the group itself) rejects the whole request.
async fn resolve_members<C: ConnectionTrait>(
    c: &C,
    account: &str,
    group_id: &str,
    ids: &[String],
) -> Result<Result<Vec<(String, &'static str)>, ScimError>, StoreError> {
    if ids.iter().any(|id| id == group_id) {
        return Ok(Err(ScimError::invalid_value("a group cannot be a member of itself")));
    }
    let kinds = write::resource_kinds(c, account, ids).await?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        match kinds.get(id) {
            Some(k) => out.push((id.clone(), *k)),
            None => {
                return Ok(Err(ScimError::invalid_value(format!(
                    "member {id:?} does not exist in this account; no change was made"
                ))));
            }
        }
    }
    Ok(Ok(out))
}

fn member_ids(members: &[Member]) -> Vec<String> {
    let mut ids: Vec<String> = members.iter().map(|m| m.value.clone()).collect();
    ids.sort();
    ids.dedup();
    ids
}

fn group_name_of(attrs: &Map<String, Value>) -> String {
    attrs.get("displayName").and_then(Value::as_str).unwrap_or_default().to_string()
}

async fn group_created<C: ConnectionTrait>(
    c: &C,
    env: &Envelope,
    attrs: &Map<String, Value>,
    members: &[Member],
) -> Result<Decision, StoreError> {
    let account = &env.account_id;
    if write::find_group(c, account, &env.resource_id).await?.is_some() {
        return Ok(Err(ScimError::uniqueness(format!("a group with id {:?} already exists", env.resource_id))));
    }
    if let Err(e) = ensure_group_name_free(c, account, &group_name_of(attrs), "").await? {
        return Ok(Err(e));
    }
    let resolved = match resolve_members(c, account, &env.resource_id, &member_ids(members)).await? {
        Ok(r) => r,
        Err(e) => return Ok(Err(e)),
    };
    let row = GroupRow::from_attributes(env.resource_id.clone(), attrs.clone(), env.time.clone(), env.time.clone(), 1);
    write::insert_group(c, account, &row).await?;
    write::add_members(c, account, &row.id, &resolved).await?;
    Ok(ok(201, Some(1)))
}

async fn group_replaced<C: ConnectionTrait>(
    c: &C,
    env: &Envelope,
    attrs: &Map<String, Value>,
    members: &[Member],
    if_match: Option<u64>,
) -> Result<Decision, StoreError> {
    let account = &env.account_id;
    let Some(current) = write::find_group(c, account, &env.resource_id).await? else {
        return Ok(Err(not_found("Group", &env.resource_id)));
    };
    if let Err(e) = check_version(if_match, current.version) {
        return Ok(Err(e));
    }
    if let Err(e) = ensure_group_name_free(c, account, &group_name_of(attrs), &current.id).await? {
        return Ok(Err(e));
    }
    let resolved = match resolve_members(c, account, &current.id, &member_ids(members)).await? {
        Ok(r) => r,
        Err(e) => return Ok(Err(e)),
    };
    let version = current.version + 1;
    let row = GroupRow::from_attributes(current.id.clone(), attrs.clone(), current.created, env.time.clone(), version);
    write::update_group(c, account, &row).await?;
    write::remove_all_members(c, account, &row.id).await?;
    write::add_members(c, account, &row.id, &resolved).await?;
    Ok(ok(200, Some(version)))
}

fn refs_ids(refs: &[MemberRef]) -> Vec<String> {
    let mut ids: Vec<String> = refs.iter().map(|m| m.value.clone()).collect();
    ids.sort();
    ids.dedup();
    ids
}

async fn group_patched<C: ConnectionTrait>(
    c: &C,
    env: &Envelope,
    patch: &Value,
    if_match: Option<u64>,
) -> Result<Decision, StoreError> {
    let account = &env.account_id;
    let Some(current) = write::find_group(c, account, &env.resource_id).await? else {
        return Ok(Err(not_found("Group", &env.resource_id)));
    };
    if let Err(e) = check_version(if_match, current.version) {
        return Ok(Err(e));
    }
    let mut attrs = current.resource.clone();
    let ops = match PatchRequest::parse(patch, &PatchLimits::default())
        .and_then(|req| roster_scim::patch::apply(ResourceKind::Group, &mut attrs, &req))
    {
        Ok(ops) => ops,
        Err(e) => return Ok(Err(e)),
    };
    if group_name_of(&attrs) != current.display_name
        && let Err(e) = ensure_group_name_free(c, account, &group_name_of(&attrs), &current.id).await?
    {
        return Ok(Err(e));
    }
    // Decide everything before writing anything: a request naming an unknown member changes nothing.
    let added: Vec<String> = ops
        .iter()
        .flat_map(|op| match op {
            MemberOp::Add(refs) | MemberOp::Replace(refs) => refs_ids(refs),
            _ => Vec::new(),
        })
        .collect();
    let mut added = added;
    added.sort();
    added.dedup();
    let kinds = match resolve_members(c, account, &current.id, &added).await? {
        Ok(r) => r,
        Err(e) => return Ok(Err(e)),
    };
    let kind_of = |id: &str| kinds.iter().find(|(k, _)| k == id).map(|(_, t)| *t);

    let attrs_changed = attrs != current.resource;
    if !attrs_changed && ops.is_empty() {
        return Ok(ok(204, Some(current.version)));
    }
    for op in &ops {
        match op {
            MemberOp::Add(refs) => {
                let rows: Vec<(String, &'static str)> =
                    refs_ids(refs).into_iter().filter_map(|id| kind_of(&id).map(|k| (id, k))).collect();
                write::add_members(c, account, &current.id, &rows).await?;
            }
            MemberOp::Replace(refs) => {
                write::remove_all_members(c, account, &current.id).await?;
                let rows: Vec<(String, &'static str)> =
                    refs_ids(refs).into_iter().filter_map(|id| kind_of(&id).map(|k| (id, k))).collect();
                write::add_members(c, account, &current.id, &rows).await?;
            }
            MemberOp::Remove(ids) => write::remove_members(c, account, &current.id, ids).await?,
            MemberOp::RemoveAll => write::remove_all_members(c, account, &current.id).await?,
            MemberOp::RemoveMatching(filter) => {
                let matching = matching_members(c, account, &current.id, filter).await?;
                write::remove_members(c, account, &current.id, &matching).await?;
            }
        }
    }
    let version = current.version + 1;
    let row = GroupRow::from_attributes(current.id.clone(), attrs, current.created, env.time.clone(), version);
    write::update_group(c, account, &row).await?;
    Ok(ok(204, Some(version)))
}

/// Evaluates a member filter (`members[type eq "Group"]`) against the group's current members.
async fn matching_members<C: ConnectionTrait>(
    c: &C,
    account: &str,
    group: &str,
    filter: &Filter,
) -> Result<Vec<String>, StoreError> {
    let rows = write::member_rows(c, account, group).await?;
    let value_path = Filter::ValuePath { path: AttrPath::simple("members"), filter: Box::new(filter.clone()) };
    Ok(rows
        .into_iter()
        .filter(|(id, kind)| {
            let doc = json!({"members": [{"value": id, "type": kind}]});
            roster_scim::filter::matches(&value_path, ResourceKind::Group, &doc)
        })
        .map(|(id, _)| id)
        .collect())
}

async fn group_deleted<C: ConnectionTrait>(
    c: &C,
    env: &Envelope,
    if_match: Option<u64>,
) -> Result<Decision, StoreError> {
    let Some(current) = write::find_group(c, &env.account_id, &env.resource_id).await? else {
        return Ok(Err(not_found("Group", &env.resource_id)));
    };
    if let Err(e) = check_version(if_match, current.version) {
        return Ok(Err(e));
    }
    write::delete_group(c, &env.account_id, &env.resource_id).await?;
    Ok(ok(204, None))
}
