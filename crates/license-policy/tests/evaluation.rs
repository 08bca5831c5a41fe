//! Evaluation of one user: which licenses they may hold, best first, and why.

use roster_license_policy::{Candidate, Eligibility, Policy, PolicyError, Reason, eligible, parse_policy};
use serde_json::json;

/// developer(40, 2 seats) > analyst(30) > read_only(10, unlimited); developers and readers groups.
fn policy(default: Option<&str>) -> Result<Policy, PolicyError> {
    parse_policy(&json!({
        "license_types": [
            {"name": "read_only", "rank": 10, "seats": null},
            {"name": "developer", "rank": 40, "seats": 2},
            {"name": "analyst", "rank": 30, "seats": 1}
        ],
        "rules": [
            {"group": "dbt-developers", "license": "developer"},
            {"group": "dbt-readers", "license": "read_only"},
            {"group": "Analysts", "license": "analyst"},
            {"group": "data-team", "license": "analyst"}
        ],
        "default_license": default
    }))
}

fn groups(gs: &[&str]) -> Vec<String> {
    gs.iter().map(|g| (*g).to_owned()).collect()
}

fn rule(group: &str, license: &str, rank: i64) -> Candidate {
    Candidate { license: license.into(), rank, reason: Reason::Rule { group: group.into(), license: license.into() } }
}

fn default(license: &str, rank: i64) -> Candidate {
    Candidate { license: license.into(), rank, reason: Reason::Default { license: license.into() } }
}

fn pin(license: &str, rank: i64) -> Candidate {
    Candidate { license: license.into(), rank, reason: Reason::Override { license: license.into() } }
}

#[test]
fn member_of_developers_and_readers_prefers_developer() -> Result<(), PolicyError> {
    let e = eligible(&policy(None)?, &groups(&["dbt-readers", "dbt-developers"]), true, None);
    assert_eq!(
        e,
        Eligibility::Candidates(vec![rule("dbt-developers", "developer", 40), rule("dbt-readers", "read_only", 10)])
    );
    assert_eq!(
        e.wanted(),
        (Some("developer".into()), Reason::Rule { group: "dbt-developers".into(), license: "developer".into() })
    );
    Ok(())
}

#[test]
fn default_license_follows_the_rule_candidates() -> Result<(), PolicyError> {
    let e = eligible(&policy(Some("read_only"))?, &groups(&["dbt-developers"]), true, None);
    assert_eq!(e, Eligibility::Candidates(vec![rule("dbt-developers", "developer", 40), default("read_only", 10)]));
    Ok(())
}

#[test]
fn user_without_matching_groups_gets_the_default() -> Result<(), PolicyError> {
    let e = eligible(&policy(Some("read_only"))?, &[], true, None);
    assert_eq!(e, Eligibility::Candidates(vec![default("read_only", 10)]));
    assert_eq!(e.wanted(), (Some("read_only".into()), Reason::Default { license: "read_only".into() }));
    Ok(())
}

#[test]
fn default_granted_by_a_rule_too_is_listed_once_with_the_rule_reason() -> Result<(), PolicyError> {
    let e = eligible(&policy(Some("read_only"))?, &groups(&["dbt-readers"]), true, None);
    assert_eq!(e, Eligibility::Candidates(vec![rule("dbt-readers", "read_only", 10)]));
    Ok(())
}

#[test]
fn default_ranked_above_a_rule_license_is_placed_by_rank() -> Result<(), PolicyError> {
    let e = eligible(&policy(Some("analyst"))?, &groups(&["dbt-readers"]), true, None);
    assert_eq!(e, Eligibility::Candidates(vec![default("analyst", 30), rule("dbt-readers", "read_only", 10)]));
    Ok(())
}

#[test]
fn no_match_and_no_default_means_no_license() -> Result<(), PolicyError> {
    let e = eligible(&policy(None)?, &groups(&["marketing"]), true, None);
    assert_eq!(e, Eligibility::Candidates(vec![]));
    assert_eq!(e.wanted(), (None, Reason::NoMatch));
    assert!(e.preferences().is_empty());
    Ok(())
}

#[test]
fn inactive_user_is_eligible_for_nothing_even_when_pinned() -> Result<(), PolicyError> {
    let p = policy(Some("read_only"))?;
    assert_eq!(eligible(&p, &groups(&["dbt-developers"]), false, Some("developer")), Eligibility::Inactive);
    assert_eq!(Eligibility::Inactive.wanted(), (None, Reason::Deactivated));
    Ok(())
}

#[test]
fn override_above_the_rules_pins_it_with_the_rules_as_fallback() -> Result<(), PolicyError> {
    let e = eligible(&policy(None)?, &groups(&["dbt-readers"]), true, Some("developer"));
    assert_eq!(
        e,
        Eligibility::Pinned { pin: pin("developer", 40), fallback: vec![rule("dbt-readers", "read_only", 10)] }
    );
    assert_eq!(e.preferences(), vec![pin("developer", 40), rule("dbt-readers", "read_only", 10)]);
    Ok(())
}

#[test]
fn override_below_the_rules_pins_it_and_is_a_ceiling() -> Result<(), PolicyError> {
    let e = eligible(&policy(None)?, &groups(&["dbt-developers", "Analysts"]), true, Some("read_only"));
    assert_eq!(e, Eligibility::Pinned { pin: pin("read_only", 10), fallback: vec![] });
    assert_eq!(e.wanted(), (Some("read_only".into()), Reason::Override { license: "read_only".into() }));
    Ok(())
}

#[test]
fn override_equal_to_a_rule_license_is_not_repeated_in_the_fallback() -> Result<(), PolicyError> {
    let e = eligible(&policy(Some("read_only"))?, &groups(&["dbt-developers"]), true, Some("developer"));
    assert_eq!(e, Eligibility::Pinned { pin: pin("developer", 40), fallback: vec![default("read_only", 10)] });
    Ok(())
}

#[test]
fn override_naming_an_unknown_license_is_ignored() -> Result<(), PolicyError> {
    let e = eligible(&policy(None)?, &groups(&["dbt-readers"]), true, Some("retired-license"));
    assert_eq!(e, Eligibility::Candidates(vec![rule("dbt-readers", "read_only", 10)]));
    Ok(())
}

#[test]
fn group_names_match_case_insensitively() -> Result<(), PolicyError> {
    let e = eligible(&policy(None)?, &groups(&["DBT-DEVELOPERS", "analysts"]), true, None);
    assert_eq!(
        e,
        Eligibility::Candidates(vec![rule("dbt-developers", "developer", 40), rule("Analysts", "analyst", 30)])
    );
    Ok(())
}

#[test]
fn unknown_groups_are_ignored() -> Result<(), PolicyError> {
    let e = eligible(&policy(None)?, &groups(&["everyone", "dbt-readers", "dbt-developers-old"]), true, None);
    assert_eq!(e, Eligibility::Candidates(vec![rule("dbt-readers", "read_only", 10)]));
    Ok(())
}

#[test]
fn reason_names_the_first_granting_group_regardless_of_membership_order() -> Result<(), PolicyError> {
    let p = policy(None)?;
    let a = eligible(&p, &groups(&["data-team", "Analysts"]), true, None);
    let b = eligible(&p, &groups(&["Analysts", "data-team"]), true, None);
    assert_eq!(a, b);
    assert_eq!(a, Eligibility::Candidates(vec![rule("Analysts", "analyst", 30)]));
    Ok(())
}

#[test]
fn empty_policy_makes_nobody_eligible() {
    let e = eligible(&Policy::empty(), &groups(&["dbt-developers"]), true, Some("developer"));
    assert_eq!(e, Eligibility::Candidates(vec![]));
}

#[test]
fn reasons_use_the_spec_words() {
    let exhausted = Reason::SeatsExhausted { wanted: "developer".into(), fallback: None };
    let cases = [
        (Reason::Rule { group: "g".into(), license: "l".into() }, "rule"),
        (Reason::Override { license: "l".into() }, "override"),
        (Reason::Default { license: "l".into() }, "default"),
        (exhausted, "seats_exhausted"),
        (Reason::Deactivated, "deactivated"),
        (Reason::Deleted, "deleted"),
        (Reason::NoMatch, "no_match"),
    ];
    for (reason, word) in cases {
        assert_eq!(reason.as_str(), word);
        let v = serde_json::to_value(&reason).unwrap_or_default();
        assert_eq!(v["kind"], word, "{v}");
    }
}

#[test]
fn reasons_explain_themselves_to_operators() {
    let rule = Reason::Rule { group: "dbt-developers".into(), license: "developer".into() };
    assert_eq!(rule.detail(), "member of group \"dbt-developers\" (rule → developer)");
    let fell_back = Reason::SeatsExhausted { wanted: "developer".into(), fallback: Some(Box::new(rule.clone())) };
    assert_eq!(
        fell_back.to_string(),
        "no free seat for developer; instead: member of group \"dbt-developers\" (rule → developer)"
    );
    let none = Reason::SeatsExhausted { wanted: "developer".into(), fallback: None };
    assert!(none.detail().contains("no free seat for developer"));
    assert!(Reason::NoMatch.detail().contains("no rule matches"));
    assert!(Reason::Override { license: "it".into() }.detail().contains("override"));
}

#[test]
fn reasons_round_trip_through_json() -> Result<(), serde_json::Error> {
    let r = Reason::SeatsExhausted {
        wanted: "developer".into(),
        fallback: Some(Box::new(Reason::Rule { group: "dbt-readers".into(), license: "read_only".into() })),
    };
    let v = serde_json::to_value(&r)?;
    assert_eq!(
        v,
        json!({"kind": "seats_exhausted", "wanted": "developer",
               "fallback": {"kind": "rule", "group": "dbt-readers", "license": "read_only"}})
    );
    assert_eq!(serde_json::from_value::<Reason>(v)?, r);
    Ok(())
}

#[test]
fn eligibility_serialises_for_the_admin_api() -> Result<(), Box<dyn std::error::Error>> {
    let p = policy(Some("read_only"))?;
    let pinned = eligible(&p, &groups(&["dbt-readers"]), true, Some("developer"));
    let v = serde_json::to_value(&pinned)?;
    assert_eq!(
        v["pinned"]["pin"],
        json!({"license": "developer", "rank": 40, "reason": {"kind": "override", "license": "developer"}})
    );
    assert_eq!(v["pinned"]["fallback"][0]["license"], "read_only");
    let candidates = eligible(&p, &[], true, None);
    assert_eq!(
        serde_json::to_value(&candidates)?,
        json!({"candidates": [
            {"license": "read_only", "rank": 10, "reason": {"kind": "default", "license": "read_only"}}
        ]})
    );
    assert_eq!(serde_json::to_value(Eligibility::Inactive)?, json!("inactive"));
    assert_eq!(serde_json::from_value::<Eligibility>(v)?, pinned);
    Ok(())
}

#[test]
fn a_policy_names_the_groups_of_its_rules_case_insensitively_and_no_others() -> Result<(), PolicyError> {
    let p = policy(None)?;
    assert!(p.names_group("dbt-developers"));
    assert!(p.names_group("DBT-Developers"));
    assert!(p.names_group("analysts"));
    assert!(!p.names_group("dbt-developers-old"));
    assert!(!p.names_group(""));
    // Exactly the groups evaluation matches: a member of a group the policy does not name gains nothing.
    for g in ["marketing", "dbt-developers-old"] {
        assert!(!p.names_group(g));
        assert_eq!(eligible(&p, &groups(&[g]), true, None).wanted().0, None);
    }
    Ok(())
}
