//! Specification of PATCH semantics on the stored form (RFC 7644 §3.5.2).

use serde_json::{Map, Value, json};

use super::*;
use crate::filter::{CompValue, CompareOp, Filter};
use crate::schema::ResourceKind::{self, Group, User};

pub(super) const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

pub(super) fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

pub(super) fn request(ops: Value) -> PatchRequest {
    let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops});
    match PatchRequest::parse(&body, &PatchLimits::default()) {
        Ok(r) => r,
        Err(e) => panic!("request should parse: {e}"),
    }
}

/// Applies `ops` to `stored` and returns the new stored form and member ops.
pub(super) fn run(kind: ResourceKind, stored: Value, ops: Value) -> (Value, Vec<MemberOp>) {
    let mut map = object(stored);
    match apply(kind, &mut map, &request(ops)) {
        Ok(m) => (Value::Object(map), m),
        Err(e) => panic!("patch should apply: {e}"),
    }
}

/// Applies `ops` expecting an error of type `t`; checks the resource is untouched.
pub(super) fn fails(kind: ResourceKind, stored: Value, ops: Value, t: ScimType) -> String {
    let mut map = object(stored.clone());
    match apply(kind, &mut map, &request(ops)) {
        Ok(m) => panic!("patch should fail, got {map:?} {m:?}"),
        Err(e) => {
            assert_eq!((e.status, e.scim_type), (400, Some(t)), "{}", e.detail);
            assert_eq!(Value::Object(map), stored, "a failed patch leaves the resource untouched");
            e.detail
        }
    }
}

pub(super) fn user() -> Value {
    json!({
        "userName": "jdoe@contoso.com",
        "externalId": "jdoe",
        "active": true,
        "name": {"givenName": "Jane", "familyName": "Doe"},
        "emails": [{"value": "jdoe@contoso.com", "type": "work", "primary": true}]
    })
}

pub(super) fn group() -> Value {
    json!({"displayName": "Sales", "externalId": "8aa1a0c0"})
}

fn u(ops: Value) -> Value {
    run(User, user(), ops).0
}

// ---- single-valued attributes ----

#[test]
fn replace_single_valued_attribute_sets_it() {
    assert_eq!(u(json!([{"op": "replace", "path": "displayName", "value": "Jane Doe"}]))["displayName"], "Jane Doe");
}

#[test]
fn add_single_valued_attribute_sets_it() {
    assert_eq!(u(json!([{"op": "add", "path": "nickName", "value": "Babs"}]))["nickName"], "Babs");
}

#[test]
fn attribute_names_in_paths_are_case_insensitive_and_stored_canonically() {
    let r = u(json!([{"op": "replace", "path": "DISPLAYNAME", "value": "J"}]));
    assert_eq!(r["displayName"], "J");
    assert!(r.get("DISPLAYNAME").is_none());
}

#[test]
fn remove_single_valued_attribute_deletes_it() {
    let r = u(json!([{"op": "remove", "path": "externalId"}]));
    assert!(r.get("externalId").is_none());
}

#[test]
fn remove_of_an_absent_attribute_is_a_no_op() {
    assert_eq!(u(json!([{"op": "remove", "path": "nickName"}])), user());
}

#[test]
fn null_value_for_replace_removes_the_attribute() {
    let r = u(json!([{"op": "replace", "path": "externalId", "value": null}]));
    assert!(r.get("externalId").is_none());
}

#[test]
fn empty_string_is_stored_as_an_empty_string() {
    assert_eq!(u(json!([{"op": "replace", "path": "title", "value": ""}]))["title"], "");
}

#[test]
fn string_booleans_are_coerced_for_boolean_attributes() {
    for (v, expected) in [("False", false), ("false", false), ("True", true), ("TRUE", true)] {
        let r = u(json!([{"op": "replace", "path": "active", "value": v}]));
        assert_eq!(r["active"], expected, "{v}");
    }
}

#[test]
fn type_mismatch_is_invalid_value_naming_the_attribute() {
    let d = fails(User, user(), json!([{"op": "replace", "path": "active", "value": "maybe"}]), ScimType::InvalidValue);
    assert!(d.contains("active") && d.contains("boolean"), "{d}");
    let d = fails(User, user(), json!([{"op": "replace", "path": "displayName", "value": 42}]), ScimType::InvalidValue);
    assert!(d.contains("displayName") && d.contains("string"), "{d}");
    fails(User, user(), json!([{"op": "replace", "path": "name", "value": "Jane Doe"}]), ScimType::InvalidValue);
}

#[test]
fn single_element_array_for_a_single_valued_attribute_is_unwrapped() {
    assert_eq!(u(json!([{"op": "replace", "path": "title", "value": ["CTO"]}]))["title"], "CTO");
    fails(User, user(), json!([{"op": "replace", "path": "title", "value": ["a", "b"]}]), ScimType::InvalidValue);
}

// ---- complex attributes ----

#[test]
fn replace_sub_attribute_keeps_siblings() {
    let r = u(json!([{"op": "replace", "path": "name.familyName", "value": "Doe-Smith"}]));
    assert_eq!(r["name"], json!({"givenName": "Jane", "familyName": "Doe-Smith"}));
}

#[test]
fn add_sub_attribute_creates_the_parent_when_absent() {
    let mut stored = object(user());
    stored.remove("name");
    let (r, _) = run(User, Value::Object(stored), json!([{"op": "add", "path": "name.givenName", "value": "Jane"}]));
    assert_eq!(r["name"], json!({"givenName": "Jane"}));
}

#[test]
fn replace_complex_attribute_merges_sub_attributes() {
    let r = u(json!([{"op": "replace", "path": "name", "value": {"familyName": "Roe", "formatted": "Jane Roe"}}]));
    assert_eq!(r["name"], json!({"givenName": "Jane", "familyName": "Roe", "formatted": "Jane Roe"}));
}

#[test]
fn replace_complex_attribute_with_empty_object_changes_nothing() {
    assert_eq!(u(json!([{"op": "replace", "path": "name", "value": {}}])), user());
}

#[test]
fn replace_multi_valued_attribute_with_empty_array_clears_it() {
    assert!(u(json!([{"op": "replace", "path": "emails", "value": []}])).get("emails").is_none());
    assert_eq!(u(json!([{"op": "add", "path": "emails", "value": []}])), user());
}

#[test]
fn entra_null_update_test_empty_strings_then_nulls_read_back_empty() {
    let r = u(json!([{"op": "replace", "value": {"displayName": "", "title": "", "name.givenName": ""}}]));
    assert_eq!(
        (r["displayName"].clone(), r["title"].clone(), r["name"]["givenName"].clone()),
        (json!(""), json!(""), json!(""))
    );
    let (r, _) =
        run(User, r, json!([{"op": "replace", "value": {"displayName": null, "title": null, "name.givenName": null}}]));
    assert!(r.get("displayName").is_none() && r.get("title").is_none());
    assert_eq!(r["name"], json!({"familyName": "Doe"}));
}

#[test]
fn remove_sub_attribute_keeps_siblings_and_drops_an_emptied_parent() {
    let r = u(json!([{"op": "remove", "path": "name.givenName"}]));
    assert_eq!(r["name"], json!({"familyName": "Doe"}));
    let r = u(json!([{"op": "remove", "path": "name.givenName"}, {"op": "remove", "path": "name.familyName"}]));
    assert!(r.get("name").is_none());
}

#[test]
fn null_for_a_sub_attribute_removes_it() {
    let r = u(json!([{"op": "replace", "path": "name.givenName", "value": null}]));
    assert_eq!(r["name"], json!({"familyName": "Doe"}));
}

#[test]
fn unknown_sub_attribute_is_invalid_path() {
    let d = fails(User, user(), json!([{"op": "replace", "path": "name.nick", "value": "x"}]), ScimType::InvalidPath);
    assert!(d.contains("nick"), "{d}");
    fails(User, user(), json!([{"op": "replace", "path": "title.value", "value": "x"}]), ScimType::InvalidPath);
}

// ---- multi-valued attributes ----

#[test]
fn add_to_multi_valued_attribute_appends() {
    let r = u(json!([{"op": "add", "path": "emails", "value": [{"value": "jane@home.org", "type": "home"}]}]));
    assert_eq!(r["emails"].as_array().map(Vec::len), Some(2));
    assert_eq!(r["emails"][1]["value"], "jane@home.org");
}

#[test]
fn add_single_object_to_multi_valued_attribute_appends_it() {
    let r = u(json!([{"op": "add", "path": "phoneNumbers", "value": {"value": "+1 555", "type": "work"}}]));
    assert_eq!(r["phoneNumbers"], json!([{"value": "+1 555", "type": "work"}]));
}

#[test]
fn add_of_an_identical_value_is_deduplicated() {
    let r = u(
        json!([{"op": "add", "path": "emails", "value": [{"value": "jdoe@contoso.com", "type": "work", "primary": true}]}]),
    );
    assert_eq!(r["emails"], user()["emails"]);
}

#[test]
fn adding_a_primary_value_demotes_the_previous_primary() {
    let r = u(
        json!([{"op": "add", "path": "emails", "value": [{"value": "new@x.org", "type": "other", "primary": "True"}]}]),
    );
    assert_eq!(r["emails"][0]["primary"], false);
    assert_eq!(r["emails"][1]["primary"], true);
}

#[test]
fn replace_multi_valued_attribute_replaces_the_whole_list() {
    let r = u(json!([{"op": "replace", "path": "emails", "value": [{"value": "only@x.org"}]}]));
    assert_eq!(r["emails"], json!([{"value": "only@x.org"}]));
}

#[test]
fn replace_with_two_primaries_is_invalid_value() {
    fails(
        User,
        user(),
        json!([{"op": "replace", "path": "emails", "value": [{"value": "a@x", "primary": true}, {"value": "b@x", "primary": true}]}]),
        ScimType::InvalidValue,
    );
}

#[test]
fn remove_multi_valued_attribute_without_filter_removes_all_values() {
    assert!(u(json!([{"op": "remove", "path": "emails"}])).get("emails").is_none());
}

#[test]
fn remove_with_a_value_removes_only_the_given_elements() {
    let stored = json!({"userName": "u", "roles": [{"value": "admin"}, {"value": "dev"}]});
    let (r, _) = run(User, stored, json!([{"op": "remove", "path": "roles", "value": [{"value": "ADMIN"}]}]));
    assert_eq!(r["roles"], json!([{"value": "dev"}]));
}

// ---- value filters ----

#[test]
fn replace_through_filter_updates_matching_elements_only() {
    let stored =
        json!({"userName": "u", "emails": [{"value": "w@x", "type": "work"}, {"value": "h@x", "type": "home"}]});
    let (r, _) =
        run(User, stored, json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "new@x"}]));
    assert_eq!(r["emails"], json!([{"value": "new@x", "type": "work"}, {"value": "h@x", "type": "home"}]));
}

#[test]
fn filter_comparison_respects_case_insensitivity() {
    let stored = json!({"userName": "u", "emails": [{"value": "w@x", "type": "Work"}]});
    let (r, _) =
        run(User, stored, json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "n@x"}]));
    assert_eq!(r["emails"], json!([{"value": "n@x", "type": "Work"}]));
}

#[test]
fn add_through_filter_creates_the_element_when_nothing_matches() {
    let stored = json!({"userName": "u"});
    let (r, _) = run(User, stored, json!([{"op": "add", "path": "emails[type eq \"work\"].value", "value": "w@x"}]));
    assert_eq!(r["emails"], json!([{"type": "work", "value": "w@x"}]));
}

#[test]
fn replace_through_filter_creates_the_element_instead_of_no_target() {
    let stored = json!({"userName": "u", "emails": [{"value": "h@x", "type": "home"}]});
    let (r, _) =
        run(User, stored, json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "w@x"}]));
    assert_eq!(r["emails"], json!([{"value": "h@x", "type": "home"}, {"type": "work", "value": "w@x"}]));
}

#[test]
fn created_element_takes_all_eq_conditions_joined_by_and() {
    let (r, _) = run(
        User,
        json!({"userName": "u"}),
        json!([{"op": "add", "path": "phoneNumbers[type eq \"work\" and primary eq \"True\"].value", "value": "+1"}]),
    );
    assert_eq!(r["phoneNumbers"], json!([{"type": "work", "primary": true, "value": "+1"}]));
}

#[test]
fn filter_that_cannot_describe_an_element_is_no_target_when_nothing_matches() {
    let d = fails(
        User,
        user(),
        json!([{"op": "replace", "path": "emails[type eq \"home\" or type eq \"other\"].value", "value": "x@y"}]),
        ScimType::NoTarget,
    );
    assert!(d.contains("emails"), "{d}");
}

#[test]
fn primary_through_filter_is_coerced_and_demotes_others() {
    let stored = json!({"userName": "u", "emails": [{"value": "h@x", "type": "home", "primary": true}, {"value": "w@x", "type": "work"}]});
    let (r, _) =
        run(User, stored, json!([{"op": "replace", "path": "emails[type eq \"work\"].primary", "value": "True"}]));
    assert_eq!(
        r["emails"],
        json!([{"value": "h@x", "type": "home", "primary": false}, {"value": "w@x", "type": "work", "primary": true}])
    );
}

#[test]
fn replace_filter_path_with_object_merges_into_matching_elements() {
    let stored = json!({"userName": "u", "emails": [{"value": "w@x", "type": "work"}]});
    let (r, _) = run(
        User,
        stored,
        json!([{"op": "replace", "path": "emails[type eq \"work\"]", "value": {"value": "n@x", "display": "Work"}}]),
    );
    assert_eq!(r["emails"], json!([{"value": "n@x", "type": "work", "display": "Work"}]));
}

#[test]
fn replace_filter_path_with_object_creates_when_nothing_matches() {
    let (r, _) = run(
        User,
        json!({"userName": "u"}),
        json!([{"op": "replace", "path": "emails[type eq \"work\"]", "value": {"value": "n@x"}}]),
    );
    assert_eq!(r["emails"], json!([{"type": "work", "value": "n@x"}]));
}

#[test]
fn remove_through_filter_removes_matching_elements() {
    let stored =
        json!({"userName": "u", "emails": [{"value": "w@x", "type": "work"}, {"value": "h@x", "type": "home"}]});
    let (r, _) = run(User, stored, json!([{"op": "remove", "path": "emails[type eq \"work\"]"}]));
    assert_eq!(r["emails"], json!([{"value": "h@x", "type": "home"}]));
}

#[test]
fn remove_through_filter_of_the_last_element_drops_the_attribute() {
    assert!(u(json!([{"op": "remove", "path": "emails[type eq \"work\"]"}])).get("emails").is_none());
}

#[test]
fn remove_through_filter_with_sub_attribute_removes_only_that_sub_attribute() {
    let r = u(json!([{"op": "remove", "path": "emails[type eq \"work\"].primary"}]));
    assert_eq!(r["emails"], json!([{"value": "jdoe@contoso.com", "type": "work"}]));
}

#[test]
fn remove_through_filter_matching_nothing_is_a_no_op() {
    assert_eq!(u(json!([{"op": "remove", "path": "emails[type eq \"home\"]"}])), user());
}

#[test]
fn sub_attribute_of_multi_valued_attribute_without_filter_applies_to_every_element() {
    let stored = json!({"userName": "u", "emails": [{"value": "a@x", "type": "work"}, {"value": "b@x"}]});
    let (r, _) = run(User, stored, json!([{"op": "replace", "path": "emails.type", "value": "other"}]));
    assert_eq!(r["emails"], json!([{"value": "a@x", "type": "other"}, {"value": "b@x", "type": "other"}]));
}

#[test]
fn one_element_array_values_through_filters_are_unwrapped() {
    let r = u(json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": ["n@x"]}]));
    assert_eq!(r["emails"][0]["value"], "n@x");
    let r = u(json!([{"op": "replace", "path": "emails[type eq \"work\"]", "value": [{"display": "W"}]}]));
    assert_eq!(r["emails"][0]["display"], "W");
    let r = u(json!([{"op": "replace", "path": "name.givenName", "value": ["Janet"]}]));
    assert_eq!(r["name"]["givenName"], "Janet");
}

#[test]
fn filter_on_a_single_valued_attribute_is_invalid_path() {
    fails(
        User,
        user(),
        json!([{"op": "replace", "path": "name[givenName eq \"Jane\"].familyName", "value": "x"}]),
        ScimType::InvalidPath,
    );
}

#[test]
fn filter_naming_an_unknown_sub_attribute_is_invalid_path() {
    fails(
        User,
        user(),
        json!([{"op": "replace", "path": "emails[kind eq \"work\"].value", "value": "x"}]),
        ScimType::InvalidPath,
    );
    fails(
        User,
        user(),
        json!([{"op": "replace", "path": "emails[type eq \"work\"].bogus", "value": "x"}]),
        ScimType::InvalidPath,
    );
}

// ---- path-less ----

#[test]
fn pathless_value_must_be_an_object() {
    fails(User, user(), json!([{"op": "replace", "value": "x"}]), ScimType::InvalidValue);
    fails(User, user(), json!([{"op": "add", "value": null}]), ScimType::InvalidValue);
}

#[test]
fn pathless_dotted_keys_set_sub_attributes_without_touching_siblings() {
    let r = u(json!([{"op": "replace", "value": {"name.familyName": "Roe"}}]));
    assert_eq!(r["name"], json!({"givenName": "Jane", "familyName": "Roe"}));
}

#[test]
fn pathless_keys_are_case_insensitive() {
    let r = u(json!([{"op": "replace", "value": {"DisplayName": "J", "NAME.GIVENNAME": "Janet"}}]));
    assert_eq!(r["displayName"], "J");
    assert_eq!(r["name"]["givenName"], "Janet");
}

#[test]
fn pathless_nested_extension_object_merges_into_the_extension() {
    let stored = json!({"userName": "u", ENT: {"department": "Sales", "employeeNumber": "1"}});
    let (r, _) = run(User, stored, json!([{"op": "add", "value": {ENT: {"employeeNumber": "2", "costCenter": "42"}}}]));
    assert_eq!(r[ENT], json!({"department": "Sales", "employeeNumber": "2", "costCenter": "42"}));
}

#[test]
fn pathless_schemas_and_meta_are_ignored_but_id_is_mutability() {
    let r =
        u(json!([{"op": "replace", "value": {"schemas": ["x"], "meta": {"resourceType": "User"}, "title": "CTO"}}]));
    assert_eq!(r["title"], "CTO");
    assert!(r.get("meta").is_none() && r.get("schemas").is_none());
    fails(User, user(), json!([{"op": "replace", "value": {"id": "abc", "title": "CTO"}}]), ScimType::Mutability);
}

#[test]
fn pathless_unknown_key_is_invalid_path_naming_it() {
    let d = fails(User, user(), json!([{"op": "replace", "value": {"shoeSize": 42}}]), ScimType::InvalidPath);
    assert!(d.contains("shoeSize"), "{d}");
    fails(User, user(), json!([{"op": "replace", "value": {"urn:example:ext:1.0:User:x": 1}}]), ScimType::InvalidPath);
}

#[test]
fn pathless_null_removes_the_attribute() {
    let r = u(json!([{"op": "replace", "value": {"externalId": null}}]));
    assert!(r.get("externalId").is_none());
}

#[test]
fn pathless_add_appends_to_multi_valued_and_replace_overwrites() {
    let added = u(json!([{"op": "add", "value": {"emails": [{"value": "b@x", "type": "home"}]}}]));
    assert_eq!(added["emails"].as_array().map(Vec::len), Some(2));
    let replaced = u(json!([{"op": "replace", "value": {"emails": [{"value": "b@x", "type": "home"}]}}]));
    assert_eq!(replaced["emails"], json!([{"value": "b@x", "type": "home"}]));
}

#[test]
fn pathless_password_is_accepted_and_never_stored() {
    let r = u(json!([{"op": "replace", "value": {"password": "hunter2"}}]));
    assert!(r.get("password").is_none());
    let r = u(json!([{"op": "replace", "path": "password", "value": "hunter2"}]));
    assert!(r.get("password").is_none());
}

// ---- mutability and required ----

#[test]
fn read_only_attributes_are_mutability_errors() {
    for path in ["id", "meta", "meta.lastModified", "groups"] {
        fails(User, user(), json!([{"op": "replace", "path": path, "value": "x"}]), ScimType::Mutability);
    }
    fails(User, user(), json!([{"op": "remove", "path": "groups"}]), ScimType::Mutability);
    fails(User, user(), json!([{"op": "add", "value": {"groups": [{"value": "g"}]}}]), ScimType::Mutability);
    fails(User, user(), json!([{"op": "replace", "path": "schemas", "value": ["x"]}]), ScimType::Mutability);
}

#[test]
fn roster_license_extension_is_read_only() {
    let roster = "urn:ietf:params:scim:schemas:extension:roster:2.0:User";
    fails(
        User,
        user(),
        json!([{"op": "replace", "path": format!("{roster}:licenseType"), "value": "developer"}]),
        ScimType::Mutability,
    );
    fails(User, user(), json!([{"op": "replace", "path": "licenseType", "value": "developer"}]), ScimType::Mutability);
    fails(User, user(), json!([{"op": "add", "value": {roster: {"licenseType": "it"}}}]), ScimType::Mutability);
    fails(User, user(), json!([{"op": "remove", "path": roster}]), ScimType::Mutability);
}

#[test]
fn manager_display_name_is_read_only() {
    fails(
        User,
        user(),
        json!([{"op": "replace", "path": format!("{ENT}:manager.displayName"), "value": "Boss"}]),
        ScimType::Mutability,
    );
}

#[test]
fn removing_user_name_is_invalid_value() {
    let d = fails(User, user(), json!([{"op": "remove", "path": "userName"}]), ScimType::InvalidValue);
    assert!(d.contains("userName is required"), "{d}");
}

#[test]
fn replacing_user_name_with_empty_string_is_invalid_value() {
    fails(User, user(), json!([{"op": "replace", "path": "userName", "value": ""}]), ScimType::InvalidValue);
    fails(User, user(), json!([{"op": "replace", "path": "userName", "value": "   "}]), ScimType::InvalidValue);
}

#[test]
fn unknown_attribute_in_path_is_invalid_path_naming_it() {
    let d = fails(User, user(), json!([{"op": "replace", "path": "shoeSize", "value": 1}]), ScimType::InvalidPath);
    assert!(d.contains("shoeSize"), "{d}");
    fails(User, user(), json!([{"op": "add", "path": "members", "value": [{"value": "x"}]}]), ScimType::InvalidPath);
}

// ---- extensions ----

#[test]
fn urn_path_sets_extension_attribute_under_its_urn() {
    let r = u(json!([{"op": "add", "path": format!("{ENT}:employeeNumber"), "value": "6546579"}]));
    assert_eq!(r[ENT], json!({"employeeNumber": "6546579"}));
}

#[test]
fn unprefixed_extension_attribute_path_resolves_to_the_extension() {
    let r = u(json!([{"op": "replace", "path": "department", "value": "Tech"}]));
    assert_eq!(r[ENT], json!({"department": "Tech"}));
}

#[test]
fn removing_the_last_extension_attribute_drops_the_extension_object() {
    let stored = json!({"userName": "u", ENT: {"department": "Tech"}});
    let (r, _) = run(User, stored, json!([{"op": "remove", "path": format!("{ENT}:department")}]));
    assert!(r.get(ENT).is_none());
}

#[test]
fn path_naming_the_extension_urn_replaces_or_removes_its_attributes() {
    let stored = json!({"userName": "u", ENT: {"department": "Tech"}});
    let (r, _) = run(User, stored.clone(), json!([{"op": "replace", "path": ENT, "value": {"division": "EU"}}]));
    assert_eq!(r[ENT], json!({"department": "Tech", "division": "EU"}));
    let (r, _) = run(User, stored, json!([{"op": "remove", "path": ENT}]));
    assert!(r.get(ENT).is_none());
}

#[test]
fn manager_array_form_takes_the_first_reference() {
    let r = u(json!([{"op": "add", "path": "manager", "value": [{"$ref": "https://x/Users/00aa", "value": "00aa"}]}]));
    assert_eq!(r[ENT]["manager"], json!({"$ref": "https://x/Users/00aa", "value": "00aa"}));
}

#[test]
fn manager_value_replaces_the_whole_reference() {
    let stored = json!({"userName": "u", ENT: {"manager": {"value": "old", "$ref": "https://x/Users/old"}}});
    let (r, _) = run(User, stored, json!([{"op": "replace", "path": format!("{ENT}:manager"), "value": "new"}]));
    assert_eq!(r[ENT]["manager"], json!({"value": "new"}));
}

#[test]
fn manager_sub_attribute_path_sets_only_the_value() {
    let r = u(json!([{"op": "add", "path": format!("{ENT}:manager.value"), "value": "m1"}]));
    assert_eq!(r[ENT]["manager"], json!({"value": "m1"}));
}

// ---- atomicity ----

#[test]
fn a_failing_operation_discards_earlier_operations() {
    let d = fails(
        User,
        user(),
        json!([{"op": "replace", "path": "title", "value": "CTO"}, {"op": "replace", "path": "active", "value": "nope"}]),
        ScimType::InvalidValue,
    );
    assert!(d.starts_with("Operation 2:"), "{d}");
}

#[test]
fn operations_apply_in_order() {
    let r = u(json!([
        {"op": "replace", "path": "title", "value": "A"},
        {"op": "remove", "path": "title"},
        {"op": "add", "path": "title", "value": "B"}
    ]));
    assert_eq!(r["title"], "B");
}

#[test]
fn users_never_produce_member_operations() {
    assert!(run(User, user(), json!([{"op": "replace", "path": "title", "value": "A"}])).1.is_empty());
}

// ---- groups ----

fn g(ops: Value) -> (Value, Vec<MemberOp>) {
    run(Group, group(), ops)
}

#[test]
fn add_members_becomes_an_add_member_op() {
    let (r, m) =
        g(json!([{"op": "add", "path": "members", "value": [{"value": "u1"}, {"value": "u2", "type": "user"}]}]));
    assert_eq!(r, group(), "members never enter the stored map");
    assert_eq!(
        m,
        [MemberOp::Add(vec![MemberRef::new("u1"), MemberRef { value: "u2".into(), kind: Some("User".into()) }])]
    );
}

#[test]
fn replace_members_becomes_a_replace_op() {
    let (_, m) = g(json!([{"op": "replace", "path": "members", "value": [{"value": "u1"}]}]));
    assert_eq!(m, [MemberOp::Replace(vec![MemberRef::new("u1")])]);
    let (_, m) = g(json!([{"op": "replace", "path": "members", "value": []}]));
    assert_eq!(m, [MemberOp::Replace(vec![])]);
}

#[test]
fn remove_member_by_value_keeps_other_members() {
    let (_, m) = g(json!([{"op": "remove", "path": "members", "value": [{"value": "u1"}]}]));
    assert_eq!(m, [MemberOp::Remove(vec!["u1".into()])]);
}

#[test]
fn remove_members_with_an_empty_value_array_removes_nothing() {
    let (_, m) = g(json!([{"op": "remove", "path": "members", "value": []}]));
    assert!(m.is_empty());
}

#[test]
fn remove_members_without_value_removes_all() {
    let (_, m) = g(json!([{"op": "remove", "path": "members"}]));
    assert_eq!(m, [MemberOp::RemoveAll]);
}

#[test]
fn remove_members_through_value_eq_filter_removes_that_member() {
    let (_, m) = g(json!([{"op": "remove", "path": "members[value eq \"u1\"]"}]));
    assert_eq!(m, [MemberOp::Remove(vec!["u1".into()])]);
}

#[test]
fn remove_members_through_value_eq_disjunction_removes_each() {
    let (_, m) = g(json!([{"op": "remove", "path": "members[value eq \"u1\" or value eq \"u2\" or VALUE eq \"u3\"]"}]));
    assert_eq!(m, [MemberOp::Remove(vec!["u1".into(), "u2".into(), "u3".into()])]);
}

#[test]
fn remove_members_through_other_filters_is_remove_matching() {
    let (_, m) = g(json!([{"op": "remove", "path": "members[type eq \"Group\"]"}]));
    let expected = Filter::Compare {
        path: crate::filter::AttrPath::simple("type"),
        op: CompareOp::Eq,
        value: CompValue::String("Group".into()),
    };
    assert_eq!(m, [MemberOp::RemoveMatching(expected)]);
}

#[test]
fn remove_members_filter_with_unknown_sub_attribute_is_invalid_path() {
    fails(Group, group(), json!([{"op": "remove", "path": "members[bogus eq \"x\"]"}]), ScimType::InvalidPath);
}

#[test]
fn member_sub_attributes_cannot_be_patched() {
    fails(Group, group(), json!([{"op": "replace", "path": "members.display", "value": "x"}]), ScimType::Mutability);
    fails(
        Group,
        group(),
        json!([{"op": "replace", "path": "members[value eq \"u1\"].display", "value": "x"}]),
        ScimType::Mutability,
    );
    fails(Group, group(), json!([{"op": "remove", "path": "members[value eq \"u1\"].value"}]), ScimType::Mutability);
}

#[test]
fn add_members_through_a_filter_is_invalid_path() {
    fails(
        Group,
        group(),
        json!([{"op": "add", "path": "members[value eq \"u1\"]", "value": {"value": "u1"}}]),
        ScimType::InvalidPath,
    );
}

#[test]
fn pathless_members_key_becomes_member_ops() {
    let (r, m) = g(
        json!([{"op": "add", "value": {"members": [{"value": "u1"}]}}, {"op": "replace", "value": {"displayName": "Ops", "members": [{"value": "u2"}]}}]),
    );
    assert_eq!(r["displayName"], "Ops");
    assert_eq!(m, [MemberOp::Add(vec![MemberRef::new("u1")]), MemberOp::Replace(vec![MemberRef::new("u2")])]);
}

#[test]
fn bare_string_member_values_are_accepted() {
    let (_, m) = g(json!([{"op": "add", "path": "members", "value": "string id 1"}]));
    assert_eq!(m, [MemberOp::Add(vec![MemberRef::new("string id 1")])]);
    let (_, m) = g(json!([{"op": "add", "path": "members", "value": ["a", {"value": "b"}]}]));
    assert_eq!(m, [MemberOp::Add(vec![MemberRef::new("a"), MemberRef::new("b")])]);
}

#[test]
fn duplicate_member_values_in_one_operation_are_collapsed() {
    let (_, m) = g(json!([{"op": "add", "path": "members", "value": [{"value": "a"}, {"value": "a"}]}]));
    assert_eq!(m, [MemberOp::Add(vec![MemberRef::new("a")])]);
}

#[test]
fn member_display_and_ref_in_values_are_ignored() {
    let (_, m) = g(
        json!([{"op": "add", "path": "members", "value": [{"value": "a", "display": "Alice", "$ref": "https://x/Users/a"}]}]),
    );
    assert_eq!(m, [MemberOp::Add(vec![MemberRef::new("a")])]);
}

#[test]
fn malformed_member_values_are_invalid_value() {
    for bad in [
        json!([{"value": ""}]),
        json!([{"value": 5}]),
        json!([{"display": "x"}]),
        json!([{"value": null}]),
        json!([7]),
        json!([{"value": "a", "type": "Robot"}]),
    ] {
        fails(Group, group(), json!([{"op": "add", "path": "members", "value": bad}]), ScimType::InvalidValue);
    }
    fails(
        Group,
        group(),
        json!([{"op": "remove", "path": "members", "value": [{"$ref": null}]}]),
        ScimType::InvalidValue,
    );
}

#[test]
fn member_operations_come_back_in_request_order() {
    let (_, m) = g(json!([
        {"op": "remove", "path": "members"},
        {"op": "add", "path": "members", "value": [{"value": "a"}]},
        {"op": "remove", "path": "members[value eq \"a\"]"}
    ]));
    assert_eq!(m, [MemberOp::RemoveAll, MemberOp::Add(vec![MemberRef::new("a")]), MemberOp::Remove(vec!["a".into()])]);
}

#[test]
fn replace_members_with_null_removes_all_and_add_null_does_nothing() {
    let (_, m) = g(json!([{"op": "replace", "path": "members", "value": null}]));
    assert_eq!(m, [MemberOp::RemoveAll]);
    let (_, m) = g(json!([{"op": "add", "path": "members", "value": null}]));
    assert!(m.is_empty());
}

#[test]
fn removing_a_group_display_name_is_invalid_value() {
    let d = fails(Group, group(), json!([{"op": "remove", "path": "displayName"}]), ScimType::InvalidValue);
    assert!(d.contains("displayName is required"), "{d}");
}

#[test]
fn group_external_id_can_be_replaced() {
    let (r, _) = g(json!([{"op": "replace", "path": "externalId", "value": "new"}]));
    assert_eq!(r["externalId"], "new");
}

#[test]
fn member_op_len_counts_references() {
    assert_eq!(MemberOp::Add(vec![MemberRef::new("a"), MemberRef::new("b")]).len(), 2);
    assert!(MemberOp::RemoveAll.is_empty());
}
