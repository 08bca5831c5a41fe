//! Specification of in-memory filter evaluation.

use serde_json::{Value, json};

use super::*;
use crate::schema::ResourceKind::{self, Group, User};

fn f(s: &str) -> Filter {
    match parse(s, &FilterLimits::default()) {
        Ok(f) => f,
        Err(e) => panic!("{s:?} should parse: {e}"),
    }
}

fn is(kind: ResourceKind, s: &str, r: &Value) -> bool {
    matches(&f(s), kind, r)
}

fn jane() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": "2441309d85324e7793ae",
        "externalId": "JaneD",
        "userName": "Jane.Doe@Contoso.com",
        "name": {"givenName": "Jane", "familyName": "O'Malley"},
        "title": "",
        "active": true,
        "emails": [
            {"value": "jane@work.example.com", "type": "work", "primary": true},
            {"value": "jane@home.example.org", "type": "home"}
        ],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
            "employeeNumber": "701984",
            "manager": {"value": "m-1"}
        },
        "meta": {"resourceType": "User", "created": "2011-05-13T04:42:34Z", "lastModified": "2011-05-13T04:42:34.500+02:00"}
    })
}

#[test]
fn username_eq_is_case_insensitive() {
    assert!(is(User, r#"userName eq "jane.doe@contoso.com""#, &jane()));
    assert!(!is(User, r#"userName eq "john@contoso.com""#, &jane()));
}

#[test]
fn case_exact_attributes_compare_exactly() {
    assert!(is(User, r#"externalId eq "JaneD""#, &jane()));
    assert!(!is(User, r#"externalId eq "janed""#, &jane()));
    assert!(is(User, r#"id eq "2441309d85324e7793ae""#, &jane()));
}

#[test]
fn attribute_names_in_the_resource_match_case_insensitively() {
    let r = json!({"USERNAME": "bjensen"});
    assert!(is(User, r#"userName eq "bjensen""#, &r));
}

#[test]
fn substring_operators_work_on_strings() {
    assert!(is(User, r#"userName sw "JANE""#, &jane()));
    assert!(is(User, r#"userName ew "contoso.COM""#, &jane()));
    assert!(is(User, r#"name.familyName co "o'mal""#, &jane()));
    assert!(!is(User, r#"userName co "xyz""#, &jane()));
}

#[test]
fn string_ordering_is_lexicographic_ignoring_case() {
    assert!(is(User, r#"userName gt "a""#, &jane()));
    assert!(is(User, r#"userName lt "K""#, &jane()));
    assert!(is(User, r#"userName ge "jane.doe@contoso.com""#, &jane()));
    assert!(is(User, r#"userName le "JANE.DOE@CONTOSO.COM""#, &jane()));
}

#[test]
fn multi_valued_attributes_match_if_any_element_matches() {
    assert!(is(User, r#"emails co "home.example.org""#, &jane()));
    assert!(is(User, r#"emails.type eq "home""#, &jane()));
    assert!(!is(User, r#"emails.type eq "other""#, &jane()));
}

#[test]
fn value_path_requires_one_element_to_satisfy_the_whole_filter() {
    assert!(is(User, r#"emails[type eq "work" and value co "@work."]"#, &jane()));
    assert!(!is(User, r#"emails[type eq "work" and value co "home"]"#, &jane()));
}

#[test]
fn value_path_with_primary_boolean() {
    assert!(is(User, r#"emails[primary eq true]"#, &jane()));
    assert!(is(User, r#"emails[type eq "home" and not (primary pr)]"#, &jane()));
}

#[test]
fn booleans_compare_with_literal_and_string_forms() {
    assert!(is(User, "active eq true", &jane()));
    assert!(is(User, r#"active eq "True""#, &jane()));
    assert!(!is(User, "active eq false", &jane()));
    assert!(is(User, "active ne false", &jane()));
    assert!(is(User, "active eq true", &json!({"active": "True"})));
}

#[test]
fn present_means_not_null_not_empty() {
    assert!(is(User, "userName pr", &jane()));
    assert!(!is(User, "title pr", &jane()), "empty string is not present");
    assert!(!is(User, "nickName pr", &jane()));
    assert!(!is(User, "emails pr", &json!({"emails": []})));
    assert!(!is(User, "nickName pr", &json!({"nickName": null})));
    assert!(is(User, "emails pr", &jane()));
}

#[test]
fn ne_is_true_when_the_attribute_is_absent() {
    assert!(is(User, r#"nickName ne "Babs""#, &jane()));
    assert!(!is(User, r#"nickName eq "Babs""#, &jane()));
    assert!(!is(User, r#"nickName co "B""#, &jane()));
}

#[test]
fn eq_null_matches_absent_attributes() {
    assert!(is(User, "nickName eq null", &jane()));
    assert!(!is(User, "userName eq null", &jane()));
    assert!(is(User, "userName ne null", &jane()));
}

#[test]
fn datetimes_compare_as_instants() {
    assert!(is(User, r#"meta.created eq "2011-05-13T06:42:34+02:00""#, &jane()));
    assert!(is(User, r#"meta.created lt "2011-05-13T04:42:35Z""#, &jane()));
    assert!(is(User, r#"meta.lastModified gt "2011-05-13T02:42:34Z""#, &jane()));
    assert!(is(User, r#"meta.lastModified lt "2011-05-13T02:42:35Z""#, &jane()));
    assert!(!is(User, r#"meta.created gt "2020-01-01T00:00:00Z""#, &jane()));
}

#[test]
fn extension_attributes_are_found_under_their_urn() {
    assert!(is(
        User,
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "701984""#,
        &jane()
    ));
    assert!(is(User, r#"employeeNumber eq 701984"#, &jane()), "bare number token compared as text");
}

#[test]
fn entra_manager_reference_check_matches() {
    assert!(is(User, r#"id eq "2441309d85324e7793ae" and manager eq "m-1""#, &jane()));
    assert!(!is(User, r#"id eq "2441309d85324e7793ae" and manager eq "m-2""#, &jane()));
}

#[test]
fn logic_combines_as_expected() {
    let r = jane();
    assert!(is(User, r#"userName sw "x" or active eq true"#, &r));
    assert!(!is(User, r#"userName sw "x" and active eq true"#, &r));
    assert!(is(User, r#"not (userName sw "x")"#, &r));
    assert!(is(
        User,
        r#"userType ne "Employee" and not (emails co "example.net" or emails.value co "example.biz")"#,
        &r
    ));
}

#[test]
fn group_members_match_by_implicit_value() {
    let g =
        json!({"displayName": "Sales", "members": [{"value": "u1", "type": "User"}, {"value": "g2", "type": "Group"}]});
    assert!(is(Group, r#"members eq "u1""#, &g));
    assert!(is(Group, r#"members[type eq "Group" and value eq "g2"]"#, &g));
    assert!(!is(Group, r#"members eq "u3""#, &g));
    assert!(is(Group, r#"displayName eq "sales""#, &g));
}

#[test]
fn invalid_paths_never_match() {
    assert!(!is(User, r#"shoeSize eq "42""#, &jane()));
    assert!(!is(User, r#"name eq "Jane""#, &jane()));
}

#[test]
fn matches_element_tests_one_element_of_a_multi_valued_attribute() {
    let Some(emails) = crate::schema::USER.attr("emails") else { panic!("emails exists") };
    let work = json!({"value": "a@x", "type": "Work"});
    assert!(matches_element(&f(r#"type eq "work""#), emails, &work));
    assert!(!matches_element(&f(r#"type eq "home""#), emails, &work));
    assert!(matches_element(&f(r#"type eq "work" and value ew "@X""#), emails, &work));
    assert!(!matches_element(&f(r#"primary eq true"#), emails, &work));
}
