//! Tenant isolation, endpoint by endpoint: account A's token on account B's URLs is 401 exactly
//! like a bad token, and A's token on A's URLs cannot read, change, filter for, link to or learn
//! anything about B's resources. Every test ends by checking that B is byte-for-byte unchanged.

use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::harness::scim::{id_of, mapped_user, patch_op};
use crate::harness::{GROUP_SCHEMA, Scim, Server, USER_SCHEMA, enc, member_ids};

static SERVER: OnceLock<Server> = OnceLock::new();

fn server() -> &'static Server {
    SERVER.get_or_init(Server::start)
}

/// Account B with a user in a group, and its complete state for later comparison.
struct Victim {
    scim: Scim,
    user: String,
    user_name: String,
    group: String,
    group_name: String,
}

impl Victim {
    fn new(srv: &Server) -> Victim {
        let scim = srv.tenant();
        let user_name = format!("victim-{}@contoso.com", crate::harness::uid());
        let user = id_of(&scim.create_user(&json!({
            "schemas": [USER_SCHEMA], "userName": user_name, "externalId": "victim-ext", "active": true,
            "name": {"givenName": "Vic", "familyName": "Tim"},
        })));
        let group_name = format!("victims-{}", crate::harness::uid());
        let group = id_of(&scim.create_group(&group_name));
        scim.patch_group_ok(&group, json!([{"op": "add", "path": "members", "value": [{"value": user}]}]));
        Victim { scim, user, user_name, group, group_name }
    }

    /// Everything B's own token can see, versions and timestamps included.
    fn state(&self) -> Value {
        json!({
            "users": self.scim.get("/Users?count=1000").list(),
            "groups": self.scim.get("/Groups?count=1000").list(),
            "user": self.scim.get_user(&self.user),
            "group": self.scim.get_group(&self.group),
        })
    }
}

/// Every SCIM route of an account: (method, path, body).
fn every_endpoint(v: &Victim) -> Vec<(&'static str, String, Option<Value>)> {
    let user = json!({"schemas": [USER_SCHEMA], "userName": "intruder@contoso.com"});
    let group = json!({"schemas": [GROUP_SCHEMA], "displayName": "intruders"});
    let deactivate = patch_op(json!([{"op": "replace", "path": "active", "value": false}]));
    let rename = patch_op(json!([{"op": "replace", "path": "displayName", "value": "pwned"}]));
    let (u, g) = (&v.user, &v.group);
    vec![
        ("GET", "/Users".into(), None),
        ("GET", format!("/Users?filter={}", enc(&format!("id eq \"{u}\""))), None),
        ("GET", format!("/Users?filter={}", enc(&format!("userName eq \"{}\"", v.user_name))), None),
        ("POST", "/Users".into(), Some(user.clone())),
        ("GET", format!("/Users/{u}"), None),
        ("PUT", format!("/Users/{u}"), Some(user)),
        ("PATCH", format!("/Users/{u}"), Some(deactivate)),
        ("DELETE", format!("/Users/{u}"), None),
        ("GET", "/Groups".into(), None),
        ("GET", format!("/Groups?filter={}", enc(&format!("displayName eq \"{}\"", v.group_name))), None),
        ("POST", "/Groups".into(), Some(group.clone())),
        ("GET", format!("/Groups/{g}"), None),
        ("PUT", format!("/Groups/{g}"), Some(group)),
        ("PATCH", format!("/Groups/{g}"), Some(rename)),
        ("DELETE", format!("/Groups/{g}"), None),
        ("GET", "/ServiceProviderConfig".into(), None),
        ("GET", "/ResourceTypes".into(), None),
        ("GET", "/ResourceTypes/User".into(), None),
        ("GET", "/Schemas".into(), None),
        ("GET", "/Schemas/urn:ietf:params:scim:schemas:core:2.0:User".into(), None),
        ("GET", "/NoSuchEndpoint".into(), None),
    ]
}

fn send(scim: &Scim, method: &'static str, path: &str, body: Option<&Value>) -> crate::harness::Resp {
    scim.send(&scim.req(method, path, body))
}

#[test]
fn every_endpoint_answers_another_accounts_token_exactly_like_a_bad_token() {
    let srv = server();
    let a = srv.tenant();
    let b = Victim::new(srv);
    let before = b.state();
    let a_on_b = a.with_base(&b.scim.base);
    let nobody = b.scim.with_token("roster_0000000000000000000000000000000000000000000000000000000000000000");
    for (method, path, body) in every_endpoint(&b) {
        let r = send(&a_on_b, method, &path, body.as_ref());
        let err = r.scim_error(401, None);
        assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{}", r.describe());
        let bad = send(&nobody, method, &path, body.as_ref());
        assert_eq!(bad.status, 401, "{}", bad.describe());
        assert_eq!(err, bad.json(), "A's token must be indistinguishable from a bad token on {method} {path}");
    }
    assert_eq!(b.state(), before, "B is unchanged");
}

#[test]
fn another_accounts_ids_are_404_on_every_resource_endpoint_of_this_account() {
    let srv = server();
    let a = srv.tenant();
    let b = Victim::new(srv);
    let a_user = a.user_id("a-user@contoso.com");
    let a_group = id_of(&a.create_group("a-group"));
    let before = b.state();
    for (method, path, body) in every_endpoint(&b) {
        let targets_b = path.contains(&b.user) || path.contains(&b.group);
        if !targets_b || path.contains('?') {
            continue;
        }
        let r = send(&a, method, &path, body.as_ref());
        r.scim_error(404, None);
        // The error must not tell B's resource apart from one that never existed.
        let fake = path
            .replace(&b.user, "00000000-0000-4000-8000-000000000000")
            .replace(&b.group, "00000000-0000-4000-8000-000000000001");
        let never = send(&a, method, &fake, body.as_ref());
        let (e1, e2) = (r.json(), never.json());
        assert_eq!(
            e1["detail"].as_str().map(|d| d.replace(&b.user, "X").replace(&b.group, "X")),
            e2["detail"].as_str().map(|d| d
                .replace("00000000-0000-4000-8000-000000000000", "X")
                .replace("00000000-0000-4000-8000-000000000001", "X")),
            "{method} {path}: B's id answers like an unknown id"
        );
    }
    // Entra's reference check: `GET /Users/{id}?filter=…` with B's id.
    a.get(&format!("/Users/{}?filter={}", b.user, enc(&format!("userName eq \"{}\"", b.user_name))))
        .scim_error(404, None);
    assert_eq!(b.state(), before, "B is unchanged");
    // A's own resources are untouched too.
    a.get_user(&a_user);
    assert!(member_ids(&a.get_group(&a_group)).is_empty());
}

#[test]
fn filters_never_match_another_accounts_resources() {
    let srv = server();
    let a = srv.tenant();
    let b = Victim::new(srv);
    let filters_users = [
        format!("id eq \"{}\"", b.user),
        format!("userName eq \"{}\"", b.user_name),
        "userName sw \"victim-\"".to_string(),
        "externalId eq \"victim-ext\"".to_string(),
        "name.givenName eq \"Vic\"".to_string(),
        "userName pr".to_string(),
        format!("groups.value eq \"{}\"", b.group),
    ];
    let mut checked = 0;
    for f in &filters_users {
        let path = format!("/Users?filter={}", enc(f));
        let theirs = b.scim.get(&path);
        if theirs.status == 400 {
            continue; // an attribute this server does not filter on: nothing to leak
        }
        assert!(theirs.scim(200)["totalResults"].as_u64() >= Some(1), "filter {f} finds B's user with B's token");
        let body = a.get(&path).scim(200);
        assert_eq!(body["totalResults"], 0, "filter {f} must not see B: {body}");
        checked += 1;
    }
    let filters_groups = [
        format!("id eq \"{}\"", b.group),
        format!("displayName eq \"{}\"", b.group_name),
        format!("members.value eq \"{}\"", b.user),
        format!("members eq \"{}\"", b.user),
        "displayName pr".to_string(),
    ];
    for f in &filters_groups {
        let path = format!("/Groups?filter={}&excludedAttributes=members", enc(f));
        let theirs = b.scim.get(&path);
        if theirs.status == 400 {
            continue;
        }
        assert!(theirs.scim(200)["totalResults"].as_u64() >= Some(1), "filter {f} finds B's group with B's token");
        let body = a.get(&path).scim(200);
        assert_eq!(body["totalResults"], 0, "filter {f} must not see B: {body}");
        checked += 1;
    }
    assert!(checked >= 8, "most filters are supported, so the check is not vacuous ({checked})");
    // Unfiltered lists and their totals count only A's resources.
    assert_eq!(a.get("/Users?count=0").scim(200)["totalResults"], 0);
    assert_eq!(a.get("/Groups?count=0").scim(200)["totalResults"], 0);
}

#[test]
fn groups_cannot_point_at_another_accounts_users() {
    let srv = server();
    let a = srv.tenant();
    let b = Victim::new(srv);
    let mine = a.user_id("mine@contoso.com");
    let before = b.state();

    // POST a group with B's user: rejected, nothing created.
    let body = json!({"schemas": [GROUP_SCHEMA], "displayName": "sneaky", "members": [{"value": b.user}]});
    let r = a.post("/Groups", &body);
    r.scim_error(400, Some("invalidValue"));
    assert_eq!(a.get("/Groups?count=0").scim(200)["totalResults"], 0, "no group created");

    // PUT / PATCH add / PATCH replace with B's user on A's group: rejected, A's group unchanged.
    let gid = id_of(&a.create_group("a-group"));
    a.patch_group_ok(&gid, json!([{"op": "add", "path": "members", "value": [{"value": mine}]}]));
    let group_before = a.get_group(&gid);
    let put =
        json!({"schemas": [GROUP_SCHEMA], "displayName": "a-group", "members": [{"value": mine}, {"value": b.user}]});
    a.put(&format!("/Groups/{gid}"), &put).scim_error(400, Some("invalidValue"));
    for op in ["add", "replace"] {
        let ops = json!([{"op": op, "path": "members", "value": [{"value": b.user}]}]);
        a.patch(&format!("/Groups/{gid}"), &patch_op(ops)).scim_error(400, Some("invalidValue"));
    }
    // A group id of B as a member value is just as foreign.
    let ops = json!([{"op": "add", "path": "members", "value": [{"value": b.group}]}]);
    a.patch(&format!("/Groups/{gid}"), &patch_op(ops)).scim_error(400, Some("invalidValue"));
    assert_eq!(a.get_group(&gid), group_before, "A's group is unchanged");

    // B's user never shows A's groups, and B's group never shows A's users.
    assert_eq!(b.state(), before, "B is unchanged");
    assert_eq!(member_ids(&b.scim.get_group(&b.group)), std::iter::once(b.user.clone()).collect());
}

#[test]
fn history_is_admin_only_and_scoped_to_the_account_in_the_url() {
    let srv = server();
    let a = srv.tenant();
    let b = Victim::new(srv);
    let path = format!("/admin/v1/accounts/{}/events?resource_id={}", b.scim.account_id, b.user);
    // SCIM tokens (A's and B's own) do not open the admin API.
    for token in [a.token.as_str(), b.scim.token.as_str()] {
        let r = srv.admin_with("GET", &path, None, Some(token));
        assert_eq!(r.status, 401, "{}", r.describe());
        assert!(!r.text.contains(&b.user_name), "{}", r.describe());
    }
    // Not on the public port either.
    let public = format!("{}{path}", srv.public);
    let r = crate::harness::Req::new("GET", public)
        .header("Authorization", &format!("Bearer {}", b.scim.token))
        .send(a.agent());
    assert!(r.status == 404 || r.status == 401, "{}", r.describe());
    // The admin asking for B's resource under A's account gets nothing.
    let r = srv.admin("GET", &format!("/admin/v1/accounts/{}/events?resource_id={}", a.account_id, b.user), None);
    assert!(
        r.status == 404 || r.json()["events"].as_array().is_some_and(Vec::is_empty),
        "B's history must not appear under A:\n{}",
        r.describe()
    );
    assert!(!srv.events(&b.scim.account_id, &b.user).is_empty(), "B's history exists under B");
}

#[test]
fn the_same_user_name_in_two_accounts_are_two_independent_users() {
    let srv = server();
    let a = srv.tenant();
    let b = Victim::new(srv);
    let before = b.state();
    let mine = a.create_user(&mapped_user(&b.user_name, "Other", "Person"));
    assert_ne!(id_of(&mine), b.user);
    a.patch_user_ok(&id_of(&mine), json!([{"op": "replace", "path": "active", "value": false}]));
    a.delete(&format!("/Users/{}", id_of(&mine))).assert_status(204);
    assert_eq!(b.state(), before, "B's same-named user is unaffected");
}
