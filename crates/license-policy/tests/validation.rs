//! Parsing and validation of the policy document: every invalid policy gets a message naming its problem.

use roster_license_policy::{
    LicenseType, MAX_LICENSE_TYPES, MAX_RULES, Policy, PolicyError, PolicyProblem, Rule, parse_policy,
};
use serde_json::{Value, json};

fn spec_example() -> Value {
    json!({
        "license_types": [
            {"name": "developer", "rank": 40, "seats": 50},
            {"name": "analyst",   "rank": 30, "seats": 10},
            {"name": "it",        "rank": 20, "seats": 1},
            {"name": "read_only", "rank": 10, "seats": null}
        ],
        "rules": [
            {"group": "dbt-developers", "license": "developer"},
            {"group": "dbt-readers",    "license": "read_only"}
        ],
        "default_license": null
    })
}

/// Parses `doc` expecting failure and returns the error messages.
fn problems(doc: Value) -> Vec<String> {
    match parse_policy(&doc) {
        Ok(p) => panic!("expected an invalid policy, got {p:?}"),
        Err(e) => e.messages(),
    }
}

fn assert_single_problem(doc: Value, needles: &[&str]) {
    let msgs = problems(doc);
    assert_eq!(msgs.len(), 1, "expected exactly one problem, got {msgs:?}");
    for n in needles {
        assert!(msgs[0].contains(n), "message {:?} should mention {n:?}", msgs[0]);
    }
}

fn two_types() -> Value {
    json!([{"name": "developer", "rank": 40, "seats": 5}, {"name": "read_only", "rank": 10, "seats": null}])
}

#[test]
fn spec_example_policy_is_valid() -> Result<(), PolicyError> {
    let p = parse_policy(&spec_example())?;
    assert_eq!(p.license_types.len(), 4);
    assert_eq!(p.license_types[3], LicenseType { name: "read_only".into(), rank: 10, seats: None });
    assert_eq!(p.rules[0], Rule { group: "dbt-developers".into(), license: "developer".into() });
    assert_eq!(p.default_license, None);
    assert!(p.is_enabled());
    Ok(())
}

#[test]
fn policy_round_trips_through_json() -> Result<(), Box<dyn std::error::Error>> {
    let p = parse_policy(&spec_example())?;
    let v = serde_json::to_value(&p)?;
    assert_eq!(v, spec_example());
    let back: Policy = serde_json::from_value(v)?;
    assert_eq!(back, p);
    Ok(())
}

#[test]
fn empty_document_is_the_empty_policy_which_disables_licensing() -> Result<(), PolicyError> {
    let p = parse_policy(&json!({}))?;
    assert_eq!(p, Policy::empty());
    assert!(!p.is_enabled());
    assert_eq!(Policy::empty().validate(), Ok(()));
    assert_eq!(Policy::default(), Policy::empty());
    Ok(())
}

#[test]
fn empty_license_name_is_rejected() {
    assert_single_problem(
        json!({"license_types": [{"name": "  ", "rank": 1, "seats": null}]}),
        &["license_types[0]", "license name is empty"],
    );
}

#[test]
fn duplicate_license_names_are_rejected_case_insensitively() {
    assert_single_problem(
        json!({"license_types": [
            {"name": "developer", "rank": 40, "seats": 5},
            {"name": "Developer", "rank": 30, "seats": 5}
        ]}),
        &["license_types[1]", "duplicate license name \"Developer\"", "license_types[0]", "case-insensitive"],
    );
}

#[test]
fn duplicate_ranks_are_rejected_as_ambiguous_precedence() {
    assert_single_problem(
        json!({"license_types": [
            {"name": "developer", "rank": 40, "seats": 5},
            {"name": "analyst", "rank": 40, "seats": 5}
        ]}),
        &["duplicate rank 40", "\"analyst\"", "\"developer\"", "ambiguous"],
    );
}

#[test]
fn negative_seats_get_a_clear_message_instead_of_a_type_error() {
    assert_single_problem(
        json!({"license_types": [{"name": "developer", "rank": 40, "seats": -1}]}),
        &["license_types[0].seats", "non-negative integer or null", "-1"],
    );
}

#[test]
fn fractional_or_textual_seats_are_rejected() {
    let msgs = problems(json!({"license_types": [
        {"name": "a", "rank": 2, "seats": 1.5},
        {"name": "b", "rank": 1, "seats": "10"}
    ]}));
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert!(msgs[0].contains("license_types[0].seats") && msgs[0].contains("1.5"), "{msgs:?}");
    assert!(msgs[1].contains("license_types[1].seats") && msgs[1].contains("\"10\""), "{msgs:?}");
}

#[test]
fn rule_naming_an_unknown_license_is_rejected() {
    assert_single_problem(
        json!({"license_types": two_types(), "rules": [{"group": "dbt-admins", "license": "admin"}]}),
        &["rules[0]", "\"dbt-admins\"", "unknown license \"admin\""],
    );
}

#[test]
fn rule_license_differing_only_in_case_is_rejected_with_a_suggestion() {
    assert_single_problem(
        json!({"license_types": two_types(), "rules": [{"group": "g", "license": "Developer"}]}),
        &["unknown license \"Developer\"", "did you mean \"developer\""],
    );
}

#[test]
fn duplicate_rules_are_rejected_case_insensitively_on_the_group() {
    assert_single_problem(
        json!({"license_types": two_types(), "rules": [
            {"group": "dbt-developers", "license": "developer"},
            {"group": "DBT-Developers", "license": "developer"}
        ]}),
        &["rules[1]", "duplicate rule", "DBT-Developers", "rules[0]"],
    );
}

#[test]
fn same_group_granting_two_licenses_is_allowed() -> Result<(), PolicyError> {
    parse_policy(&json!({"license_types": two_types(), "rules": [
        {"group": "dbt-developers", "license": "developer"},
        {"group": "dbt-developers", "license": "read_only"}
    ]}))?;
    Ok(())
}

#[test]
fn unknown_default_license_is_rejected() {
    assert_single_problem(
        json!({"license_types": two_types(), "default_license": "viewer"}),
        &["default_license", "unknown license \"viewer\""],
    );
}

#[test]
fn empty_group_name_is_rejected() {
    assert_single_problem(
        json!({"license_types": two_types(), "rules": [{"group": "", "license": "developer"}]}),
        &["rules[0]", "group name is empty"],
    );
}

#[test]
fn overlong_names_are_rejected() {
    let long = "x".repeat(257);
    let msgs = problems(json!({
        "license_types": [{"name": long, "rank": 1, "seats": null}],
        "rules": [{"group": long, "license": long}]
    }));
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert!(msgs[0].contains("license name is longer than 256"), "{msgs:?}");
    assert!(msgs[1].contains("group name is longer than 256"), "{msgs:?}");
}

#[test]
fn too_many_license_types_are_rejected() {
    let types: Vec<Value> =
        (0..=MAX_LICENSE_TYPES).map(|i| json!({"name": format!("l{i}"), "rank": i, "seats": null})).collect();
    assert_single_problem(json!({"license_types": types}), &["too many license types: 101", "at most 100"]);
}

#[test]
fn too_many_rules_are_rejected() {
    let rules: Vec<Value> =
        (0..=MAX_RULES).map(|i| json!({"group": format!("g{i}"), "license": "developer"})).collect();
    assert_single_problem(
        json!({"license_types": two_types(), "rules": rules}),
        &["too many rules: 1001", "at most 1000"],
    );
}

#[test]
fn unknown_fields_are_rejected_at_every_level() {
    let msgs = problems(json!({
        "license_types": [{"name": "a", "rank": 1, "seats": null, "seat": 3}],
        "rules": [{"group": "g", "license": "a", "priority": 1}],
        "defaults": "a"
    }));
    assert_eq!(msgs.len(), 3, "{msgs:?}");
    assert!(msgs.iter().any(|m| m.starts_with("policy: unknown field \"defaults\"")), "{msgs:?}");
    assert!(msgs.iter().any(|m| m.starts_with("license_types[0]: unknown field \"seat\"")), "{msgs:?}");
    assert!(msgs.iter().any(|m| m.starts_with("rules[0]: unknown field \"priority\"")), "{msgs:?}");
}

#[test]
fn missing_fields_are_named() {
    let msgs = problems(json!({"license_types": [{"name": "a", "rank": 1}], "rules": [{"license": "a"}]}));
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert!(msgs[0].contains("license_types[0]") && msgs[0].contains("missing field \"seats\""), "{msgs:?}");
    assert!(msgs[1].contains("rules[0]") && msgs[1].contains("missing field \"group\""), "{msgs:?}");
}

#[test]
fn wrong_types_are_named_with_the_value_found() {
    let msgs = problems(json!({
        "license_types": [{"name": 7, "rank": "high", "seats": null}],
        "rules": {},
        "default_license": 3
    }));
    assert_eq!(msgs.len(), 4, "{msgs:?}");
    assert!(msgs[0].contains("license_types[0].name: expected a string, got 7"), "{msgs:?}");
    assert!(msgs[1].contains("license_types[0].rank: expected an integer, got \"high\""), "{msgs:?}");
    assert!(msgs[2].contains("rules: expected an array"), "{msgs:?}");
    assert!(msgs[3].contains("default_license: expected a license name or null, got 3"), "{msgs:?}");
}

#[test]
fn non_object_document_is_rejected() {
    assert_single_problem(json!([1, 2]), &["policy: expected an object"]);
}

#[test]
fn every_problem_is_reported_at_once() {
    let msgs = problems(json!({
        "license_types": [
            {"name": "developer", "rank": 40, "seats": -5},
            {"name": "DEVELOPER", "rank": 40, "seats": 1}
        ],
        "rules": [
            {"group": "g", "license": "nope"},
            {"group": "", "license": "developer"}
        ],
        "default_license": "missing"
    }));
    let expected = [
        "seats must be a non-negative",
        "duplicate license name",
        "duplicate rank",
        "unknown license \"nope\"",
        "group name is empty",
        "default_license names unknown",
    ];
    assert_eq!(msgs.len(), expected.len(), "{msgs:?}");
    for (m, e) in msgs.iter().zip(expected) {
        assert!(m.contains(e), "{m:?} should contain {e:?}");
    }
}

#[test]
fn invalid_seats_do_not_hide_consistency_problems_elsewhere() {
    // The license with bad seats still counts as defined, so its rule is not reported as unknown.
    let msgs = problems(json!({
        "license_types": [{"name": "developer", "rank": 40, "seats": -1}],
        "rules": [{"group": "g", "license": "developer"}, {"group": "h", "license": "other"}]
    }));
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert!(msgs[1].contains("unknown license \"other\""), "{msgs:?}");
}

#[test]
fn validate_checks_a_policy_built_in_code() {
    let p = Policy {
        license_types: vec![
            LicenseType { name: "a".into(), rank: 1, seats: None },
            LicenseType { name: "A".into(), rank: 2, seats: None },
        ],
        rules: vec![Rule { group: "g".into(), license: "b".into() }],
        default_license: None,
    };
    let Err(e) = p.validate() else { panic!("expected invalid") };
    assert!(matches!(e.problems[0], PolicyProblem::DuplicateLicenseName { index: 1, first_index: 0, .. }));
    assert!(matches!(e.problems[1], PolicyProblem::UnknownRuleLicense { index: 0, .. }));
    assert!(e.to_string().starts_with("invalid license policy: license_types[1]: duplicate license name"));
}

#[test]
fn deserialize_reports_shape_problems_in_words() {
    let err = serde_json::from_value::<Policy>(json!({"license_types": [{"name": "a", "rank": 1, "seats": -1}]}))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("seats must be a non-negative integer or null"), "{err}");
}
