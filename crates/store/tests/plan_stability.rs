//! On Postgres, the projector's lookups and removals by key must not walk an account, whatever
//! the planner's statistics say.
//!
//! Statistics describe the table as it was when last sampled. An account that grew since (a
//! replay, a new tenant's first sync) is then estimated at one row, and the planner prefers to walk
//! all of its rows and filter them over looking each key up. A 300,000-event replay measured
//! 31 s of its 65 s of Postgres statement time in membership removals planned that way. These
//! tests sample the statistics while only a small account exists, grow a second one, and count
//! the index entries and table rows Postgres reads (`pg_stat_user_indexes`, `pg_stat_user_tables`) for a batch of 40 keys in it.

use roster_db::Db;
use roster_db::testing::{fresh_postgres, postgres_url};
use roster_store::licensing::{license_states, snapshot_of};
use roster_store::write::{
    GroupRow, UserRow, add_members, change_members, find_user, find_users, insert_group, insert_users, resource_kinds,
    taken_ids_and_names, update_users, user_id_by_name,
};
use sea_orm::{ConnectionTrait, DatabaseTransaction, TransactionTrait};
use serde_json::json;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Users of the grown account: the walk reads all of them, a lookup reads a row per key.
const GROWN: usize = 4000;
/// Keys per batch, as a projector batch looks them up.
const KEYS: usize = 40;
/// Rows a batch of `KEYS` lookups may read: a few per key, far below a walk of the account.
const BOUND: i64 = (KEYS * 4) as i64;

fn user(i: usize) -> UserRow {
    let attrs = json!({"userName": format!("user{i}@contoso.com"), "active": true});
    let t = "2026-11-30T10:00:00.000Z".to_string();
    UserRow::from_attributes(format!("u{i:06}"), attrs.as_object().cloned().unwrap_or_default(), t.clone(), t, 1, None)
}

/// `n` users of `account` in 4 groups, each user a member of one.
async fn fill(db: &Db, account: &str, n: usize) -> TestResult {
    let users: Vec<UserRow> = (0..n).map(user).collect();
    for chunk in users.chunks(500) {
        let rows: Vec<(&str, &UserRow)> = chunk.iter().map(|u| (account, u)).collect();
        insert_users(db, &rows).await?;
    }
    for g in 0..4 {
        let attrs = json!({"displayName": format!("Group {g}")});
        let t = "2026-11-30T09:00:00.000Z".to_string();
        let group =
            GroupRow::from_attributes(format!("g{g}"), attrs.as_object().cloned().unwrap_or_default(), t.clone(), t, 1);
        insert_group(db, account, &group).await?;
        let members: Vec<(String, &'static str)> =
            users.iter().skip(g).step_by(4).map(|u| (u.id.clone(), "User")).collect();
        add_members(db, account, &group.id, &members).await?;
    }
    Ok(())
}

/// A database whose statistics were sampled when it held only a small account, and which then
/// grew an account of `GROWN` users: `grown`.
async fn stale_statistics(tag: &str) -> Result<Option<Db>, Box<dyn std::error::Error>> {
    let Some(base) = postgres_url() else { return Ok(None) };
    let (db, _) = fresh_postgres(&base, tag).await?;
    for table in ["scim_users", "scim_groups", "scim_members"] {
        // Autovacuum must not refresh the statistics while the test runs.
        db.execute_unprepared(&format!("ALTER TABLE {table} SET (autovacuum_enabled = off)")).await?;
    }
    fill(&db, "early", 40).await?;
    db.execute_unprepared("ANALYZE scim_users, scim_groups, scim_members").await?;
    fill(&db, "grown", GROWN).await?;
    Ok(Some(db))
}

/// Rows of `table` read so far, as Postgres has counted them: index entries returned by any of its
/// indexes (index-only scans included) and rows read by scanning it.
async fn rows_read(db: &Db, table: &str) -> Result<i64, Box<dyn std::error::Error>> {
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            format!(
                "SELECT ((SELECT COALESCE(SUM(idx_tup_read), 0) FROM pg_stat_user_indexes WHERE relname = '{table}') \
                 + (SELECT seq_tup_read FROM pg_stat_user_tables WHERE relname = '{table}'))::bigint"
            ),
        ))
        .await?
        .ok_or("no statistics for the table")?;
    Ok(row.try_get_by_index(0)?)
}

/// Runs `op` in a transaction and returns what it returned and the rows of `table` it read. The
/// transaction's counters reach the shared statistics when it commits (forced, not after the usual
/// second).
async fn reads_of<T, F>(db: &Db, table: &str, op: F) -> Result<(T, i64), Box<dyn std::error::Error>>
where
    F: AsyncFnOnce(&DatabaseTransaction) -> Result<T, Box<dyn std::error::Error>>,
{
    let before = rows_read(db, table).await?;
    let txn = db.begin().await?;
    let out = op(&txn).await?;
    txn.execute_unprepared("SELECT pg_stat_force_next_flush()").await?;
    txn.commit().await?;
    Ok((out, rows_read(db, table).await? - before))
}

fn ids(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| user(i).id).collect()
}

#[tokio::test]
async fn removing_members_reads_only_those_memberships_when_statistics_are_stale() -> TestResult {
    let Some(db) = stale_statistics("plan_remove").await? else { return Ok(()) };
    // `fill` makes user i a member of group i % 4.
    let pairs: Vec<(String, String)> = (1000..1000 + KEYS).map(|i| (format!("g{}", i % 4), user(i).id)).collect();
    let removes: Vec<(&str, &str)> = pairs.iter().map(|(g, m)| (g.as_str(), m.as_str())).collect();
    let ((), read) =
        reads_of(&db, "scim_members", async |c| Ok(change_members(c, "grown", &[], &removes).await?)).await?;
    assert!(read <= BOUND, "{read} membership rows read to remove {KEYS}");
    let left = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) FROM scim_members WHERE account_id = 'grown'",
        ))
        .await?
        .ok_or("no count")?
        .try_get_by_index::<i64>(0)?;
    assert_eq!(left, (GROWN - KEYS) as i64);
    Ok(())
}

#[tokio::test]
async fn finding_users_reads_only_those_users_when_statistics_are_stale() -> TestResult {
    let Some(db) = stale_statistics("plan_find").await? else { return Ok(()) };
    let wanted = ids(2000..2000 + KEYS);
    let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
    let (found, read) = reads_of(&db, "scim_users", async |c| Ok(find_users(c, "grown", &wanted).await?.len())).await?;
    assert_eq!(found, KEYS);
    assert!(read <= BOUND, "{read} user rows read to find {KEYS}");
    Ok(())
}

#[tokio::test]
async fn checking_taken_ids_and_names_reads_only_those_users_when_statistics_are_stale() -> TestResult {
    let Some(db) = stale_statistics("plan_taken").await? else { return Ok(()) };
    let wanted = ids(3000..3000 + KEYS);
    let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
    let names: Vec<String> = (100..100 + KEYS).map(|i| format!("user{i}@contoso.com")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let (taken, read) = reads_of(&db, "scim_users", async |c| {
        let (ids, names) = taken_ids_and_names(c, "grown", &wanted, &names).await?;
        Ok((ids.len(), names.len()))
    })
    .await?;
    assert_eq!(taken, (KEYS, KEYS));
    assert!(read <= 2 * BOUND, "{read} user rows read to check {KEYS} ids and {KEYS} names");
    Ok(())
}

#[tokio::test]
async fn resolving_member_kinds_and_license_states_reads_only_those_users_when_statistics_are_stale() -> TestResult {
    let Some(db) = stale_statistics("plan_kinds").await? else { return Ok(()) };
    let wanted = ids(500..500 + KEYS);
    let (kinds, read) =
        reads_of(&db, "scim_users", async |c| Ok(resource_kinds(c, "grown", &wanted).await?.len())).await?;
    assert_eq!(kinds, KEYS);
    assert!(read <= BOUND, "{read} user rows read to resolve {KEYS} members");
    let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
    let (states, read) =
        reads_of(&db, "scim_users", async |c| Ok(license_states(c, "grown", &wanted).await?.len())).await?;
    assert_eq!(states, KEYS);
    assert!(read <= BOUND, "{read} user rows read for {KEYS} license states");
    Ok(())
}

#[tokio::test]
async fn looking_a_user_up_by_id_or_user_name_reads_one_row_when_statistics_are_stale() -> TestResult {
    let Some(db) = stale_statistics("plan_single").await? else { return Ok(()) };
    let id = user(1234).id;
    let (_, read) =
        reads_of(&db, "scim_users", async |c| Ok(find_user(c, "grown", &id).await?.ok_or("user by id absent")?))
            .await?;
    assert!(read <= 2, "{read} user rows read to find one by id");
    let (_, read) = reads_of(&db, "scim_users", async |c| {
        Ok(user_id_by_name(c, "grown", "user1234@contoso.com").await?.ok_or("user by name absent")?)
    })
    .await?;
    assert!(read <= 2, "{read} user rows read to find one by userName");
    Ok(())
}

#[tokio::test]
async fn writing_users_back_reads_only_those_users_when_statistics_are_stale() -> TestResult {
    let Some(db) = stale_statistics("plan_update").await? else { return Ok(()) };
    let rows: Vec<UserRow> = (10..10 + KEYS)
        .map(|i| {
            let mut u = user(i);
            u.display_name = Some(format!("Renamed {i}"));
            u
        })
        .collect();
    let refs: Vec<&UserRow> = rows.iter().collect();
    let ((), read) = reads_of(&db, "scim_users", async |c| Ok(update_users(c, "grown", &refs).await?)).await?;
    assert!(read <= BOUND, "{read} user rows read to write {KEYS} back");
    let renamed: Vec<&str> = refs.iter().map(|u| u.id.as_str()).collect();
    let found = find_users(&db, "grown", &renamed).await?;
    assert!(found.iter().all(|u| u.display_name.as_deref().is_some_and(|n| n.starts_with("Renamed"))));
    Ok(())
}

#[tokio::test]
async fn reading_users_groups_reads_only_their_memberships_when_statistics_are_stale() -> TestResult {
    let Some(db) = stale_statistics("plan_groups").await? else { return Ok(()) };
    let wanted = ids(700..700 + KEYS);
    let groups_of = async |c: &DatabaseTransaction, users: &[String]| -> Result<usize, Box<dyn std::error::Error>> {
        Ok(snapshot_of(c, "grown", users).await?.groups.values().map(Vec::len).sum())
    };
    let (groups, read) = reads_of(&db, "scim_members", async |c| groups_of(c, &wanted).await).await?;
    assert_eq!(groups, KEYS);
    assert!(read <= BOUND, "{read} membership rows read for the groups of {KEYS} users");
    // One user, as a read by id asks: a plain statement, not a probe.
    let one = ids(900..901);
    let (groups, read) = reads_of(&db, "scim_members", async |c| groups_of(c, &one).await).await?;
    assert_eq!(groups, 1);
    assert!(read <= 4, "{read} membership rows read for the groups of one user");
    Ok(())
}
