//! Times `allocate` for one account of 100,000 users (issue 4's closing note):
//! `cargo run --release -p roster-license-policy --example allocate_100k`.

use std::collections::HashMap;
use std::time::Instant;

use roster_license_policy::{UserInput, allocate, diff, parse_policy};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let users: usize = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(100_000);
    let policy = parse_policy(&serde_json::json!({
        "license_types": [
            {"name": "developer", "rank": 40, "seats": users / 4},
            {"name": "analyst", "rank": 30, "seats": users / 10},
            {"name": "it", "rank": 20, "seats": 100},
            {"name": "read_only", "rank": 10, "seats": null}
        ],
        "rules": [
            {"group": "dbt-developers", "license": "developer"},
            {"group": "dbt-analysts", "license": "analyst"},
            {"group": "IT", "license": "it"},
            {"group": "dbt-readers", "license": "read_only"}
        ],
        "default_license": "read_only"
    }))?;
    // Every user is in 8 groups, a few of which have rules; 5% are inactive.
    let input: Vec<UserInput> = (0..users)
        .map(|i| {
            let mut groups: Vec<String> = (0..6).map(|k| format!("team-{}", (i * 7 + k * 13) % 500)).collect();
            groups.push(["dbt-developers", "dbt-analysts", "it", "dbt-readers"][i % 4].to_owned());
            groups.push(["DBT-Developers", "dbt-analysts", "everyone"][i % 3].to_owned());
            UserInput { id: format!("{i:08}"), groups, active: i % 20 != 0, deleted: false, override_license: None }
        })
        .collect();

    let start = Instant::now();
    let first = allocate(&policy, &input, &HashMap::new());
    let from_scratch = start.elapsed();

    let current = first.holdings();
    let mut edited = policy.clone();
    for t in &mut edited.license_types {
        if t.name == "developer" {
            t.seats = Some((users / 5) as u64);
        }
    }
    let start = Instant::now();
    let after = allocate(&edited, &input, &current);
    let changes = diff(&current, &after);
    let policy_change = start.elapsed();

    println!("users: {users}");
    println!("allocate from scratch: {from_scratch:?}");
    println!("policy change (allocate + diff, {} changes): {policy_change:?}", changes.len());
    println!("seats after: {}", serde_json::to_string(&after.seats)?);
    Ok(())
}
