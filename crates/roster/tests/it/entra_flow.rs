//! The user lifecycle exactly as Entra drives it: Test Connection, match-then-create, the two PATCH
//! dialects, deprovision/reprovision, and hard delete. Bodies are verbatim from entra-behavior.md.

use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::harness::scim::{id_of, work_email};
use crate::harness::{ENTERPRISE, ROSTER_EXT, Server, USER_SCHEMA, enc, uid, version_number, without_license};

static SERVER: OnceLock<Server> = OnceLock::new();

fn server() -> &'static Server {
    SERVER.get_or_init(Server::start)
}

/// Microsoft's "Create User" example body ([S1]), verbatim.
const MS_CREATE_USER: &str = r#"{
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
}"#;

/// Microsoft's "Example 2" body with nulls and the typo'd enterprise URN ([S1]), verbatim.
const MS_CREATE_USER_EXAMPLE_2: &str = r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0User"],
 "externalId":"jyoung","userName":"jyoung@testuser.com","active":true,"addresses":null,"displayName":"Joy Young",
 "emails":[{"type":"work","value":"jyoung@Contoso.com","primary":true}],"meta":{"resourceType":"User"},
 "name":{"familyName":"Young","givenName":"Joy"},"phoneNumbers":null,"preferredLanguage":null,"title":null,
 "department":null,"manager":null}"#;

/// Our attribute mapping's POST body (reconstructed in entra-behavior.md §1.3), verbatim.
const MAPPING_CREATE_USER: &str = r#"{
  "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
              "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
  "externalId": "jdoe",
  "userName": "jdoe@contoso.com",
  "active": true,
  "emails": [{"primary": true, "type": "work", "value": "jdoe@contoso.com"}],
  "meta": {"resourceType": "User"},
  "name": {"familyName": "Doe", "givenName": "Jane"}
}"#;

/// Legacy-dialect PATCH of our mapping: UPN and surname changed.
const MAPPING_PATCH_LEGACY: &str = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
  {"op":"Replace","path":"userName","value":"jane.doe@contoso.com"},
  {"op":"Replace","path":"emails[type eq \"work\"].value","value":"jane.doe@contoso.com"},
  {"op":"Replace","path":"name.familyName","value":"Doe-Smith"}]}"#;

/// Flagged-dialect PATCH of our mapping.
const MAPPING_PATCH_FLAGGED: &str = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
  {"op":"replace","path":"emails[type eq \"work\"].value","value":"jane.doe@contoso.com"},
  {"op":"replace","value":{"userName":"jane.doe@contoso.com","name.familyName":"Doe-Smith"}}]}"#;

/// [S2] legacy "replace multiple attributes": one op per attribute, including a URN path.
const MS_PATCH_LEGACY_MULTI: &str = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
 "Operations":[
   {"op":"Replace","path":"displayName","value":"Pvlo"},
   {"op":"Replace","path":"emails[type eq \"work\"].value","value":"TestBcwqnm@test.microsoft.com"},
   {"op":"Replace","path":"name.givenName","value":"Gtfd"},
   {"op":"Replace","path":"name.familyName","value":"Pkqf"},
   {"op":"Replace","path":"externalId","value":"Eqpj"},
   {"op":"Replace","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber","value":"Eqpj"}]}"#;

/// [S2] flagged: path-less replace with dotted and URN-prefixed keys.
const MS_PATCH_FLAGGED_MULTI: &str = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
 "Operations":[
   {"op":"replace","path":"emails[type eq \"work\"].value","value":"TestMhvaes@test.microsoft.com"},
   {"op":"replace","value":{
       "displayName":"Bjfe",
       "name.givenName":"Kkom",
       "name.familyName":"Unua",
       "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber":"Aklq"}}]}"#;

/// Asserts the shape every created/returned user must have.
#[track_caller]
fn assert_user_resource(u: &Value) {
    assert!(u["id"].as_str().is_some_and(|s| !s.is_empty()), "user without id: {u}");
    let schemas = u["schemas"].as_array().cloned().unwrap_or_default();
    assert!(schemas.iter().any(|s| s == USER_SCHEMA), "user schemas lack core User: {u}");
    assert_eq!(u["meta"]["resourceType"], "User", "meta.resourceType: {u}");
    for k in ["created", "lastModified", "location"] {
        assert!(u["meta"][k].as_str().is_some_and(|s| !s.is_empty()), "meta.{k} missing: {u}");
    }
    let _ = version_number(&u["meta"]["version"]);
    let loc = u["meta"]["location"].as_str().unwrap_or_default();
    assert!(loc.ends_with(&format!("/Users/{}", id_of(u))), "meta.location {loc} must end with /Users/<id>: {u}");
    assert!(u.get("password").is_none(), "password must never be returned: {u}");
}

#[test]
fn test_connection_probe_with_random_guid_returns_empty_list_responses() {
    let scim = server().tenant();
    let guid = uuid::Uuid::new_v4();
    // Exactly as captured: spaces as `+`, quotes as `%22`.
    let r = scim.get(&format!("/Users?filter=userName+eq+%22{guid}%22"));
    let resources = r.list();
    assert!(resources.is_empty(), "probe must find nothing:\n{}", r.describe());
    let b = r.json();
    assert_eq!(b["totalResults"], 0, "{}", r.describe());
    assert_eq!(b["startIndex"], 1, "{}", r.describe());

    let r = scim.get(&format!("/Groups?excludedAttributes=members&filter=displayName+eq+%22{guid}%22"));
    assert!(r.list().is_empty(), "group probe must find nothing:\n{}", r.describe());
    assert_eq!(r.json()["totalResults"], 0, "{}", r.describe());
}

#[test]
fn match_query_then_post_microsoft_example_body_creates_user() {
    let scim = server().tenant();
    let user_name = "Test_User_00aa00aa-bb11-cc22-dd33-44ee44ee44ee";
    assert!(scim.filter_users(&format!("userName eq \"{user_name}\"")).is_empty());

    let r = scim.raw("POST", "/Users", MS_CREATE_USER);
    let u = r.scim(201);
    assert_user_resource(&u);
    assert_eq!(u["userName"], user_name);
    assert_eq!(u["externalId"], "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef");
    assert_eq!(u["active"], true);
    assert_eq!(u["name"]["givenName"], "givenName");
    assert_eq!(u["name"]["familyName"], "familyName");
    assert_eq!(
        work_email(&u).as_deref(),
        Some("Test_User_11bb11bb-cc22-dd33-ee44-55ff55ff55ff@testuser.com"),
        "work email: {u}"
    );
    let primary =
        u["emails"].as_array().and_then(|a| a.iter().find(|e| e["type"] == "work")).map(|e| e["primary"].clone());
    assert_eq!(primary, Some(json!(true)), "work email primary must be boolean true: {u}");

    let location = r.header("location").unwrap_or_else(|| panic!("201 without Location header:\n{}", r.describe()));
    assert_eq!(location, u["meta"]["location"].as_str().unwrap_or_default(), "Location header vs meta.location");
    assert_eq!(r.header("etag"), u["meta"]["version"].as_str(), "ETag header vs meta.version:\n{}", r.describe());

    let id = id_of(&u);
    let got = scim.get_user(&id);
    assert_eq!(without_license(&got), without_license(&u), "GET by id must return what POST returned");

    let found = scim.filter_users(&format!("userName eq \"{user_name}\""));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["id"], id.as_str());
}

#[test]
fn match_query_then_post_our_mapping_body_creates_user() {
    let scim = server().tenant();
    assert!(scim.get("/Users?filter=userName+eq+%22jdoe%40contoso.com%22").list().is_empty());
    let r = scim.raw("POST", "/Users", MAPPING_CREATE_USER);
    let u = r.scim(201);
    assert_user_resource(&u);
    assert_eq!(u["userName"], "jdoe@contoso.com");
    assert_eq!(u["externalId"], "jdoe");
    assert_eq!(u["active"], true);
    assert_eq!(u["name"]["givenName"], "Jane");
    assert_eq!(u["name"]["familyName"], "Doe");
    assert_eq!(work_email(&u).as_deref(), Some("jdoe@contoso.com"));

    let found = scim.get("/Users?filter=userName+eq+%22jdoe%40contoso.com%22").list();
    assert_eq!(found.len(), 1);
    assert_eq!(without_license(&found[0]), without_license(&scim.get_user(&id_of(&u))), "list item vs GET by id");
}

#[test]
fn post_with_string_true_active_returns_boolean_true() {
    let scim = server().tenant();
    for (i, active) in ["True", "true"].iter().enumerate() {
        let body = format!(
            r#"{{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"strbool{i}@contoso.com","active":"{active}",
               "emails":[{{"primary":true,"type":"work","value":"strbool{i}@contoso.com"}}],"meta":{{"resourceType":"User"}}}}"#
        );
        let u = scim.raw("POST", "/Users", &body).scim(201);
        assert_eq!(u["active"], json!(true), "\"active\":\"{active}\" must become boolean true: {u}");
        assert_eq!(scim.get_user(&id_of(&u))["active"], json!(true));
    }
}

#[test]
fn post_example_2_with_nulls_and_typoed_urn_is_accepted_and_unquoted_external_id_filter_finds_it() {
    let scim = server().tenant();
    let u = scim.raw("POST", "/Users", MS_CREATE_USER_EXAMPLE_2).scim(201);
    assert_user_resource(&u);
    assert_eq!(u["userName"], "jyoung@testuser.com");
    assert_eq!(u["externalId"], "jyoung");
    assert_eq!(u["displayName"], "Joy Young");
    assert_eq!(u["name"]["givenName"], "Joy");
    assert_eq!(work_email(&u).as_deref(), Some("jyoung@Contoso.com"));
    for k in ["addresses", "phoneNumbers"] {
        assert!(
            matches!(u.get(k), None | Some(Value::Null)) || u[k] == json!([]),
            "`{k}: null` must not produce values: {u}"
        );
    }
    let id = id_of(&u);

    // The doc example, unquoted: `GET /Users?filter=externalId eq jyoung`.
    let found = scim.get("/Users?filter=externalId+eq+jyoung").list();
    assert_eq!(found.len(), 1, "unquoted externalId filter: {found:?}");
    assert_eq!(found[0]["id"], id.as_str());
    // The quoted, captured form ([S22]).
    let found = scim.get("/Users?filter=externalId+eq+%22jyoung%22").list();
    assert_eq!(ids_of(&found), vec![id.clone()]);
    // And with %20 instead of + for spaces.
    let found = scim.get("/Users?filter=externalId%20eq%20%22jyoung%22").list();
    assert_eq!(ids_of(&found), vec![id]);
}

fn ids_of(v: &[Value]) -> Vec<String> {
    v.iter().map(id_of).collect()
}

#[test]
fn get_by_id_returns_user_and_unknown_id_is_404_scim_error() {
    let scim = server().tenant();
    let u = scim.create_mapped_user("getbyid@contoso.com", "Get", "ById");
    let id = id_of(&u);
    let r = scim.get(&format!("/Users/{id}"));
    let got = r.scim(200);
    assert_user_resource(&got);
    assert_eq!(got["userName"], "getbyid@contoso.com");
    assert_eq!(r.header("etag"), got["meta"]["version"].as_str(), "ETag header:\n{}", r.describe());

    scim.get(&format!("/Users/{}", uuid::Uuid::new_v4())).scim_error(404, None);
    scim.get("/Users/5171a35d82074e068ce2").scim_error(404, None);
}

#[test]
fn filter_by_user_name_is_case_insensitive() {
    let scim = server().tenant();
    let u = scim.create_mapped_user("Case.Person@Contoso.com", "Case", "Person");
    for probe in ["case.person@contoso.com", "CASE.PERSON@CONTOSO.COM", "Case.Person@Contoso.com"] {
        let found = scim.get(&format!("/Users?filter=userName+eq+%22{}%22", enc(probe))).list();
        assert_eq!(ids_of(&found), vec![id_of(&u)], "probe {probe}");
    }
    // The stored value keeps its case.
    assert_eq!(scim.get_user(&id_of(&u))["userName"], "Case.Person@Contoso.com");
}

#[test]
fn legacy_patch_replaces_user_name_work_email_and_family_name_keeping_given_name() {
    let scim = server().tenant();
    let u = scim.raw("POST", "/Users", MAPPING_CREATE_USER).scim(201);
    let id = id_of(&u);
    let v0 = version_number(&u["meta"]["version"]);

    let r = scim.raw("PATCH", &format!("/Users/{id}"), MAPPING_PATCH_LEGACY);
    let p = r.scim(200);
    assert_eq!(p["id"], id.as_str());
    assert_eq!(p["userName"], "jane.doe@contoso.com", "PATCH response must show the change");
    assert!(version_number(&p["meta"]["version"]) > v0, "version must increase: {p}");
    assert_eq!(r.header("etag"), p["meta"]["version"].as_str(), "ETag on PATCH:\n{}", r.describe());

    let g = scim.get_user(&id);
    assert_eq!(g["userName"], "jane.doe@contoso.com");
    assert_eq!(work_email(&g).as_deref(), Some("jane.doe@contoso.com"));
    assert_eq!(g["emails"].as_array().map(Vec::len), Some(1), "the work email is replaced, not duplicated: {g}");
    assert_eq!(g["name"]["familyName"], "Doe-Smith");
    assert_eq!(g["name"]["givenName"], "Jane", "givenName must be kept: {g}");
    assert_eq!(g["externalId"], "jdoe");
    assert_eq!(g["active"], true);
    assert_eq!(without_license(&g), without_license(&p), "PATCH response vs GET");

    assert!(scim.filter_users("userName eq \"jdoe@contoso.com\"").is_empty(), "old userName must no longer match");
    assert_eq!(ids_of(&scim.filter_users("userName eq \"jane.doe@contoso.com\"")), vec![id]);
}

#[test]
fn legacy_patch_with_one_op_per_attribute_including_enterprise_urn_path() {
    let scim = server().tenant();
    let u = scim.create_mapped_user("multi.legacy@contoso.com", "Multi", "Legacy");
    let id = id_of(&u);
    scim.raw("PATCH", &format!("/Users/{id}"), MS_PATCH_LEGACY_MULTI).scim(200);
    let g = scim.get_user(&id);
    assert_eq!(g["displayName"], "Pvlo");
    assert_eq!(work_email(&g).as_deref(), Some("TestBcwqnm@test.microsoft.com"));
    assert_eq!(g["name"]["givenName"], "Gtfd");
    assert_eq!(g["name"]["familyName"], "Pkqf");
    assert_eq!(g["externalId"], "Eqpj");
    assert_eq!(g[ENTERPRISE]["employeeNumber"], "Eqpj", "enterprise extension: {g}");
    assert_eq!(g["userName"], "multi.legacy@contoso.com", "untouched attributes stay");
}

#[test]
fn flagged_patch_pathless_replace_with_dotted_and_urn_keys() {
    let scim = server().tenant();
    let u = scim.create_mapped_user("flagged@contoso.com", "Flag", "Ged");
    let id = id_of(&u);
    let p = scim.raw("PATCH", &format!("/Users/{id}"), MS_PATCH_FLAGGED_MULTI).scim(200);
    let g = scim.get_user(&id);
    assert_eq!(without_license(&g), without_license(&p), "PATCH response vs GET");
    assert_eq!(g["displayName"], "Bjfe");
    assert_eq!(g["name"]["givenName"], "Kkom");
    assert_eq!(g["name"]["familyName"], "Unua");
    assert_eq!(g[ENTERPRISE]["employeeNumber"], "Aklq", "URN-prefixed key goes into the extension: {g}");
    assert_eq!(work_email(&g).as_deref(), Some("TestMhvaes@test.microsoft.com"));
    let obj = g.as_object().cloned().unwrap_or_default();
    for k in obj.keys() {
        assert!(!k.starts_with("name."), "dotted key stored literally: {k} in {g}");
        assert!(!k.ends_with(":employeeNumber"), "URN key stored literally: {k} in {g}");
    }
    let schemas = g["schemas"].as_array().cloned().unwrap_or_default();
    assert!(
        schemas.iter().any(|s| s == ENTERPRISE),
        "schemas must list the enterprise extension once it has values: {g}"
    );

    // Our mapping's flagged body: userName changes, givenName survives a familyName replace.
    let u = scim.raw("POST", "/Users", MAPPING_CREATE_USER).scim(201);
    let id = id_of(&u);
    scim.raw("PATCH", &format!("/Users/{id}"), MAPPING_PATCH_FLAGGED).scim(200);
    let g = scim.get_user(&id);
    assert_eq!(g["userName"], "jane.doe@contoso.com");
    assert_eq!(work_email(&g).as_deref(), Some("jane.doe@contoso.com"));
    assert_eq!(g["name"]["familyName"], "Doe-Smith");
    assert_eq!(g["name"]["givenName"], "Jane", "replacing name.familyName must not wipe name.givenName: {g}");

    // [S2b]: filtered `.primary` and a path-less op holding a JSON boolean.
    let body = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
 "Operations":[
   {"op":"replace","path":"emails[type eq \"work\"].value","value":"someone@contoso.com"},
   {"op":"replace","path":"emails[type eq \"work\"].primary","value":true},
   {"op":"replace","value":{"active":false,"userName":"someone"}}]}"#;
    scim.raw("PATCH", &format!("/Users/{id}"), body).scim(200);
    let g = scim.get_user(&id);
    assert_eq!(g["userName"], "someone");
    assert_eq!(g["active"], false);
    assert_eq!(work_email(&g).as_deref(), Some("someone@contoso.com"));
}

#[test]
fn add_on_work_email_value_creates_the_work_email_when_absent() {
    let scim = server().tenant();
    let mk = |n: &str| {
        let u = scim.create_user(&json!({
            "schemas": [USER_SCHEMA], "userName": n, "active": true,
            "name": {"givenName": "No", "familyName": "Email"}
        }));
        assert!(work_email(&u).is_none(), "created without emails: {u}");
        id_of(&u)
    };
    // `Add` against an absent multi-valued entry ([S17]).
    let id = mk("noemail1@contoso.com");
    let body = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Add","path":"emails[type eq \"work\"].value","value":"noemail1@contoso.com"}]}"#;
    let p = scim.raw("PATCH", &format!("/Users/{id}"), body).scim(200);
    assert_eq!(work_email(&p).as_deref(), Some("noemail1@contoso.com"), "PATCH response: {p}");
    let g = scim.get_user(&id);
    assert_eq!(work_email(&g).as_deref(), Some("noemail1@contoso.com"), "the work email must be created: {g}");
    assert_eq!(g["name"]["givenName"], "No");

    // A `Replace` whose filter matches nothing must upsert too, not 400 noTarget ([S37]).
    let id = mk("noemail2@contoso.com");
    let body = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"emails[type eq \"work\"].value","value":"noemail2@contoso.com"}]}"#;
    scim.raw("PATCH", &format!("/Users/{id}"), body).scim(200);
    assert_eq!(work_email(&scim.get_user(&id)).as_deref(), Some("noemail2@contoso.com"));
}

#[test]
fn deprovision_and_reprovision_in_every_active_shape_keeps_user_visible() {
    let scim = server().tenant();
    let user_name = format!("leaver-{}@contoso.com", uid());
    let u = scim.create_mapped_user(&user_name, "Lea", "Ver");
    let id = id_of(&u);
    let path = format!("/Users/{id}");
    let filter = format!("userName eq \"{user_name}\"");

    let shapes: &[(&str, bool)] = &[
        // legacy default
        (
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"active","value":"False"}]}"#,
            false,
        ),
        (
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"active","value":"True"}]}"#,
            true,
        ),
        // flagged
        (
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"active","value":false}]}"#,
            false,
        ),
        (
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"active","value":true}]}"#,
            true,
        ),
        // path-less value object ([S2b])
        (
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"active":false}}]}"#,
            false,
        ),
        (
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"active":true}}]}"#,
            true,
        ),
        // tutorial: capital Replace with a JSON boolean
        (
            r#"{"Operations":[{"op":"Replace","path":"active","value":false}],"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"]}"#,
            false,
        ),
        (
            r#"{"Operations":[{"op":"Replace","path":"active","value":true}],"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"]}"#,
            true,
        ),
        // seen in the wild: lower-case string ([S28]) and `Add` ([S38])
        (
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"active","value":"false"}]}"#,
            false,
        ),
        (
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Add","path":"active","value":"True"}]}"#,
            true,
        ),
        (
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Add","path":"active","value":"False"}]}"#,
            false,
        ),
    ];
    let mut last_version = version_number(&u["meta"]["version"]);
    for (body, expected) in shapes {
        let p = scim.raw("PATCH", &path, body).scim(200);
        assert_eq!(p["active"], json!(*expected), "PATCH response after {body}");
        let g = scim.get_user(&id);
        assert_eq!(g["active"], json!(*expected), "GET after {body}");
        let found = scim.filter_users(&filter);
        assert_eq!(found.len(), 1, "an inactive user must still match the filter (after {body})");
        assert_eq!(found[0]["active"], json!(*expected), "filter result after {body}");
        let v = version_number(&g["meta"]["version"]);
        assert!(v > last_version, "version must increase on every change ({last_version} -> {v})");
        last_version = v;
    }
    // Ends deactivated: re-enable with the legacy string.
    let body = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"active","value":"True"}]}"#;
    scim.raw("PATCH", &path, body).scim(200);
    let g = scim.get_user(&id);
    assert_eq!(g["active"], true);
    assert_eq!(g["name"]["givenName"], "Lea", "other attributes unaffected: {g}");
    assert_eq!(work_email(&g).as_deref(), Some(user_name.as_str()));
}

#[test]
fn delete_user_then_get_is_404_filter_is_empty_and_second_delete_is_404() {
    let scim = server().tenant();
    let user_name = format!("gone-{}@contoso.com", uid());
    let id = id_of(&scim.create_mapped_user(&user_name, "Gone", "Soon"));
    let path = format!("/Users/{id}");
    scim.delete(&path).expect_empty(204);
    let e = scim.get(&path).scim_error(404, None);
    assert!(e["detail"].as_str().is_some_and(|d| !d.is_empty()), "404 should carry a detail: {e}");
    let found = scim.filter_users(&format!("userName eq \"{user_name}\""));
    assert!(found.is_empty(), "deleted user must not match: {found:?}");
    scim.delete(&path).scim_error(404, None);
    scim.raw("PATCH", &path, r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"active","value":"False"}]}"#)
        .scim_error(404, None);
    // The userName is free again.
    let again = scim.create_mapped_user(&user_name, "Gone", "Back");
    assert_ne!(id_of(&again), id, "a new id for a new user");
}

#[test]
fn users_response_never_carries_the_license_extension_unlicensed() {
    // Without a license policy nobody is licensed; the read-only extension must not carry values.
    let scim = server().tenant();
    let u = scim.create_mapped_user("nolicense@contoso.com", "No", "License");
    let lt = &u[ROSTER_EXT]["licenseType"];
    assert!(lt.is_null(), "no policy, so no licenseType: {u}");
}
