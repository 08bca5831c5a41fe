//! Specification of POST/PUT normalization, stored-form validation, `schemas` and projection.

use serde_json::{Value, json};

use super::*;
use crate::ScimType;
use crate::schema::ResourceKind::{Group, User};
use crate::schema::{ENTERPRISE_USER_SCHEMA as ENT, GROUP_SCHEMA, USER_SCHEMA};

fn norm(kind: ResourceKind, body: Value) -> Normalized {
    match normalize(kind, &body) {
        Ok(n) => n,
        Err(e) => panic!("should normalize: {e}"),
    }
}

fn stored(kind: ResourceKind, body: Value) -> Value {
    Value::Object(norm(kind, body).attributes)
}

fn rejected(kind: ResourceKind, body: Value, t: ScimType) -> String {
    match normalize(kind, &body) {
        Ok(n) => panic!("should fail, got {n:?}"),
        Err(e) => {
            assert_eq!((e.status, e.scim_type), (400, Some(t)), "{}", e.detail);
            e.detail
        }
    }
}

fn parse_json(s: &str) -> Value {
    match serde_json::from_str(s) {
        Ok(v) => v,
        Err(e) => panic!("test body is not JSON: {e}"),
    }
}

// ---- Entra POST bodies (§1.3, §1.8) ----

#[test]
fn microsoft_create_user_example_normalizes() {
    let body = parse_json(
        r#"{
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
    "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
    "userName": "Test_User_00aa00aa-bb11-cc22-dd33-44ee44ee44ee",
    "active": true,
    "emails": [{"primary": true, "type": "work",
                "value": "Test_User_11bb11bb-cc22-dd33-ee44-55ff55ff55ff@testuser.com"}],
    "meta": {"resourceType": "User"},
    "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
    "roles": []
}"#,
    );
    assert_eq!(
        stored(User, body),
        json!({
            "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
            "userName": "Test_User_00aa00aa-bb11-cc22-dd33-44ee44ee44ee",
            "active": true,
            "emails": [{"primary": true, "type": "work", "value": "Test_User_11bb11bb-cc22-dd33-ee44-55ff55ff55ff@testuser.com"}],
            "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"}
        })
    );
}

#[test]
fn microsoft_example_two_with_nulls_and_typo_urn_normalizes() {
    let body = parse_json(
        r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0User"],
 "externalId":"jyoung","userName":"jyoung@testuser.com","active":true,"addresses":null,"displayName":"Joy Young",
 "emails":[{"type":"work","value":"jyoung@Contoso.com","primary":true}],"meta":{"resourceType":"User"},
 "name":{"familyName":"Young","givenName":"Joy"},"phoneNumbers":null,"preferredLanguage":null,"title":null,
 "department":null,"manager":null}"#,
    );
    assert_eq!(
        stored(User, body),
        json!({
            "externalId": "jyoung",
            "userName": "jyoung@testuser.com",
            "active": true,
            "displayName": "Joy Young",
            "emails": [{"type": "work", "value": "jyoung@Contoso.com", "primary": true}],
            "name": {"familyName": "Young", "givenName": "Joy"}
        })
    );
}

#[test]
fn our_mapping_create_body_normalizes() {
    let body = parse_json(
        r#"{
  "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
              "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
  "externalId": "jdoe",
  "userName": "jdoe@contoso.com",
  "active": true,
  "emails": [{"primary": true, "type": "work", "value": "jdoe@contoso.com"}],
  "meta": {"resourceType": "User"},
  "name": {"familyName": "Doe", "givenName": "Jane"}
}"#,
    );
    let n = norm(User, body);
    assert_eq!(n.attributes.get("userName"), Some(&json!("jdoe@contoso.com")));
    assert_eq!(n.members, None);
    assert_eq!(schemas_for(User, &n.attributes), [USER_SCHEMA]);
}

#[test]
fn string_true_for_active_and_primary_is_coerced() {
    let s =
        stored(User, json!({"userName": "emp1", "active": "True", "emails": [{"value": "a@x", "primary": "true"}]}));
    assert_eq!(s["active"], true);
    assert_eq!(s["emails"][0]["primary"], true);
}

#[test]
fn microsoft_create_group_example_normalizes_and_ignores_extra_schema() {
    let body = parse_json(
        r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group","http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],
 "externalId":"8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159","displayName":"displayName","meta":{"resourceType":"Group"}}"#,
    );
    let n = norm(Group, body);
    assert_eq!(
        Value::Object(n.attributes),
        json!({"externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159", "displayName": "displayName"})
    );
    assert_eq!(n.members, None);
}

#[test]
fn group_with_client_id_and_empty_members_ignores_id_and_reports_empty_members() {
    let n = norm(Group, json!({"id": "client-chosen", "displayName": "G", "members": []}));
    assert!(!n.attributes.contains_key("id"));
    assert_eq!(n.members, Some(vec![]));
}

#[test]
fn group_members_are_extracted_not_stored() {
    let n = norm(
        Group,
        json!({"displayName": "G", "Members": [{"value": "u1", "display": "U"}, "u2", {"value": "g1", "type": "Group"}]}),
    );
    assert!(!n.attributes.contains_key("members") && !n.attributes.contains_key("Members"));
    assert_eq!(
        n.members,
        Some(vec![
            MemberRef::new("u1"),
            MemberRef::new("u2"),
            MemberRef { value: "g1".into(), kind: Some("Group".into()) }
        ])
    );
}

#[test]
fn null_members_is_an_empty_list() {
    assert_eq!(norm(Group, json!({"displayName": "G", "members": null})).members, Some(vec![]));
}

#[test]
fn malformed_members_are_invalid_value() {
    rejected(Group, json!({"displayName": "G", "members": [{"value": 1}]}), ScimType::InvalidValue);
}

// ---- general rules ----

#[test]
fn body_must_be_an_object() {
    rejected(User, json!(["userName"]), ScimType::InvalidSyntax);
    rejected(User, json!(null), ScimType::InvalidSyntax);
}

#[test]
fn user_name_is_required_and_non_empty() {
    for body in [
        json!({}),
        json!({"userName": ""}),
        json!({"userName": "  "}),
        json!({"userName": null}),
        json!({"displayName": "x"}),
    ] {
        let d = rejected(User, body, ScimType::InvalidValue);
        assert!(d.contains("userName is required"), "{d}");
    }
    let d = rejected(User, json!({"userName": 5}), ScimType::InvalidValue);
    assert!(d.contains("userName") && d.contains("string"), "{d}");
}

#[test]
fn group_display_name_is_required() {
    let d = rejected(Group, json!({"externalId": "x"}), ScimType::InvalidValue);
    assert!(d.contains("displayName is required"), "{d}");
}

#[test]
fn attribute_names_are_canonicalized() {
    let s = stored(
        User,
        json!({"USERNAME": "a", "Name": {"GIVENNAME": "J"}, "Emails": [{"VALUE": "a@x", "Type": "work"}]}),
    );
    assert_eq!(s, json!({"userName": "a", "name": {"givenName": "J"}, "emails": [{"value": "a@x", "type": "work"}]}));
}

#[test]
fn unknown_attributes_and_sub_attributes_are_dropped() {
    let s = stored(
        User,
        json!({"userName": "a", "shoeSize": 42, "name": {"givenName": "J", "nick": "x"}, "urn:example:ext:1.0:User": {"a": 1}}),
    );
    assert_eq!(s, json!({"userName": "a", "name": {"givenName": "J"}}));
}

#[test]
fn server_owned_and_read_only_input_is_ignored() {
    let s = stored(
        User,
        json!({
            "id": "abc", "userName": "a", "meta": {"created": "x"}, "schemas": ["x"],
            "groups": [{"value": "g"}],
            "urn:ietf:params:scim:schemas:extension:roster:2.0:User": {"licenseType": "developer"},
            "urn:ietf:params:scim:schemas:extension:roster:2.0:User:licenseType": "developer"
        }),
    );
    assert_eq!(s, json!({"userName": "a"}));
}

#[test]
fn password_is_accepted_and_dropped() {
    assert_eq!(stored(User, json!({"userName": "a", "password": "hunter2"})), json!({"userName": "a"}));
}

#[test]
fn nulls_empty_arrays_and_empty_objects_are_dropped() {
    let s = stored(
        User,
        json!({"userName": "a", "title": null, "roles": [], "name": {}, "emails": [null], ENT: {}, "manager": null}),
    );
    assert_eq!(s, json!({"userName": "a"}));
}

#[test]
fn empty_strings_are_kept() {
    assert_eq!(stored(User, json!({"userName": "a", "title": ""}))["title"], "");
}

#[test]
fn single_object_for_multi_valued_attribute_is_wrapped() {
    assert_eq!(stored(User, json!({"userName": "a", "emails": {"value": "a@x"}}))["emails"], json!([{"value": "a@x"}]));
}

#[test]
fn bare_strings_in_value_bearing_multi_valued_attributes_become_values() {
    assert_eq!(stored(User, json!({"userName": "a", "emails": ["a@x"]}))["emails"], json!([{"value": "a@x"}]));
}

#[test]
fn identical_multi_values_are_collapsed() {
    assert_eq!(
        stored(User, json!({"userName": "a", "emails": [{"value": "a@x"}, {"value": "a@x"}]}))["emails"],
        json!([{"value": "a@x"}])
    );
}

#[test]
fn type_mismatches_are_invalid_value_naming_the_attribute() {
    let d = rejected(User, json!({"userName": "a", "active": "yes"}), ScimType::InvalidValue);
    assert!(d.contains("active"), "{d}");
    let d = rejected(User, json!({"userName": "a", "emails": [{"value": 5}]}), ScimType::InvalidValue);
    assert!(d.contains("emails.value"), "{d}");
    let d = rejected(User, json!({"userName": "a", "name": "Jane"}), ScimType::InvalidValue);
    assert!(d.contains("name"), "{d}");
    rejected(User, json!({"userName": "a", "emails": [true]}), ScimType::InvalidValue);
    rejected(User, json!({"userName": "a", ENT: "x"}), ScimType::InvalidValue);
}

#[test]
fn several_primary_values_are_invalid_value() {
    let d = rejected(
        User,
        json!({"userName": "a", "emails": [{"value": "a@x", "primary": true}, {"value": "b@x", "primary": "True"}]}),
        ScimType::InvalidValue,
    );
    assert!(d.contains("emails") && d.contains("primary"), "{d}");
}

#[test]
fn one_primary_among_others_is_fine() {
    stored(
        User,
        json!({"userName": "a", "emails": [{"value": "a@x", "primary": true}, {"value": "b@x", "primary": false}]}),
    );
}

// ---- extensions ----

#[test]
fn nested_enterprise_extension_is_kept_under_its_urn() {
    let s = stored(
        User,
        json!({"userName": "a", ENT: {"employeeNumber": "42", "Department": "Tech", "manager": {"value": "m", "displayName": "Boss"}}}),
    );
    assert_eq!(s[ENT], json!({"employeeNumber": "42", "department": "Tech", "manager": {"value": "m"}}));
}

#[test]
fn flat_urn_prefixed_keys_are_nested() {
    let s = stored(
        User,
        json!({"userName": "a", format!("{ENT}:employeeNumber"): "42", format!("{ENT}:manager.value"): "m"}),
    );
    assert_eq!(s[ENT], json!({"employeeNumber": "42", "manager": {"value": "m"}}));
}

#[test]
fn unprefixed_extension_keys_are_nested() {
    assert_eq!(stored(User, json!({"userName": "a", "department": "Tech"}))[ENT], json!({"department": "Tech"}));
}

#[test]
fn extension_urn_key_is_case_insensitive() {
    let s = stored(User, json!({"userName": "a", ENT.to_lowercase(): {"division": "EU"}}));
    assert_eq!(s[ENT], json!({"division": "EU"}));
}

#[test]
fn manager_as_plain_string_is_stored_as_a_reference() {
    assert_eq!(
        stored(User, json!({"userName": "a", ENT: {"manager": "m-1"}}))[ENT]["manager"],
        json!({"value": "m-1"})
    );
}

#[test]
fn schemas_for_lists_core_then_present_extensions() {
    let n = norm(User, json!({"userName": "a", ENT: {"division": "EU"}}));
    assert_eq!(schemas_for(User, &n.attributes), [USER_SCHEMA, ENT]);
    let g = norm(Group, json!({"displayName": "G"}));
    assert_eq!(schemas_for(Group, &g.attributes), [GROUP_SCHEMA]);
}

// ---- validate_stored ----

#[test]
fn validate_stored_accepts_a_normalized_resource() {
    let n = norm(User, json!({"userName": "a", "emails": [{"value": "a@x", "primary": true}]}));
    assert!(validate_stored(User, &n.attributes).is_ok());
}

#[test]
fn validate_stored_rejects_missing_required_and_double_primary() {
    let missing = serde_json::Map::from_iter([("title".to_string(), json!("x"))]);
    assert_eq!(validate_stored(User, &missing).err().and_then(|e| e.scim_type), Some(ScimType::InvalidValue));
    let double = match json!({"userName": "a", "emails": [{"value": "a", "primary": true}, {"value": "b", "primary": true}]})
    {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    assert!(validate_stored(User, &double).is_err());
}

#[test]
fn normalization_is_idempotent() {
    let first =
        norm(User, json!({"userName": "a", "Active": "False", "emails": {"value": "a@x"}, "department": "Tech"}));
    let again = norm(User, Value::Object(first.attributes.clone()));
    assert_eq!(first.attributes, again.attributes);
}

// ---- projection ----

fn rendered_user() -> Value {
    json!({
        "schemas": [USER_SCHEMA, ENT],
        "id": "u1",
        "externalId": "jdoe",
        "userName": "jdoe@contoso.com",
        "name": {"givenName": "Jane", "familyName": "Doe"},
        "emails": [{"value": "jdoe@contoso.com", "type": "work", "primary": true}],
        "groups": [{"value": "g1", "display": "Sales"}],
        ENT: {"employeeNumber": "42", "department": "Tech"},
        "meta": {"resourceType": "User", "created": "2026-01-01T00:00:00.000Z"}
    })
}

fn selection(kind: ResourceKind, attributes: Option<&str>, excluded: Option<&str>) -> AttributeSelection {
    match AttributeSelection::parse(kind, attributes, excluded) {
        Ok(s) => s,
        Err(e) => panic!("selection should parse: {e}"),
    }
}

#[test]
fn no_parameters_returns_everything_but_password() {
    let mut r = rendered_user();
    if let Some(o) = r.as_object_mut() {
        o.insert("password".into(), json!("secret"));
    }
    let out = AttributeSelection::all().apply(User, r);
    assert_eq!(out, rendered_user());
}

#[test]
fn attributes_returns_only_the_listed_ones_plus_id_and_schemas() {
    let out = selection(User, Some("userName,emails"), None).apply(User, rendered_user());
    assert_eq!(
        out,
        json!({
            "schemas": [USER_SCHEMA, ENT],
            "id": "u1",
            "userName": "jdoe@contoso.com",
            "emails": [{"value": "jdoe@contoso.com", "type": "work", "primary": true}]
        })
    );
}

#[test]
fn attributes_with_sub_attributes_trim_complex_values() {
    let out = selection(User, Some("name.givenName, emails.value"), None).apply(User, rendered_user());
    assert_eq!(out["name"], json!({"givenName": "Jane"}));
    assert_eq!(out["emails"], json!([{"value": "jdoe@contoso.com"}]));
}

#[test]
fn attributes_with_urn_qualified_extension_attribute() {
    let out = selection(User, Some(&format!("{ENT}:employeeNumber")), None).apply(User, rendered_user());
    assert_eq!(out[ENT], json!({"employeeNumber": "42"}));
    let out = selection(User, Some(ENT), None).apply(User, rendered_user());
    assert_eq!(out[ENT], json!({"employeeNumber": "42", "department": "Tech"}));
}

#[test]
fn attribute_names_in_parameters_are_case_insensitive() {
    let out = selection(User, Some("USERNAME"), None).apply(User, rendered_user());
    assert_eq!(out["userName"], "jdoe@contoso.com");
}

#[test]
fn excluded_attributes_removes_them() {
    let out = selection(User, None, Some("groups,emails,name.familyName")).apply(User, rendered_user());
    assert!(out.get("groups").is_none() && out.get("emails").is_none());
    assert_eq!(out["name"], json!({"givenName": "Jane"}));
    assert_eq!(out["userName"], "jdoe@contoso.com");
}

#[test]
fn id_and_schemas_cannot_be_excluded() {
    let out = selection(User, None, Some("id,schemas")).apply(User, rendered_user());
    assert_eq!(out["id"], "u1");
    assert!(out.get("schemas").is_some());
}

#[test]
fn attributes_wins_over_excluded_attributes() {
    let out = selection(User, Some("userName"), Some("userName")).apply(User, rendered_user());
    assert_eq!(out["userName"], "jdoe@contoso.com");
}

#[test]
fn entra_group_query_excludes_members() {
    let sel = selection(Group, None, Some("members"));
    assert!(!sel.wants(Group, "members"));
    assert!(sel.wants(Group, "displayName"));
    let g = json!({"schemas": [GROUP_SCHEMA], "id": "g", "displayName": "G", "members": [{"value": "u"}]});
    assert_eq!(sel.apply(Group, g), json!({"schemas": [GROUP_SCHEMA], "id": "g", "displayName": "G"}));
}

#[test]
fn wants_reports_whether_an_attribute_is_returned() {
    assert!(AttributeSelection::all().wants(Group, "members"));
    assert!(AttributeSelection::all().wants(User, "groups"));
    assert!(!AttributeSelection::all().wants(User, "password"));
    let only_name = selection(User, Some("userName"), None);
    assert!(!only_name.wants(User, "groups"));
    assert!(only_name.wants(User, "id"));
    assert!(selection(User, Some("groups.display"), None).wants(User, "groups"));
    assert!(selection(User, None, Some("groups.display")).wants(User, "groups"));
    assert!(!AttributeSelection::all().wants(User, "shoeSize"));
}

#[test]
fn unknown_names_are_ignored() {
    let out = selection(User, Some("userName,shoeSize"), None).apply(User, rendered_user());
    assert_eq!(out["userName"], "jdoe@contoso.com");
    assert!(out.get("shoeSize").is_none());
}

#[test]
fn bracket_filters_in_attributes_select_the_attribute() {
    let out = selection(User, Some(r#"emails[type eq "work"]"#), None).apply(User, rendered_user());
    assert!(out.get("emails").is_some());
}

#[test]
fn empty_parameters_mean_no_selection() {
    assert_eq!(selection(User, Some(""), Some(" ")), AttributeSelection::all());
}

#[test]
fn syntactically_invalid_names_are_invalid_value() {
    let e = AttributeSelection::parse(User, Some("user name"), None).err();
    assert_eq!(e.map(|e| e.scim_type), Some(Some(ScimType::InvalidValue)));
}

#[test]
fn normalize_with_seventy_thousand_emails_takes_linear_time() {
    // A 1 MiB body holds about 70,000 short emails; deduplicating them with a quadratic scan
    // kept a worker busy for minutes (found by the hostile-input corpus).
    let emails: Vec<Value> = (0..70_000).map(|i| json!({"value": format!("u{i}@x.io")})).collect();
    let started = std::time::Instant::now();
    let n = norm(User, json!({"userName": "big", "emails": emails}));
    assert_eq!(n.attributes["emails"].as_array().map(Vec::len), Some(70_000));
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "took {:?}", started.elapsed());
}

#[test]
fn normalize_drops_repeated_emails_keeping_the_first() {
    let n = norm(
        User,
        json!({"userName": "a", "emails": [{"value": "x@y", "type": "work"}, {"type": "work", "value": "x@y"}, {"value": "z@y"}]}),
    );
    assert_eq!(n.attributes["emails"], json!([{"value": "x@y", "type": "work"}, {"value": "z@y"}]));
}

#[test]
fn possible_ids_are_non_empty_short_and_free_of_control_characters() {
    assert!(is_possible_id("2819c223-7f76-453a-919d-413861904646"));
    assert!(is_possible_id("..%2F.."), "odd but storable: a plain 404 later");
    assert!(is_possible_id(&"a".repeat(MAX_ID_LEN)));
    for bad in ["", "a\u{0}", "\u{0}", "id\n", "\u{7f}", "\u{85}x"] {
        assert!(!is_possible_id(bad), "{bad:?}");
    }
    assert!(!is_possible_id(&"a".repeat(MAX_ID_LEN + 1)));
}
