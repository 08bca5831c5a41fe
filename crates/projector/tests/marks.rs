//! The projector marks for the licensing worker exactly the users whose license an event may
//! change: a user's `active`, groups a rule names, overrides. Marks nobody needs cost the worker an
//! evaluation each, and Entra's cycles are mostly attribute syncs and member changes of groups no
//! rule names.

mod support;
use support::user_created;

use roster_db::{Db, testing};
use roster_eventlog::{Position, Record};
use roster_events::{Envelope, Member, Payload, ResourceType};
use roster_projector::{Projector, ProjectorConfig};
use roster_scim::schema::PATCH_OP_SCHEMA;
use serde_json::{Value, json};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Applies events one batch each, as a live projector would, and returns who is marked afterwards.
struct Rig {
    db: Db,
    projector: Projector,
    next: i64,
}

impl Rig {
    async fn new(name: &str) -> Result<Rig, Box<dyn std::error::Error>> {
        let (db, _) = testing::fresh_sqlite(name).await?;
        let projector = Projector::new(db.clone(), None, ProjectorConfig::default());
        let mut rig = Rig { db, projector, next: 0 };
        let mut policy = user_created("unused@x");
        policy.resource_type = ResourceType::Account;
        policy.payload = Payload::LicensePolicySet {
            policy: json!({"license_types": [{"name": "developer", "rank": 40, "seats": null}],
                           "rules": [{"group": "Developers", "license": "developer"}],
                           "default_license": null}),
        };
        rig.apply(&[policy]).await?;
        Ok(rig)
    }

    /// Applies `events` in one batch, then returns the users marked since the last call, sorted.
    async fn apply(&mut self, events: &[Envelope]) -> Result<Vec<String>, Box<dyn std::error::Error>> {
        let records: Vec<Record> = events
            .iter()
            .map(|env| {
                self.next += 1;
                Record { position: Position { partition: 0, offset: self.next - 1 }, envelope: Ok(env.clone()) }
            })
            .collect();
        self.projector.apply_batch(0, &records).await?;
        let mut marked: Vec<String> =
            roster_store::licensing::dirty(&self.db, "acc").await?.into_iter().map(|(user, _)| user).collect();
        roster_store::licensing::clear_dirty(&self.db, "acc", i64::MAX).await?;
        marked.sort();
        Ok(marked)
    }
}

fn patched(of: &Envelope, resource_type: ResourceType, operations: Value) -> Envelope {
    let mut env = user_created("unused@x");
    env.resource_type = resource_type;
    env.resource_id = of.resource_id.clone();
    let patch = json!({"schemas": [PATCH_OP_SCHEMA], "Operations": operations});
    env.payload = match resource_type {
        ResourceType::Group => Payload::GroupPatched { patch, if_match: None },
        _ => Payload::UserPatched { patch, if_match: None },
    };
    env
}

fn group(name: &str, members: &[&Envelope]) -> Envelope {
    let mut env = user_created("unused@x");
    env.resource_type = ResourceType::Group;
    env.resource_id = uuid::Uuid::new_v4().to_string();
    let attributes = match json!({"displayName": name}) {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    let members = members.iter().map(|m| Member { value: m.resource_id.clone() }).collect();
    env.payload = Payload::GroupCreated { attributes, members };
    env
}

fn add(to: &Envelope, user: &Envelope) -> Envelope {
    patched(to, ResourceType::Group, json!([{"op": "add", "path": "members", "value": [{"value": user.resource_id}]}]))
}

fn rename(group: &Envelope, name: &str) -> Envelope {
    patched(group, ResourceType::Group, json!([{"op": "replace", "path": "displayName", "value": name}]))
}

#[tokio::test]
async fn attribute_changes_mark_no_one_but_a_change_of_active_marks_its_user() -> TestResult {
    let mut rig = Rig::new("marks-attributes").await?;
    let user = user_created("a@x");
    assert_eq!(rig.apply(std::slice::from_ref(&user)).await?, vec![user.resource_id.clone()], "a new user");
    let retitled = patched(&user, ResourceType::User, json!([{"op": "replace", "path": "title", "value": "CTO"}]));
    assert_eq!(rig.apply(&[retitled]).await?, Vec::<String>::new());
    let same = patched(&user, ResourceType::User, json!([{"op": "replace", "path": "active", "value": true}]));
    assert_eq!(rig.apply(&[same]).await?, Vec::<String>::new(), "active already true");
    let off = patched(&user, ResourceType::User, json!([{"op": "replace", "path": "active", "value": false}]));
    assert_eq!(rig.apply(&[off]).await?, vec![user.resource_id.clone()]);
    Ok(())
}

#[tokio::test]
async fn member_changes_of_a_group_no_rule_names_mark_no_one() -> TestResult {
    let mut rig = Rig::new("marks-unnamed").await?;
    let (a, b) = (user_created("a@x"), user_created("b@x"));
    rig.apply(&[a.clone(), b.clone()]).await?;
    let sales = group("Sales", &[&a]);
    assert_eq!(rig.apply(std::slice::from_ref(&sales)).await?, Vec::<String>::new(), "created with a member");
    assert_eq!(rig.apply(&[add(&sales, &b)]).await?, Vec::<String>::new());
    let removal = patched(&sales, ResourceType::Group, json!([{"op": "remove", "path": "members"}]));
    assert_eq!(rig.apply(&[removal]).await?, Vec::<String>::new());
    Ok(())
}

#[tokio::test]
async fn member_changes_of_a_group_a_rule_names_mark_their_users() -> TestResult {
    let mut rig = Rig::new("marks-named").await?;
    let (a, b) = (user_created("a@x"), user_created("b@x"));
    rig.apply(&[a.clone(), b.clone()]).await?;
    // Rules match displayNames case-insensitively.
    let devs = group("developers", &[&a]);
    assert_eq!(rig.apply(std::slice::from_ref(&devs)).await?, vec![a.resource_id.clone()]);
    assert_eq!(rig.apply(&[add(&devs, &b)]).await?, vec![b.resource_id.clone()]);
    Ok(())
}

#[tokio::test]
async fn renaming_a_group_to_or_from_a_name_a_rule_names_marks_its_members() -> TestResult {
    let mut rig = Rig::new("marks-renamed").await?;
    let (a, b) = (user_created("a@x"), user_created("b@x"));
    rig.apply(&[a.clone(), b.clone()]).await?;
    let team = group("Platform", &[&a, &b]);
    rig.apply(std::slice::from_ref(&team)).await?;
    let both = {
        let mut v = vec![a.resource_id.clone(), b.resource_id.clone()];
        v.sort();
        v
    };
    assert_eq!(rig.apply(&[rename(&team, "Tooling")]).await?, Vec::<String>::new(), "neither name is named");
    assert_eq!(rig.apply(&[rename(&team, "Developers")]).await?, both, "to a named name");
    assert_eq!(rig.apply(&[rename(&team, "Platform")]).await?, both, "from a named name");
    Ok(())
}
