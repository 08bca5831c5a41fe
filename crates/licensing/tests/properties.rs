//! The licensing worker's promise, checked on random histories (proptest): any sequence of user, group,
//! membership, override and policy changes, applied through the real projector and worker (the scoped
//! re-evaluation of marked users, two racing workers, restarts at random points), never over-allocates a
//! seat, and whenever the system settles every user holds exactly what a from-scratch evaluation of the
//! whole account gives.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{ACCOUNT, attrs, env};
use proptest::prelude::*;
use roster_db::Db;
use roster_eventlog::{DbLog, DbLogConfig, EventLog};
use roster_events::{Envelope, Member, Payload, ResourceType};
use roster_license_policy::allocate;
use roster_licensing::{LicensingWorker, WorkerConfig};
use roster_projector::{Projector, ProjectorConfig};
use roster_store::licensing;
use serde_json::{Value, json};

const USERS: usize = 12;
const GROUPS: usize = 3;
/// Group names: three that rules name (one in another case) and one that none does.
const NAMES: [&str; 5] = ["devs", "analysts", "ops", "DEVS", "marketing"];
const LICENSES: [&str; 3] = ["developer", "analyst", "read_only"];

#[derive(Debug, Clone)]
enum Op {
    Join(usize, usize),
    Leave(usize, usize),
    SetActive(usize, bool),
    Retitle(usize, usize),
    DeleteUser(usize),
    CreateUser(usize),
    RenameGroup(usize, usize),
    DeleteGroup(usize),
    CreateGroup(usize, usize, Vec<usize>),
    Policy(u64, u64, bool),
    Pin(usize, Option<usize>),
    Round(usize),
    Restart(usize),
    Settle,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..USERS, 0..GROUPS).prop_map(|(u, g)| Op::Join(u, g)),
        3 => (0..USERS, 0..GROUPS).prop_map(|(u, g)| Op::Leave(u, g)),
        3 => (0..USERS, any::<bool>()).prop_map(|(u, a)| Op::SetActive(u, a)),
        // An attribute that is no input of the policy: it marks no one, but moves the user's version.
        2 => (0..USERS, 0..NAMES.len()).prop_map(|(u, n)| Op::Retitle(u, n)),
        1 => (0..USERS).prop_map(Op::DeleteUser),
        2 => (0..USERS).prop_map(Op::CreateUser),
        1 => (0..GROUPS, 0..NAMES.len()).prop_map(|(g, n)| Op::RenameGroup(g, n)),
        1 => (0..GROUPS).prop_map(Op::DeleteGroup),
        1 => (0..GROUPS, 0..NAMES.len(), proptest::collection::vec(0..USERS, 0..6))
            .prop_map(|(g, n, m)| Op::CreateGroup(g, n, m)),
        1 => (1u64..5, 0u64..3, any::<bool>()).prop_map(|(d, a, default)| Op::Policy(d, a, default)),
        1 => (0..USERS, proptest::option::of(0..LICENSES.len())).prop_map(|(u, l)| Op::Pin(u, l)),
        4 => (0..2usize).prop_map(Op::Round),
        1 => (0..2usize).prop_map(Op::Restart),
        2 => Just(Op::Settle),
    ]
}

fn user(i: usize) -> String {
    format!("user-{i:02}")
}

fn group(i: usize) -> String {
    format!("group-{i}")
}

fn patch(ops: Value) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops})
}

fn policy(dev: u64, analyst: u64, default: bool) -> Value {
    json!({
        "license_types": [{"name": "developer", "rank": 40, "seats": dev},
                          {"name": "analyst", "rank": 30, "seats": analyst},
                          {"name": "read_only", "rank": 10, "seats": null}],
        "rules": [{"group": "devs", "license": "developer"}, {"group": "analysts", "license": "analyst"},
                  {"group": "ops", "license": "analyst"}, {"group": "ops", "license": "read_only"}],
        "default_license": if default { Value::from("read_only") } else { Value::Null }
    })
}

struct Rig {
    db: Db,
    log: DbLog,
    projector: Projector,
    next: i64,
    workers: Vec<LicensingWorker>,
}

impl Rig {
    async fn new(db: Db) -> Rig {
        let log = DbLog::start(db.clone(), DbLogConfig::default());
        let projector = Projector::new(db.clone(), None, ProjectorConfig::default());
        let mut rig = Rig { db, log, projector, next: 1, workers: Vec::new() };
        rig.workers = vec![rig.worker(), rig.worker()];
        rig
    }

    fn worker(&self) -> LicensingWorker {
        let config = WorkerConfig { hold: None, ..WorkerConfig::default() };
        LicensingWorker::new(self.db.clone(), Arc::new(self.log.clone()), config)
    }

    /// Applies everything appended so far one event at a time, checking after each that no limited license
    /// gained holders beyond its limit.
    async fn drain(&mut self) -> Result<(), TestCaseError> {
        loop {
            let records = self.log.read(self.next, 1000).await.unwrap();
            if records.is_empty() {
                return Ok(());
            }
            for record in records {
                let before = licensing::seat_counts(&self.db, ACCOUNT).await.unwrap();
                self.projector.apply_batch(0, std::slice::from_ref(&record)).await.unwrap();
                self.next = record.position.offset + 1;
                let after = licensing::seat_counts(&self.db, ACCOUNT).await.unwrap();
                let Some(policy) = licensing::get_policy(&self.db, ACCOUNT).await.unwrap() else { continue };
                for lt in &policy.license_types {
                    let Some(limit) = lt.seats else { continue };
                    let b = before.get(&lt.name).copied().unwrap_or(0);
                    let a = after.get(&lt.name).copied().unwrap_or(0);
                    prop_assert!(a <= limit || a <= b, "{} over-allocated: {b} -> {a} of {limit}", lt.name);
                }
            }
        }
    }

    async fn append(&mut self, e: Envelope) -> Result<(), TestCaseError> {
        self.log.append(vec![e]).await.unwrap();
        self.drain().await
    }

    /// Rounds of both workers until the log stops growing; then every user holds what a from-scratch
    /// evaluation gives, and a full evaluation finds nothing to change.
    async fn settle(&mut self) -> Result<(), TestCaseError> {
        for _ in 0..30 {
            let before = self.log.last_position().await.unwrap();
            for w in &mut self.workers {
                w.round().await.unwrap();
            }
            self.drain().await?;
            if self.log.last_position().await.unwrap() == before {
                let Some(policy) = licensing::get_policy(&self.db, ACCOUNT).await.unwrap() else { return Ok(()) };
                let snap = licensing::snapshot(&self.db, ACCOUNT).await.unwrap();
                let holdings = snap.holdings();
                let expected = allocate(&policy, &snap.inputs(), &holdings).holdings();
                prop_assert_eq!(&holdings, &expected, "licenses differ from a from-scratch evaluation");
                let r = self.worker().reconcile(ACCOUNT).await.unwrap();
                prop_assert_eq!(r.appended, 0, "a full evaluation of a settled account changes nothing");
                return Ok(());
            }
        }
        Err(TestCaseError::fail("the workers never settled"))
    }

    async fn run(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Join(u, g) => {
                let p = patch(json!([{"op": "add", "path": "members", "value": [{"value": user(*u)}]}]));
                self.append(env(ResourceType::Group, &group(*g), Payload::GroupPatched { patch: p, if_match: None }))
                    .await
            }
            Op::Leave(u, g) => {
                let p = patch(json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", user(*u))}]));
                self.append(env(ResourceType::Group, &group(*g), Payload::GroupPatched { patch: p, if_match: None }))
                    .await
            }
            Op::SetActive(u, active) => {
                let p = patch(json!([{"op": "replace", "path": "active", "value": active}]));
                self.append(env(ResourceType::User, &user(*u), Payload::UserPatched { patch: p, if_match: None })).await
            }
            Op::Retitle(u, n) => {
                let p = patch(json!([{"op": "replace", "path": "title", "value": NAMES[*n]}]));
                self.append(env(ResourceType::User, &user(*u), Payload::UserPatched { patch: p, if_match: None })).await
            }
            Op::DeleteUser(u) => {
                self.append(env(ResourceType::User, &user(*u), Payload::UserDeleted { if_match: None })).await
            }
            Op::CreateUser(u) => {
                let a = attrs(json!({"userName": user(*u)}));
                self.append(env(ResourceType::User, &user(*u), Payload::UserCreated { attributes: a })).await
            }
            Op::RenameGroup(g, n) => {
                let p = patch(json!([{"op": "replace", "path": "displayName", "value": NAMES[*n]}]));
                self.append(env(ResourceType::Group, &group(*g), Payload::GroupPatched { patch: p, if_match: None }))
                    .await
            }
            Op::DeleteGroup(g) => {
                self.append(env(ResourceType::Group, &group(*g), Payload::GroupDeleted { if_match: None })).await
            }
            Op::CreateGroup(g, n, members) => {
                let members = members.iter().map(|u| Member { value: user(*u) }).collect();
                let a = attrs(json!({"displayName": NAMES[*n]}));
                self.append(env(ResourceType::Group, &group(*g), Payload::GroupCreated { attributes: a, members }))
                    .await
            }
            Op::Policy(dev, analyst, default) => {
                let p = Payload::LicensePolicySet { policy: policy(*dev, *analyst, *default) };
                self.append(env(ResourceType::Account, ACCOUNT, p)).await
            }
            Op::Pin(u, Some(l)) => {
                let p = Payload::LicenseOverrideSet { user_id: user(*u), license: LICENSES[*l].into() };
                self.append(env(ResourceType::User, &user(*u), p)).await
            }
            Op::Pin(u, None) => {
                let p = Payload::LicenseOverrideRemoved { user_id: user(*u) };
                self.append(env(ResourceType::User, &user(*u), p)).await
            }
            Op::Round(w) => {
                self.workers[*w].round().await.unwrap();
                Ok(())
            }
            Op::Restart(w) => {
                self.workers[*w] = self.worker();
                Ok(())
            }
            Op::Settle => self.settle().await,
        }
    }
}

async fn history(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let (db, _dir) = roster_db::testing::fresh_sqlite("licensing-props").await.unwrap();
    let mut rig = Rig::new(db).await;
    let mut seed = Vec::new();
    for u in 0..USERS {
        seed.push(Op::CreateUser(u));
    }
    for g in 0..GROUPS {
        seed.push(Op::CreateGroup(g, g, Vec::new()));
    }
    seed.push(Op::Policy(2, 1, true));
    for op in seed.iter().chain(&ops) {
        rig.run(op).await?;
    }
    rig.drain().await?;
    rig.settle().await
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_histories_never_over_allocate_and_settle_to_a_from_scratch_evaluation(
        ops in proptest::collection::vec(op(), 1..40)
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(history(ops))?;
    }
}
