//! Concurrent writers: uniqueness under a race, no lost membership updates, no lost PATCHes.

use std::sync::{Arc, Barrier, OnceLock};
use std::thread;

use serde_json::{Value, json};

use crate::harness::scim::id_of;
use crate::harness::{Backend, Req, Resp, Scim, Server, USER_SCHEMA, backend, member_ids, set, uid, version_number};

static SERVER: OnceLock<Server> = OnceLock::new();

fn server() -> &'static Server {
    SERVER.get_or_init(Server::start)
}

/// Runs `n` closures at once (released by a barrier) and returns their results in order.
fn race<T: Send + 'static>(n: usize, f: impl Fn(usize) -> T + Send + Sync + 'static) -> Vec<T> {
    let barrier = Arc::new(Barrier::new(n));
    let f = Arc::new(f);
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let b = barrier.clone();
            let f = f.clone();
            thread::spawn(move || {
                b.wait();
                f(i)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap_or_else(|_| panic!("racer thread panicked"))).collect()
}

/// `name` with letters upper-cased according to the bits of `i`.
fn casing(name: &str, i: usize) -> String {
    name.chars().enumerate().map(|(k, c)| if (i >> (k % 16)) & 1 == 1 { c.to_ascii_uppercase() } else { c }).collect()
}

#[test]
fn fifty_concurrent_posts_of_one_user_name_yield_one_201_and_49_409() {
    let scim = server().tenant();
    let base = format!("race-{}@contoso.com", &uid()[..8]);
    let s = scim.clone();
    let b = base.clone();
    let results: Vec<Resp> = race(50, move |i| {
        let name = casing(&b, i);
        s.post(
            "/Users",
            &json!({"schemas": [USER_SCHEMA], "userName": name, "active": true,
                                  "emails": [{"type": "work", "value": name, "primary": true}]}),
        )
    });
    let created: Vec<&Resp> = results.iter().filter(|r| r.status == 201).collect();
    let conflicts: Vec<&Resp> = results.iter().filter(|r| r.status == 409).collect();
    let others: Vec<String> =
        results.iter().filter(|r| r.status != 201 && r.status != 409).map(Resp::describe).collect();
    assert!(others.is_empty(), "only 201/409 allowed, got:\n{}", others.join("\n"));
    assert_eq!(created.len(), 1, "exactly one winner; got {}", created.len());
    assert_eq!(conflicts.len(), 49);
    for c in conflicts {
        c.scim_error(409, Some("uniqueness"));
    }
    let winner = created[0].scim(201);
    let found = scim.filter_users(&format!("userName eq \"{base}\""));
    assert_eq!(found.len(), 1, "exactly one user matches: {found:?}");
    assert_eq!(found[0]["id"], winner["id"]);
    assert_eq!(scim.list_all("/Users").len(), 1);
}

#[test]
fn twenty_concurrent_member_adds_to_one_group_all_land() {
    let scim = server().tenant();
    let tag = uid();
    let users: Vec<String> = (0..20).map(|i| scim.user_id(&format!("cm{i}-{tag}@contoso.com"))).collect();
    let gid = id_of(&scim.create_group(&format!("crowd-{tag}")));
    let s = scim.clone();
    let u = users.clone();
    let g = gid.clone();
    let results = race(20, move |i| {
        s.patch(
            &format!("/Groups/{g}"),
            &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "Add", "path": "members", "value": [{"$ref": null, "value": u[i]}]}]}),
        )
    });
    for r in &results {
        r.expect_empty(204);
    }
    assert_eq!(member_ids(&scim.get_group(&gid)), set(&users), "every concurrent add must land");

    // And ten concurrent removals leave exactly the other ten.
    let s = scim.clone();
    let u = users.clone();
    let g = gid.clone();
    let results = race(10, move |i| {
        s.patch(
            &format!("/Groups/{g}"),
            &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "Remove", "path": "members", "value": [{"$ref": null, "value": u[i]}]}]}),
        )
    });
    for r in &results {
        r.expect_empty(204);
    }
    assert_eq!(member_ids(&scim.get_group(&gid)), set(&users[10..]));
}

#[test]
fn concurrent_patches_to_different_users_all_land() {
    let scim = server().tenant();
    let tag = uid();
    let users: Vec<String> = (0..20).map(|i| scim.user_id(&format!("cp{i}-{tag}@contoso.com"))).collect();
    let s = scim.clone();
    let u = users.clone();
    let results = race(20, move |i| {
        s.patch(
            &format!("/Users/{}", u[i]),
            &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [
                {"op": "Replace", "path": "name.familyName", "value": format!("Family{i}")},
                {"op": "Replace", "path": "active", "value": "False"}]}),
        )
    });
    for (i, r) in results.iter().enumerate() {
        let body = r.scim(200);
        assert_eq!(body["name"]["familyName"], format!("Family{i}"));
    }
    for (i, id) in users.iter().enumerate() {
        let u = scim.get_user(id);
        assert_eq!(u["name"]["familyName"], format!("Family{i}"), "{u}");
        assert_eq!(u["active"], false, "{u}");
    }
}

#[test]
fn concurrent_patches_of_distinct_attributes_on_one_user_lose_nothing() {
    let scim: Scim = server().tenant();
    let u = scim.create_user(&json!({"schemas": [USER_SCHEMA], "userName": format!("hot-{}@contoso.com", uid())}));
    let id = id_of(&u);
    let v0 = version_number(&u["meta"]["version"]);
    let attrs = [
        "displayName",
        "nickName",
        "title",
        "userType",
        "preferredLanguage",
        "locale",
        "timezone",
        "profileUrl",
        "name.middleName",
        "name.honorificPrefix",
    ];
    let values =
        ["Disp", "Nick", "Title", "Employee", "en-US", "en-US", "Europe/Paris", "https://example.com/p", "Mid", "Dr."];
    let s = scim.clone();
    let i2 = id.clone();
    let results = race(attrs.len(), move |i| {
        s.patch(
            &format!("/Users/{i2}"),
            &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "Replace", "path": attrs[i], "value": values[i]}]}),
        )
    });
    // Each response shows the user at or after its own write (read-your-writes); under
    // concurrency that state may already include other writers' changes.
    let mut versions: Vec<u64> = results.iter().map(|r| version_number(&r.scim(200)["meta"]["version"])).collect();
    versions.sort_unstable();
    let got = scim.get_user(&id);
    for (a, v) in attrs.iter().zip(values) {
        let actual: &Value = match a.split_once('.') {
            Some((p, c)) => &got[p][c],
            None => &got[*a],
        };
        assert_eq!(actual, v, "lost update of {a}: {got}");
    }
    let last = version_number(&got["meta"]["version"]);
    assert!(versions.iter().all(|v| *v > v0), "versions grow: {versions:?} after {v0}");
    assert!(last >= v0 + attrs.len() as u64, "every PATCH must bump the version ({v0} -> {last}): {got}");
    assert!(versions.iter().all(|v| *v <= last), "no response is newer than the final state: {versions:?} vs {last}");
}

#[test]
fn a_write_through_one_ingress_replica_is_visible_on_the_next_read_through_another() {
    let srv = server();
    let scim = srv.tenant();
    let origins = srv.public_origins();
    if backend() == Backend::Kafka {
        assert!(origins.len() >= 2, "the Kafka backend runs two ingress replicas: {origins:?}");
    }
    let id = scim.user_id(&format!("ryw-{}@contoso.com", uid()));
    let path = format!("/scim/v2/accounts/{}/Users/{id}", scim.account_id);
    let auth = format!("Bearer {}", scim.token);
    for i in 0..12 {
        let (w, r) = (&origins[i % origins.len()], &origins[(i + 1) % origins.len()]);
        let title = format!("title-{i}");
        let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                          "Operations": [{"op": "Replace", "path": "title", "value": title}]});
        Req::new("PATCH", format!("{w}{path}"))
            .header("Authorization", &auth)
            .header("Content-Type", "application/scim+json")
            .body(body.to_string())
            .send(scim.agent())
            .scim(200);
        let got = Req::new("GET", format!("{r}{path}")).header("Authorization", &auth).send(scim.agent()).scim(200);
        assert_eq!(got["title"], title.as_str(), "written through {w}, read through {r}: {got}");
    }
}
