//! The projector applies a run of `user.created` events with one lookup and one multi-row insert,
//! a batch's user and group changes against one lookup with the rows written back together, its
//! member changes resolved against one lookup and written together,
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

/// Groups and their names (two differing only in case).
const GIDS: [&str; 3] = ["g1", "g2", "g3"];
const GROUP_NAMES: [&str; 4] = ["devs", "DEVS", "ops", "qa"];

/// What a group's member may name: a user or a group (itself included). An index past the end
/// names no member.
const MEMBERS: [&str; 7] = ["u1", "u2", "u3", "u4", "g1", "g2", "g3"];

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
    /// A create, with the member `MEMBERS[member]` when there is one.
    GroupCreate {
        account: usize,
        group: usize,
        name: usize,
        member: usize,
    },
    /// A rename, with `If-Match: W/"n"` when `if_match` is 1 to 3 (0 sends none).
    GroupRename {
        account: usize,
        group: usize,
        name: usize,
        if_match: u64,
    },
    /// An add of `MEMBERS[member]`, and of `MEMBERS[second]` when there is one.
    GroupAdd {
        account: usize,
        group: usize,
        member: usize,
        second: usize,
    },
    GroupRemove {
        account: usize,
        group: usize,
        member: usize,
    },
    /// A removal of every member.
    GroupClear {
        account: usize,
        group: usize,
    },
    GroupPut {
        account: usize,
        group: usize,
        name: usize,
        member: usize,
    },
    GroupDelete {
        account: usize,
        group: usize,
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
        3 => (0..2usize, 0..3usize, 0..4usize, 0..10usize)
            .prop_map(|(account, group, name, member)| Op::GroupCreate { account, group, name, member }),
        3 => (0..2usize, 0..3usize, 0..4usize, 0..4u64)
            .prop_map(|(account, group, name, if_match)| Op::GroupRename { account, group, name, if_match }),
        5 => (0..2usize, 0..3usize, 0..7usize, 0..10usize)
            .prop_map(|(account, group, member, second)| Op::GroupAdd { account, group, member, second }),
        3 => (0..2usize, 0..3usize, 0..7usize).prop_map(|(account, group, member)| Op::GroupRemove { account, group, member }),
        1 => (0..2usize, 0..3usize).prop_map(|(account, group)| Op::GroupClear { account, group }),
        1 => (0..2usize, 0..3usize, 0..4usize, 0..7usize)
            .prop_map(|(account, group, name, member)| Op::GroupPut { account, group, name, member }),
        1 => (0..2usize, 0..3usize).prop_map(|(account, group)| Op::GroupDelete { account, group }),
    ]
}

fn group_patch(operations: serde_json::Value) -> serde_json::Value {
    json!({"schemas": [PATCH_OP_SCHEMA], "Operations": operations})
}

/// The group events: (account, group, payload).
fn group_event(op: &Op) -> Option<(usize, usize, Payload)> {
    let attrs = |name: usize| match json!({"displayName": GROUP_NAMES[name]}) {
        serde_json::Value::Object(m) => m,
        _ => Map::new(),
    };
    Some(match *op {
        Op::GroupCreate { account, group, name, member } => {
            let members =
                MEMBERS.get(member).map(|m| roster_events::Member { value: (*m).into() }).into_iter().collect();
            (account, group, Payload::GroupCreated { attributes: attrs(name), members })
        }
        Op::GroupRename { account, group, name, if_match } => {
            let patch = group_patch(json!([{"op": "replace", "path": "displayName", "value": GROUP_NAMES[name]}]));
            (account, group, Payload::GroupPatched { patch, if_match: (if_match > 0).then_some(if_match) })
        }
        Op::GroupAdd { account, group, member, second } => {
            let values: Vec<serde_json::Value> = [Some(MEMBERS[member]), MEMBERS.get(second).copied()]
                .into_iter()
                .flatten()
                .map(|v| json!({"value": v}))
                .collect();
            let patch = group_patch(json!([{"op": "add", "path": "members", "value": values}]));
            (account, group, Payload::GroupPatched { patch, if_match: None })
        }
        Op::GroupRemove { account, group, member } => {
            let patch =
                group_patch(json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", MEMBERS[member])}]));
            (account, group, Payload::GroupPatched { patch, if_match: None })
        }
        Op::GroupClear { account, group } => {
            let patch = group_patch(json!([{"op": "remove", "path": "members"}]));
            (account, group, Payload::GroupPatched { patch, if_match: None })
        }
        Op::GroupPut { account, group, name, member } => {
            let members = vec![roster_events::Member { value: MEMBERS[member].into() }];
            (account, group, Payload::GroupReplaced { attributes: attrs(name), members, if_match: None })
        }
        Op::GroupDelete { account, group } => (account, group, Payload::GroupDeleted { if_match: None }),
        _ => return None,
    })
}

fn envelope(op: &Op) -> Envelope {
    if let Some((account, group, payload)) = group_event(op) {
        return event(account, ResourceType::Group, GIDS[group], payload);
    }
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
        _ => unreachable!("group events are built above"),
    };
    event(account, ResourceType::User, IDS[id], payload)
}

fn event(account: usize, resource_type: ResourceType, id: &str, payload: Payload) -> Envelope {
    Envelope {
        v: ENVELOPE_VERSION,
        event_id: Uuid::now_v7(),
        account_id: ACCOUNTS[account].into(),
        resource_type,
        resource_id: id.into(),
        time: "2026-11-29T00:00:00.000Z".into(),
        request_id: None,
        trace_context: None,
        actor: Actor::System,
        payload,
    }
}

/// A user as the comparison sees it: account, id, userName, version, active, license and displayName.
type UserState = (String, String, String, i64, bool, Option<String>, Option<String>);

/// A group as the comparison sees it: account, id, displayName, version and member ids.
type GroupState = (String, String, String, i64, Vec<String>);

/// Every group of both accounts.
async fn groups(db: &Db) -> Vec<GroupState> {
    let mut out = Vec::new();
    for account in ACCOUNTS {
        for id in GIDS {
            if let Ok(Some(g)) = roster_store::read::get_group(db, account, id).await {
                let members = roster_store::read::group_members(db, account, id)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"))
                    .into_iter()
                    .map(|m| m.value)
                    .collect();
                out.push((account.to_string(), g.id, g.display_name, g.version, members));
            }
        }
    }
    out
}

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

/// Outcomes (status, scimType) in log order, then the users and groups left behind.
type Applied = (Vec<(u16, Option<String>)>, Vec<UserState>, Vec<GroupState>);

async fn batched(events: &[Envelope], cuts: &[usize]) -> Applied {
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
    (outcomes, users(&db).await, groups(&db).await)
}

async fn one_by_one(events: &[Envelope]) -> Applied {
    let (db, _) = testing::fresh_sqlite("one-by-one").await.unwrap_or_else(|e| panic!("{e}"));
    let mut outcomes = Vec::new();
    for env in events {
        let txn = db.begin().await.unwrap_or_else(|e| panic!("{e}"));
        let mut ctx = ApplyContext::new(Vec::<String>::new());
        let o = apply_event(&txn, env, &mut ctx).await.unwrap_or_else(|e| panic!("{e}"));
        txn.commit().await.unwrap_or_else(|e| panic!("{e}"));
        outcomes.push(summary(&o));
    }
    (outcomes, users(&db).await, groups(&db).await)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn runs_of_creates_license_changes_and_cached_user_and_group_changes_decide_exactly_as_one_event_at_a_time(
        ops in proptest::collection::vec(op(), 1..60),
        cuts in proptest::collection::vec(0usize..64, 0..4),
    ) {
        let events: Vec<Envelope> = ops.iter().map(envelope).collect();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap_or_else(|e| panic!("{e}"));
        let (batched_outcomes, batched_users, batched_groups) = rt.block_on(batched(&events, &cuts));
        let (single_outcomes, single_users, single_groups) = rt.block_on(one_by_one(&events));
        prop_assert_eq!(batched_outcomes, single_outcomes);
        prop_assert_eq!(batched_users, single_users);
        prop_assert_eq!(batched_groups, single_groups);
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
    let (outcomes, users, _) = batched(&events, &[]).await;
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
    let (outcomes, users, _) = batched(&events, &[]).await;
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
    let (outcomes, users, _) = batched(&events, &[]).await;
    let statuses: Vec<u16> = outcomes.iter().map(|o| o.0).collect();
    assert_eq!(statuses, vec![201, 201, 200, 200, 409], "{outcomes:?}");
    let names: Vec<&str> = users.iter().map(|u| u.2.as_str()).collect();
    assert_eq!(names, vec!["cy@x", "ANN@x"], "{users:?}");
    let single = one_by_one(&events).await;
    assert_eq!((single.0, single.1), (outcomes, users));
}

/// Two users created in a first batch, then u1 renamed from "ann@x" to "cy@x" in the second,
/// a change the user cache holds back, then `create`: the statuses and the userNames left, which
/// one event at a time must give too.
async fn create_after_a_held_rename(create: Op) -> (Vec<u16>, Vec<String>) {
    let events: Vec<Envelope> = [
        Op::Create { account: 0, id: 0, name: 0 },
        Op::Create { account: 0, id: 1, name: 2 },
        Op::Rename { account: 0, id: 0, name: 3 },
        create,
    ]
    .iter()
    .map(envelope)
    .collect();
    let (outcomes, users, _) = batched(&events, &[2]).await;
    let single = one_by_one(&events).await;
    assert_eq!((&single.0, &single.1), (&outcomes, &users));
    (outcomes.iter().map(|o| o.0).collect(), users.into_iter().map(|u| u.2).collect())
}

#[tokio::test]
async fn a_create_may_take_the_user_name_a_rename_held_in_the_cache_freed() {
    // The database still shows u1 holding "ann@x".
    let (statuses, names) = create_after_a_held_rename(Op::Create { account: 0, id: 2, name: 1 }).await;
    assert_eq!(statuses, vec![201, 201, 200, 201]);
    assert_eq!(names, vec!["cy@x", "bob@x", "ANN@x"]);
}

#[tokio::test]
async fn a_create_may_not_take_the_user_name_a_rename_held_in_the_cache_took() {
    // The database does not show u1 holding "cy@x" yet.
    let (statuses, names) = create_after_a_held_rename(Op::Create { account: 0, id: 2, name: 3 }).await;
    assert_eq!(statuses, vec![201, 201, 200, 409]);
    assert_eq!(names, vec!["cy@x", "bob@x"]);
}

#[tokio::test]
async fn a_group_may_not_take_the_name_a_rename_held_in_the_cache_took() {
    let events: Vec<Envelope> = [
        Op::GroupCreate { account: 0, group: 0, name: 0, member: 9 },
        Op::GroupCreate { account: 0, group: 1, name: 2, member: 9 },
        // Next batch: g2 leaves "ops" for "qa"; the rename waits in the batch's group cache, so the
        // database knows no holder of "qa" yet.
        Op::GroupRename { account: 0, group: 1, name: 3, if_match: 0 },
        Op::GroupCreate { account: 0, group: 2, name: 3, member: 9 },
        // "ops" is free again, although the database still says g2 holds it.
        Op::GroupRename { account: 0, group: 0, name: 2, if_match: 0 },
    ]
    .iter()
    .map(envelope)
    .collect();
    let (outcomes, users, groups) = batched(&events, &[2]).await;
    let statuses: Vec<u16> = outcomes.iter().map(|o| o.0).collect();
    assert_eq!(statuses, vec![201, 201, 204, 409, 204], "{outcomes:?}");
    let names: Vec<&str> = groups.iter().map(|g| g.2.as_str()).collect();
    assert_eq!(names, vec!["ops", "qa"], "{groups:?}");
    assert_eq!(one_by_one(&events).await, (outcomes, users, groups));
}

#[tokio::test]
async fn a_group_name_freed_by_a_rename_earlier_in_the_batch_can_be_taken() {
    let events: Vec<Envelope> = [
        Op::GroupCreate { account: 0, group: 0, name: 0, member: 9 },
        Op::GroupCreate { account: 0, group: 1, name: 2, member: 9 },
        // g1 leaves "devs" for "qa"; the rename waits in the batch's group cache.
        Op::GroupRename { account: 0, group: 0, name: 3, if_match: 0 },
        // g2 takes "DEVS": free, although the database still says g1 holds it until written back.
        Op::GroupRename { account: 0, group: 1, name: 1, if_match: 0 },
        // And g1 takes "ops", which g2 has left; a new group cannot take "devs" from g2.
        Op::GroupRename { account: 0, group: 0, name: 2, if_match: 0 },
        Op::GroupCreate { account: 0, group: 2, name: 0, member: 9 },
    ]
    .iter()
    .map(envelope)
    .collect();
    let (outcomes, users, groups) = batched(&events, &[]).await;
    let statuses: Vec<u16> = outcomes.iter().map(|o| o.0).collect();
    assert_eq!(statuses, vec![201, 201, 204, 204, 204, 409], "{outcomes:?}");
    let names: Vec<&str> = groups.iter().map(|g| g.2.as_str()).collect();
    assert_eq!(names, vec!["ops", "DEVS"], "{groups:?}");
    assert_eq!(one_by_one(&events).await, (outcomes, users, groups));
}
