//! Micro-benchmarks of licensing's pure core: evaluating one user (done for every user a group or
//! user change touches) and allocating seats for a whole account of 100,000 users (done on every
//! policy change), from scratch and as a policy change against current holdings.
//! Run with `cargo bench -p roster-license-policy` (or `make bench`).

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use roster_license_policy::{Policy, UserInput, allocate, diff, eligible, parse_policy};
use serde_json::json;

/// Users in the account-wide benchmarks (the "re-licensing 100,000 users").
const USERS: usize = 100_000;

/// A four-tier policy like SPEC.md's example, with seat limits that make allocation contested.
fn policy(users: usize) -> Policy {
    let p = parse_policy(&json!({
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
    }));
    match p {
        Ok(p) => p,
        Err(e) => panic!("benchmark policy is valid: {e}"),
    }
}

/// Every user is in 8 groups, a few of which have rules (in mixed case); 5% are inactive.
fn users(n: usize) -> Vec<UserInput> {
    (0..n)
        .map(|i| {
            let mut groups: Vec<String> = (0..6).map(|k| format!("team-{}", (i * 7 + k * 13) % 500)).collect();
            groups.push(["dbt-developers", "dbt-analysts", "it", "dbt-readers"][i % 4].to_owned());
            groups.push(["DBT-Developers", "dbt-analysts", "everyone"][i % 3].to_owned());
            UserInput { id: format!("{i:08}"), groups, active: i % 20 != 0, deleted: false, override_license: None }
        })
        .collect()
}

fn evaluate(c: &mut Criterion) {
    let policy = policy(USERS);
    let user = &users(8)[5];
    c.bench_function("license_eligible/one_user_8_groups", |b| {
        b.iter(|| eligible(black_box(&policy), black_box(&user.groups), true, None))
    });
}

fn allocate_account(c: &mut Criterion) {
    let policy = policy(USERS);
    let input = users(USERS);
    let current = allocate(&policy, &input, &HashMap::new()).holdings();
    let mut edited = policy.clone();
    for t in &mut edited.license_types {
        if t.name == "developer" {
            t.seats = Some((USERS / 5) as u64);
        }
    }
    let mut g = c.benchmark_group("license_allocate_100k");
    g.sample_size(10);
    g.bench_function("from_scratch", |b| b.iter(|| allocate(black_box(&policy), black_box(&input), &HashMap::new())));
    g.bench_function("policy_change_allocate_and_diff", |b| {
        b.iter(|| {
            let after = allocate(black_box(&edited), black_box(&input), &current);
            diff(&current, &after)
        })
    });
    g.finish();
}

criterion_group!(benches, evaluate, allocate_account);
criterion_main!(benches);
