//! RFC 7643/7644 protocol behaviour over HTTP: discovery, pagination, sorting, the filter grammar,
//! error responses, PUT, ETags, authentication and content negotiation.

use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::scim::{ENTRA_CT, id_of, patch_op};
use crate::harness::{
    ENTERPRISE, GROUP_SCHEMA, Req, Scim, Server, USER_SCHEMA, enc, ids, member_ids, set, uid, version_number,
    without_license,
};

static SERVER: OnceLock<Server> = OnceLock::new();

fn server() -> &'static Server {
    SERVER.get_or_init(Server::start)
}

#[test]
fn service_provider_config_advertises_patch_filter_sort_and_etag() {
    let scim = server().tenant();
    let b = scim.get("/ServiceProviderConfig").scim(200);
    let schemas = b["schemas"].as_array().cloned().unwrap_or_default();
    assert!(schemas.iter().any(|s| s == "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"), "schemas: {b}");
    assert_eq!(b["patch"]["supported"], true, "{b}");
    assert_eq!(b["filter"]["supported"], true, "{b}");
    assert!(b["filter"]["maxResults"].is_u64(), "filter.maxResults: {b}");
    assert_eq!(b["sort"]["supported"], true, "sortBy is supported: {b}");
    assert_eq!(b["etag"]["supported"], true, "meta.version/ETag are served: {b}");
    assert!(b["bulk"]["supported"].is_boolean(), "bulk.supported: {b}");
    assert!(b["changePassword"]["supported"].is_boolean(), "changePassword.supported: {b}");
    assert!(b["authenticationSchemes"].is_array(), "authenticationSchemes: {b}");
}

#[test]
fn resource_types_list_user_and_group() {
    let scim = server().tenant();
    let rs = scim.get("/ResourceTypes").list();
    let find = |name: &str| {
        rs.iter().find(|r| r["name"] == name).cloned().unwrap_or_else(|| panic!("no ResourceType {name}: {rs:?}"))
    };
    let user = find("User");
    assert_eq!(user["endpoint"], "/Users", "{user}");
    assert_eq!(user["schema"], USER_SCHEMA, "{user}");
    let group = find("Group");
    assert_eq!(group["endpoint"], "/Groups", "{group}");
    assert_eq!(group["schema"], GROUP_SCHEMA, "{group}");
}

#[test]
fn schemas_list_user_group_and_enterprise() {
    let scim = server().tenant();
    let rs = scim.get("/Schemas").list();
    let got: Vec<&str> = rs.iter().filter_map(|r| r["id"].as_str()).collect();
    for id in [USER_SCHEMA, GROUP_SCHEMA, ENTERPRISE] {
        assert!(got.contains(&id), "/Schemas lacks {id}: {got:?}");
    }
    let user = rs.iter().find(|r| r["id"] == USER_SCHEMA).cloned().unwrap_or_default();
    let attrs = user["attributes"].as_array().cloned().unwrap_or_default();
    assert!(attrs.iter().any(|a| a["name"] == "userName"), "User schema must describe userName: {user}");
}

fn seven_users(scim: &Scim) -> Vec<String> {
    // Created out of order so that insertion order is not alphabetical.
    let names = ["p3", "p0", "p6", "p1", "p5", "p2", "p4"];
    for n in names {
        scim.user_id(&format!("{n}@page.test"));
    }
    (0..7).map(|i| format!("p{i}@page.test")).collect()
}

fn user_names(rs: &[Value]) -> Vec<String> {
    rs.iter().map(|r| r["userName"].as_str().unwrap_or_default().to_owned()).collect()
}

#[test]
fn pagination_with_start_index_and_count_over_seven_users() {
    let scim = server().tenant();
    let sorted = seven_users(&scim);
    let mut seen = Vec::new();
    for (start, expect_len) in [(1u64, 3usize), (4, 3), (7, 1), (8, 0)] {
        let r = scim.get(&format!("/Users?startIndex={start}&count=3"));
        let page = r.list();
        let b = r.json();
        assert_eq!(b["totalResults"], 7, "{}", r.describe());
        assert_eq!(b["startIndex"], start, "startIndex must be echoed:\n{}", r.describe());
        assert_eq!(page.len(), expect_len, "page size:\n{}", r.describe());
        assert_eq!(b["itemsPerPage"], expect_len, "itemsPerPage:\n{}", r.describe());
        seen.extend(user_names(&page));
    }
    let mut all = seen.clone();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 7, "pages must not overlap or skip: {seen:?}");
    assert_eq!(all, sorted);

    // Sorted pages are exactly the sorted slices.
    for (start, slice) in [(1usize, &sorted[0..3]), (4, &sorted[3..6]), (7, &sorted[6..7])] {
        let page = scim.get(&format!("/Users?sortBy=userName&startIndex={start}&count=3")).list();
        assert_eq!(user_names(&page), slice.to_vec(), "sorted page at {start}");
    }

    // count=0: only totalResults.
    let r = scim.get("/Users?count=0");
    assert!(r.list().is_empty(), "count=0 returns no resources:\n{}", r.describe());
    assert_eq!(r.json()["totalResults"], 7);

    // Pagination of a filter.
    let r = scim.get(&format!("/Users?filter={}&startIndex=2&count=2&sortBy=userName", enc("userName sw \"p\"")));
    assert_eq!(user_names(&r.list()), sorted[1..3].to_vec());
    assert_eq!(r.json()["totalResults"], 7);
}

#[test]
fn sort_by_user_name_ascending_and_descending() {
    let scim = server().tenant();
    let sorted = seven_users(&scim);
    let asc = scim.get("/Users?sortBy=userName&sortOrder=ascending").list();
    assert_eq!(user_names(&asc), sorted);
    let default_order = scim.get("/Users?sortBy=userName").list();
    assert_eq!(user_names(&default_order), sorted, "sortOrder defaults to ascending");
    let desc = scim.get("/Users?sortBy=userName&sortOrder=descending").list();
    let mut rev = sorted.clone();
    rev.reverse();
    assert_eq!(user_names(&desc), rev);
}

/// Three users that tell the filter operators apart.
struct Trio {
    scim: Scim,
    alice: String,
    bob: String,
    carol: String,
}

fn trio() -> Trio {
    let scim = server().tenant();
    let alice = id_of(&scim.create_user(&json!({
        "schemas": [USER_SCHEMA, ENTERPRISE],
        "userName": "alice@x.com", "externalId": "ext-alice", "displayName": "Alice Anders", "active": true,
        "name": {"givenName": "Alice", "familyName": "Anders"},
        "emails": [{"type": "work", "value": "alice@x.com", "primary": true}],
        ENTERPRISE: {"employeeNumber": "1001", "department": "Eng"}
    })));
    let bob = id_of(&scim.create_user(&json!({
        "schemas": [USER_SCHEMA, ENTERPRISE],
        "userName": "bob@y.org", "title": "Manager", "active": true,
        "name": {"givenName": "Bob", "familyName": "Baker"},
        "emails": [{"type": "work", "value": "bob@y.org", "primary": true}, {"type": "home", "value": "bob@x.com"}],
        ENTERPRISE: {"department": "Sales"}
    })));
    let carol = id_of(&scim.create_user(&json!({
        "schemas": [USER_SCHEMA], "userName": "carol@x.com", "active": true, "name": {"givenName": "Carol"}
    })));
    Trio { scim, alice, bob, carol }
}

#[track_caller]
fn assert_filter(scim: &Scim, filter: &str, expected: &[&String]) {
    let r = scim.get(&format!("/Users?filter={}", enc(filter)));
    let got = ids(&r.list());
    assert_eq!(got, set(expected), "filter {filter}:\n{}", r.describe());
    assert_eq!(r.json()["totalResults"], expected.len(), "totalResults for {filter}");
}

#[test]
fn filter_grammar_over_http() {
    let Trio { scim, alice, bob, carol } = trio();
    let (a, b, c) = (&alice, &bob, &carol);
    let cases: Vec<(&str, Vec<&String>)> = vec![
        (r#"userName eq "alice@x.com" or userName eq "bob@y.org""#, vec![a, b]),
        (r#"not (userName eq "alice@x.com")"#, vec![b, c]),
        (r#"userName ne "alice@x.com""#, vec![b, c]),
        (r#"userName co "ob@""#, vec![b]),
        (r#"userName sw "CAR""#, vec![c]),
        (r#"userName ew "@x.com""#, vec![a, c]),
        (r#"externalId pr"#, vec![a]),
        (r#"title pr"#, vec![b]),
        (r#"emails[type eq "work" and value co "@x"]"#, vec![a]),
        (r#"emails[type eq "home"]"#, vec![b]),
        (r#"emails.value co "@x.com""#, vec![a, b]),
        (r#"emails pr"#, vec![a, b]),
        (r#"name.givenName eq "Bob""#, vec![b]),
        (r#"name.familyName sw "an""#, vec![a]),
        (r#"displayName co "Anders""#, vec![a]),
        (r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "Eng""#, vec![a]),
        (r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber pr"#, vec![a]),
        (r#"userName eq "alice@x.com" and name.givenName eq "Alice""#, vec![a]),
        (r#"userName eq "alice@x.com" and name.givenName eq "Bob""#, vec![]),
        (r#"(userName sw "a" or userName sw "b") and not (name.givenName eq "Bob")"#, vec![a]),
        (r#"userName EQ "ALICE@X.COM""#, vec![a]),
        (r#"active eq true"#, vec![a, b, c]),
        (r#"meta.lastModified gt "2000-01-01T00:00:00Z""#, vec![a, b, c]),
        (r#"meta.lastModified gt "2999-01-01T00:00:00Z""#, vec![]),
        (r#"meta.created lt "2999-01-01T00:00:00Z""#, vec![a, b, c]),
    ];
    for (f, expected) in &cases {
        assert_filter(&scim, f, expected);
    }
    let idf = format!("id eq \"{alice}\"");
    assert_filter(&scim, &idf, &[a]);

    // Deactivate carol, wait, touch alice: then `gt` carol's lastModified finds only alice.
    scim.patch_user_ok(&carol, json!([{"op": "Replace", "path": "active", "value": "False"}]));
    assert_filter(&scim, "active eq false", &[c]);
    let carol_lm = scim.get_user(&carol)["meta"]["lastModified"].as_str().unwrap_or_default().to_owned();
    std::thread::sleep(Duration::from_millis(1100));
    let alice_now = scim.patch_user_ok(&alice, json!([{"op": "Replace", "path": "title", "value": "Lead"}]));
    assert_filter(&scim, &format!("meta.lastModified gt \"{carol_lm}\""), &[a]);
    let alice_lm = alice_now["meta"]["lastModified"].as_str().unwrap_or_default().to_owned();
    assert_filter(&scim, &format!("meta.lastModified ge \"{alice_lm}\""), &[a]);

    // Groups: displayName operators.
    let g1 = id_of(&scim.create_group("Team Red"));
    let g2 = id_of(&scim.create_group("Team Blue"));
    let r = scim.get(&format!("/Groups?filter={}", enc(r#"displayName sw "team" and not (displayName ew "Blue")"#)));
    assert_eq!(ids(&r.list()), set(&[&g1]), "{}", r.describe());
    let r = scim.get(&format!("/Groups?filter={}", enc(r#"displayName co "Team""#)));
    assert_eq!(ids(&r.list()), set(&[&g1, &g2]), "{}", r.describe());
}

#[test]
fn malformed_filters_are_400_invalid_filter_never_404_or_500() {
    let scim = server().tenant();
    scim.user_id("someone@x.com");
    let bad_users = [
        "userName eq",
        "userName eq \"unterminated",
        "(userName eq \"a\"",
        "userName eq \"a\")",
        "userName zz \"a\"",
        "and",
        "userName eq \"a\" and",
        "userName eq \"a\" or or userName eq \"b\"",
        "emails[type eq \"work\"",
        "not userName eq",
        "userName pr \"x\"",
        "\"a\" eq userName",
    ];
    for f in bad_users {
        let r = scim.get(&format!("/Users?filter={}", enc(f)));
        assert!(r.status != 404 && r.status < 500, "filter {f:?} must never 404/5xx:\n{}", r.describe());
        r.scim_error(400, Some("invalidFilter"));
    }
    for f in ["displayName eq", "displayName eq \"x\" or", "displayName eq \"x"] {
        scim.get(&format!("/Groups?excludedAttributes=members&filter={}", enc(f)))
            .scim_error(400, Some("invalidFilter"));
    }
}

#[test]
fn unknown_attribute_in_filter_is_400_invalid_filter() {
    let scim = server().tenant();
    for f in [
        "nosuchattr eq \"x\"",
        "name.nosuch eq \"x\"",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:nosuch eq \"x\"",
        "emails[nosuch eq \"x\"]",
    ] {
        scim.get(&format!("/Users?filter={}", enc(f))).scim_error(400, Some("invalidFilter"));
    }
    scim.get(&format!("/Groups?filter={}", enc("nosuch eq \"x\""))).scim_error(400, Some("invalidFilter"));
}

#[test]
fn invalid_json_body_is_400_invalid_syntax() {
    let scim = server().tenant();
    let id = scim.user_id("json@x.com");
    let gid = id_of(&scim.create_group("json-group"));
    for (m, p) in [
        ("POST", "/Users".to_owned()),
        ("PUT", format!("/Users/{id}")),
        ("PATCH", format!("/Users/{id}")),
        ("POST", "/Groups".to_owned()),
        ("PATCH", format!("/Groups/{gid}")),
    ] {
        scim.raw(m, &p, r#"{"userName": "#).scim_error(400, Some("invalidSyntax"));
        scim.raw(m, &p, "not json at all").scim_error(400, Some("invalidSyntax"));
    }
    // Valid JSON of the wrong shape is still a 400.
    scim.raw("POST", "/Users", "[]").scim_error(400, None);
    scim.raw("POST", "/Users", r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":42}"#)
        .scim_error(400, None);
    assert_eq!(scim.list_all("/Users").len(), 1, "nothing was created");
}

#[test]
fn missing_user_name_or_display_name_is_400() {
    let scim = server().tenant();
    scim.post("/Users", &json!({"schemas": [USER_SCHEMA], "active": true, "name": {"givenName": "No"}}))
        .scim_error(400, None);
    scim.post("/Users", &json!({"schemas": [USER_SCHEMA], "userName": null})).scim_error(400, None);
    scim.post("/Groups", &json!({"schemas": [GROUP_SCHEMA]})).scim_error(400, None);
    assert!(scim.list_all("/Users").is_empty());
    assert!(scim.list_all("/Groups").is_empty());
}

#[test]
fn patch_with_bad_op_or_missing_operations_is_400_and_changes_nothing() {
    let scim = server().tenant();
    let u = scim.create_mapped_user("badop@x.com", "Bad", "Op");
    let id = id_of(&u);
    let path = format!("/Users/{id}");
    let bodies = [
        patch_op(json!([{"op": "Frobnicate", "path": "userName", "value": "x@x.com"}])),
        patch_op(
            json!([{"op": "Replace", "path": "displayName", "value": "ok"}, {"op": "Frobnicate", "path": "userName", "value": "x"}]),
        ),
        patch_op(json!([{"path": "userName", "value": "x@x.com"}])),
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"]}),
        patch_op(json!([{"op": "remove"}])),
    ];
    for b in bodies {
        scim.patch(&path, &b).scim_error(400, None);
    }
    assert_eq!(without_license(&scim.get_user(&id)), without_license(&u), "rejected PATCHes change nothing");
}

#[test]
fn patch_of_read_only_id_or_groups_is_400_mutability() {
    let scim = server().tenant();
    let u = scim.create_mapped_user("ro@x.com", "Read", "Only");
    let id = id_of(&u);
    let gid = id_of(&scim.create_group("ro-group"));
    let path = format!("/Users/{id}");
    scim.patch(&path, &patch_op(json!([{"op": "replace", "path": "id", "value": "hijack"}])))
        .scim_error(400, Some("mutability"));
    scim.patch(&path, &patch_op(json!([{"op": "Replace", "path": "id", "value": "hijack"}])))
        .scim_error(400, Some("mutability"));
    scim.patch(&path, &patch_op(json!([{"op": "add", "path": "groups", "value": [{"value": gid}]}])))
        .scim_error(400, Some("mutability"));
    assert_eq!(without_license(&scim.get_user(&id)), without_license(&u));
    assert!(member_ids(&scim.get_group(&gid)).is_empty(), "groups is read-only on the user");
}

#[test]
fn put_replaces_the_user_clearing_omitted_attributes() {
    let scim = server().tenant();
    let u = scim.create_user(&json!({
        "schemas": [USER_SCHEMA, ENTERPRISE], "userName": "put@x.com", "externalId": "put-ext",
        "displayName": "Put Me", "active": true, "title": "Boss",
        "name": {"givenName": "Put", "familyName": "Me"},
        "emails": [{"type": "work", "value": "put@x.com", "primary": true}],
        ENTERPRISE: {"department": "Ops"}
    }));
    let id = id_of(&u);
    let v0 = version_number(&u["meta"]["version"]);
    let r = scim.put(
        &format!("/Users/{id}"),
        &json!({"schemas": [USER_SCHEMA], "userName": "put2@x.com", "active": false, "name": {"givenName": "Putty"}}),
    );
    let p = r.scim(200);
    assert_eq!(p["id"], id.as_str(), "PUT keeps the id");
    assert!(version_number(&p["meta"]["version"]) > v0, "version increments: {p}");
    assert_eq!(r.header("etag"), p["meta"]["version"].as_str(), "ETag on PUT:\n{}", r.describe());
    assert_eq!(p["meta"]["created"], u["meta"]["created"], "meta.created is immutable");
    assert_eq!(p["userName"], "put2@x.com");
    assert_eq!(p["active"], false);
    assert_eq!(p["name"]["givenName"], "Putty");
    for k in ["externalId", "displayName", "title"] {
        assert!(p.get(k).is_none_or(Value::is_null), "{k} must be cleared by PUT: {p}");
    }
    assert!(p["name"].get("familyName").is_none_or(Value::is_null), "name.familyName cleared: {p}");
    assert!(p.get("emails").is_none_or(|e| e.is_null() || *e == json!([])), "emails cleared: {p}");
    assert!(p.get(ENTERPRISE).is_none_or(|e| e.get("department").is_none_or(Value::is_null)), "extension cleared: {p}");
    assert_eq!(without_license(&scim.get_user(&id)), without_license(&p), "GET after PUT");

    // PUT onto another user's userName (other case) is a conflict.
    scim.user_id("taken@x.com");
    scim.put(&format!("/Users/{id}"), &json!({"schemas": [USER_SCHEMA], "userName": "TAKEN@x.com"}))
        .scim_error(409, Some("uniqueness"));
    // PUT on an unknown id.
    scim.put(
        &format!("/Users/{}", uuid::Uuid::new_v4()),
        &json!({"schemas": [USER_SCHEMA], "userName": "nobody@x.com"}),
    )
    .scim_error(404, None);
}

#[test]
fn put_replaces_group_name_and_members() {
    let scim = server().tenant();
    let a = scim.user_id("ga@x.com");
    let b = scim.user_id("gb@x.com");
    let c = scim.user_id("gc@x.com");
    let g = scim
        .post(
            "/Groups",
            &json!({"schemas": [GROUP_SCHEMA], "displayName": "put-group", "members": [{"value": a}, {"value": b}]}),
        )
        .scim(201);
    let gid = id_of(&g);
    assert_eq!(member_ids(&g), set(&[&a, &b]), "members given on POST are stored");
    let p = scim
        .put(
            &format!("/Groups/{gid}"),
            &json!({"schemas": [GROUP_SCHEMA], "displayName": "put-group-2", "members": [{"value": c}]}),
        )
        .scim(200);
    assert_eq!(p["displayName"], "put-group-2");
    assert_eq!(member_ids(&p), set(&[&c]));
    assert_eq!(scim.get_group(&gid), p);
    let ghost = uuid::Uuid::new_v4().to_string();
    scim.put(
        &format!("/Groups/{gid}"),
        &json!({"schemas": [GROUP_SCHEMA], "displayName": "x", "members": [{"value": ghost}]}),
    )
    .scim_error(400, Some("invalidValue"));
    assert_eq!(scim.get_group(&gid), p, "rejected PUT changes nothing");
}

#[test]
fn if_match_with_stale_version_is_412_and_current_version_succeeds() {
    let scim = server().tenant();
    let u = scim.create_mapped_user("etag@x.com", "E", "Tag");
    let id = id_of(&u);
    let path = format!("/Users/{id}");
    let v1 = u["meta"]["version"].as_str().unwrap_or_default().to_owned();
    let u2 = scim.patch_user_ok(&id, json!([{"op": "Replace", "path": "displayName", "value": "two"}]));
    let v2 = u2["meta"]["version"].as_str().unwrap_or_default().to_owned();
    assert_ne!(v1, v2);

    let stale = |m: &'static str, body: Option<&Value>| scim.send(&scim.req(m, &path, body).header("If-Match", &v1));
    let patch_body = patch_op(json!([{"op": "Replace", "path": "displayName", "value": "three"}]));
    stale("PATCH", Some(&patch_body)).scim_error(412, None);
    stale("PUT", Some(&json!({"schemas": [USER_SCHEMA], "userName": "etag@x.com"}))).scim_error(412, None);
    stale("DELETE", None).scim_error(412, None);
    assert_eq!(without_license(&scim.get_user(&id)), without_license(&u2), "412s change nothing");

    let r = scim.send(&scim.req("PATCH", &path, Some(&patch_body)).header("If-Match", &v2));
    let u3 = r.scim(200);
    assert_eq!(u3["displayName"], "three");
    assert!(version_number(&u3["meta"]["version"]) > version_number(&json!(v2)));
    let v3 = u3["meta"]["version"].as_str().unwrap_or_default().to_owned();

    // Groups honour If-Match too.
    let g = scim.create_group("etag-group");
    let gid = id_of(&g);
    let gv1 = g["meta"]["version"].as_str().unwrap_or_default().to_owned();
    scim.patch_group_ok(&gid, json!([{"op": "Replace", "path": "displayName", "value": "etag-group-2"}]));
    let gp = patch_op(json!([{"op": "Replace", "path": "displayName", "value": "etag-group-3"}]));
    scim.send(&scim.req("PATCH", &format!("/Groups/{gid}"), Some(&gp)).header("If-Match", &gv1)).scim_error(412, None);
    assert_eq!(scim.get_group(&gid)["displayName"], "etag-group-2");

    // Current version on DELETE succeeds.
    scim.send(&scim.req("DELETE", &path, None).header("If-Match", &v3)).expect_empty(204);
}

#[test]
fn etag_header_equals_meta_version_for_users_and_groups() {
    let scim = server().tenant();
    let id = scim.user_id("etagh@x.com");
    let r = scim.get(&format!("/Users/{id}"));
    let u = r.scim(200);
    assert!(u["meta"]["version"].as_str().is_some_and(|v| v.starts_with("W/\"")), "weak ETag: {u}");
    assert_eq!(r.header("etag"), u["meta"]["version"].as_str(), "{}", r.describe());
    let gid = id_of(&scim.create_group("etag-h"));
    let r = scim.get(&format!("/Groups/{gid}"));
    let g = r.scim(200);
    assert_eq!(r.header("etag"), g["meta"]["version"].as_str(), "{}", r.describe());
    let r =
        scim.patch(&format!("/Users/{id}"), &patch_op(json!([{"op": "Replace", "path": "displayName", "value": "x"}])));
    let p = r.scim(200);
    assert_eq!(r.header("etag"), p["meta"]["version"].as_str(), "{}", r.describe());
}

#[test]
fn requests_without_valid_token_for_this_account_are_401() {
    let srv = server();
    let scim = srv.tenant();
    let other = srv.tenant();
    let id = scim.user_id("auth@x.com");
    let url = |p: &str| format!("{}{}", scim.base, p);
    let cases: Vec<(String, Option<String>)> = vec![
        ("none".into(), None),
        ("wrong".into(), Some(format!("Bearer {}", uid()))),
        ("empty bearer".into(), Some("Bearer ".into())),
        ("basic".into(), Some("Basic dXNlcjpwYXNz".into())),
        ("other account".into(), Some(format!("Bearer {}", other.token))),
        ("token without scheme".into(), Some(scim.token.clone())),
    ];
    for (label, auth) in &cases {
        for (m, p) in [("GET", "/Users".to_owned()), ("GET", format!("/Users/{id}")), ("GET", "/Groups".to_owned())] {
            let mut req = Req::new(m, url(&p));
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            let r = req.send(scim.agent());
            assert_eq!(r.status, 401, "{label}:\n{}", r.describe());
            r.scim_error(401, None);
        }
        let mut req = Req::new("POST", url("/Users"))
            .header("Content-Type", ENTRA_CT)
            .body(json!({"schemas": [USER_SCHEMA], "userName": format!("intruder-{label}@x.com")}).to_string());
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        req.send(scim.agent()).scim_error(401, None);
    }
    assert_eq!(scim.list_all("/Users").len(), 1, "no intruder was created");
    // The scheme name is case-insensitive (RFC 7235).
    let r =
        Req::new("GET", url("/Users")).header("Authorization", &format!("bearer {}", scim.token)).send(scim.agent());
    r.list();
}

#[test]
fn content_type_is_scim_json_on_success_and_error() {
    let scim = server().tenant();
    let r = scim.post("/Users", &json!({"schemas": [USER_SCHEMA], "userName": "ct@x.com"}));
    r.scim(201);
    scim.get("/Users").list();
    scim.get(&format!("/Users/{}", uid())).scim_error(404, None);
    scim.get(&format!("/Users?filter={}", enc("userName eq"))).scim_error(400, Some("invalidFilter"));
    scim.post("/Users", &json!({"schemas": [USER_SCHEMA], "userName": "CT@x.com"})).scim_error(409, Some("uniqueness"));
    scim.with_token("nope").get("/Users").scim_error(401, None);
    scim.get("/ServiceProviderConfig").scim(200);
}

#[test]
fn accept_header_absent_wildcard_or_json_is_never_406() {
    let scim = server().tenant();
    let id = scim.user_id("accept@x.com");
    for accept in ["", "*/*", "application/json", "application/scim+json", "application/scim+json, application/json"] {
        for p in [
            "/Users".to_owned(),
            format!("/Users/{id}"),
            format!("/Users?filter={}", enc("userName eq \"accept@x.com\"")),
        ] {
            let r = scim.send(&scim.req("GET", &p, None).header("Accept", accept));
            assert_eq!(r.status, 200, "Accept {accept:?}:\n{}", r.describe());
            r.assert_scim_content_type();
        }
    }
    // No User-Agent either ([S40]).
    let r = scim.send(&scim.req("GET", "/Users", None).header("User-Agent", ""));
    assert_eq!(r.status, 200, "{}", r.describe());
}

#[test]
fn request_content_types_scim_json_with_charset_and_plain_json_are_accepted() {
    let scim = server().tenant();
    for (i, ct) in [
        "application/scim+json; charset=utf-8",
        "application/json",
        "application/scim+json",
        "application/json; charset=utf-8",
    ]
    .iter()
    .enumerate()
    {
        let body = json!({"schemas": [USER_SCHEMA], "userName": format!("ct{i}@x.com"), "active": true}).to_string();
        let r = Req::new("POST", format!("{}/Users", scim.base))
            .header("Authorization", &format!("Bearer {}", scim.token))
            .header("Content-Type", ct)
            .body(body)
            .send(scim.agent());
        let u = r.scim(201);
        let patch = patch_op(json!([{"op": "Replace", "path": "displayName", "value": format!("ct {i}")}])).to_string();
        let r = Req::new("PATCH", format!("{}/Users/{}", scim.base, id_of(&u)))
            .header("Authorization", &format!("Bearer {}", scim.token))
            .header("Content-Type", ct)
            .body(patch)
            .send(scim.agent());
        assert_eq!(r.scim(200)["displayName"], format!("ct {i}"), "Content-Type {ct}");
    }
}

#[test]
fn unknown_query_parameters_are_ignored() {
    let scim = server().tenant();
    let u =
        scim.post("/Users?aadOptscim062020", &json!({"schemas": [USER_SCHEMA], "userName": "flag@x.com"})).scim(201);
    let id = id_of(&u);
    assert_eq!(scim.get("/Users?aadOptscim062020").list().len(), 1);
    let found = scim.get("/Users?aadOptscim062020&filter=userName+eq+%22flag%40x.com%22").list();
    assert_eq!(ids(&found), set(&[&id]));
    let found = scim.get("/Users?filter=userName+eq+%22flag%40x.com%22&AzureAdScimPatch2017").list();
    assert_eq!(ids(&found), set(&[&id]));
    scim.get(&format!("/Users/{id}?aadOptscim062020")).scim(200);
    scim.patch(
        &format!("/Users/{id}?aadOptscim062020"),
        &patch_op(json!([{"op": "replace", "path": "active", "value": false}])),
    )
    .scim(200);
    let gid = id_of(
        &scim.post("/Groups?aadOptscim062020", &json!({"schemas": [GROUP_SCHEMA], "displayName": "flag"})).scim(201),
    );
    scim.patch(
        &format!("/Groups/{gid}?aadOptscim062020"),
        &patch_op(json!([{"op": "add", "path": "members", "value": [{"value": id}]}])),
    )
    .expect_empty(204);
    scim.get("/ServiceProviderConfig?aadOptscim062020").scim(200);
}

#[test]
fn attributes_user_name_returns_only_id_schemas_and_user_name() {
    let scim = server().tenant();
    let id = id_of(&scim.create_mapped_user("attrs@x.com", "At", "Trs"));
    let check = |u: &Value| {
        let keys: Vec<&String> = u.as_object().map(|o| o.keys().collect()).unwrap_or_default();
        for k in &keys {
            assert!(
                ["id", "schemas", "userName", "meta"].contains(&k.as_str()),
                "unexpected key {k} with attributes=userName: {u}"
            );
        }
        assert_eq!(u["id"], id.as_str());
        assert_eq!(u["userName"], "attrs@x.com");
        assert!(u["schemas"].is_array(), "{u}");
    };
    check(&scim.get(&format!("/Users/{id}?attributes=userName")).scim(200));
    let listed = scim.get(&format!("/Users?attributes=userName&filter={}", enc("userName eq \"attrs@x.com\""))).list();
    assert_eq!(listed.len(), 1);
    check(&listed[0]);
}

#[test]
fn unknown_ids_are_404_for_every_method() {
    let scim = server().tenant();
    let ghost = uuid::Uuid::new_v4();
    for kind in ["Users", "Groups"] {
        let p = format!("/{kind}/{ghost}");
        scim.get(&p).scim_error(404, None);
        scim.delete(&p).scim_error(404, None);
        scim.patch(&p, &patch_op(json!([{"op": "Replace", "path": "displayName", "value": "x"}])))
            .scim_error(404, None);
        let body = if kind == "Users" {
            json!({"schemas": [USER_SCHEMA], "userName": "ghost@x.com"})
        } else {
            json!({"schemas": [GROUP_SCHEMA], "displayName": "ghost"})
        };
        scim.put(&p, &body).scim_error(404, None);
    }
    assert!(scim.list_all("/Users").is_empty() && scim.list_all("/Groups").is_empty(), "no upsert on PUT");
}

#[test]
fn meta_location_is_an_absolute_url_under_the_account_base() {
    let scim = server().tenant();
    let r = scim.post("/Users", &json!({"schemas": [USER_SCHEMA], "userName": "loc@x.com"}));
    let u = r.scim(201);
    let id = id_of(&u);
    assert_eq!(u["meta"]["location"], format!("{}/Users/{id}", scim.base), "{u}");
    let g = scim.create_group("loc");
    assert_eq!(g["meta"]["location"], format!("{}/Groups/{}", scim.base, id_of(&g)), "{g}");
    // The location is dereferenceable.
    let loc = u["meta"]["location"].as_str().unwrap_or_default();
    let r = Req::new("GET", loc).header("Authorization", &format!("Bearer {}", scim.token)).send(scim.agent());
    assert_eq!(r.scim(200)["id"], id.as_str());
}

#[test]
fn client_supplied_id_and_meta_on_post_are_ignored() {
    let scim = server().tenant();
    let u = scim
        .post(
            "/Users",
            &json!({"schemas": [USER_SCHEMA], "id": "client-chosen", "userName": "cid@x.com",
                    "meta": {"resourceType": "User", "version": "W/\"999\"", "created": "2001-01-01T00:00:00Z"}}),
        )
        .scim(201);
    assert_ne!(u["id"], "client-chosen", "server assigns ids: {u}");
    assert_ne!(u["meta"]["created"], "2001-01-01T00:00:00Z", "meta is server-owned: {u}");
    let g = scim
        .post("/Groups", &json!({"schemas": [GROUP_SCHEMA], "id": "client-group", "displayName": "cid", "members": []}))
        .scim(201);
    assert_ne!(g["id"], "client-group");
}
