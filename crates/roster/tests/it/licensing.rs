//! Licensing end to end (issue 4): policies through the admin API, SCIM users and groups as Entra pushes
//! them, and the licensing worker reconciling asynchronously (every assertion on its effects polls).

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::scim::{id_of, patch_op};
use crate::harness::{ROSTER_EXT, Scim, Server, poll, uid};

static SERVER: OnceLock<Server> = OnceLock::new();

fn server() -> &'static Server {
    SERVER.get_or_init(Server::start)
}

/// How long the asynchronous worker may take to converge.
const CONVERGE: Duration = Duration::from_secs(30);

fn dbt_policy() -> Value {
    json!({
        "license_types": [
            {"name": "developer", "rank": 40, "seats": 2},
            {"name": "read_only", "rank": 10, "seats": null}
        ],
        "rules": [
            {"group": "dbt-developers", "license": "developer"},
            {"group": "dbt-readers", "license": "read_only"}
        ],
        "default_license": null
    })
}

#[track_caller]
fn put_policy(acc: &str, policy: &Value) -> Value {
    server().admin("PUT", &format!("/admin/v1/accounts/{acc}/license-policy"), Some(policy)).expect_json(200)
}

/// `GET …/licenses` as user id → entry.
#[track_caller]
fn licenses(acc: &str) -> BTreeMap<String, Value> {
    let b = server().admin("GET", &format!("/admin/v1/accounts/{acc}/licenses"), None).expect_json(200);
    b["users"]
        .as_array()
        .unwrap_or_else(|| panic!("licenses without users: {b}"))
        .iter()
        .map(|u| (u["id"].as_str().unwrap_or_default().to_owned(), u.clone()))
        .collect()
}

fn license_of(entry: Option<&Value>) -> Option<String> {
    entry.and_then(|e| e["license"].as_str()).map(str::to_owned)
}

/// Polls until every listed user holds the expected license; returns the final listing.
#[track_caller]
fn wait_licenses(acc: &str, expected: &[(&str, Option<&str>)]) -> BTreeMap<String, Value> {
    let mut last = BTreeMap::new();
    let done = poll(CONVERGE, || {
        last = licenses(acc);
        expected
            .iter()
            .all(|(id, lic)| {
                license_of(last.get(*id)).as_deref() == *lic
                    && last.get(*id).is_some_and(|e| e.get("pending").is_none())
            })
            .then_some(())
    });
    assert!(done.is_some(), "licenses did not converge to {expected:?}; last listing: {last:#?}");
    last
}

fn group_with(scim: &Scim, name: &str, members: &[&str]) -> String {
    let g = id_of(&scim.create_group(name));
    if !members.is_empty() {
        let value: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
        scim.patch_group_ok(&g, json!([{"op": "add", "path": "members", "value": value}]));
    }
    g
}

fn add_members(scim: &Scim, group: &str, members: &[&str]) {
    let value: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
    scim.patch_group_ok(group, json!([{"op": "add", "path": "members", "value": value}]));
}

fn users(scim: &Scim, n: usize) -> Vec<String> {
    let tag = uid();
    (0..n).map(|i| scim.user_id(&format!("l{i}-{tag}@contoso.com"))).collect()
}

#[test]
fn dbt_developers_get_seats_in_order_and_a_deactivation_hands_the_seat_to_the_waiting_user() {
    let scim = server().tenant();
    let acc = scim.account_id.clone();
    let ids = users(&scim, 4);
    let (alice, bob, carol, dave) = (ids[0].as_str(), ids[1].as_str(), ids[2].as_str(), ids[3].as_str());
    let developers = group_with(&scim, "dbt-developers", &[alice, bob]);
    let readers = group_with(&scim, "DBT-Readers", &[bob, dave]);
    put_policy(&acc, &dbt_policy());

    // bob is in both groups and gets the higher-ranked developer; group names match case-insensitively.
    let l = wait_licenses(
        &acc,
        &[(alice, Some("developer")), (bob, Some("developer")), (dave, Some("read_only")), (carol, None)],
    );
    assert_eq!(l[bob]["reason"]["kind"], "rule");
    assert_eq!(l[bob]["reason"]["group"], "dbt-developers");
    assert_eq!(l[carol]["reason"]["kind"], "no_match");

    // A third developer finds both seats taken: read_only with reason seats_exhausted.
    add_members(&scim, &developers, &[carol]);
    add_members(&scim, &readers, &[carol]);
    let l = wait_licenses(&acc, &[(carol, Some("read_only")), (alice, Some("developer")), (bob, Some("developer"))]);
    assert_eq!(l[carol]["reason"]["kind"], "seats_exhausted", "{:#?}", l[carol]);
    assert_eq!(l[carol]["reason"]["wanted"], "developer");

    // The SCIM resource shows the license in Roster's extension.
    let b = scim.get_user(bob);
    assert_eq!(b[ROSTER_EXT]["licenseType"], "developer", "{b:#}");
    assert!(b["schemas"].as_array().is_some_and(|s| s.contains(&json!(ROSTER_EXT))), "{b:#}");

    let seats = server().admin("GET", &format!("/admin/v1/accounts/{acc}/seats"), None).expect_json(200);
    assert_eq!(seats["seats"]["developer"], json!({"used": 2, "limit": 2}));

    // Deactivating alice frees her seat at once (the seat guard counts active holders only)…
    scim.patch_user_ok(alice, json!([{"op": "replace", "path": "active", "value": false}]));
    let a = scim.get_user(alice);
    assert!(a.get(ROSTER_EXT).is_none(), "a deactivated user holds no license: {a:#}");
    // …and the waiting user gets it automatically.
    wait_licenses(&acc, &[(carol, Some("developer")), (bob, Some("developer")), (alice, None)]);
    assert_eq!(scim.get_user(carol)[ROSTER_EXT]["licenseType"], "developer");

    // The history shows the license changes with their reasons.
    let history = server().events(&acc, carol);
    let changes: Vec<&Value> = history.iter().filter(|e| e["type"] == "license.changed").collect();
    assert!(changes.len() >= 2, "carol's history: {history:#?}");
    let last = changes.last().map(|e| &e["payload"]).cloned().unwrap_or_default();
    assert_eq!(last["from"], "read_only");
    assert_eq!(last["to"], "developer");
    assert_eq!(last["reason"]["kind"], "rule");
    assert!(changes.iter().all(|e| e["actor"]["kind"] == "system" && e["outcome"]["status"] == 200));

    // Alice's revocation is in the log too, with its reason.
    let alice_changes: Vec<Value> = server()
        .events(&acc, alice)
        .into_iter()
        .filter(|e| e["type"] == "license.changed" && e["outcome"]["status"] == 200)
        .collect();
    let revoked = alice_changes.last().map(|e| e["payload"].clone()).unwrap_or_default();
    assert_eq!(revoked["from"], "developer", "alice's history: {alice_changes:#?}");
    assert_eq!(revoked["to"], Value::Null);
    assert_eq!(revoked["reason"]["kind"], "deactivated");
}

#[test]
fn an_invalid_policy_is_rejected_with_every_problem_and_changes_nothing() {
    let scim = server().tenant();
    let acc = scim.account_id.clone();
    put_policy(&acc, &dbt_policy());
    let bad = json!({
        "license_types": [{"name": "developer", "rank": 40, "seats": -1}],
        "rules": [{"group": "g", "license": "nonexistent"}],
        "default_license": null
    });
    let r = server().admin("PUT", &format!("/admin/v1/accounts/{acc}/license-policy"), Some(&bad));
    let b = r.expect_json(400);
    assert_eq!(b["error"], "invalid license policy");
    let problems = b["problems"].as_array().cloned().unwrap_or_default();
    assert!(problems.len() >= 2, "every problem is listed: {b:#}");
    let text = b["problems"].to_string();
    assert!(text.contains("seats") && text.contains("nonexistent"), "{b:#}");

    let now = server().admin("GET", &format!("/admin/v1/accounts/{acc}/license-policy"), None).expect_json(200);
    assert_eq!(now["license_types"], dbt_policy()["license_types"]);
    assert_eq!(now["rules"], dbt_policy()["rules"]);
}

#[test]
fn the_policy_of_an_account_without_one_is_the_empty_policy() {
    let scim = server().tenant();
    let b =
        server().admin("GET", &format!("/admin/v1/accounts/{}/license-policy", scim.account_id), None).expect_json(200);
    assert_eq!(b, json!({"license_types": [], "rules": [], "default_license": null}));
}

#[test]
fn a_preview_lists_exactly_the_changes_that_applying_the_policy_then_makes() {
    let scim = server().tenant();
    let acc = scim.account_id.clone();
    let ids = users(&scim, 5);
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    group_with(&scim, "dbt-developers", &id_refs[..3]);
    group_with(&scim, "dbt-readers", &id_refs);
    put_policy(&acc, &dbt_policy());
    let before = poll(CONVERGE, || {
        let l = licenses(&acc);
        let devs = l.values().filter(|e| e["license"] == "developer").count();
        (devs == 2 && l.values().all(|e| e.get("pending").is_none())).then_some(l)
    })
    .unwrap_or_else(|| panic!("initial allocation did not converge: {:#?}", licenses(&acc)));

    // Proposed: one more developer seat and a new analyst tier for the readers.
    let proposed = json!({
        "license_types": [
            {"name": "developer", "rank": 40, "seats": 3},
            {"name": "analyst", "rank": 20, "seats": 1},
            {"name": "read_only", "rank": 10, "seats": null}
        ],
        "rules": [
            {"group": "dbt-developers", "license": "developer"},
            {"group": "dbt-readers", "license": "analyst"},
            {"group": "dbt-readers", "license": "read_only"}
        ],
        "default_license": null
    });
    let p = server()
        .admin("POST", &format!("/admin/v1/accounts/{acc}/license-policy/preview"), Some(&proposed))
        .expect_json(200);
    assert_eq!(p["would_hold"], false);
    let changes = p["changes"].as_array().cloned().unwrap_or_default();
    assert!(!changes.is_empty(), "{p:#}");
    assert_eq!(p["seats_after"]["developer"], json!({"used": 3, "limit": 3}));
    assert_eq!(p["seats_after"]["analyst"], json!({"used": 1, "limit": 1}));
    // Nothing changed yet.
    let unchanged = licenses(&acc);
    for (id, e) in &before {
        assert_eq!(license_of(Some(e)), license_of(unchanged.get(id)));
    }

    put_policy(&acc, &proposed);
    let mut expected: BTreeMap<String, Option<String>> =
        before.iter().map(|(id, e)| (id.clone(), license_of(Some(e)))).collect();
    for c in &changes {
        expected.insert(c["user"].as_str().unwrap_or_default().to_owned(), c["to"].as_str().map(str::to_owned));
    }
    let exp: Vec<(&str, Option<&str>)> = expected.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
    wait_licenses(&acc, &exp);
    // The license.changed events after the policy change are exactly the previewed changes.
    for c in &changes {
        let user = c["user"].as_str().unwrap_or_default();
        let last = server()
            .events(&acc, user)
            .into_iter()
            .rfind(|e| e["type"] == "license.changed" && e["outcome"]["status"] == 200)
            .unwrap_or_else(|| panic!("no license.changed for {user}"));
        assert_eq!(last["payload"]["to"], c["to"], "{last:#}");
        assert_eq!(last["payload"]["reason"], c["reason"], "{last:#}");
    }
}

#[test]
fn an_override_pins_a_license_and_counts_against_its_seats() {
    let scim = server().tenant();
    let acc = scim.account_id.clone();
    let ids = users(&scim, 3);
    let (u1, u2, pinned) = (ids[0].as_str(), ids[1].as_str(), ids[2].as_str());
    group_with(&scim, "devs", &[u1, u2]);
    put_policy(
        &acc,
        &json!({
            "license_types": [{"name": "developer", "rank": 40, "seats": 1}, {"name": "read_only", "rank": 10, "seats": null}],
            "rules": [{"group": "devs", "license": "developer"}],
            "default_license": "read_only"
        }),
    );
    wait_licenses(&acc, &[(pinned, Some("read_only"))]);

    let path = format!("/admin/v1/accounts/{acc}/users/{pinned}/license-override");
    server().admin("PUT", &path, Some(&json!({"license": "nonexistent"}))).expect_json(400);
    server()
        .admin(
            "PUT",
            &format!("/admin/v1/accounts/{acc}/users/{}/license-override", uid()),
            Some(&json!({"license": "developer"})),
        )
        .expect_json(404);
    server().admin("PUT", &path, Some(&json!({"license": "developer"}))).expect_json(200);

    // The pin takes the only developer seat; both group members fall back to the default.
    let l = wait_licenses(&acc, &[(pinned, Some("developer")), (u1, Some("read_only")), (u2, Some("read_only"))]);
    assert_eq!(l[pinned]["reason"]["kind"], "override");
    assert_eq!(l[pinned]["override"], "developer");
    assert_eq!(l[u1]["reason"]["kind"], "seats_exhausted");
    let seats = server().admin("GET", &format!("/admin/v1/accounts/{acc}/seats"), None).expect_json(200);
    assert_eq!(seats["seats"]["developer"], json!({"used": 1, "limit": 1}));

    // Unpinning gives the seat back to the group (the lower id of the two members).
    server().admin("DELETE", &path, None).expect_empty(204);
    let first = if u1 < u2 { u1 } else { u2 };
    wait_licenses(&acc, &[(pinned, Some("read_only")), (first, Some("developer"))]);
}

fn mass_setup() -> (Scim, String, Vec<String>, String) {
    let scim = server().tenant();
    let acc = scim.account_id.clone();
    let ids = users(&scim, 12);
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let group = group_with(&scim, "everyone", &refs);
    put_policy(
        &acc,
        &json!({
            "license_types": [{"name": "member", "rank": 10, "seats": null}],
            "rules": [{"group": "everyone", "license": "member"}],
            "default_license": null
        }),
    );
    let expected: Vec<(&str, Option<&str>)> = refs.iter().map(|id| (*id, Some("member"))).collect();
    wait_licenses(&acc, &expected);
    scim.delete(&format!("/Groups/{group}")).expect_empty(204);
    (scim, acc, ids, group)
}

#[track_caller]
fn wait_pending_hold(acc: &str) -> Value {
    poll(CONVERGE, || {
        let b = server().admin("GET", &format!("/admin/v1/accounts/{acc}/license-holds"), None).expect_json(200);
        b["holds"].as_array().and_then(|h| h.iter().find(|h| h["status"] == "pending").cloned())
    })
    .unwrap_or_else(|| panic!("no pending hold appeared"))
}

#[test]
fn deleting_the_group_of_twelve_licensed_users_is_held_until_an_operator_confirms() {
    let (_scim, acc, ids, _) = mass_setup();
    let hold = wait_pending_hold(&acc);
    assert_eq!(hold["changes"].as_array().map(Vec::len), Some(12), "{hold:#}");
    assert_eq!(hold["summary"]["revoked_or_downgraded"], 12);
    // Held, not applied.
    let l = licenses(&acc);
    assert!(ids.iter().all(|id| license_of(l.get(id)).as_deref() == Some("member")), "{l:#?}");

    let hold_id = hold["id"].as_str().unwrap_or_default();
    server()
        .admin("POST", &format!("/admin/v1/accounts/{acc}/license-holds/{hold_id}/confirm"), Some(&json!({})))
        .expect_json(200);
    let expected: Vec<(&str, Option<&str>)> = ids.iter().map(|id| (id.as_str(), None)).collect();
    wait_licenses(&acc, &expected);
    let applied = poll(CONVERGE, || {
        let b = server().admin("GET", &format!("/admin/v1/accounts/{acc}/license-holds"), None).expect_json(200);
        b["holds"].as_array().and_then(|h| h.iter().find(|h| h["id"] == hold_id && h["status"] == "applied").cloned())
    });
    assert!(applied.is_some(), "the confirmed hold is marked applied");
    // A second decision on the same hold is a conflict.
    server()
        .admin("POST", &format!("/admin/v1/accounts/{acc}/license-holds/{hold_id}/discard"), Some(&json!({})))
        .expect_json(409);
}

#[test]
fn discarding_a_hold_keeps_everyones_license_by_pinning_it() {
    let (_scim, acc, ids, _) = mass_setup();
    let hold = wait_pending_hold(&acc);
    let hold_id = hold["id"].as_str().unwrap_or_default();
    let b = server()
        .admin("POST", &format!("/admin/v1/accounts/{acc}/license-holds/{hold_id}/discard"), Some(&json!({})))
        .expect_json(200);
    assert_eq!(b["pinned"], 12);
    // The pinned users keep their license and the worker settles (nothing pending) without a new hold.
    let expected: Vec<(&str, Option<&str>)> = ids.iter().map(|id| (id.as_str(), Some("member"))).collect();
    let l = wait_licenses(&acc, &expected);
    for id in &ids {
        assert_eq!(l[id]["override"], "member");
        assert_eq!(l[id]["reason"]["kind"], "override");
    }
    let holds = server().admin("GET", &format!("/admin/v1/accounts/{acc}/license-holds"), None).expect_json(200);
    assert!(holds["holds"].as_array().is_some_and(|h| h.iter().all(|h| h["status"] != "pending")), "{holds:#}");
}

#[test]
fn scim_clients_cannot_write_the_license_type() {
    let scim = server().tenant();
    let u = scim.create_user(&json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ROSTER_EXT],
        "userName": format!("w-{}@contoso.com", uid()),
        ROSTER_EXT: {"licenseType": "developer"}
    }));
    assert!(u.get(ROSTER_EXT).is_none(), "{u:#}");
    let r = scim.patch(
        &format!("/Users/{}", id_of(&u)),
        &patch_op(json!([{"op": "replace", "path": format!("{ROSTER_EXT}:licenseType"), "value": "developer"}])),
    );
    assert!(r.status >= 400 || r.json().get(ROSTER_EXT).is_none(), "{}", r.describe());
}
