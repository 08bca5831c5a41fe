//! A page's cost must not grow with the account.
//!
//! Entra looks every user up by `userName` before it creates or updates one, so a lookup that walks
//! the account makes every provisioning cycle quadratic. Session 8 shipped such a regression (each
//! user's groups as a correlated subquery in the page's statement, computed for every row before
//! `LIMIT`), and only `make bench` caught it. These tests count SQLite's virtual-machine steps, not
//! time, so they hold on a loaded machine: the statements a page issues must take about as many
//! steps in an account eight times larger.

use roster_db::testing::{Recording, fresh_sqlite};
use roster_db::{Db, sqlite_vm_steps};
use roster_scim::filter::{Filter, FilterLimits, parse};
use roster_store::read::{self, ListQuery};
use roster_store::write::{GroupRow, UserRow, add_members, insert_group, insert_users};
use serde_json::json;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const ACCOUNT: &str = "acme";

/// An account of `n` users, each a member of one of `groups` groups.
async fn account_of(n: usize, groups: usize) -> Result<Db, Box<dyn std::error::Error>> {
    let (db, _) = fresh_sqlite(&format!("page-cost-{n}-{groups}")).await?;
    let users: Vec<UserRow> = (0..n)
        .map(|i| {
            let attrs =
                json!({"userName": format!("user{i}@contoso.com"), "active": true, "displayName": format!("User {i}")});
            let created = format!("2026-11-30T10:{:02}:{:02}.{:03}Z", i / 60_000 % 60, i / 1000 % 60, i % 1000);
            UserRow::from_attributes(
                format!("u{i:06}"),
                attrs.as_object().cloned().unwrap_or_default(),
                created.clone(),
                created,
                1,
                None,
            )
        })
        .collect();
    for chunk in users.chunks(500) {
        let rows: Vec<(&str, &UserRow)> = chunk.iter().map(|u| (ACCOUNT, u)).collect();
        insert_users(&db, &rows).await?;
    }
    for g in 0..groups {
        let attrs = json!({"displayName": format!("Group {g}")});
        let t = "2026-11-30T09:00:00.000Z".to_string();
        let group = GroupRow::from_attributes(
            format!("g{g:03}"),
            attrs.as_object().cloned().unwrap_or_default(),
            t.clone(),
            t,
            1,
        );
        insert_group(&db, ACCOUNT, &group).await?;
        let members: Vec<(String, &'static str)> =
            users.iter().skip(g).step_by(groups).map(|u| (u.id.clone(), "User")).collect();
        add_members(&db, ACCOUNT, &group.id, &members).await?;
    }
    Ok(db)
}

fn filter(text: &str) -> Result<Filter, Box<dyn std::error::Error>> {
    Ok(parse(text, &FilterLimits::default())?)
}

/// The steps of the statements a user page and its groups take, as the list handler issues them.
/// `totalResults` of a full page needs a count of every match, which grows with the matches by
/// nature; it is left out.
async fn page_steps(db: &Db, filter: Option<&Filter>, count: u64) -> Result<i64, Box<dyn std::error::Error>> {
    let recording = Recording::new(db);
    let q = ListQuery { filter, sort_by: None, descending: false, start_index: 1, count };
    let (_, rows) = read::list_users(&recording, ACCOUNT, &q).await?;
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    read::member_of_many(&recording, ACCOUNT, &ids).await?;
    let mut steps = 0;
    for stmt in recording.statements().iter().filter(|s| !s.sql.starts_with("SELECT COUNT(*)")) {
        steps += sqlite_vm_steps(db, stmt)?;
    }
    Ok(steps)
}

#[tokio::test]
async fn a_user_name_lookup_costs_the_same_in_a_large_account() -> TestResult {
    let lookup = filter(r#"userName eq "user7@contoso.com""#)?;
    let small = page_steps(&account_of(400, 20).await?, Some(&lookup), 100).await?;
    let large = page_steps(&account_of(3200, 20).await?, Some(&lookup), 100).await?;
    assert!(large <= small * 3 / 2, "{small} steps with 400 users, {large} with 3,200");
    Ok(())
}

#[tokio::test]
async fn a_user_name_lookup_costs_the_same_in_an_account_with_many_groups() -> TestResult {
    let lookup = filter(r#"userName eq "user7@contoso.com""#)?;
    let few = page_steps(&account_of(800, 4).await?, Some(&lookup), 100).await?;
    let many = page_steps(&account_of(800, 400).await?, Some(&lookup), 100).await?;
    assert!(many <= few * 3 / 2, "{few} steps with 4 groups, {many} with 400");
    Ok(())
}

#[tokio::test]
async fn a_first_page_with_groups_costs_the_same_in_a_large_account() -> TestResult {
    let small = page_steps(&account_of(400, 20).await?, None, 50).await?;
    let large = page_steps(&account_of(3200, 20).await?, None, 50).await?;
    assert!(large <= small * 3 / 2, "{small} steps with 400 users, {large} with 3,200");
    Ok(())
}

#[tokio::test]
async fn the_measure_sees_a_page_that_walks_the_account() -> TestResult {
    // No index serves a substring of displayName: the page must look at every user. If this
    // failed, the tests above could not fail either.
    let walk = filter(r#"displayName co "no such user""#)?;
    let small = page_steps(&account_of(400, 20).await?, Some(&walk), 50).await?;
    let large = page_steps(&account_of(3200, 20).await?, Some(&walk), 50).await?;
    assert!(large >= small * 4, "{small} steps with 400 users, {large} with 3,200");
    Ok(())
}
