//! The projector applies a run of `user.created` events with one lookup and one multi-row insert;
//! whatever the batch boundaries, every decision and the resulting users equal applying the same
//! events one by one with a query per check.

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

#[derive(Debug, Clone)]
enum Op {
    Create { account: usize, id: usize, name: usize },
    Rename { account: usize, id: usize, name: usize },
    Delete { account: usize, id: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..2usize, 0..4usize, 0..4usize).prop_map(|(account, id, name)| Op::Create { account, id, name }),
        2 => (0..2usize, 0..4usize, 0..4usize).prop_map(|(account, id, name)| Op::Rename { account, id, name }),
        1 => (0..2usize, 0..4usize).prop_map(|(account, id)| Op::Delete { account, id }),
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

/// Every user of both accounts as (account, id, userName, version).
async fn users(db: &Db) -> Vec<(String, String, String, i64)> {
    let mut out = Vec::new();
    for account in ACCOUNTS {
        for id in IDS {
            if let Ok(Some(u)) = roster_store::read::get_user(db, account, id).await {
                out.push((account.to_string(), u.id, u.user_name, u.version));
            }
        }
    }
    out
}

fn summary(o: &Outcome) -> (u16, Option<String>) {
    (o.status, o.error.as_ref().and_then(|e| e.scim_type.clone()))
}

async fn batched(
    events: &[Envelope],
    cuts: &[usize],
) -> (Vec<(u16, Option<String>)>, Vec<(String, String, String, i64)>) {
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

async fn one_by_one(events: &[Envelope]) -> (Vec<(u16, Option<String>)>, Vec<(String, String, String, i64)>) {
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
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn runs_of_creates_decide_exactly_as_one_event_at_a_time(
        ops in proptest::collection::vec(op(), 1..40),
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
