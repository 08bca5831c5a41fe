//! Specification of filter validation against the schema and of `resolve_path`.

use super::*;
use crate::schema::{ENTERPRISE_USER_SCHEMA, ResourceKind, USER_SCHEMA};
use crate::{ScimError, ScimType};

fn check(kind: ResourceKind, s: &str) -> Result<(), ScimError> {
    let f = match parse(s, &FilterLimits::default()) {
        Ok(f) => f,
        Err(e) => panic!("{s:?} should parse: {e}"),
    };
    validate(&f, kind)
}

fn valid(kind: ResourceKind, s: &str) {
    if let Err(e) = check(kind, s) {
        panic!("{s:?} should be valid: {e}");
    }
}

fn invalid(kind: ResourceKind, s: &str) -> String {
    match check(kind, s) {
        Ok(()) => panic!("{s:?} should be invalid"),
        Err(e) => {
            assert_eq!((e.status, e.scim_type), (400, Some(ScimType::InvalidFilter)), "{s:?}");
            e.detail
        }
    }
}

use ResourceKind::{Group, User};

#[test]
fn entra_user_and_group_queries_are_valid() {
    valid(User, r#"userName eq "jdoe@contoso.com""#);
    valid(User, r#"externalId eq "johnwong""#);
    valid(User, "externalId eq jyoung");
    valid(Group, r#"displayName eq "displayName""#);
    valid(User, r#"id eq "2441309d85324e7793ae" and manager eq "00aa""#);
    valid(Group, r#"members eq "f648f8d5ea4e4cd38e9c""#);
}

#[test]
fn attribute_names_resolve_case_insensitively() {
    valid(User, r#"USERNAME eq "a""#);
    valid(User, r#"name.FamilyName eq "a""#);
    valid(User, r#"emails.Value co "example.com""#);
}

#[test]
fn urn_qualified_extension_paths_are_valid() {
    valid(User, &format!("{ENTERPRISE_USER_SCHEMA}:employeeNumber eq \"42\""));
    valid(User, &format!("{ENTERPRISE_USER_SCHEMA}:manager.value eq \"m\""));
    valid(User, &format!("{USER_SCHEMA}:userName sw \"J\""));
}

#[test]
fn unknown_attribute_is_rejected_and_named() {
    let d = invalid(User, r#"shoeSize eq "42""#);
    assert!(d.contains("shoeSize"), "{d}");
    invalid(Group, r#"userName eq "a""#);
    invalid(User, r#"urn:example:unknown:1.0:User:foo eq "a""#);
}

#[test]
fn unknown_sub_attribute_is_rejected_and_named() {
    let d = invalid(User, r#"name.nickname eq "a""#);
    assert!(d.contains("nickname"), "{d}");
    assert!(invalid(User, r#"userName.value eq "a""#).contains("userName"));
}

#[test]
fn ordering_operators_on_booleans_are_rejected() {
    for op in ["gt", "ge", "lt", "le"] {
        let d = invalid(User, &format!("active {op} true"));
        assert!(d.contains("boolean"), "{d}");
    }
    invalid(User, "emails.primary gt true");
}

#[test]
fn substring_operators_on_booleans_are_rejected() {
    invalid(User, r#"active co "t""#);
}

#[test]
fn booleans_compare_with_true_false_or_their_strings() {
    valid(User, "active eq true");
    valid(User, "active ne false");
    valid(User, r#"active eq "True""#);
    assert!(invalid(User, "active eq 1").contains("true or false"));
}

#[test]
fn datetime_comparisons_need_a_valid_datetime() {
    valid(User, r#"meta.lastModified gt "2011-05-13T04:42:34Z""#);
    valid(User, "meta.Created gt 2015-10-10T14:38:21.8617979-07:00");
    assert!(invalid(User, r#"meta.lastModified gt "yesterday""#).contains("RFC 3339"));
    invalid(User, r#"meta.created co "2011""#);
}

#[test]
fn null_only_compares_with_eq_or_ne() {
    valid(User, "title eq null");
    valid(User, "title ne null");
    assert!(invalid(User, "title gt null").contains("null"));
}

#[test]
fn complex_single_valued_attribute_without_sub_attribute_is_rejected() {
    let d = invalid(User, r#"name eq "x""#);
    assert!(d.contains("name.") && d.contains("complex"), "{d}");
    invalid(User, "name pr");
}

#[test]
fn multi_valued_complex_attribute_without_value_sub_attribute_is_rejected() {
    invalid(User, r#"addresses eq "x""#);
}

#[test]
fn implicit_value_sub_attribute_applies_to_multi_valued_attributes() {
    valid(User, r#"emails co "example.com""#);
    valid(User, "emails pr");
    let ra = resolve_path(User, &AttrPath::simple("emails"));
    assert_eq!(ra.map(|r| (r.attr.name, r.leaf().name)).ok(), Some(("emails", "value")));
    let ra = resolve_path(Group, &AttrPath::simple("members"));
    assert_eq!(ra.map(|r| r.leaf().name).ok(), Some("value"));
}

#[test]
fn unprefixed_manager_resolves_to_the_enterprise_manager_value() {
    let ra = resolve_path(User, &AttrPath::simple("manager"));
    assert_eq!(
        ra.map(|r| (r.schema.id, r.attr.name, r.leaf().name)).ok(),
        Some((ENTERPRISE_USER_SCHEMA, "manager", "value"))
    );
}

#[test]
fn unprefixed_extension_attribute_resolves_to_its_extension() {
    let ra = resolve_path(User, &AttrPath::simple("employeeNumber"));
    assert!(ra.is_ok_and(|r| r.is_extension()));
}

#[test]
fn value_path_on_multi_valued_attribute_is_valid() {
    valid(User, r#"emails[type eq "work" and value co "@example.com"]"#);
    valid(User, r#"userType eq "Employee" and emails[type eq "work"]"#);
    valid(Group, r#"members[type eq "Group"]"#);
    valid(User, r#"name[givenName eq "Jane"]"#);
}

#[test]
fn value_path_on_simple_single_valued_attribute_is_rejected() {
    let d = invalid(User, r#"userName[value eq "x"]"#);
    assert!(d.contains("neither multi-valued nor complex"), "{d}");
}

#[test]
fn value_path_with_unknown_sub_attribute_is_rejected() {
    let d = invalid(User, r#"emails[kind eq "work"]"#);
    assert!(d.contains("kind"), "{d}");
}

#[test]
fn value_path_inner_comparisons_are_type_checked() {
    invalid(User, "emails[primary gt true]");
}

#[test]
fn schemas_filter_is_reported_as_unsupported() {
    let d = invalid(User, r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#);
    assert!(d.contains("schemas"), "{d}");
}

#[test]
fn password_cannot_be_filtered_on() {
    assert!(invalid(User, r#"password eq "hunter2""#).contains("password"));
}

#[test]
fn errors_inside_logic_and_not_are_found() {
    invalid(User, r#"userName eq "a" and shoeSize eq "b""#);
    invalid(User, r#"userName eq "a" or shoeSize eq "b""#);
    invalid(User, r#"not (shoeSize eq "b")"#);
}

#[test]
fn numeric_bare_value_is_fine_for_string_attributes() {
    valid(User, "externalId eq 12345");
}

#[test]
fn relative_validation_checks_sub_attributes_of_the_parent() {
    let members = crate::schema::GROUP.attr("members");
    let Some(members) = members else { panic!("members is in the Group schema") };
    let f = parse(r#"value eq "x" or type eq "User""#, &FilterLimits::default());
    assert!(f.is_ok_and(|f| validate_relative(&f, members).is_ok()));
    let f = parse(r#"bogus eq "x""#, &FilterLimits::default());
    assert!(f.is_ok_and(|f| validate_relative(&f, members).is_err()));
}
