//! Events the projector's integration tests build.

use roster_events::{Actor, ENVELOPE_VERSION, Envelope, Payload, ResourceType};
use serde_json::json;
use uuid::Uuid;

/// A `user.created` event for a new user of account `acc`.
pub fn user_created(user_name: &str) -> Envelope {
    let attributes = match json!({"userName": user_name}) {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    Envelope {
        v: ENVELOPE_VERSION,
        event_id: Uuid::now_v7(),
        account_id: "acc".into(),
        resource_type: ResourceType::User,
        resource_id: Uuid::new_v4().to_string(),
        time: "2026-11-29T00:00:00.000Z".into(),
        request_id: None,
        trace_context: None,
        actor: Actor::System,
        payload: Payload::UserCreated { attributes },
    }
}

/// A fresh Postgres database when the suite has a server (`make test` starts one), else `None`.
/// Not every test binary that includes this module has Postgres cases.
#[allow(dead_code)]
pub async fn postgres(tag: &str) -> Result<Option<roster_db::Db>, Box<dyn std::error::Error>> {
    let Some(base) = roster_db::testing::postgres_url() else { return Ok(None) };
    Ok(Some(roster_db::testing::fresh_postgres(&base, tag).await?.0))
}
