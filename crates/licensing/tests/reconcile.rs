//! The worker against a real read model and database log (SQLite, and Postgres when
//! `ROSTER_TEST_DATABASE_URL` is set): random membership/activation/policy changes, two racing workers and
//! restarts always end with no over-allocation and with licenses equal to a from-scratch allocation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{ACCOUNT, attrs, env};
use roster_db::Db;
use roster_eventlog::{DbLog, DbLogConfig, EventLog};
use roster_events::{Envelope, Member, Payload, ResourceType};
use roster_license_policy::{HoldThreshold, allocate, parse_policy};
use roster_licensing::{LicensingWorker, WorkerConfig};
use roster_projector::{Projector, ProjectorConfig};
use roster_store::licensing;
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

/// A tiny deterministic generator (no extra dependency), seeded per case.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

struct Rig {
    db: Db,
    log: DbLog,
    projector: Projector,
    next: i64,
}

impl Rig {
    async fn new(db: Db) -> Rig {
        let log = DbLog::start(db.clone(), DbLogConfig::default());
        let projector = Projector::new(db.clone(), None, ProjectorConfig::default());
        Rig { db, log, projector, next: 1 }
    }

    /// Applies everything appended so far.
    async fn drain(&mut self) {
        loop {
            let records = self.log.read(self.next, 1000).await.unwrap();
            let Some(last) = records.last() else { return };
            let last = last.position.offset;
            self.projector.apply_batch(0, &records).await.unwrap();
            self.next = last + 1;
        }
    }

    async fn append(&mut self, events: Vec<Envelope>) {
        self.log.append(events).await.unwrap();
    }

    fn worker(&self) -> LicensingWorker {
        let config = WorkerConfig { hold: None, ..WorkerConfig::default() };
        LicensingWorker::new(self.db.clone(), Arc::new(self.log.clone()), config)
    }

    async fn assert_converged(&self, limit: u64) {
        let policy = licensing::get_policy(&self.db, ACCOUNT).await.unwrap().unwrap();
        let snap = licensing::snapshot(&self.db, ACCOUNT).await.unwrap();
        let seats = licensing::seat_counts(&self.db, ACCOUNT).await.unwrap();
        assert!(seats.get("developer").copied().unwrap_or(0) <= limit, "over-allocated: {seats:?}");
        let holdings = snap.holdings();
        let expected = allocate(&policy, &snap.inputs(), &holdings).holdings();
        assert_eq!(holdings, expected, "licenses differ from a from-scratch evaluation");
    }
}

fn policy(dev_seats: u64) -> Value {
    json!({
        "license_types": [{"name": "developer", "rank": 40, "seats": dev_seats},
                          {"name": "analyst", "rank": 30, "seats": 2},
                          {"name": "read_only", "rank": 10, "seats": null}],
        "rules": [{"group": "devs", "license": "developer"}, {"group": "analysts", "license": "analyst"}],
        "default_license": "read_only"
    })
}

async fn random_sequences_converge(db: Db, seed: u64) {
    let mut rig = Rig::new(db).await;
    let mut rng = Lcg(seed);
    let users: Vec<String> = (0..20).map(|i| format!("user-{i:02}")).collect();
    let mut events = Vec::new();
    for u in &users {
        events.push(env(ResourceType::User, u, Payload::UserCreated { attributes: attrs(json!({"userName": u})) }));
    }
    for g in ["devs", "analysts"] {
        events.push(env(
            ResourceType::Group,
            g,
            Payload::GroupCreated { attributes: attrs(json!({"displayName": g})), members: vec![] },
        ));
    }
    rig.append(events).await;
    let mut dev_seats = 3;
    rig.append(vec![env(ResourceType::Account, ACCOUNT, Payload::LicensePolicySet { policy: policy(dev_seats) })])
        .await;
    rig.drain().await;

    let mut a = rig.worker();
    let mut b = rig.worker();
    for step in 0..40 {
        let u = &users[rng.next(users.len() as u64) as usize];
        let change = match rng.next(5) {
            0 | 1 => {
                let g = if rng.next(2) == 0 { "devs" } else { "analysts" };
                let op = if rng.next(3) == 0 { "remove" } else { "add" };
                let patch = if op == "add" {
                    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "add", "path": "members", "value": [{"value": u}]}]})
                } else {
                    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "remove", "path": format!("members[value eq \"{u}\"]")}]})
                };
                env(ResourceType::Group, g, Payload::GroupPatched { patch, if_match: None })
            }
            2 => {
                let active = rng.next(3) != 0;
                let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "path": "active", "value": active}]});
                env(ResourceType::User, u, Payload::UserPatched { patch, if_match: None })
            }
            3 => {
                dev_seats = 1 + rng.next(4);
                env(ResourceType::Account, ACCOUNT, Payload::LicensePolicySet { policy: policy(dev_seats) })
            }
            _ => env(
                ResourceType::Group,
                "devs",
                Payload::GroupReplaced {
                    attributes: attrs(json!({"displayName": "devs"})),
                    members: users.iter().filter(|_| rng.next(3) == 0).map(|v| Member { value: v.clone() }).collect(),
                    if_match: None,
                },
            ),
        };
        rig.append(vec![change]).await;
        rig.drain().await;
        // Two workers propose concurrently (both before the projector runs): the seat guard serialises them.
        a.round().await.unwrap();
        b.round().await.unwrap();
        rig.drain().await;
        if step % 7 == 3 {
            // A restart: a fresh worker with no memory reconciles everything once.
            a = rig.worker();
        }
        let seats = licensing::seat_counts(&rig.db, ACCOUNT).await.unwrap();
        assert!(seats.get("developer").copied().unwrap_or(0) <= dev_seats, "over-allocated at step {step}: {seats:?}");
        assert!(seats.get("analyst").copied().unwrap_or(0) <= 2, "over-allocated at step {step}: {seats:?}");
    }
    // Quiesce: rounds until nothing is appended.
    for _ in 0..10 {
        a.round().await.unwrap();
        rig.drain().await;
    }
    rig.assert_converged(dev_seats).await;
    // The run exercised the guard: changes were applied, and the racing duplicates were rejected.
    let count = |status: i32| {
        let db = rig.db.clone();
        async move {
            let b = db.get_database_backend();
            let sql = "SELECT COUNT(*) FROM event_outcomes WHERE envelope LIKE '%license.changed%' AND status = ?";
            let row = db.query_one_raw(roster_db::stmt(b, sql, [status.into()])).await.unwrap().unwrap();
            row.try_get_by_index::<i64>(0).unwrap()
        }
    };
    assert!(count(200).await > 10, "license changes were applied");
    assert!(count(409).await > 0, "racing duplicates were rejected by the seat guard");
    // A fresh worker finds nothing to do.
    let before = rig.log.last_position().await.unwrap();
    rig.worker().reconcile(ACCOUNT).await.unwrap();
    assert_eq!(rig.log.last_position().await.unwrap(), before, "a converged account produces no events");
}

#[tokio::test]
async fn random_changes_with_racing_workers_and_restarts_converge_without_over_allocation_on_sqlite() {
    for seed in 1..=4 {
        let (db, _) = roster_db::testing::fresh_sqlite("licensing").await.unwrap();
        random_sequences_converge(db, seed).await;
    }
}

#[tokio::test]
async fn random_changes_with_racing_workers_and_restarts_converge_without_over_allocation_on_postgres() {
    let Some(url) = roster_db::testing::postgres_url() else { return };
    let (db, _) = roster_db::testing::fresh_postgres(&url, "licensing").await.unwrap();
    random_sequences_converge(db, 7).await;
}

#[tokio::test]
async fn a_mass_revocation_is_held_once_and_not_duplicated_across_rounds() {
    let (db, _) = roster_db::testing::fresh_sqlite("licensing-hold").await.unwrap();
    let mut rig = Rig::new(db).await;
    let users: Vec<String> = (0..12).map(|i| format!("u{i:02}")).collect();
    let mut events: Vec<Envelope> = users
        .iter()
        .map(|u| env(ResourceType::User, u, Payload::UserCreated { attributes: attrs(json!({"userName": u})) }))
        .collect();
    events.push(env(
        ResourceType::Group,
        "g",
        Payload::GroupCreated {
            attributes: attrs(json!({"displayName": "everyone"})),
            members: users.iter().map(|u| Member { value: u.clone() }).collect(),
        },
    ));
    let p = json!({"license_types": [{"name": "member", "rank": 1, "seats": null}],
                   "rules": [{"group": "everyone", "license": "member"}]});
    assert!(parse_policy(&p).is_ok());
    events.push(env(ResourceType::Account, ACCOUNT, Payload::LicensePolicySet { policy: p }));
    rig.append(events).await;
    rig.drain().await;
    let config = WorkerConfig { hold: Some(HoldThreshold::default()), ..WorkerConfig::default() };
    let mut w = LicensingWorker::new(rig.db.clone(), Arc::new(rig.log.clone()), config);
    w.round().await.unwrap();
    rig.drain().await;
    assert_eq!(licensing::seat_counts(&rig.db, ACCOUNT).await.unwrap().get("member"), Some(&12));

    rig.append(vec![env(ResourceType::Group, "g", Payload::GroupDeleted { if_match: None })]).await;
    rig.drain().await;
    for _ in 0..3 {
        w.reconcile(ACCOUNT).await.unwrap();
        rig.drain().await;
    }
    let holds = licensing::holds(&rig.db, ACCOUNT).await.unwrap();
    assert_eq!(holds.len(), 1, "one hold, not one per round: {holds:?}");
    assert_eq!(holds[0].status, "pending");
    assert_eq!(licensing::seat_counts(&rig.db, ACCOUNT).await.unwrap().get("member"), Some(&12), "nothing revoked yet");

    // Deactivating one of them is never held: the projector frees the seat at once.
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "path": "active", "value": false}]});
    rig.append(vec![env(ResourceType::User, "u00", Payload::UserPatched { patch, if_match: None })]).await;
    rig.drain().await;
    assert_eq!(licensing::seat_counts(&rig.db, ACCOUNT).await.unwrap().get("member"), Some(&11));

    let hold_id = holds[0].id.clone();
    rig.append(vec![env(ResourceType::Account, ACCOUNT, Payload::LicenseHoldResolved { hold_id, confirm: true })])
        .await;
    rig.drain().await;
    w.round().await.unwrap();
    rig.drain().await;
    assert_eq!(licensing::seat_counts(&rig.db, ACCOUNT).await.unwrap().get("member"), None, "all revoked");
    let holds = licensing::holds(&rig.db, ACCOUNT).await.unwrap();
    assert_eq!(holds[0].status, "applied");
}

/// End-to-end cost of re-licensing an account after a policy change: the worker's load + allocate + append
/// and the projector applying every `license.changed` through the seat guard (database log, SQLite).
/// `ROSTER_BENCH_USERS=100000 cargo test --release -p roster-licensing --test reconcile -- --ignored --nocapture`
#[tokio::test]
#[ignore = "benchmark; run explicitly"]
async fn bench_relicensing_after_a_policy_change() {
    let n: usize = std::env::var("ROSTER_BENCH_USERS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let (db, _) = roster_db::testing::fresh_sqlite("licensing-bench").await.unwrap();
    let mut rig = Rig::new(db).await;
    let t = std::time::Instant::now();
    let users: Vec<String> = (0..n).map(|i| format!("user-{i:07}")).collect();
    for chunk in users.chunks(2000) {
        let events = chunk
            .iter()
            .map(|u| env(ResourceType::User, u, Payload::UserCreated { attributes: attrs(json!({"userName": u})) }))
            .collect();
        rig.append(events).await;
    }
    let groups = [("devs", 4), ("analysts", 10)];
    for (g, every) in groups {
        let members = users.iter().step_by(every).map(|u| Member { value: u.clone() }).collect();
        rig.append(vec![env(
            ResourceType::Group,
            g,
            Payload::GroupCreated { attributes: attrs(json!({"displayName": g})), members },
        )])
        .await;
    }
    let bench_policy = |dev: usize| {
        json!({
            "license_types": [{"name": "developer", "rank": 40, "seats": dev},
                              {"name": "analyst", "rank": 30, "seats": n / 10},
                              {"name": "read_only", "rank": 10, "seats": null}],
            "rules": [{"group": "devs", "license": "developer"}, {"group": "analysts", "license": "analyst"}],
            "default_license": "read_only"
        })
    };
    rig.append(vec![env(ResourceType::Account, ACCOUNT, Payload::LicensePolicySet { policy: bench_policy(n / 4) })])
        .await;
    rig.drain().await;
    println!("seeded {n} users in {:?}", t.elapsed());

    let w = rig.worker();
    let t = std::time::Instant::now();
    let r = w.reconcile(ACCOUNT).await.unwrap();
    let planned = t.elapsed();
    rig.drain().await;
    println!("first licensing: {} changes, worker {planned:?}, total with projector {:?}", r.appended, t.elapsed());

    rig.append(vec![env(ResourceType::Account, ACCOUNT, Payload::LicensePolicySet { policy: bench_policy(n / 5) })])
        .await;
    rig.drain().await;
    let t = std::time::Instant::now();
    let r = w.reconcile(ACCOUNT).await.unwrap();
    let planned = t.elapsed();
    rig.drain().await;
    println!(
        "policy change (developer seats {} -> {}): {} changes, worker {planned:?}, total with projector {:?}",
        n / 4,
        n / 5,
        r.appended,
        t.elapsed()
    );
    let t = std::time::Instant::now();
    let r = w.reconcile(ACCOUNT).await.unwrap();
    println!("no-op reconciliation of {n} users: {} changes in {:?}", r.appended, t.elapsed());
    rig.assert_converged((n / 5) as u64).await;
}

/// Seeds `users` and the groups (id, displayName, members) under `policy(100)`, runs the first full
/// round and returns its worker.
async fn licensed_account(rig: &mut Rig, users: &[String], groups: &[(&str, &str, &[String])]) -> LicensingWorker {
    let mut events: Vec<Envelope> = users
        .iter()
        .map(|u| env(ResourceType::User, u, Payload::UserCreated { attributes: attrs(json!({"userName": u})) }))
        .collect();
    for (id, name, members) in groups {
        events.push(env(
            ResourceType::Group,
            id,
            Payload::GroupCreated {
                attributes: attrs(json!({"displayName": name})),
                members: members.iter().map(|u| Member { value: u.clone() }).collect(),
            },
        ));
    }
    events.push(env(ResourceType::Account, ACCOUNT, Payload::LicensePolicySet { policy: policy(100) }));
    rig.append(events).await;
    rig.drain().await;
    let mut w = rig.worker();
    w.round().await.unwrap();
    rig.drain().await;
    w
}

#[tokio::test]
async fn a_membership_change_re_evaluates_only_the_affected_users() {
    let (db, _) = roster_db::testing::fresh_sqlite("licensing-scope").await.unwrap();
    let mut rig = Rig::new(db).await;
    let users: Vec<String> = (0..300).map(|i| format!("u{i:03}")).collect();
    let w = licensed_account(
        &mut rig,
        &users,
        &[("devs", "devs", &users[..100]), ("analysts", "analysts", &users[100..102])],
    )
    .await;
    let seq = licensing::seq(&rig.db, ACCOUNT).await.unwrap();
    let (r, _) = w.reconcile_marked(ACCOUNT, seq).await.unwrap();
    assert_eq!(r, None, "the first (full) round covered every mark");

    // One user joins a group of 100: only they are evaluated (developer is full; nobody's seat moves).
    let add = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                     "Operations": [{"op": "add", "path": "members", "value": [{"value": "u200"}]}]});
    rig.append(vec![env(ResourceType::Group, "devs", Payload::GroupPatched { patch: add, if_match: None })]).await;
    rig.drain().await;
    let seq = licensing::seq(&rig.db, ACCOUNT).await.unwrap();
    let (r, full) = w.reconcile_marked(ACCOUNT, seq).await.unwrap();
    let r = r.expect("the join was marked");
    assert!(!full);
    assert_eq!(r.evaluated, 1, "{r:?}");
    rig.drain().await;

    // A developer leaves: their seat frees, so the users waiting for one (u200) are evaluated with them.
    let remove = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                        "Operations": [{"op": "remove", "path": "members[value eq \"u000\"]"}]});
    rig.append(vec![env(ResourceType::Group, "devs", Payload::GroupPatched { patch: remove, if_match: None })]).await;
    rig.drain().await;
    let seq = licensing::seq(&rig.db, ACCOUNT).await.unwrap();
    let (r, _) = w.reconcile_marked(ACCOUNT, seq).await.unwrap();
    let r = r.expect("the leave was marked");
    assert_eq!(r.evaluated, 2, "{r:?}");
    rig.drain().await;
    let snap = licensing::snapshot(&rig.db, ACCOUNT).await.unwrap();
    assert_eq!(snap.holdings().get("u200").map(String::as_str), Some("developer"), "the waiting user got the seat");
    rig.assert_converged(100).await;
}

#[tokio::test]
async fn renaming_a_group_re_evaluates_its_members_only_when_the_policy_names_the_old_or_new_name() {
    let (db, _) = roster_db::testing::fresh_sqlite("licensing-rename").await.unwrap();
    let mut rig = Rig::new(db).await;
    let users: Vec<String> = (0..10).map(|i| format!("u{i:03}")).collect();
    let w =
        licensed_account(&mut rig, &users, &[("g-devs", "devs", &users[..4]), ("g-other", "marketing", &users[4..])])
            .await;
    let rename = |name: &str| {
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
               "Operations": [{"op": "replace", "path": "displayName", "value": name}]})
    };

    // A group no rule names gets another name no rule names: nobody's license can change.
    rig.append(vec![env(
        ResourceType::Group,
        "g-other",
        Payload::GroupPatched { patch: rename("sales"), if_match: None },
    )])
    .await;
    rig.drain().await;
    let seq = licensing::seq(&rig.db, ACCOUNT).await.unwrap();
    let (r, _) = w.reconcile_marked(ACCOUNT, seq).await.unwrap();
    assert_eq!(r.map(|r| r.evaluated).unwrap_or(0), 0, "no member marked");

    // "devs" leaves the policy: its four members are evaluated and lose the developer license.
    rig.append(vec![env(
        ResourceType::Group,
        "g-devs",
        Payload::GroupPatched { patch: rename("former"), if_match: None },
    )])
    .await;
    rig.drain().await;
    let seq = licensing::seq(&rig.db, ACCOUNT).await.unwrap();
    let (r, _) = w.reconcile_marked(ACCOUNT, seq).await.unwrap();
    assert_eq!(r.expect("the rename was marked").evaluated, 4);
    rig.drain().await;

    // And "sales" becomes "devs": its six members are evaluated and get the license.
    rig.append(vec![env(
        ResourceType::Group,
        "g-other",
        Payload::GroupPatched { patch: rename("DEVS"), if_match: None },
    )])
    .await;
    rig.drain().await;
    let seq = licensing::seq(&rig.db, ACCOUNT).await.unwrap();
    let (r, _) = w.reconcile_marked(ACCOUNT, seq).await.unwrap();
    assert_eq!(r.expect("the rename was marked").evaluated, 6);
    rig.drain().await;
    let snap = licensing::snapshot(&rig.db, ACCOUNT).await.unwrap();
    let holders: Vec<&str> = users[4..].iter().map(String::as_str).collect();
    let holdings = snap.holdings();
    let mut developers: Vec<&str> =
        holdings.iter().filter(|(_, l)| l.as_str() == "developer").map(|(u, _)| u.as_str()).collect();
    developers.sort_unstable();
    assert_eq!(developers, holders);
}
