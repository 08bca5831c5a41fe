//! Account isolation, SCIM token lifecycle (rotation, revocation, `last_used_at`), the admin API's
//! own authentication and probes, and the per-resource change history.

use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::scim::{id_of, patch_op};
use crate::harness::{Req, Scim, Server, USER_SCHEMA, agent, backend, enc, member_ids, poll, run_roster_with, uid};

static SERVER: OnceLock<Server> = OnceLock::new();

fn server() -> &'static Server {
    SERVER.get_or_init(Server::start)
}

#[test]
fn admin_created_account_has_scim_base_url_on_the_public_port_and_is_listed() {
    let srv = server();
    let name = format!("acme-{}", uid());
    let (id, base) = srv.create_account(&name);
    assert_eq!(base, srv.scim_base(&id), "scim_base_url must be {{public}}/scim/v2/accounts/{{id}}");
    let r = srv.admin("GET", "/admin/v1/accounts", None);
    let b = r.expect_json(200);
    let list = b
        .as_array()
        .or_else(|| b["accounts"].as_array())
        .cloned()
        .unwrap_or_else(|| panic!("account list shape:\n{}", r.describe()));
    let found = list
        .iter()
        .find(|a| a["id"] == id.as_str())
        .unwrap_or_else(|| panic!("new account not listed:\n{}", r.describe()));
    assert_eq!(found["name"], name.as_str());
}

#[test]
fn admin_api_requires_the_admin_token_and_probes_are_up() {
    let srv = server();
    let scim = srv.tenant();
    for token in [None, Some("wrong"), Some(scim.token.as_str())] {
        let r = srv.admin_with("GET", "/admin/v1/accounts", None, token);
        assert_eq!(r.status, 401, "admin API with {token:?}:\n{}", r.describe());
        let r = srv.admin_with("POST", "/admin/v1/accounts", Some(&json!({"name": "x"})), token);
        assert_eq!(r.status, 401, "admin API with {token:?}:\n{}", r.describe());
        let r = srv.admin_with(
            "POST",
            &format!("/admin/v1/accounts/{}/scim-tokens", scim.account_id),
            Some(&json!({"name": "x"})),
            token,
        );
        assert_eq!(r.status, 401, "token minting with {token:?}:\n{}", r.describe());
    }
    let r = Req::new("GET", format!("{}/readyz", srv.ops)).send(scim.agent());
    assert_eq!(r.status, 200, "{}", r.describe());
    let r = Req::new("GET", format!("{}/healthz", srv.public)).send(scim.agent());
    assert_eq!(r.status, 200, "{}", r.describe());
    // The admin API is not served on the public port.
    let r = Req::new("GET", format!("{}/admin/v1/accounts", srv.public))
        .header("Authorization", &format!("Bearer {}", srv.admin_token))
        .send(scim.agent());
    assert!(
        r.status == 404 || r.status == 401,
        "admin API must not be reachable on the public port:\n{}",
        r.describe()
    );
}

#[test]
fn one_accounts_token_is_401_on_another_accounts_urls() {
    let srv = server();
    let a = srv.tenant();
    let b = srv.tenant();
    let b_user = b.create_mapped_user("shared@contoso.com", "B", "User");
    let b_id = id_of(&b_user);
    let b_group = id_of(&b.create_group("b-group"));
    let a_on_b = a.with_base(&b.base);
    a_on_b.get("/Users").scim_error(401, None);
    a_on_b.get(&format!("/Users/{b_id}")).scim_error(401, None);
    a_on_b.get(&format!("/Groups/{b_group}")).scim_error(401, None);
    a_on_b.post("/Users", &json!({"schemas": [USER_SCHEMA], "userName": "evil@contoso.com"})).scim_error(401, None);
    a_on_b
        .patch(&format!("/Users/{b_id}"), &patch_op(json!([{"op": "Replace", "path": "active", "value": "False"}])))
        .scim_error(401, None);
    a_on_b.delete(&format!("/Users/{b_id}")).scim_error(401, None);
    a_on_b
        .patch(
            &format!("/Groups/{b_group}"),
            &patch_op(json!([{"op": "Replace", "path": "displayName", "value": "pwned"}])),
        )
        .scim_error(401, None);
    let after = b.get_user(&b_id);
    assert_eq!(after["active"], true);
    assert_eq!(b.list_all("/Users").len(), 1, "nothing was created in B");
    assert_eq!(b.get_group(&b_group)["displayName"], "b-group");
    // An account id that does not exist, with a valid token of another account.
    a.with_base(&srv.scim_base(&uuid::Uuid::new_v4().to_string())).get("/Users").scim_error(401, None);
}

#[test]
fn another_accounts_resource_ids_are_404_through_this_account() {
    let srv = server();
    let a = srv.tenant();
    let b = srv.tenant();
    // The same userName may exist in both accounts.
    let a_id = id_of(&a.create_mapped_user("same@contoso.com", "A", "Same"));
    let b_id = id_of(&b.create_mapped_user("same@contoso.com", "B", "Same"));
    assert_ne!(a_id, b_id);
    let b_gid = id_of(&b.create_group("same-group"));
    a.create_group("same-group");

    a.get(&format!("/Users/{b_id}")).scim_error(404, None);
    a.patch(&format!("/Users/{b_id}"), &patch_op(json!([{"op": "Replace", "path": "active", "value": "False"}])))
        .scim_error(404, None);
    a.put(&format!("/Users/{b_id}"), &json!({"schemas": [USER_SCHEMA], "userName": "x@contoso.com"}))
        .scim_error(404, None);
    a.delete(&format!("/Users/{b_id}")).scim_error(404, None);
    a.get(&format!("/Groups/{b_gid}")).scim_error(404, None);
    a.delete(&format!("/Groups/{b_gid}")).scim_error(404, None);

    let found = a.filter_users("userName eq \"same@contoso.com\"");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["id"], a_id.as_str(), "a filter only sees its own account");
    let found = a.filter_users(&format!("id eq \"{b_id}\""));
    assert!(found.is_empty(), "B's id must not be visible through A: {found:?}");
    let b_user = b.get_user(&b_id);
    assert_eq!(b_user["active"], true);
    assert_eq!(b_user["name"]["givenName"], "B");
    b.get_group(&b_gid);
}

#[test]
fn group_patch_adding_another_accounts_user_is_400_invalid_value() {
    let srv = server();
    let a = srv.tenant();
    let b = srv.tenant();
    let a_user = a.user_id("mine@contoso.com");
    let b_user = b.user_id("theirs@contoso.com");
    let gid = id_of(&a.create_group("a-group"));
    let r = a.patch(
        &format!("/Groups/{gid}"),
        &patch_op(json!([{"op": "Add", "path": "members", "value": [{"$ref": null, "value": a_user}, {"$ref": null, "value": b_user}]}])),
    );
    r.scim_error(400, Some("invalidValue"));
    assert!(member_ids(&a.get_group(&gid)).is_empty(), "nothing added");
    let bu = b.get_user(&b_user);
    assert!(bu["groups"].as_array().is_none_or(|g| g.is_empty()), "B's user must not gain A's group: {bu}");
}

#[test]
fn revoked_token_is_401_on_the_next_request_and_a_second_token_keeps_working() {
    let srv = server();
    let scim = srv.tenant();
    let t2 = srv.create_token(&scim.account_id, "rotation");
    let t2_secret = t2["token"].as_str().unwrap_or_default().to_owned();
    assert_ne!(t2_secret, scim.token, "each token has its own secret");
    let second = scim.with_token(&t2_secret);
    let id = scim.user_id("rot@contoso.com");
    second.get_user(&id);

    // Revoke the first token (find its id in the list).
    let list = token_list(srv, &scim.account_id);
    assert_eq!(list.len(), 2, "two tokens: {list:?}");
    let first_id = list
        .iter()
        .find(|t| t["id"] != t2["id"])
        .map(|t| t["id"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default();
    let r = srv.admin("DELETE", &format!("/admin/v1/accounts/{}/scim-tokens/{first_id}", scim.account_id), None);
    r.expect_empty(204);
    scim.get("/Users").scim_error(401, None);
    // Every replica checks the token store on each request: no cache to outlive a revocation.
    for replica in on_each_replica(srv, &scim) {
        replica.get("/Users").scim_error(401, None);
    }
    for replica in on_each_replica(srv, &second) {
        replica.get("/Users").list();
    }
    scim.post("/Users", &json!({"schemas": [USER_SCHEMA], "userName": "after-revoke@contoso.com"}))
        .scim_error(401, None);
    second.get_user(&id);
    assert_eq!(second.list_all("/Users").len(), 1, "the revoked token created nothing");
    let list = token_list(srv, &scim.account_id);
    // A revoked token either leaves the list or is marked revoked.
    if let Some(t) = list.iter().find(|t| t["id"] == first_id.as_str()) {
        assert!(t["revoked_at"].is_string(), "a listed revoked token must say so (`revoked_at`): {t}");
    }
    let live = list.iter().find(|t| t["id"] == t2["id"]).cloned().unwrap_or_default();
    assert!(live.get("revoked_at").is_none_or(Value::is_null), "the second token is live: {live}");
}

/// The same client once per ingress replica, each talking to that replica only.
fn on_each_replica(srv: &Server, scim: &Scim) -> Vec<Scim> {
    srv.public_origins()
        .into_iter()
        .map(|o| {
            Scim::new(
                format!("{o}/scim/v2/accounts/{}", scim.account_id),
                scim.account_id.clone(),
                scim.token.clone(),
                agent(),
            )
        })
        .collect()
}

fn create_token_with(srv: &Server, account: &str, body: &Value) -> crate::harness::Resp {
    srv.admin("POST", &format!("/admin/v1/accounts/{account}/scim-tokens"), Some(body))
}

#[test]
fn a_token_with_an_expiry_works_until_then_and_is_401_like_a_bad_token_on_every_replica_after() {
    let srv = server();
    let scim = srv.tenant();
    let expires = chrono::Utc::now() + chrono::Duration::seconds(3);
    let r = create_token_with(srv, &scim.account_id, &json!({"name": "short", "expires_at": expires.to_rfc3339()}));
    let b = r.expect_json(201);
    let listed_expiry =
        b["expires_at"].as_str().unwrap_or_else(|| panic!("expires_at in the answer:\n{}", r.describe()));
    let short = scim.with_token(b["token"].as_str().unwrap_or_default());
    for replica in on_each_replica(srv, &short) {
        replica.get("/Users").list();
    }
    let listed = token_list(srv, &scim.account_id);
    let entry = listed.iter().find(|t| t["id"] == b["id"]).cloned().unwrap_or_default();
    assert_eq!(entry["expires_at"], listed_expiry, "the list shows the expiry: {listed:?}");
    assert!(listed.iter().filter(|t| t["id"] != b["id"]).all(|t| t["expires_at"].is_null()), "{listed:?}");

    let wait = (expires - chrono::Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(300);
    std::thread::sleep(wait);
    let bad = scim.with_token("roster_not-a-real-token").get("/Users").scim_error(401, None);
    for replica in on_each_replica(srv, &short) {
        let r = replica.get("/Users");
        assert_eq!(r.scim_error(401, None), bad, "an expired token is indistinguishable from a bad one");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{}", r.describe());
        replica
            .post("/Users", &json!({"schemas": [USER_SCHEMA], "userName": "late@contoso.com"}))
            .scim_error(401, None);
    }
    assert!(scim.filter_users("userName eq \"late@contoso.com\"").is_empty(), "the expired token wrote nothing");
    scim.get("/Users").list();
}

#[test]
fn token_expiry_must_be_a_future_rfc3339_time_or_a_day_count() {
    let srv = server();
    let scim = srv.tenant();
    let account = scim.account_id.clone();
    for bad in [
        json!({"name": "t", "expires_at": "2020-01-01T00:00:00Z"}),
        json!({"name": "t", "expires_at": "next tuesday"}),
        json!({"name": "t", "expires_at": "2099-01-01"}),
        json!({"name": "t", "expires_in_days": 0}),
        json!({"name": "t", "expires_in_days": -3}),
        json!({"name": "t", "expires_in_days": 30, "expires_at": "2099-01-01T00:00:00Z"}),
        json!({"name": "t", "expires": "2099-01-01T00:00:00Z"}),
    ] {
        let r = create_token_with(srv, &account, &bad);
        let body = r.expect_json(400);
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "a reason for {bad}:\n{}", r.describe());
    }
    assert_eq!(token_list(srv, &account).len(), 1, "no token was created by a rejected request");

    let r = create_token_with(srv, &account, &json!({"name": "month", "expires_in_days": 30}));
    let b = r.expect_json(201);
    let at = b["expires_at"].as_str().and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok());
    let expected = chrono::Utc::now() + chrono::Duration::days(30);
    assert!(
        at.is_some_and(|t| (t.with_timezone(&chrono::Utc) - expected).num_seconds().abs() < 60),
        "expires_in_days 30 is 30 days from now:\n{}",
        r.describe()
    );
    scim.with_token(b["token"].as_str().unwrap_or_default()).get("/Users").list();
    let r = create_token_with(srv, &account, &json!({"name": "forever"}));
    assert!(r.expect_json(201)["expires_at"].is_null(), "no expiry unless asked:\n{}", r.describe());
}

#[test]
fn admin_cli_creates_a_token_that_expires_in_n_days() {
    let srv = server();
    let scim = srv.tenant();
    let env = [("ROSTER_DATABASE_URL", srv.db_url.as_str())];
    let args = ["admin", "tokens", "create", "--account", &scim.account_id, "--name", "cli", "--expires-in-days", "7"];
    let out = run_roster_with(&args, &env, Duration::from_secs(60));
    assert!(out.status.success(), "roster admin tokens create failed:\n{}\n{}", out.stdout, out.stderr);
    let b: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("JSON output ({e}): {}", out.stdout));
    let at = b["expires_at"].as_str().and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok());
    let expected = chrono::Utc::now() + chrono::Duration::days(7);
    assert!(at.is_some_and(|t| (t.with_timezone(&chrono::Utc) - expected).num_seconds().abs() < 120), "{b}");
    scim.with_token(b["token"].as_str().unwrap_or_default()).get("/Users").list();

    let out = run_roster_with(
        &["admin", "tokens", "create", "--account", &scim.account_id, "--name", "cli", "--expires-in-days", "0"],
        &env,
        Duration::from_secs(60),
    );
    assert!(!out.status.success(), "0 days is refused:\n{}", out.stdout);
    assert!(!out.stdout.contains("roster_"), "no token printed for a refused request: {}", out.stdout);
}

fn token_list(srv: &Server, account: &str) -> Vec<Value> {
    let r = srv.admin("GET", &format!("/admin/v1/accounts/{account}/scim-tokens"), None);
    let b = r.expect_json(200);
    b.as_array()
        .or_else(|| b["tokens"].as_array())
        .or_else(|| b["scim_tokens"].as_array())
        .cloned()
        .unwrap_or_else(|| panic!("token list shape:\n{}", r.describe()))
}

#[test]
fn token_list_shows_last_used_at_after_use_and_never_the_secret() {
    let srv = server();
    let scim = srv.tenant();
    let r = srv.admin("GET", &format!("/admin/v1/accounts/{}/scim-tokens", scim.account_id), None);
    assert!(!r.text.contains(&scim.token), "the token list must not contain the secret:\n{}", r.describe());
    let list = token_list(srv, &scim.account_id);
    assert_eq!(list.len(), 1);
    let t = &list[0];
    assert!(t.get("token").is_none_or(Value::is_null), "no secret in the list: {t}");
    assert_eq!(t["name"], "entra");
    assert!(t["created_at"].is_string(), "{t}");
    assert!(t.get("last_used_at").is_none_or(Value::is_null), "never used yet: {t}");

    scim.get("/Users").list();
    let used = poll(Duration::from_secs(10), || {
        let l = token_list(srv, &scim.account_id);
        l.first().filter(|t| t["last_used_at"].is_string()).cloned()
    });
    let used = used
        .unwrap_or_else(|| panic!("last_used_at never set after a request: {:?}", token_list(srv, &scim.account_id)));
    assert!(used.get("token").is_none_or(Value::is_null));
    let r = srv.admin("GET", &format!("/admin/v1/accounts/{}/scim-tokens", scim.account_id), None);
    assert!(!r.text.contains(&scim.token), "the token list must not contain the secret:\n{}", r.describe());
}

#[test]
fn history_api_lists_a_users_events_in_order_with_outcomes() {
    let srv = server();
    let scim = srv.tenant();
    let u = scim.create_mapped_user("history@contoso.com", "His", "Tory");
    let id = id_of(&u);
    scim.patch_user_ok(&id, json!([{"op": "Replace", "path": "name.familyName", "value": "Tory2"}]));
    scim.patch_user_ok(&id, json!([{"op": "Replace", "path": "active", "value": "False"}]));
    // A rejected duplicate: a different resource id, so not in this user's history.
    scim.post("/Users", &json!({"schemas": [USER_SCHEMA], "userName": "HISTORY@contoso.com"}))
        .scim_error(409, Some("uniqueness"));

    let events = srv.events(&scim.account_id, &id);
    let succeeded: Vec<&Value> =
        events.iter().filter(|e| e["outcome"]["status"].as_u64().is_some_and(|s| (200..300).contains(&s))).collect();
    assert!(succeeded.len() >= 3, "create + 2 patches expected: {events:#?}");
    for e in &events {
        for k in ["event_id", "type", "resource_id", "time", "outcome"] {
            assert!(e.get(k).is_some_and(|v| !v.is_null()), "event lacks {k}: {e}");
        }
        assert_eq!(e["resource_id"], id.as_str(), "filtered by resource_id: {e}");
    }
    assert_eq!(events[0]["type"], "user.created", "first event: {events:#?}");
    assert_eq!(events[0]["outcome"]["status"], 201, "first event outcome: {events:#?}");
    assert!(succeeded[1]["outcome"]["status"] == 200 && succeeded[2]["outcome"]["status"] == 200, "{events:#?}");
    let times: Vec<&str> = events.iter().filter_map(|e| e["time"].as_str()).collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "events in time order: {events:#?}");
    let mut eids: Vec<&str> = events.iter().filter_map(|e| e["event_id"].as_str()).collect();
    eids.sort();
    eids.dedup();
    assert_eq!(eids.len(), events.len(), "event ids unique");

    let gid = id_of(&scim.create_group("history-group"));
    scim.patch_group_ok(&gid, json!([{"op": "Add", "path": "members", "value": [{"$ref": null, "value": id}]}]));
    let gev = srv.events(&scim.account_id, &gid);
    assert!(gev.len() >= 2, "group created + members changed: {gev:#?}");
    assert_eq!(gev[0]["type"], "group.created", "{gev:#?}");
    assert_eq!(gev[0]["outcome"]["status"], 201, "{gev:#?}");

    // Another account does not see this history.
    let other = srv.tenant();
    let r = srv.admin("GET", &format!("/admin/v1/accounts/{}/events?resource_id={}", other.account_id, enc(&id)), None);
    assert!(
        r.status == 404 || r.json()["events"].as_array().is_some_and(|a| a.is_empty()),
        "another account's history must be empty:\n{}",
        r.describe()
    );
}

#[test]
fn bootstrap_prints_a_working_base_url_and_token_for_the_default_account() {
    if !backend().runs_serve() {
        // Only `roster serve` bootstraps a default account; the Kafka backend runs separate
        // `roster ingress` and `roster projector` processes, which never do.
        eprintln!("skipped on the {:?} backend: no `roster serve`, so no bootstrap account", backend());
        return;
    }
    let srv = server();
    let boot =
        srv.startup.bootstrap.clone().unwrap_or_else(|| {
            panic!("an empty database must print `roster: SCIM base URL:` and `roster: SCIM token:`")
        });
    let account_id = boot.scim_base_url.rsplit('/').next().unwrap_or_default().to_owned();
    assert_eq!(boot.scim_base_url, srv.scim_base(&account_id), "printed base URL must be on the public port");
    let scim = srv.scim(&account_id, &boot.token);
    scim.get("/Users?filter=userName+eq+%227d420df3-9995-4831-a406-ecf8166f5f6a%22").list();
    let r = srv.admin("GET", "/admin/v1/accounts", None);
    let b = r.expect_json(200);
    let list = b.as_array().or_else(|| b["accounts"].as_array()).cloned().unwrap_or_default();
    let default = list.iter().find(|a| a["id"] == account_id.as_str());
    assert_eq!(default.map(|a| a["name"].clone()), Some(json!("default")), "{}", r.describe());
}
