//! Licensing state in the read model: policies, overrides, holds, the per-account change counter, and the
//! queries the licensing worker and the admin API run.
//!
//! Policies, overrides and users' licenses are written only by the projector (from `license.*` events);
//! holds are recorded by the licensing worker and resolved through the log (`license.hold_resolved`).

use std::collections::{BTreeMap, HashMap};

use roster_db::{StoreError, stmt};

use crate::sql::{IN_CHUNK, keyed_rows, members_with_groups, placeholders, value_rows};
use roster_license_policy::{Policy, UserInput};
use sea_orm::{ConnectionTrait, Value};
use serde::Serialize;
use serde_json::Value as Json;

/// The stored policy of an account (`None` when never set: licensing is off for it).
pub async fn get_policy<C: ConnectionTrait>(c: &C, account: &str) -> Result<Option<Policy>, StoreError> {
    let b = c.get_database_backend();
    let row =
        c.query_one_raw(stmt(b, "SELECT policy FROM license_policies WHERE account_id = ?", [account.into()])).await?;
    let Some(row) = row else { return Ok(None) };
    let text: String = row.try_get_by_index(0)?;
    let value: Json =
        serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("stored license policy: {e}")))?;
    Policy::from_value(&value)
        .map(Some)
        .map_err(|e| StoreError::Corrupt(format!("stored license policy: {}", e.messages().join("; "))))
}

/// Stores an account's policy (validated by the caller).
pub async fn set_policy<C: ConnectionTrait>(
    c: &C,
    account: &str,
    policy: &Policy,
    updated_at: &str,
) -> Result<(), StoreError> {
    let b = c.get_database_backend();
    let text = serde_json::to_string(policy).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    c.execute_raw(stmt(
        b,
        "INSERT INTO license_policies (account_id, policy, updated_at) VALUES (?, ?, ?) ON CONFLICT (account_id) DO UPDATE SET policy = excluded.policy, updated_at = excluded.updated_at",
        [account.into(), text.into(), updated_at.into()],
    ))
    .await?;
    Ok(())
}

/// Pins a user's license.
pub async fn set_override<C: ConnectionTrait>(
    c: &C,
    account: &str,
    user: &str,
    license: &str,
) -> Result<(), StoreError> {
    let b = c.get_database_backend();
    c.execute_raw(stmt(
        b,
        "INSERT INTO license_overrides (account_id, user_id, license) VALUES (?, ?, ?) ON CONFLICT (account_id, user_id) DO UPDATE SET license = excluded.license",
        [account.into(), user.into(), license.into()],
    ))
    .await?;
    Ok(())
}

/// Unpins a user's license; whether there was a pin.
pub async fn remove_override<C: ConnectionTrait>(c: &C, account: &str, user: &str) -> Result<bool, StoreError> {
    let b = c.get_database_backend();
    let r = c
        .execute_raw(stmt(
            b,
            "DELETE FROM license_overrides WHERE account_id = ? AND user_id = ?",
            [account.into(), user.into()],
        ))
        .await?;
    Ok(r.rows_affected() > 0)
}

/// Every pin of an account, by user id.
pub async fn overrides<C: ConnectionTrait>(c: &C, account: &str) -> Result<HashMap<String, String>, StoreError> {
    let b = c.get_database_backend();
    let rows = c
        .query_all_raw(stmt(b, "SELECT user_id, license FROM license_overrides WHERE account_id = ?", [account.into()]))
        .await?;
    rows.iter().map(|r| Ok((r.try_get_by_index(0)?, r.try_get_by_index(1)?))).collect()
}

/// How many active users of the account hold `license` (the seat guard's count). An inactive
/// user's seat is free at once, even before the licensing worker's `license.changed` event
/// (reason `deactivated`) records the revocation in the log.
pub async fn count_holders<C: ConnectionTrait>(c: &C, account: &str, license: &str) -> Result<u64, StoreError> {
    let b = c.get_database_backend();
    let row = c
        .query_one_raw(stmt(
            b,
            "SELECT COUNT(*) FROM scim_users WHERE account_id = ? AND license_type = ? AND active = ?",
            [account.into(), license.into(), true.into()],
        ))
        .await?;
    let n: i64 = row.map(|r| r.try_get_by_index(0)).transpose()?.unwrap_or(0);
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Sets a user's license and the reason for it (JSON), leaving version and `lastModified` alone: the license
/// is maintained by Roster, not by the SCIM client, so it must not break the client's `If-Match`.
pub async fn set_license<C: ConnectionTrait>(
    c: &C,
    account: &str,
    user: &str,
    license: Option<&str>,
    reason: &Json,
) -> Result<(), StoreError> {
    let b = c.get_database_backend();
    c.execute_raw(stmt(
        b,
        "UPDATE scim_users SET license_type = ?, license_reason = ? WHERE account_id = ? AND id = ?",
        [license.map(str::to_owned).into(), reason.to_string().into(), account.into(), user.into()],
    ))
    .await?;
    Ok(())
}

/// (active, license) of those of `ids` that are users of the account: what deciding a license
/// change needs, without loading and parsing the users' attributes (one query per 500 ids).
pub async fn license_states<C: ConnectionTrait>(
    c: &C,
    account: &str,
    ids: &[&str],
) -> Result<Vec<(String, bool, Option<String>)>, StoreError> {
    let b = c.get_database_backend();
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(IN_CHUNK) {
        let values = std::iter::once(Value::from(account)).chain(chunk.iter().map(|id| Value::from(*id)));
        let rows = keyed_rows(b, "scim_users", "u", &["id"], chunk.len());
        let sql = format!("SELECT u.id, u.active, u.license_type {rows}");
        for r in c.query_all_raw(stmt(b, &sql, values)).await? {
            out.push((r.try_get_by_index(0)?, r.try_get_by_index(1)?, r.try_get_by_index(2)?));
        }
    }
    Ok(out)
}

/// [`set_license`] for many users of one account, many rows per statement. Each user at most once.
pub async fn set_licenses<C: ConnectionTrait>(
    c: &C,
    account: &str,
    rows: &[(&str, Option<&str>, &str)],
) -> Result<(), StoreError> {
    let rows = rows
        .iter()
        .map(|(user, license, reason)| vec![(*user).into(), license.map(str::to_owned).into(), (*reason).into()])
        .collect();
    crate::write::update_many(c, "scim_users", &["license_type", "license_reason"], account, rows).await
}

/// `(account, seq)` of every account that has a license policy (accounts without one are never licensed).
pub async fn licensed_accounts<C: ConnectionTrait>(c: &C) -> Result<Vec<(String, i64)>, StoreError> {
    let b = c.get_database_backend();
    let rows = c
        .query_all_raw(stmt(
            b,
            "SELECT p.account_id, COALESCE(s.seq, 0) FROM license_policies p LEFT JOIN account_state s ON s.account_id = p.account_id ORDER BY p.account_id",
            Vec::<Value>::new(),
        ))
        .await?;
    rows.iter().map(|r| Ok((r.try_get_by_index(0)?, r.try_get_by_index(1)?))).collect()
}

/// One user as licensing sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LicensedUser {
    /// Resource id.
    pub id: String,
    /// `userName`.
    pub user_name: String,
    /// SCIM `active`.
    pub active: bool,
    /// The license held now.
    pub license: Option<String>,
    /// The stored reason JSON of the last license change, if any.
    pub reason: Option<Json>,
}

/// Everything the licensing worker needs about an account, loaded in three queries.
#[derive(Debug, Clone, Default)]
pub struct AccountSnapshot {
    /// Every user, by id.
    pub users: Vec<LicensedUser>,
    /// `displayName`s of each user's groups, by user id.
    pub groups: HashMap<String, Vec<String>>,
    /// Pins, by user id.
    pub overrides: HashMap<String, String>,
}

impl AccountSnapshot {
    /// The inputs of `allocate`.
    pub fn inputs(&self) -> Vec<UserInput> {
        self.users
            .iter()
            .map(|u| UserInput {
                id: u.id.clone(),
                groups: self.groups.get(&u.id).cloned().unwrap_or_default(),
                active: u.active,
                deleted: false,
                override_license: self.overrides.get(&u.id).cloned(),
            })
            .collect()
    }

    /// Who holds what now.
    pub fn holdings(&self) -> HashMap<String, String> {
        self.users.iter().filter_map(|u| u.license.clone().map(|l| (u.id.clone(), l))).collect()
    }

    /// Users whose stored reason says they wait for a seat.
    pub fn waiting(&self) -> std::collections::HashSet<String> {
        self.users
            .iter()
            .filter(|u| u.reason.as_ref().and_then(|r| r.get("kind")).and_then(Json::as_str) == Some("seats_exhausted"))
            .map(|u| u.id.clone())
            .collect()
    }

    /// How many users are active.
    pub fn active_users(&self) -> usize {
        self.users.iter().filter(|u| u.active).count()
    }
}

/// Loads an account's users, their group names and the pins.
pub async fn snapshot<C: ConnectionTrait>(c: &C, account: &str) -> Result<AccountSnapshot, StoreError> {
    let b = c.get_database_backend();
    let rows = c
        .query_all_raw(stmt(
            b,
            "SELECT id, user_name, active, license_type, license_reason FROM scim_users WHERE account_id = ? ORDER BY id",
            [account.into()],
        ))
        .await?;
    let mut users = Vec::with_capacity(rows.len());
    for r in &rows {
        let reason: Option<String> = r.try_get_by_index(4)?;
        users.push(LicensedUser {
            id: r.try_get_by_index(0)?,
            user_name: r.try_get_by_index(1)?,
            active: r.try_get_by_index(2)?,
            license: r.try_get_by_index(3)?,
            reason: reason.and_then(|t| serde_json::from_str(&t).ok()),
        });
    }
    let rows = c
        .query_all_raw(stmt(
            b,
            "SELECT m.member_id, g.display_name FROM scim_members m JOIN scim_groups g ON g.account_id = m.account_id AND g.id = m.group_id WHERE m.account_id = ? AND m.member_type = 'User'",
            [account.into()],
        ))
        .await?;
    let mut groups: HashMap<String, Vec<String>> = HashMap::new();
    for r in &rows {
        groups.entry(r.try_get_by_index(0)?).or_default().push(r.try_get_by_index(1)?);
    }
    Ok(AccountSnapshot { users, groups, overrides: overrides(c, account).await? })
}

/// A mass-revocation hold as stored and listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hold {
    /// Hold id.
    pub id: String,
    /// The account.
    pub account_id: String,
    /// When the worker recorded it.
    pub created_at: String,
    /// `pending`, `confirmed`, `discarded`, `applied` or `superseded`.
    pub status: String,
    /// Counts and share (JSON).
    pub summary: Json,
    /// The held license changes (JSON array of `{user, from, to, reason}`).
    pub changes: Json,
}

fn hold_from_row(r: &sea_orm::QueryResult) -> Result<Hold, StoreError> {
    let parse = |t: String| serde_json::from_str::<Json>(&t).map_err(|e| StoreError::Corrupt(format!("hold: {e}")));
    Ok(Hold {
        id: r.try_get_by_index(0)?,
        account_id: r.try_get_by_index(1)?,
        created_at: r.try_get_by_index(2)?,
        status: r.try_get_by_index(3)?,
        summary: parse(r.try_get_by_index(4)?)?,
        changes: parse(r.try_get_by_index(5)?)?,
    })
}

const HOLD_COLUMNS: &str = "id, account_id, created_at, status, summary, changes";

/// An account's holds, newest first.
pub async fn holds<C: ConnectionTrait>(c: &C, account: &str) -> Result<Vec<Hold>, StoreError> {
    let b = c.get_database_backend();
    let sql =
        format!("SELECT {HOLD_COLUMNS} FROM license_holds WHERE account_id = ? ORDER BY created_at DESC, id DESC");
    let rows = c.query_all_raw(stmt(b, &sql, [account.into()])).await?;
    rows.iter().map(hold_from_row).collect()
}

/// One hold of an account.
pub async fn get_hold<C: ConnectionTrait>(c: &C, account: &str, id: &str) -> Result<Option<Hold>, StoreError> {
    let b = c.get_database_backend();
    let sql = format!("SELECT {HOLD_COLUMNS} FROM license_holds WHERE account_id = ? AND id = ?");
    let row = c.query_one_raw(stmt(b, &sql, [account.into(), id.into()])).await?;
    row.as_ref().map(hold_from_row).transpose()
}

/// Records a new hold.
pub async fn insert_hold<C: ConnectionTrait>(c: &C, h: &Hold) -> Result<(), StoreError> {
    let b = c.get_database_backend();
    c.execute_raw(stmt(
        b,
        "INSERT INTO license_holds (id, account_id, created_at, status, summary, changes) VALUES (?, ?, ?, ?, ?, ?)",
        [
            h.id.clone().into(),
            h.account_id.clone().into(),
            h.created_at.clone().into(),
            h.status.clone().into(),
            h.summary.to_string().into(),
            h.changes.to_string().into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Replaces a pending hold's summary and changes (the held situation evolved before an operator acted).
pub async fn update_pending_hold<C: ConnectionTrait>(
    c: &C,
    id: &str,
    summary: &Json,
    changes: &Json,
) -> Result<(), StoreError> {
    let b = c.get_database_backend();
    c.execute_raw(stmt(
        b,
        "UPDATE license_holds SET summary = ?, changes = ? WHERE id = ? AND status = 'pending'",
        [summary.to_string().into(), changes.to_string().into(), id.into()],
    ))
    .await?;
    Ok(())
}

/// Moves a hold from status `from` to `to`; whether it was in `from`.
pub async fn set_hold_status<C: ConnectionTrait>(c: &C, id: &str, from: &str, to: &str) -> Result<bool, StoreError> {
    let b = c.get_database_backend();
    let r = c
        .execute_raw(stmt(
            b,
            "UPDATE license_holds SET status = ? WHERE id = ? AND status = ?",
            [to.into(), id.into(), from.into()],
        ))
        .await?;
    Ok(r.rows_affected() > 0)
}

/// Seat use per license type of the policy (holders counted in the read model).
pub async fn seat_counts<C: ConnectionTrait>(c: &C, account: &str) -> Result<BTreeMap<String, u64>, StoreError> {
    let b = c.get_database_backend();
    let rows = c
        .query_all_raw(stmt(
            b,
            "SELECT license_type, COUNT(*) FROM scim_users WHERE account_id = ? AND license_type IS NOT NULL AND active = ? GROUP BY license_type",
            [account.into(), true.into()],
        ))
        .await?;
    rows.iter()
        .map(|r| {
            let n: i64 = r.try_get_by_index(1)?;
            Ok((r.try_get_by_index(0)?, u64::try_from(n).unwrap_or(0)))
        })
        .collect()
}

/// The `license_dirty` user id that asks for the whole account to be re-evaluated (a policy change).
pub const WHOLE_ACCOUNT: &str = "*";

/// Of `accounts`, those with a license policy, and every one's change counter (0 when it has none yet):
/// what the projector needs to mark users for the licensing worker.
pub async fn account_seqs<C: ConnectionTrait>(
    c: &C,
    accounts: &[&str],
) -> Result<(Vec<String>, HashMap<String, i64>), StoreError> {
    let b = c.get_database_backend();
    let mut licensed = Vec::new();
    let mut seqs = HashMap::new();
    for chunk in accounts.chunks(IN_CHUNK) {
        let values: Vec<Value> = chunk.iter().map(|a| Value::from(*a)).collect();
        let ph = placeholders(chunk.len());
        // One round trip for both tables: every batch the projector applies starts with this.
        let sql = format!(
            "SELECT account_id, NULL FROM license_policies WHERE account_id IN ({ph}) \
             UNION ALL SELECT account_id, seq FROM account_state WHERE account_id IN ({ph})"
        );
        let mut both = values.clone();
        both.extend(values);
        for r in c.query_all_raw(stmt(b, &sql, both)).await? {
            let account: String = r.try_get_by_index(0)?;
            match r.try_get_by_index::<Option<i64>>(1)? {
                Some(seq) => {
                    seqs.insert(account, seq);
                }
                None => licensed.push(account),
            }
        }
    }
    Ok((licensed, seqs))
}

/// Marks users of an account for re-evaluation; `mark` is the account's change counter after the marking
/// event (a later mark replaces an earlier one, so clearing up to what was evaluated never loses a mark).
pub async fn mark_dirty<C: ConnectionTrait>(c: &C, account: &str, marks: &[(String, i64)]) -> Result<(), StoreError> {
    let b = c.get_database_backend();
    for chunk in marks.chunks(300) {
        let rows = value_rows(chunk.len(), 3);
        let sql = format!(
            "INSERT INTO license_dirty (account_id, user_id, mark) VALUES {rows} ON CONFLICT (account_id, user_id) DO UPDATE SET mark = excluded.mark"
        );
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 3);
        for (user, mark) in chunk {
            values.push(account.into());
            values.push(user.clone().into());
            values.push((*mark).into());
        }
        c.execute_raw(stmt(b, &sql, values)).await?;
    }
    Ok(())
}

/// The users marked for re-evaluation in an account, with their marks.
pub async fn dirty<C: ConnectionTrait>(c: &C, account: &str) -> Result<Vec<(String, i64)>, StoreError> {
    let b = c.get_database_backend();
    let rows = c
        .query_all_raw(stmt(b, "SELECT user_id, mark FROM license_dirty WHERE account_id = ?", [account.into()]))
        .await?;
    rows.iter().map(|r| Ok((r.try_get_by_index(0)?, r.try_get_by_index(1)?))).collect()
}

/// Clears the marks an evaluation covered: those made by changes up to counter value `upto`.
pub async fn clear_dirty<C: ConnectionTrait>(c: &C, account: &str, upto: i64) -> Result<(), StoreError> {
    let b = c.get_database_backend();
    c.execute_raw(stmt(
        b,
        "DELETE FROM license_dirty WHERE account_id = ? AND mark <= ?",
        [account.into(), upto.into()],
    ))
    .await?;
    Ok(())
}

/// The account's change counter now.
pub async fn seq<C: ConnectionTrait>(c: &C, account: &str) -> Result<i64, StoreError> {
    let b = c.get_database_backend();
    let row = c.query_one_raw(stmt(b, "SELECT seq FROM account_state WHERE account_id = ?", [account.into()])).await?;
    Ok(row.map(|r| r.try_get_by_index(0)).transpose()?.unwrap_or(0))
}

/// Users whose last license decision was `seats_exhausted`: they wait for a seat and are re-evaluated
/// whenever one may have freed.
pub async fn waiting_users<C: ConnectionTrait>(c: &C, account: &str) -> Result<Vec<String>, StoreError> {
    let b = c.get_database_backend();
    let rows = c
        .query_all_raw(stmt(
            b,
            "SELECT id FROM scim_users WHERE account_id = ? AND license_reason LIKE ?",
            [account.into(), "%\"kind\":\"seats_exhausted\"%".into()],
        ))
        .await?;
    rows.iter().map(|r| Ok(r.try_get_by_index(0)?)).collect()
}

/// Users holding `license` (active or not).
pub async fn holders<C: ConnectionTrait>(c: &C, account: &str, license: &str) -> Result<Vec<String>, StoreError> {
    let b = c.get_database_backend();
    let rows = c
        .query_all_raw(stmt(
            b,
            "SELECT id FROM scim_users WHERE account_id = ? AND license_type = ?",
            [account.into(), license.into()],
        ))
        .await?;
    rows.iter().map(|r| Ok(r.try_get_by_index(0)?)).collect()
}

/// How many users of the account are active (the mass-revocation guard's denominator).
pub async fn active_users<C: ConnectionTrait>(c: &C, account: &str) -> Result<usize, StoreError> {
    let b = c.get_database_backend();
    let row = c
        .query_one_raw(stmt(
            b,
            "SELECT COUNT(*) FROM scim_users WHERE account_id = ? AND active = ?",
            [account.into(), true.into()],
        ))
        .await?;
    let n: i64 = row.map(|r| r.try_get_by_index(0)).transpose()?.unwrap_or(0);
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Like [`snapshot`], for the named users only (ids that are no user of the account are left out).
pub async fn snapshot_of<C: ConnectionTrait>(
    c: &C,
    account: &str,
    ids: &[String],
) -> Result<AccountSnapshot, StoreError> {
    let b = c.get_database_backend();
    let mut snap = AccountSnapshot::default();
    for chunk in ids.chunks(IN_CHUNK) {
        let ph = placeholders(chunk.len());
        let mut values: Vec<Value> = vec![account.into()];
        values.extend(chunk.iter().map(|s| Value::from(s.clone())));
        let sql = format!(
            "SELECT u.id, u.user_name, u.active, u.license_type, u.license_reason {}",
            keyed_rows(b, "scim_users", "u", &["id"], chunk.len())
        );
        for r in &c.query_all_raw(stmt(b, &sql, values.clone())).await? {
            let reason: Option<String> = r.try_get_by_index(4)?;
            snap.users.push(LicensedUser {
                id: r.try_get_by_index(0)?,
                user_name: r.try_get_by_index(1)?,
                active: r.try_get_by_index(2)?,
                license: r.try_get_by_index(3)?,
                reason: reason.and_then(|t| serde_json::from_str(&t).ok()),
            });
        }
        let sql = format!(
            "SELECT m.member_id, g.display_name {} AND m.member_type = 'User'",
            members_with_groups(b, chunk.len())
        );
        for r in &c.query_all_raw(stmt(b, &sql, values.clone())).await? {
            snap.groups.entry(r.try_get_by_index(0)?).or_default().push(r.try_get_by_index(1)?);
        }
        let sql = format!("SELECT user_id, license FROM license_overrides WHERE account_id = ? AND user_id IN ({ph})");
        for r in &c.query_all_raw(stmt(b, &sql, values)).await? {
            snap.overrides.insert(r.try_get_by_index(0)?, r.try_get_by_index(1)?);
        }
    }
    snap.users.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(snap)
}
