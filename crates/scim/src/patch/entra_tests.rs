//! The PATCH bodies Entra sends, verbatim from `docs/entra-behavior.md` (§1.5, §1.6, §1.8).

use serde_json::{Value, json};

use super::apply_tests::{ENT, group, object, user};
use super::*;
use crate::schema::ResourceKind::{self, Group, User};

fn patch(kind: ResourceKind, stored: Value, body: &str) -> (Value, Vec<MemberOp>) {
    let body: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => panic!("test body is not JSON: {e}"),
    };
    let req = match PatchRequest::parse(&body, &PatchLimits::default()) {
        Ok(r) => r,
        Err(e) => panic!("Entra body should parse: {e}"),
    };
    let mut map = object(stored);
    match apply(kind, &mut map, &req) {
        Ok(m) => (Value::Object(map), m),
        Err(e) => panic!("Entra body should apply: {e}"),
    }
}

// ---- §1.5 user updates, legacy dialect ----

#[test]
fn legacy_replace_work_email_and_family_name() {
    let (r, _) = patch(
        User,
        user(),
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
 "Operations":[
   {"op":"Replace","path":"emails[type eq \"work\"].value","value":"updatedEmail@microsoft.com"},
   {"op":"Replace","path":"name.familyName","value":"updatedFamilyName"}]}"#,
    );
    assert_eq!(r["emails"], json!([{"value": "updatedEmail@microsoft.com", "type": "work", "primary": true}]));
    assert_eq!(r["name"], json!({"givenName": "Jane", "familyName": "updatedFamilyName"}));
}

#[test]
fn legacy_replace_user_name() {
    let (r, _) = patch(
        User,
        user(),
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
 "Operations":[{"op":"Replace","path":"userName","value":"5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com"}]}"#,
    );
    assert_eq!(r["userName"], "5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com");
}

#[test]
fn legacy_one_operation_per_changed_attribute() {
    let (r, _) = patch(
        User,
        user(),
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
 "Operations":[
   {"op":"Replace","path":"displayName","value":"Pvlo"},
   {"op":"Replace","path":"emails[type eq \"work\"].value","value":"TestBcwqnm@test.microsoft.com"},
   {"op":"Replace","path":"name.givenName","value":"Gtfd"},
   {"op":"Replace","path":"name.familyName","value":"Pkqf"},
   {"op":"Replace","path":"externalId","value":"Eqpj"},
   {"op":"Replace","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber","value":"Eqpj"}]}"#,
    );
    assert_eq!(
        r,
        json!({
            "userName": "jdoe@contoso.com",
            "externalId": "Eqpj",
            "active": true,
            "displayName": "Pvlo",
            "name": {"givenName": "Gtfd", "familyName": "Pkqf"},
            "emails": [{"value": "TestBcwqnm@test.microsoft.com", "type": "work", "primary": true}],
            ENT: {"employeeNumber": "Eqpj"}
        })
    );
}

#[test]
fn legacy_add_nick_name() {
    let (r, _) = patch(
        User,
        user(),
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Add","path":"nickName","value":"Babs"}]}"#,
    );
    assert_eq!(r["nickName"], "Babs");
}

#[test]
fn add_manager_as_plain_string_id() {
    let (r, _) = patch(
        User,
        user(),
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Add","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager","value":"45619541-95de-4d5e-9872-571b5d2c5577"}]}"#,
    );
    assert_eq!(r[ENT]["manager"], json!({"value": "45619541-95de-4d5e-9872-571b5d2c5577"}));
}

#[test]
fn add_employee_number_with_urn_path() {
    let (r, _) = patch(
        User,
        user(),
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Add","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber","value":"6546579"}]}"#,
    );
    assert_eq!(r[ENT]["employeeNumber"], "6546579");
}

#[test]
fn tutorial_manager_array_without_urn() {
    let (r, _) = patch(
        User,
        user(),
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Add","path":"manager","value":[{"$ref":"http://example.com/scim/Users/00aa00aa-bb11-cc22-dd33-44ee44ee44ee","value":"00aa00aa-bb11-cc22-dd33-44ee44ee44ee"}]}]}"#,
    );
    assert_eq!(
        r[ENT]["manager"],
        json!({"$ref": "http://example.com/scim/Users/00aa00aa-bb11-cc22-dd33-44ee44ee44ee", "value": "00aa00aa-bb11-cc22-dd33-44ee44ee44ee"})
    );
}

#[test]
fn add_work_email_value_creates_the_entry_when_absent() {
    let mut stored = object(user());
    stored.remove("emails");
    let (r, _) = patch(
        User,
        Value::Object(stored),
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Add","path":"emails[type eq \"work\"].value","value":"jdoe@contoso.com"}]}"#,
    );
    assert_eq!(r["emails"], json!([{"type": "work", "value": "jdoe@contoso.com"}]));
}

// ---- §1.5 flagged dialect (aadOptscim062020) ----

#[test]
fn flagged_pathless_replace_with_dotted_and_urn_keys() {
    let (r, _) = patch(
        User,
        user(),
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
 "Operations":[
   {"op":"replace","path":"emails[type eq \"work\"].value","value":"TestMhvaes@test.microsoft.com"},
   {"op":"replace","value":{
       "displayName":"Bjfe",
       "name.givenName":"Kkom",
       "name.familyName":"Unua",
       "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber":"Aklq"}}]}"#,
    );
    assert_eq!(r["emails"][0]["value"], "TestMhvaes@test.microsoft.com");
    assert_eq!(r["displayName"], "Bjfe");
    assert_eq!(r["name"], json!({"givenName": "Kkom", "familyName": "Unua"}));
    assert_eq!(r[ENT], json!({"employeeNumber": "Aklq"}));
    assert!(r.get("name.givenName").is_none(), "dotted keys are never stored literally");
}

#[test]
fn flagged_add_nick_name() {
    let (r, _) = patch(
        User,
        user(),
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","path":"nickName","value":"Babs"}]}"#,
    );
    assert_eq!(r["nickName"], "Babs");
}

#[test]
fn flagged_2020_primary_through_filter_and_pathless_boolean() {
    let (r, _) = patch(
        User,
        user(),
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
 "Operations":[
   {"op":"replace","path":"emails[type eq \"work\"].value","value":"someone@contoso.com"},
   {"op":"replace","path":"emails[type eq \"work\"].primary","value":true},
   {"op":"replace","value":{"active":false,"userName":"someone"}}]}"#,
    );
    assert_eq!(r["emails"], json!([{"value": "someone@contoso.com", "type": "work", "primary": true}]));
    assert_eq!(r["active"], false);
    assert_eq!(r["userName"], "someone");
}

#[test]
fn flagged_add_department() {
    let (r, _) = patch(
        User,
        user(),
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department","value":"Tech Infrastructure"}]}"#,
    );
    assert_eq!(r[ENT]["department"], "Tech Infrastructure");
}

#[test]
fn pathless_add_with_dotted_keys_from_the_wild() {
    let (r, _) = patch(
        User,
        user(),
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","value":{"displayName":"Foo Bar","title":"Bar Foo","name.givenName":"Foo","name.familyName":"Bar","name.formatted":"Foo Bar"}}]}"#,
    );
    assert_eq!(r["displayName"], "Foo Bar");
    assert_eq!(r["title"], "Bar Foo");
    assert_eq!(r["name"], json!({"givenName": "Foo", "familyName": "Bar", "formatted": "Foo Bar"}));
}

#[test]
fn our_mapping_legacy_and_flagged_bodies_agree() {
    let legacy = patch(
        User,
        user(),
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
  {"op":"Replace","path":"userName","value":"jane.doe@contoso.com"},
  {"op":"Replace","path":"emails[type eq \"work\"].value","value":"jane.doe@contoso.com"},
  {"op":"Replace","path":"name.familyName","value":"Doe-Smith"}]}"#,
    )
    .0;
    let flagged = patch(
        User,
        user(),
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
  {"op":"replace","path":"emails[type eq \"work\"].value","value":"jane.doe@contoso.com"},
  {"op":"replace","value":{"userName":"jane.doe@contoso.com","name.familyName":"Doe-Smith"}}]}"#,
    )
    .0;
    assert_eq!(legacy, flagged);
    assert_eq!(legacy["userName"], "jane.doe@contoso.com");
    assert_eq!(legacy["name"]["familyName"], "Doe-Smith");
}

// ---- §1.6 disable / re-enable ----

#[test]
fn disable_with_boolean_false() {
    let (r, _) = patch(
        User,
        user(),
        r#"{"Operations":[{"op":"Replace","path":"active","value":false}],"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"]}"#,
    );
    assert_eq!(r["active"], false);
}

#[test]
fn disable_with_legacy_string_false() {
    let (r, _) = patch(
        User,
        user(),
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"active","value":"False"}]}"#,
    );
    assert_eq!(r["active"], false);
}

#[test]
fn disable_variants_seen_in_the_wild() {
    for body in [
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"active","value":false}]}"#,
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"active","value":"false"}]}"#,
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Add","path":"active","value":"False"}]}"#,
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"active":false}}]}"#,
    ] {
        assert_eq!(patch(User, user(), body).0["active"], false, "{body}");
    }
}

#[test]
fn re_enable_with_string_true() {
    let mut stored = object(user());
    stored.insert("active".into(), json!(false));
    let (r, _) = patch(
        User,
        Value::Object(stored),
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"active","value":"True"}]}"#,
    );
    assert_eq!(r["active"], true);
}

// ---- §1.8 groups ----

#[test]
fn rename_group() {
    let (r, m) = patch(
        Group,
        group(),
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
 "Operations":[{"op":"Replace","path":"displayName","value":"1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName"}]}"#,
    );
    assert_eq!(r["displayName"], "1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName");
    assert!(m.is_empty());
}

#[test]
fn flagged_pathless_group_rename() {
    let (r, _) = patch(
        Group,
        group(),
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"displayName":"Renamed"}}]}"#,
    );
    assert_eq!(r["displayName"], "Renamed");
}

#[test]
fn add_member_with_null_ref() {
    let (r, m) = patch(
        Group,
        group(),
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
 "Operations":[{"op":"Add","path":"members","value":[{"$ref":null,"value":"f648f8d5ea4e4cd38e9c"}]}]}"#,
    );
    assert_eq!(r, group());
    assert_eq!(m, [MemberOp::Add(vec![MemberRef::new("f648f8d5ea4e4cd38e9c")])]);
}

#[test]
fn captured_add_member() {
    let (_, m) = patch(
        Group,
        group(),
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Add","path":"members","value":[{"$ref":null,"value":"636823803314257913"}]}]}"#,
    );
    assert_eq!(m, [MemberOp::Add(vec![MemberRef::new("636823803314257913")])]);
}

#[test]
fn flagged_add_member() {
    let (_, m) = patch(
        Group,
        group(),
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","path":"members","value":[{"value":"10263a6910a84ef9a581dd9b8dcc0eae"}]}]}"#,
    );
    assert_eq!(m, [MemberOp::Add(vec![MemberRef::new("10263a6910a84ef9a581dd9b8dcc0eae")])]);
}

#[test]
fn legacy_remove_member_removes_only_the_listed_member() {
    let (_, m) = patch(
        Group,
        group(),
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
 "Operations":[{"op":"Remove","path":"members","value":[{"$ref":null,"value":"f648f8d5ea4e4cd38e9c"}]}]}"#,
    );
    assert_eq!(m, [MemberOp::Remove(vec!["f648f8d5ea4e4cd38e9c".into()])]);
}

#[test]
fn legacy_remove_member_without_ref() {
    let (_, m) = patch(
        Group,
        group(),
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Remove","path":"members","value":[{"value":"u1091"}]}]}"#,
    );
    assert_eq!(m, [MemberOp::Remove(vec!["u1091".into()])]);
}

#[test]
fn flagged_remove_member_by_filter() {
    let (_, m) = patch(
        Group,
        group(),
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
 "Operations":[{"op":"remove","path":"members[value eq \"7f4bc1a3-285e-48ae-8202-5accb43efb0e\"]"}]}"#,
    );
    assert_eq!(m, [MemberOp::Remove(vec!["7f4bc1a3-285e-48ae-8202-5accb43efb0e".into()])]);
}

#[test]
fn several_hundred_members_in_one_operation() {
    let members: Vec<Value> = (0..500).map(|i| json!({"$ref": null, "value": format!("u{i}")})).collect();
    let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "Add", "path": "members", "value": members}]});
    let (_, m) = patch(Group, group(), &body.to_string());
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].len(), 500);
}

#[test]
fn several_member_operations_in_one_request() {
    let (_, m) = patch(
        Group,
        group(),
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
  {"op":"Add","path":"members","value":[{"value":"a"},{"value":"b"}]},
  {"op":"Remove","path":"members","value":[{"value":"c"}]}]}"#,
    );
    assert_eq!(m, [MemberOp::Add(vec![MemberRef::new("a"), MemberRef::new("b")]), MemberOp::Remove(vec!["c".into()])]);
}

#[test]
fn postman_add_member_with_display_name() {
    let (_, m) = patch(
        Group,
        group(),
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","path":"members","value":[{"displayName":"user4","value":"id4"}]}]}"#,
    );
    assert_eq!(m, [MemberOp::Add(vec![MemberRef::new("id4")])]);
}

#[test]
fn postman_add_member_bare_string() {
    let (_, m) = patch(
        Group,
        group(),
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","path":"members","value":"string id 1"}]}"#,
    );
    assert_eq!(m, [MemberOp::Add(vec![MemberRef::new("string id 1")])]);
}
