//! The projector applies a run of `user.created` events with one lookup and one multi-row insert,
//! a batch's user changes against one lookup with the rows written back together,
//! and a run of `license.changed` events with one lookup and one multi-row update; whatever the
//! batch boundaries, every decision and the resulting users equal applying the same events one by
//! one with a query per check.

use proptest::prelude::*;
use roster_db::{Db, testing};
use roster_eventlog::{Position, Record};
use roster_events::{Actor, ENVELOPE_VERSION, Envelope, Outcome, Payload, ResourceType};
use roster_projector::{ApplyContext, Projector, ProjectorConfig, apply_event};
use roster_scim::schema::PATCH_OP_SCHEMA;
use sea_orm::TransactionTrait;
use serde_json::{Map, json};
use uuid::Uuid;

/// A small pool of ids, names (two differing only in case) and accounts, so collisions are common.
const IDS: [&str; 4] = ["u1", "u2", "u3", "u4"];
const NAMES: [&str; 4] = ["ann@x", "ANN@x", "bob@x", "cy@x"];
const ACCOUNTS: [&str; 2] = ["acc-a", "acc-b"];

/// Licenses a change may name: `None` (no license), a limited one, an unlimited one, an undefined one.
const LICENSES: [Option<&str>; 4] = [None, Some("developer"), Some("read_only"), Some("nonexistent")];

#[derive(Debug, Clone)]
enum Op {
    Create {
        account: usize,
        id: usize,
        name: usize,
    },
    Rename {
        account: usize,
        id: usize,
        name: usize,
    },
    Delete {
        account: usize,
        id: usize,
    },
    Deactivate {
        account: usize,
        id: usize,
    },
    /// An attribute change, with `If-Match: W/"n"` when `if_match` is 1 to 3 (0 sends none).
    Touch {
        account: usize,
        id: usize,
        display: usize,
        if_match: u64,
    },
    Policy {
        account: usize,
        developer_seats: u64,
    },
    License {
        account: usize,
        id: usize,
        from: usize,
        to: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..2usize, 0..4usize, 0..4usize).prop_map(|(account, id, name)| Op::Create { account, id, name }),
        2 => (0..2usize, 0..4usize, 0..4usize).prop_map(|(account, id, name)| Op::Rename { account, id, name }),
        1 => (0..2usize, 0..4usize).prop_map(|(account, id)| Op::Delete { account, id }),
        1 => (0..2usize, 0..4usize).prop_map(|(account, id)| Op::Deactivate { account, id }),
        4 => (0..2usize, 0..4usize, 0..3usize, 0..4u64)
            .prop_map(|(account, id, display, if_match)| Op::Touch { account, id, display, if_match }),
        1 => (0..2usize, 0..3u64).prop_map(|(account, developer_seats)| Op::Policy { account, developer_seats }),
        8 => (0..2usize, 0..4usize, 0..3usize, 0..4usize).prop_map(|(account, id, from, to)| Op::License { account, id, from, to }),
    ]
}

fn envelope(op: &Op) -> Envelope {
    let (account, id, payload) = match op {
        Op::Create { account, id, name } => {
            let mut attributes = Map::new();
            attributes.insert("userName".into(), json!(NAMES[*name]));
            (*account, *id, Payload::UserCreated { attributes })
        }
        Op::Rename { account, id, name } => {
            let patch = json!({"schemas": [PATCH_OP_SCHEMA], "Operations": [{"op": "replace", "path": "userName", "value": NAMES[*name]}]});
            (*account, *id, Payload::UserPatched { patch, if_match: None })
        }
        Op::Delete { account, id } => (*account, *id, Payload::UserDeleted { if_match: None }),
        Op::Deactivate { account, id } => {
            let patch = json!({"schemas": [PATCH_OP_SCHEMA], "Operations": [{"op": "replace", "path": "active", "value": false}]});
            (*account, *id, Payload::UserPatched { patch, if_match: None })
        }
        Op::Touch { account, id, display, if_match } => {
            let patch = json!({"schemas": [PATCH_OP_SCHEMA], "Operations": [{"op": "replace", "path": "displayName", "value": format!("D{display}")}]});
            (*account, *id, Payload::UserPatched { patch, if_match: (*if_match > 0).then_some(*if_match) })
        }
        Op::Policy { account, developer_seats } => {
            let policy = json!({
                "license_types": [{"name": "developer", "rank": 40, "seats": developer_seats},
                                  {"name": "read_only", "rank": 10, "seats": null}],
                "rules": [],
                "default_license": null
            });
            (*account, 0, Payload::LicensePolicySet { policy })
        }
        Op::License { account, id, from, to } => {
            let payload = Payload::LicenseChanged {
                user_id: IDS[*id].into(),
                from: LICENSES[*from].map(str::to_owned),
                to: LICENSES[*to].map(str::to_owned),
                reason: json!({"kind": "rule"}),
            };
            (*account, *id, payload)
        }
    };
    Envelope {
        v: ENVELOPE_VERSION,
        event_id: Uuid::now_v7(),
        account_id: ACCOUNTS[account].into(),
        resource_type: ResourceType::User,
        resource_id: IDS[id].into(),
        time: "2026-11-29T00:00:00.000Z".into(),
        request_id: None,
        trace_context: None,
        actor: Actor::System,
        payload,
    }
}

/// A user as the comparison sees it: account, id, userName, version, active, license and displayName.
type UserState = (String, String, String, i64, bool, Option<String>, Option<String>);

/// Every user of both accounts.
async fn users(db: &Db) -> Vec<UserState> {
    let mut out = Vec::new();
    for account in ACCOUNTS {
        for id in IDS {
            if let Ok(Some(u)) = roster_store::read::get_user(db, account, id).await {
                out.push((account.to_string(), u.id, u.user_name, u.version, u.active, u.license_type, u.display_name));
            }
        }
    }
    out
}

fn summary(o: &Outcome) -> (u16, Option<String>) {
    (o.status, o.error.as_ref().and_then(|e| e.scim_type.clone()))
}

async fn batched(events: &[Envelope], cuts: &[usize]) -> (Vec<(u16, Option<String>)>, Vec<UserState>) {
    let (db, _) = testing::fresh_sqlite("batched").await.unwrap_or_else(|e| panic!("{e}"));
    let projector = Projector::new(db.clone(), None, ProjectorConfig::default());
    let records: Vec<Record> = events
        .iter()
        .enumerate()
        .map(|(i, e)| Record { position: Position { partition: 0, offset: i as i64 + 1 }, envelope: Ok(e.clone()) })
        .collect();
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (records.len() + 1)).collect();
    bounds.extend([0, records.len()]);
    bounds.sort_unstable();
    bounds.dedup();
    let mut outcomes = Vec::new();
    for w in bounds.windows(2) {
        let result = projector.apply_batch(0, &records[w[0]..w[1]]).await.unwrap_or_else(|e| panic!("{e}"));
        outcomes.extend(result.outcomes.iter().map(|(_, o)| summary(o)));
    }
    (outcomes, users(&db).await)
}

async fn one_by_one(events: &[Envelope]) -> (Vec<(u16, Option<String>)>, Vec<UserState>) {
    let (db, _) = testing::fresh_sqlite("one-by-one").await.unwrap_or_else(|e| panic!("{e}"));
    let mut outcomes = Vec::new();
    for env in events {
        let txn = db.begin().await.unwrap_or_else(|e| panic!("{e}"));
        let mut ctx = ApplyContext::new(Vec::<String>::new());
        let o = apply_event(&txn, env, &mut ctx).await.unwrap_or_else(|e| panic!("{e}"));
        txn.commit().await.unwrap_or_else(|e| panic!("{e}"));
        outcomes.push(summary(&o));
    }
    (outcomes, users(&db).await)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn runs_of_creates_license_changes_and_cached_user_changes_decide_exactly_as_one_event_at_a_time(
        ops in proptest::collection::vec(op(), 1..60),
        cuts in proptest::collection::vec(0usize..64, 0..4),
    ) {
        let events: Vec<Envelope> = ops.iter().map(envelope).collect();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap_or_else(|e| panic!("{e}"));
        let (batched_outcomes, batched_users) = rt.block_on(batched(&events, &cuts));
        let (single_outcomes, single_users) = rt.block_on(one_by_one(&events));
        prop_assert_eq!(batched_outcomes, single_outcomes);
        prop_assert_eq!(batched_users, single_users);
    }
}

#[tokio::test]
async fn a_batch_of_creates_rejects_a_user_name_taken_earlier_in_the_batch_in_another_case() {
    let events: Vec<Envelope> = [
        Op::Create { account: 0, id: 0, name: 0 },
        Op::Create { account: 0, id: 1, name: 1 },
        Op::Create { account: 1, id: 1, name: 1 },
        Op::Create { account: 0, id: 0, name: 2 },
    ]
    .iter()
    .map(envelope)
    .collect();
    let (outcomes, users) = batched(&events, &[]).await;
    let statuses: Vec<u16> = outcomes.iter().map(|o| o.0).collect();
    assert_eq!(statuses, vec![201, 409, 201, 409], "{outcomes:?}");
    assert_eq!(users.len(), 2, "{users:?}");
}

#[tokio::test]
async fn a_run_of_license_changes_never_grants_more_seats_than_the_limit() {
    let mut ops = vec![Op::Policy { account: 0, developer_seats: 2 }];
    // Three users (names 0, 2 and 3: names 0 and 1 differ only in case).
    ops.extend([0, 2, 3].map(|id| Op::Create { account: 0, id, name: id }));
    ops.extend([0, 2, 3].map(|id| Op::License { account: 0, id, from: 0, to: 1 }));
    // A seat frees up within the run and the next change takes it.
    ops.push(Op::License { account: 0, id: 0, from: 1, to: 0 });
    ops.push(Op::License { account: 0, id: 3, from: 0, to: 1 });
    let events: Vec<Envelope> = ops.iter().map(envelope).collect();
    let (outcomes, users) = batched(&events, &[]).await;
    let statuses: Vec<u16> = outcomes.iter().map(|o| o.0).collect();
    assert_eq!(statuses, vec![200, 201, 201, 201, 200, 200, 409, 200, 200], "{outcomes:?}");
    let developers: Vec<&str> =
        users.iter().filter(|u| u.5.as_deref() == Some("developer")).map(|u| u.1.as_str()).collect();
    assert_eq!(developers, vec!["u3", "u4"], "{users:?}");
}

#[tokio::test]
async fn a_user_name_freed_by_a_rename_earlier_in_the_batch_can_be_taken() {
    let events: Vec<Envelope> = [
        Op::Create { account: 0, id: 0, name: 0 },
        Op::Create { account: 0, id: 1, name: 2 },
        // u1 leaves "ann@x" for "cy@x"; the rename waits in the batch's user cache.
        Op::Rename { account: 0, id: 0, name: 3 },
        // u2 takes "ANN@x": free, although the database still says u1 holds it until written back.
        Op::Rename { account: 0, id: 1, name: 1 },
        // And "cy@x" is u1's now.
        Op::Rename { account: 0, id: 1, name: 3 },
    ]
    .iter()
    .map(envelope)
    .collect();
    let (outcomes, users) = batched(&events, &[]).await;
    let statuses: Vec<u16> = outcomes.iter().map(|o| o.0).collect();
    assert_eq!(statuses, vec![201, 201, 200, 200, 409], "{outcomes:?}");
    let names: Vec<&str> = users.iter().map(|u| u.2.as_str()).collect();
    assert_eq!(names, vec!["cy@x", "ANN@x"], "{users:?}");
    assert_eq!(one_by_one(&events).await, (outcomes, users));
}
