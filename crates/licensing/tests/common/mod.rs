//! Event builders shared by the licensing worker's tests.

use roster_events::{Actor, ENVELOPE_VERSION, Envelope, Payload, ResourceType};
use serde_json::{Map, Value};
use uuid::Uuid;

/// The account every test works in.
pub const ACCOUNT: &str = "acc";

/// An admin-made event on `id` in [`ACCOUNT`].
pub fn env(resource_type: ResourceType, id: &str, payload: Payload) -> Envelope {
    Envelope {
        v: ENVELOPE_VERSION,
        event_id: Uuid::now_v7(),
        account_id: ACCOUNT.into(),
        resource_type,
        resource_id: id.into(),
        time: "2026-11-29T00:00:00.000Z".into(),
        request_id: None,
        trace_context: None,
        actor: Actor::Admin,
        payload,
    }
}

/// A JSON object literal as an attribute map.
pub fn attrs(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}
