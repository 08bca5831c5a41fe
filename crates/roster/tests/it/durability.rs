//! Durability: `roster replay` rebuilds an identical read model from the event log (the database's
//! or the Kafka topic), and every acknowledged write survives a SIGKILL of every process mid-load.
//! Each test owns its servers.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::json;

use crate::harness::scim::{id_of, mapped_user, patch_op};
use crate::harness::{
    GROUP_SCHEMA, Scim, Server, StartOptions, TestDb, USER_SCHEMA, backend, create_user_eventually, enc, run_roster,
    uid,
};

/// One captured response: what a client would see, with the server origin normalised away.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    status: u16,
    etag: Option<String>,
    body: String,
}

fn capture(scim: &Scim, origin: &str, paths: &[String]) -> BTreeMap<String, Seen> {
    paths
        .iter()
        .map(|p| {
            let r = scim.get(p);
            assert!(
                r.status != 401,
                "CONTRACT QUESTION: the token was rejected on this server; does replay copy accounts and hashed tokens?\n{}",
                r.describe()
            );
            let norm = |s: &str| s.replace(origin, "{origin}");
            (p.clone(), Seen { status: r.status, etag: r.header("etag").map(str::to_owned), body: norm(&r.text) })
        })
        .collect()
}

/// The resources the workload touched, plus list and filter views over them.
struct Workload {
    users: Vec<String>,
    groups: Vec<String>,
}

impl Workload {
    fn paths(&self) -> Vec<String> {
        let mut p: Vec<String> = self.users.iter().map(|u| format!("/Users/{u}")).collect();
        p.extend(self.groups.iter().map(|g| format!("/Groups/{g}")));
        p.extend(self.groups.iter().map(|g| format!("/Groups/{g}?excludedAttributes=members")));
        p.extend(
            [
                "/Users",
                "/Users?sortBy=userName",
                "/Users?sortBy=userName&sortOrder=descending&startIndex=2&count=3",
                "/Groups",
                "/Groups?excludedAttributes=members",
            ]
            .map(String::from),
        );
        p.push(format!("/Users?filter={}", enc("active eq false")));
        p.push(format!("/Users?filter={}", enc("emails[type eq \"work\" and value co \"contoso\"]")));
        p
    }
}

fn mixed_workload(scim: &Scim) -> Workload {
    let tag = &uid()[..6];
    let mut users = Vec::new();
    for (i, (g, f)) in
        [("Ann", "One"), ("Ben", "Two"), ("Cat", "Three"), ("Dan", "Four"), ("Eve", "Five")].iter().enumerate()
    {
        users.push(id_of(&scim.create_user(&mapped_user(&format!("u{i}-{tag}@contoso.com"), g, f))));
    }
    // Example 2 with nulls and the typo'd URN; a string boolean.
    users.push(id_of(&scim.raw("POST", "/Users", r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0User"],
 "externalId":"jyoung","userName":"jyoung@testuser.com","active":true,"addresses":null,"displayName":"Joy Young",
 "emails":[{"type":"work","value":"jyoung@Contoso.com","primary":true}],"meta":{"resourceType":"User"},
 "name":{"familyName":"Young","givenName":"Joy"},"phoneNumbers":null,"preferredLanguage":null,"title":null,
 "department":null,"manager":null}"#).scim(201)));
    users.push(id_of(&scim.create_user(
        &json!({"schemas": [USER_SCHEMA], "userName": format!("str-{tag}@contoso.com"), "active": "True"}),
    )));

    // Patches in both dialects.
    scim.raw(
        "PATCH",
        &format!("/Users/{}", users[0]),
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[
  {"op":"Replace","path":"userName","value":"jane.doe@contoso.com"},
  {"op":"Replace","path":"emails[type eq \"work\"].value","value":"jane.doe@contoso.com"},
  {"op":"Replace","path":"name.familyName","value":"Doe-Smith"}]}"#,
    )
    .scim(200);
    scim.raw(
        "PATCH",
        &format!("/Users/{}", users[1]),
        r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
 "Operations":[
   {"op":"replace","path":"emails[type eq \"work\"].value","value":"TestMhvaes@test.microsoft.com"},
   {"op":"replace","value":{
       "displayName":"Bjfe",
       "name.givenName":"Kkom",
       "name.familyName":"Unua",
       "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber":"Aklq"}}]}"#,
    )
    .scim(200);
    // Deactivations, one re-enabled.
    scim.patch_user_ok(&users[2], json!([{"op": "Replace", "path": "active", "value": "False"}]));
    scim.patch_user_ok(&users[3], json!([{"op": "replace", "path": "active", "value": false}]));
    scim.patch_user_ok(&users[3], json!([{"op": "replace", "value": {"active": true}}]));
    // PUT.
    scim.put(&format!("/Users/{}", users[6]), &json!({"schemas": [USER_SCHEMA], "userName": format!("put-{tag}@contoso.com"), "active": false, "title": "Put"}))
        .scim(200);

    // Groups and membership.
    let g1 = id_of(&scim.raw("POST", "/Groups", r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group","http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],
 "externalId":"8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159","displayName":"displayName","meta":{"resourceType":"Group"}}"#).scim(201));
    let g2 = id_of(&scim.create_group(&format!("g2-{tag}")));
    let g3 = id_of(&scim.create_group(&format!("g3-{tag}")));
    let add = |ids: &[&String]| json!({"op": "Add", "path": "members", "value": ids.iter().map(|i| json!({"$ref": null, "value": i})).collect::<Vec<_>>()});
    scim.patch_group_ok(&g1, json!([add(&[&users[0], &users[1], &users[2]])]));
    scim.patch_group_ok(&g2, json!([add(&[&users[3], &users[4]]), add(&[&users[5]])]));
    scim.patch_group_ok(&g3, json!([add(&[&users[0]])]));
    scim.patch_group_ok(
        &g1,
        json!([{"op": "Remove", "path": "members", "value": [{"$ref": null, "value": users[1]}]}]),
    );
    scim.patch_group_ok(&g2, json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", users[5])}]));
    scim.patch_group_ok(&g2, json!([{"op": "Replace", "path": "displayName", "value": format!("g2-renamed-{tag}")}]));
    // Deletes: a user that is a member, and a group.
    scim.delete(&format!("/Users/{}", users[4])).expect_empty(204);
    scim.delete(&format!("/Groups/{g3}")).expect_empty(204);

    // Rejected requests: none of them may leave a trace in the read model.
    scim.post("/Users", &mapped_user("JANE.DOE@contoso.com", "Dup", "Licate")).scim_error(409, Some("uniqueness"));
    scim.post("/Groups", &json!({"schemas": [GROUP_SCHEMA], "displayName": "DISPLAYNAME"}))
        .scim_error(409, Some("uniqueness"));
    scim.patch(&format!("/Groups/{g1}"), &patch_op(json!([{"op": "Replace", "path": "displayName", "value": "never"}, add(&[&uuid::Uuid::new_v4().to_string()])])))
        .scim_error(400, Some("invalidValue"));
    scim.send(
        &scim
            .req(
                "PATCH",
                &format!("/Users/{}", users[0]),
                Some(&patch_op(json!([{"op": "Replace", "path": "title", "value": "never"}]))),
            )
            .header("If-Match", "W/\"999999\""),
    )
    .scim_error(412, None);
    scim.patch(
        &format!("/Users/{}", users[4]),
        &patch_op(json!([{"op": "Replace", "path": "title", "value": "never"}])),
    )
    .scim_error(404, None);
    scim.raw("POST", "/Users", "{not json").scim_error(400, Some("invalidSyntax"));

    Workload { users, groups: vec![g1, g2, g3] }
}

#[test]
fn replay_rebuilds_an_identical_read_model_from_the_log() {
    let mut src = Server::start();
    // The bootstrap account exists only where `roster serve` runs (not on the Kafka backend,
    // which runs separate ingress and projector processes).
    let default = match src.startup.bootstrap.clone() {
        Some(boot) => {
            let default_id = boot.scim_base_url.rsplit('/').next().unwrap_or_default().to_owned();
            assert_eq!(boot.scim_base_url, src.scim_base(&default_id), "bootstrap base URL");
            let default = src.scim(&default_id, &boot.token);
            let d_user = id_of(&default.create_mapped_user("boot@contoso.com", "Boot", "Strap"));
            let d_group = id_of(&default.create_group("boot-group"));
            default.patch_group_ok(
                &d_group,
                json!([{"op": "Add", "path": "members", "value": [{"$ref": null, "value": d_user}]}]),
            );
            let d_paths = vec![
                format!("/Users/{d_user}"),
                format!("/Groups/{d_group}"),
                "/Users".to_owned(),
                "/Groups".to_owned(),
            ];
            Some((default, d_paths))
        }
        None => {
            assert!(!backend().runs_serve(), "an empty database must print the bootstrap lines:\n{}", src.logs());
            None
        }
    };

    let a = src.tenant();
    let work = mixed_workload(&a);
    let b = src.tenant();
    let work_b = mixed_workload(&b);

    let before_a = capture(&a, &src.public, &work.paths());
    let before_b = capture(&b, &src.public, &work_b.paths());
    let before_d = default.as_ref().map(|(d, paths)| capture(d, &src.public, paths));
    // Sanity: the capture saw real data and the deletes.
    assert_eq!(before_a[&format!("/Users/{}", work.users[4])].status, 404);
    assert_eq!(before_a[&format!("/Groups/{}", work.groups[2])].status, 404);
    assert_eq!(before_a[&format!("/Users/{}", work.users[0])].status, 200);

    src.stop();
    let dst_db = TestDb::fresh(&src.dir(), "replayed.db");
    let mut args = vec!["replay", "--database-url", &src.db_url, "--into", &dst_db.url];
    if let Some(k) = src.kafka() {
        args.extend(["--kafka-brokers", &k.brokers, "--kafka-topic", &k.topic]);
    }
    let out = run_roster(&args, Duration::from_secs(300));
    assert!(
        out.status.success(),
        "roster replay failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        out.stdout,
        out.stderr
    );
    assert!(out.stdout.contains("events/s"), "replay reports its speed in events/s:\n{}", out.stdout);

    // On Kafka the replayed database is served by a new consumer group on the same topic: the
    // projectors must continue from the replayed positions.
    let dst = Server::launch(src.spec().with_db(dst_db));
    assert!(
        dst.startup.bootstrap.is_none(),
        "a replayed database is not empty: no bootstrap lines expected:\n{}",
        dst.logs()
    );
    let a2 = dst.scim(&a.account_id, &a.token);
    let b2 = dst.scim(&b.account_id, &b.token);
    let mut views = vec![
        ("account A", before_a, capture(&a2, &dst.public, &work.paths())),
        ("account B", before_b, capture(&b2, &dst.public, &work_b.paths())),
    ];
    if let (Some((d, paths)), Some(before)) = (&default, before_d) {
        let d2 = dst.scim(&d.account_id, &d.token);
        views.push(("default account", before, capture(&d2, &dst.public, paths)));
    }
    for (label, before, after) in views {
        let mut diffs = Vec::new();
        for (path, seen) in &before {
            let now = &after[path];
            if now != seen {
                diffs.push(format!("{path}\n  source:   {seen:?}\n  replayed: {now:?}"));
            }
        }
        assert!(diffs.is_empty(), "{label}: replayed read model differs:\n{}", diffs.join("\n"));
    }

    // The replayed database takes new writes consistently.
    let u0 = a2.get_user(&work.users[0]);
    let p = a2.patch_user_ok(&work.users[0], json!([{"op": "Replace", "path": "title", "value": "After"}]));
    assert!(
        crate::harness::version_number(&p["meta"]["version"]) > crate::harness::version_number(&u0["meta"]["version"]),
        "versions continue after replay: {p}"
    );
    a2.post("/Users", &mapped_user("Jane.Doe@contoso.com", "Dup", "Again")).scim_error(409, Some("uniqueness"));
    a2.create_mapped_user("after-replay@contoso.com", "After", "Replay");
    let admin_accounts = dst.admin("GET", "/admin/v1/accounts", None).expect_json(200);
    assert!(admin_accounts.to_string().contains(&a.account_id), "accounts replayed: {admin_accounts}");
}

#[test]
fn acknowledged_creates_survive_sigkill_under_load() {
    let mut srv = Server::start();
    let scim = srv.tenant();
    // The load window starts once writes are applied: on Kafka the projectors may still be joining
    // their consumer group when the processes report ready.
    let warm = "warm-up@load.test".to_owned();
    let warm_id = id_of(&create_user_eventually(&scim, &warm));
    let stop = Arc::new(AtomicBool::new(false));
    // (userName, id) of every 201; userNames sent but not acknowledged (in flight or failed).
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::new(Mutex::new(vec![(warm.clone(), warm_id)]));
    let unacked: Arc<Mutex<Vec<String>>> = Arc::default();
    let sent: Arc<Mutex<BTreeSet<String>>> = Arc::new(Mutex::new(BTreeSet::from([warm])));
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let (scim, stop, acked, unacked, sent) =
                (scim.clone(), stop.clone(), acked.clone(), unacked.clone(), sent.clone());
            thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let name = format!("w{t}-{i}@load.test");
                    i += 1;
                    sent.lock().unwrap_or_else(|p| p.into_inner()).insert(name.clone());
                    let body = json!({"schemas": [USER_SCHEMA], "userName": name, "active": true});
                    match scim.req("POST", "/Users", Some(&body)).try_send(scim.agent()) {
                        Ok(r) if r.status == 201 => {
                            let id = r.json()["id"].as_str().unwrap_or_default().to_owned();
                            acked.lock().unwrap_or_else(|p| p.into_inner()).push((name, id));
                        }
                        Ok(_) => unacked.lock().unwrap_or_else(|p| p.into_inner()).push(name),
                        Err(_) => {
                            unacked.lock().unwrap_or_else(|p| p.into_inner()).push(name);
                            break;
                        }
                    }
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(1500));
    srv.kill_hard();
    stop.store(true, Ordering::SeqCst);
    for w in writers {
        w.join().unwrap_or_else(|_| panic!("writer panicked"));
    }
    let acked = acked.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let unacked: BTreeSet<String> = unacked.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect();
    let sent = sent.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert!(acked.len() > 1, "no create was acknowledged in 1.5 s of load");

    srv.restart(StartOptions::default());
    assert!(
        srv.startup.bootstrap.is_none(),
        "a restart on the same database must not bootstrap again:\n{}",
        srv.logs()
    );
    let scim = srv.scim(&scim.account_id, &scim.token);
    // One listing, not a GET per user: the faster the creates, the more users were acknowledged in
    // the window, and a read per user would run into the account's rate limit.
    let all = scim.list_all("/Users");
    let by_id: std::collections::HashMap<&str, &str> = all
        .iter()
        .map(|u| (u["id"].as_str().unwrap_or_default(), u["userName"].as_str().unwrap_or_default()))
        .collect();
    for (name, id) in &acked {
        assert_eq!(by_id.get(id.as_str()), Some(&name.as_str()), "acknowledged user {name} ({id}) lost after SIGKILL");
    }
    let names: Vec<String> = all.iter().map(|u| u["userName"].as_str().unwrap_or_default().to_owned()).collect();
    let unique: BTreeSet<String> = names.iter().cloned().collect();
    assert_eq!(unique.len(), names.len(), "duplicate users after restart");
    let acked_names: BTreeSet<String> = acked.iter().map(|(n, _)| n.clone()).collect();
    for n in &unique {
        assert!(sent.contains(n), "user {n} was never sent");
        assert!(acked_names.contains(n) || unacked.contains(n), "user {n} neither acknowledged nor in flight");
    }
    let extra = unique.len() - acked_names.len().min(unique.len());
    assert!(acked_names.is_subset(&unique), "acknowledged users missing from the list");
    assert!(
        extra <= unacked.len(),
        "{} users present beyond the {} acknowledged, but only {} were in flight",
        extra,
        acked_names.len(),
        unacked.len()
    );
    // And the server works after the crash (on Kafka, once the consumer group has rebalanced).
    create_user_eventually(&scim, "after-crash@load.test");
    for (name, _) in acked.iter().take(3) {
        assert_eq!(scim.filter_users(&format!("userName eq \"{name}\"")).len(), 1);
    }
    eprintln!(
        "restart-under-load: {} acknowledged, {} unacknowledged, {} present",
        acked_names.len(),
        unacked.len(),
        unique.len()
    );
}
