//! Seat allocation for a whole account, diffs, the mass-revocation guard and previews.

use std::collections::HashMap;

use roster_license_policy::{
    Allocation, Assignment, Change, HoldThreshold, Policy, PolicyError, Reason, RevocationImpact, SeatUse, UserInput,
    allocate, diff, parse_policy, preview, revocation_share,
};
use serde_json::{Value, json};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// developer(40) > analyst(30) > read_only(10, unlimited); the dbt-style groups.
fn policy(dev_seats: Value, default: Option<&str>) -> Result<Policy, PolicyError> {
    parse_policy(&json!({
        "license_types": [
            {"name": "developer", "rank": 40, "seats": dev_seats},
            {"name": "analyst", "rank": 30, "seats": 1},
            {"name": "read_only", "rank": 10, "seats": null}
        ],
        "rules": [
            {"group": "dbt-developers", "license": "developer"},
            {"group": "dbt-analysts", "license": "analyst"},
            {"group": "dbt-readers", "license": "read_only"}
        ],
        "default_license": default
    }))
}

fn user(id: &str, groups: &[&str]) -> UserInput {
    UserInput {
        id: id.into(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        active: true,
        deleted: false,
        override_license: None,
    }
}

fn pinned(id: &str, groups: &[&str], license: &str) -> UserInput {
    UserInput { override_license: Some(license.into()), ..user(id, groups) }
}

fn inactive(id: &str, groups: &[&str]) -> UserInput {
    UserInput { active: false, ..user(id, groups) }
}

fn deleted(id: &str, groups: &[&str]) -> UserInput {
    UserInput { deleted: true, ..user(id, groups) }
}

fn holding(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(u, l)| ((*u).to_owned(), (*l).to_owned())).collect()
}

fn licenses(a: &Allocation) -> Vec<(&str, Option<&str>)> {
    a.assignments.iter().map(|(id, x)| (id.as_str(), x.license.as_deref())).collect()
}

fn rule(group: &str, license: &str) -> Reason {
    Reason::Rule { group: group.into(), license: license.into() }
}

fn exhausted(wanted: &str, fallback: Option<Reason>) -> Reason {
    Reason::SeatsExhausted { wanted: wanted.into(), fallback: fallback.map(Box::new) }
}

fn reason<'a>(a: &'a Allocation, id: &str) -> Option<&'a Reason> {
    a.assignments.get(id).map(|x| &x.reason)
}

#[test]
fn user_in_developers_and_readers_gets_developer() -> TestResult {
    let a = allocate(&policy(json!(2), None)?, &[user("u1", &["dbt-readers", "dbt-developers"])], &HashMap::new());
    assert_eq!(
        a.assignments["u1"],
        Assignment { license: Some("developer".into()), reason: rule("dbt-developers", "developer") }
    );
    Ok(())
}

#[test]
fn user_without_matching_group_gets_the_default_license() -> TestResult {
    let a = allocate(&policy(json!(2), Some("read_only"))?, &[user("u1", &["sales"])], &HashMap::new());
    assert_eq!(
        a.assignments["u1"],
        Assignment { license: Some("read_only".into()), reason: Reason::Default { license: "read_only".into() } }
    );
    Ok(())
}

#[test]
fn user_without_matching_group_and_no_default_gets_nothing() -> TestResult {
    let a = allocate(&policy(json!(2), None)?, &[user("u1", &["sales"])], &HashMap::new());
    assert_eq!(a.assignments["u1"], Assignment { license: None, reason: Reason::NoMatch });
    Ok(())
}

#[test]
fn empty_policy_gives_nobody_a_license() {
    let a = allocate(&Policy::empty(), &[user("u1", &["dbt-developers"])], &holding(&[("u1", "developer")]));
    assert_eq!(a.assignments["u1"], Assignment { license: None, reason: Reason::NoMatch });
    assert!(a.seats.is_empty());
}

#[test]
fn override_above_the_rules_wins() -> TestResult {
    let a = allocate(&policy(json!(2), None)?, &[pinned("u1", &["dbt-readers"], "developer")], &HashMap::new());
    assert_eq!(
        a.assignments["u1"],
        Assignment { license: Some("developer".into()), reason: Reason::Override { license: "developer".into() } }
    );
    Ok(())
}

#[test]
fn override_below_the_rules_wins() -> TestResult {
    let a = allocate(&policy(json!(2), None)?, &[pinned("u1", &["dbt-developers"], "read_only")], &HashMap::new());
    assert_eq!(a.license_of("u1"), Some("read_only"));
    assert_eq!(reason(&a, "u1"), Some(&Reason::Override { license: "read_only".into() }));
    assert_eq!(a.seats["developer"].used, 0);
    Ok(())
}

#[test]
fn override_counts_against_seats() -> TestResult {
    // One developer seat: the pinned user takes it, even from a current rule holder.
    let users = [user("a", &["dbt-developers", "dbt-readers"]), pinned("z", &[], "developer")];
    let a = allocate(&policy(json!(1), None)?, &users, &holding(&[("a", "developer")]));
    assert_eq!(licenses(&a), vec![("a", Some("read_only")), ("z", Some("developer"))]);
    assert_eq!(reason(&a, "a"), Some(&exhausted("developer", Some(rule("dbt-readers", "read_only")))));
    assert_eq!(a.seats["developer"], SeatUse { used: 1, limit: Some(1) });
    Ok(())
}

#[test]
fn pins_beyond_the_limit_go_to_pinned_holders_then_by_id_and_the_rest_fall_back() -> TestResult {
    let users = [
        pinned("p1", &["dbt-readers"], "developer"),
        pinned("p2", &[], "developer"),
        pinned("p3", &["dbt-developers"], "developer"),
        pinned("p4", &["dbt-readers"], "developer"),
    ];
    let a = allocate(&policy(json!(2), None)?, &users, &holding(&[("p3", "developer")]));
    assert_eq!(
        licenses(&a),
        vec![("p1", Some("developer")), ("p2", None), ("p3", Some("developer")), ("p4", Some("read_only"))]
    );
    assert_eq!(reason(&a, "p2"), Some(&exhausted("developer", None)));
    assert_eq!(reason(&a, "p4"), Some(&exhausted("developer", Some(rule("dbt-readers", "read_only")))));
    Ok(())
}

#[test]
fn pinned_user_never_falls_back_above_the_pin() -> TestResult {
    let users = [pinned("a", &[], "analyst"), pinned("b", &["dbt-developers", "dbt-readers"], "analyst")];
    let a = allocate(&policy(json!(5), None)?, &users, &HashMap::new());
    assert_eq!(licenses(&a), vec![("a", Some("analyst")), ("b", Some("read_only"))]);
    Ok(())
}

#[test]
fn inactive_user_holds_nothing_even_when_pinned() -> TestResult {
    let users = [inactive("a", &["dbt-developers"]), UserInput { active: false, ..pinned("b", &[], "developer") }];
    let a = allocate(&policy(json!(2), Some("read_only"))?, &users, &holding(&[("a", "developer")]));
    assert_eq!(a.assignments["a"], Assignment { license: None, reason: Reason::Deactivated });
    assert_eq!(a.assignments["b"], Assignment { license: None, reason: Reason::Deactivated });
    assert_eq!(a.seats["developer"].used, 0);
    Ok(())
}

#[test]
fn deleted_user_holds_nothing() -> TestResult {
    let a = allocate(&policy(json!(2), None)?, &[deleted("a", &["dbt-developers"])], &holding(&[("a", "developer")]));
    assert_eq!(a.assignments["a"], Assignment { license: None, reason: Reason::Deleted });
    Ok(())
}

#[test]
fn seat_exhaustion_falls_back_to_the_next_eligible_license() -> TestResult {
    let users = [user("a", &["dbt-developers", "dbt-readers"]), user("b", &["dbt-developers", "dbt-readers"])];
    let a = allocate(&policy(json!(1), None)?, &users, &HashMap::new());
    assert_eq!(licenses(&a), vec![("a", Some("developer")), ("b", Some("read_only"))]);
    assert_eq!(reason(&a, "b"), Some(&exhausted("developer", Some(rule("dbt-readers", "read_only")))));
    Ok(())
}

#[test]
fn seat_exhaustion_can_fall_back_to_the_default() -> TestResult {
    let users = [user("a", &["dbt-developers"]), user("b", &["dbt-developers"])];
    let a = allocate(&policy(json!(1), Some("read_only"))?, &users, &HashMap::new());
    let fallback = Reason::Default { license: "read_only".into() };
    assert_eq!(reason(&a, "b"), Some(&exhausted("developer", Some(fallback))));
    assert_eq!(a.license_of("b"), Some("read_only"));
    Ok(())
}

#[test]
fn seat_exhaustion_without_another_eligible_license_leaves_the_user_without() -> TestResult {
    let users = [user("a", &["dbt-developers"]), user("b", &["dbt-developers"])];
    let a = allocate(&policy(json!(1), None)?, &users, &HashMap::new());
    assert_eq!(a.assignments["b"], Assignment { license: None, reason: exhausted("developer", None) });
    Ok(())
}

#[test]
fn seat_exhaustion_cascades_through_several_licenses() -> TestResult {
    let g = ["dbt-developers", "dbt-analysts", "dbt-readers"];
    let users = [user("a", &g), user("b", &g), user("c", &g)];
    let a = allocate(&policy(json!(1), None)?, &users, &HashMap::new());
    assert_eq!(licenses(&a), vec![("a", Some("developer")), ("b", Some("analyst")), ("c", Some("read_only"))]);
    assert_eq!(reason(&a, "b"), Some(&exhausted("developer", Some(rule("dbt-analysts", "analyst")))));
    assert_eq!(reason(&a, "c"), Some(&exhausted("developer", Some(rule("dbt-readers", "read_only")))));
    Ok(())
}

#[test]
fn waiting_user_upgrades_automatically_when_a_seat_frees() -> TestResult {
    let p = policy(json!(1), None)?;
    let mut users = vec![user("a", &["dbt-developers", "dbt-readers"]), user("b", &["dbt-developers", "dbt-readers"])];
    let first = allocate(&p, &users, &HashMap::new());
    assert_eq!(first.license_of("b"), Some("read_only"));
    users[0].groups.clear(); // a leaves every group
    let second = allocate(&p, &users, &first.holdings());
    assert_eq!(second.license_of("a"), None);
    assert_eq!(
        second.assignments["b"],
        Assignment { license: Some("developer".into()), reason: rule("dbt-developers", "developer") }
    );
    Ok(())
}

#[test]
fn deactivation_frees_the_seat_and_the_next_waiting_user_gets_it() -> TestResult {
    let p = policy(json!(2), None)?;
    let mut users: Vec<UserInput> = ["d", "a", "c", "b"].iter().map(|id| user(id, &["dbt-developers"])).collect();
    let first = allocate(&p, &users, &HashMap::new());
    assert_eq!(licenses(&first), vec![("a", Some("developer")), ("b", Some("developer")), ("c", None), ("d", None)]);
    users[1].active = false; // a is deactivated
    let second = allocate(&p, &users, &first.holdings());
    assert_eq!(licenses(&second), vec![("a", None), ("b", Some("developer")), ("c", Some("developer")), ("d", None)]);
    assert_eq!(
        diff(&first.holdings(), &second),
        vec![
            Change { user: "a".into(), from: Some("developer".into()), to: None, reason: Reason::Deactivated },
            Change {
                user: "c".into(),
                from: None,
                to: Some("developer".into()),
                reason: rule("dbt-developers", "developer")
            },
        ]
    );
    Ok(())
}

#[test]
fn holders_keep_their_seats_against_newcomers() -> TestResult {
    let p = policy(json!(2), Some("read_only"))?;
    let users = [user("y", &["dbt-developers"]), user("z", &["dbt-developers"]), user("a", &["dbt-developers"])];
    let a = allocate(&p, &users, &holding(&[("y", "developer"), ("z", "developer")]));
    assert_eq!(licenses(&a), vec![("a", Some("read_only")), ("y", Some("developer")), ("z", Some("developer"))]);
    Ok(())
}

#[test]
fn holder_upgrades_to_a_free_better_seat_and_frees_theirs_for_a_waiting_user() -> TestResult {
    let p = policy(json!(1), None)?;
    // h holds analyst (1 seat) and has just been added to developers, whose seat is free.
    let users = [user("h", &["dbt-developers", "dbt-analysts"]), user("w", &["dbt-analysts"])];
    let a = allocate(&p, &users, &holding(&[("h", "analyst")]));
    assert_eq!(licenses(&a), vec![("h", Some("developer")), ("w", Some("analyst"))]);
    Ok(())
}

#[test]
fn holder_who_no_longer_qualifies_loses_the_seat_to_a_waiting_user() -> TestResult {
    let p = policy(json!(1), None)?;
    let users = [user("h", &["dbt-readers"]), user("w", &["dbt-developers"])];
    let a = allocate(&p, &users, &holding(&[("h", "developer")]));
    assert_eq!(licenses(&a), vec![("h", Some("read_only")), ("w", Some("developer"))]);
    assert_eq!(reason(&a, "h"), Some(&rule("dbt-readers", "read_only")));
    Ok(())
}

#[test]
fn waiting_users_are_served_by_user_id_whatever_the_input_order() -> TestResult {
    let p = policy(json!(3), None)?;
    let ids = ["u07", "u03", "u10", "u01", "u05"];
    let forward: Vec<UserInput> = ids.iter().map(|id| user(id, &["dbt-developers"])).collect();
    let mut backward = forward.clone();
    backward.reverse();
    let a = allocate(&p, &forward, &HashMap::new());
    assert_eq!(a, allocate(&p, &backward, &HashMap::new()));
    let seated: Vec<&str> =
        a.assignments.iter().filter(|(_, x)| x.license.is_some()).map(|(id, _)| id.as_str()).collect();
    assert_eq!(seated, vec!["u01", "u03", "u05"]);
    Ok(())
}

#[test]
fn shrinking_a_limit_below_the_holders_keeps_the_lowest_ids() -> TestResult {
    let p = policy(json!(1), None)?;
    let users = [user("c", &["dbt-developers"]), user("b", &["dbt-developers"]), user("a", &["dbt-developers"])];
    let a = allocate(&p, &users, &holding(&[("b", "developer"), ("c", "developer")]));
    assert_eq!(licenses(&a), vec![("a", None), ("b", Some("developer")), ("c", None)]);
    Ok(())
}

#[test]
fn zero_seats_means_nobody_gets_the_license() -> TestResult {
    let a = allocate(&policy(json!(0), None)?, &[pinned("a", &["dbt-developers"], "developer")], &HashMap::new());
    assert_eq!(a.assignments["a"], Assignment { license: None, reason: exhausted("developer", None) });
    Ok(())
}

#[test]
fn unlimited_seats_seat_everyone() -> TestResult {
    let users: Vec<UserInput> = (0..500).map(|i| user(&format!("u{i:03}"), &["dbt-developers"])).collect();
    let a = allocate(&policy(Value::Null, None)?, &users, &HashMap::new());
    assert_eq!(a.seats["developer"], SeatUse { used: 500, limit: None });
    assert_eq!(a.seats["developer"].free(), None);
    Ok(())
}

#[test]
fn seat_use_covers_every_license_type_including_unused_ones() -> TestResult {
    let a = allocate(&policy(json!(2), None)?, &[user("a", &["dbt-developers"])], &HashMap::new());
    assert_eq!(a.seats["developer"], SeatUse { used: 1, limit: Some(2) });
    assert_eq!(a.seats["developer"].free(), Some(1));
    assert_eq!(a.seats["analyst"], SeatUse { used: 0, limit: Some(1) });
    assert_eq!(a.seats["read_only"], SeatUse { used: 0, limit: None });
    Ok(())
}

#[test]
fn holding_of_a_license_the_policy_no_longer_defines_is_ignored() -> TestResult {
    let a = allocate(&policy(json!(1), None)?, &[user("a", &["dbt-readers"])], &holding(&[("a", "retired")]));
    assert_eq!(a.license_of("a"), Some("read_only"));
    Ok(())
}

#[test]
fn user_listed_twice_is_evaluated_once() -> TestResult {
    let users = [user("a", &["dbt-developers"]), user("a", &["dbt-developers"]), user("b", &["dbt-developers"])];
    let a = allocate(&policy(json!(2), None)?, &users, &HashMap::new());
    assert_eq!(licenses(&a), vec![("a", Some("developer")), ("b", Some("developer"))]);
    Ok(())
}

#[test]
fn allocation_is_a_fixed_point() -> TestResult {
    let p = policy(json!(1), Some("read_only"))?;
    let users = [
        user("a", &["dbt-developers"]),
        user("b", &["dbt-developers", "dbt-analysts"]),
        user("c", &["dbt-analysts"]),
        pinned("d", &[], "analyst"),
    ];
    let first = allocate(&p, &users, &HashMap::new());
    let second = allocate(&p, &users, &first.holdings());
    assert_eq!(first, second);
    assert!(diff(&first.holdings(), &second).is_empty());
    Ok(())
}

#[test]
fn diff_lists_only_changed_users_sorted_and_revokes_users_no_longer_present() -> TestResult {
    let p = policy(json!(5), None)?;
    let users = [user("c", &["dbt-readers"]), user("a", &["dbt-developers"]), user("b", &["dbt-developers"])];
    let before = holding(&[("a", "developer"), ("b", "read_only"), ("gone", "analyst")]);
    let after = allocate(&p, &users, &before);
    assert_eq!(
        diff(&before, &after),
        vec![
            Change {
                user: "b".into(),
                from: Some("read_only".into()),
                to: Some("developer".into()),
                reason: rule("dbt-developers", "developer")
            },
            Change {
                user: "c".into(),
                from: None,
                to: Some("read_only".into()),
                reason: rule("dbt-readers", "read_only")
            },
            Change { user: "gone".into(), from: Some("analyst".into()), to: None, reason: Reason::Deleted },
        ]
    );
    Ok(())
}

fn change(user: &str, from: Option<&str>, to: Option<&str>, reason: Reason) -> Change {
    Change { user: user.into(), from: from.map(Into::into), to: to.map(Into::into), reason }
}

#[test]
fn revocation_share_counts_revocations_and_downgrades_only() -> TestResult {
    let p = policy(json!(5), None)?;
    let changes = [
        change("a", Some("developer"), None, Reason::NoMatch),
        change("b", Some("developer"), Some("read_only"), rule("dbt-readers", "read_only")),
        change("c", Some("read_only"), Some("developer"), rule("dbt-developers", "developer")),
        change("d", None, Some("developer"), rule("dbt-developers", "developer")),
        change("e", Some("developer"), None, Reason::Deactivated),
        change("f", Some("analyst"), None, Reason::Deleted),
    ];
    let impact = revocation_share(&p, &changes, 10);
    assert_eq!(impact, RevocationImpact { revoked_or_downgraded: 2, share: 0.2 });
    Ok(())
}

#[test]
fn moving_off_a_license_the_policy_removed_counts_as_a_downgrade() -> TestResult {
    let p = policy(json!(5), None)?;
    let changes = [change("a", Some("retired"), Some("developer"), rule("dbt-developers", "developer"))];
    assert_eq!(revocation_share(&p, &changes, 4).revoked_or_downgraded, 1);
    Ok(())
}

#[test]
fn revocation_share_with_no_active_users_does_not_divide_by_zero() {
    let impact = revocation_share(&Policy::empty(), &[], 0);
    assert_eq!(impact, RevocationImpact { revoked_or_downgraded: 0, share: 0.0 });
}

#[test]
fn hold_threshold_defaults_to_twenty_percent_and_ten_users() {
    let t = HoldThreshold::default();
    assert_eq!(t, HoldThreshold { share: 0.2, min_users: 10 });
    let held = |n: usize, share: f64| t.should_hold(&RevocationImpact { revoked_or_downgraded: n, share });
    assert!(held(10, 0.21));
    assert!(!held(9, 0.9), "fewer than min_users is never held");
    assert!(!held(10, 0.2), "exactly the threshold share is not more than it");
    assert!(held(1000, 1.0));
}

#[test]
fn mass_revocation_by_a_policy_edit_is_detected_but_deactivations_are_not() -> TestResult {
    let current_policy = policy(json!(100), None)?;
    let mut users: Vec<UserInput> = (0..20).map(|i| user(&format!("u{i:02}"), &["dbt-developers"])).collect();
    let current = allocate(&current_policy, &users, &HashMap::new()).holdings();
    // Deactivating 15 of 20 users is never held.
    for u in users.iter_mut().take(15) {
        u.active = false;
    }
    let p = preview(&current_policy, &current_policy, &users, &current);
    assert_eq!(p.changes.len(), 15);
    assert_eq!(p.impact.revoked_or_downgraded, 0);
    assert!(!p.would_hold(&HoldThreshold::default()));
    // Removing the developers rule revokes everyone: held.
    for u in &mut users {
        u.active = true;
    }
    let proposed = Policy { rules: vec![], ..current_policy.clone() };
    let p = preview(&current_policy, &proposed, &users, &current);
    assert_eq!(p.impact, RevocationImpact { revoked_or_downgraded: 20, share: 1.0 });
    assert!(p.would_hold(&HoldThreshold::default()));
    Ok(())
}

#[test]
fn preview_reports_changes_and_seat_use_before_and_after() -> TestResult {
    let current_policy = policy(json!(3), Some("read_only"))?;
    let users: Vec<UserInput> = ["a", "b", "c"].iter().map(|id| user(id, &["dbt-developers"])).collect();
    let current = allocate(&current_policy, &users, &HashMap::new()).holdings();
    let proposed = policy(json!(1), Some("read_only"))?;
    let p = preview(&current_policy, &proposed, &users, &current);
    assert_eq!(p.seats_before["developer"], SeatUse { used: 3, limit: Some(3) });
    assert_eq!(p.seats_after["developer"], SeatUse { used: 1, limit: Some(1) });
    assert_eq!(p.seats_after["read_only"], SeatUse { used: 2, limit: None });
    let moved: Vec<&str> = p.changes.iter().map(|c| c.user.as_str()).collect();
    assert_eq!(moved, vec!["b", "c"]);
    assert_eq!(p.impact, RevocationImpact { revoked_or_downgraded: 2, share: 2.0 / 3.0 });
    // Applying the policy then does exactly what the preview said.
    let applied = allocate(&proposed, &users, &current);
    assert_eq!(diff(&current, &applied), p.changes);
    let v = serde_json::to_value(&p)?;
    assert_eq!(
        v["changes"][0],
        json!({
            "user": "b", "from": "developer", "to": "read_only",
            "reason": {"kind": "seats_exhausted", "wanted": "developer",
                       "fallback": {"kind": "default", "license": "read_only"}}
        })
    );
    assert_eq!(v["seats_after"]["developer"], json!({"used": 1, "limit": 1}));
    assert_eq!(v["impact"]["revoked_or_downgraded"], json!(2));
    Ok(())
}
