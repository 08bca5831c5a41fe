//! A batch holds its membership changes and writes them together at its end: what the members
//! table holds afterwards is the last change of each membership, on SQLite and on Postgres. A
//! deleted user leaves no membership and no license pin behind.

mod support;
use support::{postgres, user_created};

use roster_db::{Db, testing};
use roster_eventlog::{Position, Record};
use roster_events::{Envelope, Member, Payload, ResourceType};
use roster_projector::{Projector, ProjectorConfig};
use roster_scim::schema::PATCH_OP_SCHEMA;
use serde_json::{Value, json};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn records(first: i64, events: &[Envelope]) -> Vec<Record> {
    events
        .iter()
        .zip(first..)
        .map(|(env, offset)| Record { position: Position { partition: 0, offset }, envelope: Ok(env.clone()) })
        .collect()
}

fn group_event(id: &str, payload: Payload) -> Envelope {
    let mut env = user_created("unused@x");
    env.resource_type = ResourceType::Group;
    env.resource_id = id.into();
    env.payload = payload;
    env
}

fn group_created(id: &str, name: &str, members: &[&str]) -> Envelope {
    let attributes = match json!({"displayName": name}) {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    let members = members.iter().map(|m| Member { value: (*m).into() }).collect();
    group_event(id, Payload::GroupCreated { attributes, members })
}

fn group_patched(id: &str, operations: Value) -> Envelope {
    let patch = json!({"schemas": [PATCH_OP_SCHEMA], "Operations": operations});
    group_event(id, Payload::GroupPatched { patch, if_match: None })
}

fn add(id: &str, members: &[&str]) -> Envelope {
    let values: Vec<Value> = members.iter().map(|m| json!({"value": m})).collect();
    group_patched(id, json!([{"op": "add", "path": "members", "value": values}]))
}

fn remove(id: &str, member: &str) -> Envelope {
    group_patched(id, json!([{"op": "remove", "path": format!("members[value eq \"{member}\"]")}]))
}

async fn members(db: &Db, group: &str) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let mut ids: Vec<String> =
        roster_store::read::group_members(db, "acc", group).await?.into_iter().map(|m| m.value).collect();
    ids.sort();
    Ok(ids)
}

async fn a_batch_of_member_changes_leaves_the_last_change_of_each_membership(db: Db) -> TestResult {
    let projector = Projector::new(db.clone(), None, ProjectorConfig::default());
    let users: Vec<Envelope> = ["a@x", "b@x", "c@x", "d@x"].iter().map(|n| user_created(n)).collect();
    let [u1, u2, u3, u4] = [0, 1, 2, 3].map(|i| users[i].resource_id.clone());
    let mut setup = users.clone();
    setup.push(group_created("g1", "devs", &[&u4]));
    setup.push(group_created("g2", "ops", &[&u3]));
    projector.apply_batch(0, &records(1, &setup)).await?;

    let batch = [
        add("g1", &[&u1, &u2]),
        add("g2", &[&u1, "g1"]),
        remove("g1", &u2),
        add("g1", &[&u3]),
        remove("g2", &u1),
        add("g2", &[&u1]),
        // Rejected as a whole: one of its members does not exist, so u2 stays out of g2.
        add("g2", &[&u2, "nobody"]),
        // The user is deleted with its memberships, including the one added in this batch.
        {
            let mut env = user_created("d@x");
            env.resource_id = u4.clone();
            env.payload = Payload::UserDeleted { if_match: None };
            env
        },
        remove("g2", "g3"),
        // A membership from before the batch.
        remove("g2", &u3),
    ];
    let result = projector.apply_batch(0, &records(setup.len() as i64 + 1, &batch)).await?;
    let statuses: Vec<u16> = result.outcomes.iter().map(|(_, o)| o.status).collect();
    assert_eq!(statuses, vec![204, 204, 204, 204, 204, 204, 400, 204, 204, 204]);

    let mut g1 = vec![u1.clone(), u3.clone()];
    g1.sort();
    assert_eq!(members(&db, "g1").await?, g1);
    let mut g2 = vec![u1.clone(), "g1".to_string()];
    g2.sort();
    assert_eq!(members(&db, "g2").await?, g2);
    Ok(())
}

#[tokio::test]
async fn sqlite_a_batch_of_member_changes_leaves_the_last_change_of_each_membership() -> TestResult {
    let (db, _url) = testing::fresh_sqlite("members").await?;
    a_batch_of_member_changes_leaves_the_last_change_of_each_membership(db).await
}

#[tokio::test]
async fn postgres_a_batch_of_member_changes_leaves_the_last_change_of_each_membership() -> TestResult {
    let Some(db) = postgres("members").await? else { return Ok(()) };
    a_batch_of_member_changes_leaves_the_last_change_of_each_membership(db).await
}

async fn a_deleted_user_leaves_no_membership_and_no_pin(db: Db) -> TestResult {
    let projector = Projector::new(db.clone(), None, ProjectorConfig::default());
    let user = user_created("a@x");
    let id = user.resource_id.clone();
    let mut policy = user_created("unused@x");
    policy.payload = Payload::LicensePolicySet {
        policy: json!({"license_types": [{"name": "developer", "rank": 40, "seats": null}], "rules": [],
                       "default_license": null}),
    };
    let mut pin = user_created("unused@x");
    pin.payload = Payload::LicenseOverrideSet { user_id: id.clone(), license: "developer".into() };
    let mut deleted = user_created("a@x");
    deleted.resource_id = id.clone();
    deleted.payload = Payload::UserDeleted { if_match: None };
    let events = [policy, user, group_created("g1", "devs", &[&id]), pin];
    projector.apply_batch(0, &records(1, &events)).await?;
    assert_eq!(roster_store::licensing::overrides(&db, "acc").await?.len(), 1);

    let result = projector.apply_batch(0, &records(5, &[deleted])).await?;
    assert_eq!(result.outcomes.first().map(|(_, o)| o.status), Some(204));
    assert!(members(&db, "g1").await?.is_empty());
    assert!(roster_store::licensing::overrides(&db, "acc").await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn sqlite_a_deleted_user_leaves_no_membership_and_no_pin() -> TestResult {
    let (db, _url) = testing::fresh_sqlite("deleted").await?;
    a_deleted_user_leaves_no_membership_and_no_pin(db).await
}

#[tokio::test]
async fn postgres_a_deleted_user_leaves_no_membership_and_no_pin() -> TestResult {
    let Some(db) = postgres("deleted").await? else { return Ok(()) };
    a_deleted_user_leaves_no_membership_and_no_pin(db).await
}

fn deleted(user: &Envelope) -> Envelope {
    let mut env = user.clone();
    env.event_id = uuid::Uuid::now_v7();
    env.payload = Payload::UserDeleted { if_match: None };
    env
}

/// A batch holds its users' deletions and writes them together: whatever reads the database
/// after a deletion must see the user gone.
async fn users_deleted_in_a_batch_cannot_be_added_back_and_free_their_names(db: Db) -> TestResult {
    let projector = Projector::new(db.clone(), None, ProjectorConfig::default());
    let users: Vec<Envelope> = ["a@x", "b@x", "c@x", "d@x"].iter().map(|n| user_created(n)).collect();
    let ids: Vec<&str> = users.iter().map(|u| u.resource_id.as_str()).collect();
    let mut setup = users.clone();
    setup.push(group_created("g1", "devs", &ids));
    setup.push(group_created("g2", "ops", &[]));
    let mut policy = user_created("unused@x");
    policy.payload = Payload::LicensePolicySet {
        policy: json!({"license_types": [{"name": "developer", "rank": 40, "seats": null}], "rules": [],
                       "default_license": null}),
    };
    setup.push(policy);
    for id in &ids {
        let mut pin = user_created("unused@x");
        pin.payload = Payload::LicenseOverrideSet { user_id: (*id).into(), license: "developer".into() };
        setup.push(pin);
    }
    projector.apply_batch(0, &records(1, &setup)).await?;
    assert_eq!(roster_store::licensing::overrides(&db, "acc").await?.len(), 4);

    let again = user_created("A@x");
    let batch = [
        deleted(&users[0]),
        // The deleted user's userName is free again, though the database holds it until the batch
        // writes its deletions.
        again.clone(),
        deleted(&users[1]),
        deleted(&users[2]),
        // Refused: the user is gone.
        add("g2", &[ids[2]]),
        deleted(&users[3]),
    ];
    let result = projector.apply_batch(0, &records(setup.len() as i64 + 1, &batch)).await?;
    let statuses: Vec<u16> = result.outcomes.iter().map(|(_, o)| o.status).collect();
    assert_eq!(statuses, vec![204, 201, 204, 204, 400, 204]);
    assert!(members(&db, "g1").await?.is_empty());
    assert!(members(&db, "g2").await?.is_empty());
    assert!(roster_store::licensing::overrides(&db, "acc").await?.is_empty());
    let q = roster_store::read::ListQuery { filter: None, sort_by: None, descending: false, start_index: 1, count: 10 };
    let (total, left) = roster_store::read::list_users(&db, "acc", &q).await?;
    assert_eq!(total, 1);
    assert_eq!(left.first().map(|u| u.id.as_str()), Some(again.resource_id.as_str()));
    Ok(())
}

#[tokio::test]
async fn sqlite_users_deleted_in_a_batch_cannot_be_added_back_and_free_their_names() -> TestResult {
    let (db, _url) = testing::fresh_sqlite("deleted-batch").await?;
    users_deleted_in_a_batch_cannot_be_added_back_and_free_their_names(db).await
}

#[tokio::test]
async fn postgres_users_deleted_in_a_batch_cannot_be_added_back_and_free_their_names() -> TestResult {
    let Some(db) = postgres("deleted_batch").await? else { return Ok(()) };
    users_deleted_in_a_batch_cannot_be_added_back_and_free_their_names(db).await
}
