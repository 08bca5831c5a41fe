//! The event envelope and payloads that travel through Roster's event log.
//!
//! The log records *requested* changes, validated by the ingress and stamped with the ids and
//! times they will carry. The projector is the single decider: it applies each event to the read
//! model or rejects it (uniqueness, `If-Match`, unknown members) deterministically, so replaying
//! the log from the start rebuilds exactly the same state. The JSON shape is documented in
//! `docs/events.md`; downstream consumers of the Kafka topic rely on it.

mod trace;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

pub use trace::{MAX_TRACESTATE_LEN, TRACEPARENT, TRACESTATE};

/// The envelope version this code writes; readers accept this version only.
pub const ENVELOPE_VERSION: u32 = 1;

/// One event in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Envelope format version ([`ENVELOPE_VERSION`]).
    pub v: u32,
    /// Unique id of this event (UUIDv7: time-ordered); also the read-your-writes handle.
    pub event_id: Uuid,
    /// The account (tenant) the event belongs to; the Kafka message key.
    pub account_id: String,
    /// `User`, `Group` or `Account`.
    pub resource_type: ResourceType,
    /// The id of the resource the event is about (assigned by the ingress on create).
    pub resource_id: String,
    /// When the ingress accepted the request, `YYYY-MM-DDTHH:MM:SS.mmmZ`; becomes `meta.lastModified`.
    pub time: String,
    /// The HTTP request id, for correlating logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// W3C trace context of the request that caused the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_context: Option<TraceContext>,
    /// Who asked for the change.
    pub actor: Actor,
    /// What changed.
    #[serde(flatten)]
    pub payload: Payload,
}

impl Envelope {
    /// The event type string (`user.created`, …), as stored in the `type` field.
    pub fn event_type(&self) -> &'static str {
        self.payload.event_type()
    }

    /// Serialises to the JSON wire form.
    pub fn to_json(&self) -> Result<String, EventError> {
        serde_json::to_string(self).map_err(EventError::Encode)
    }

    /// Parses the JSON wire form, rejecting envelope versions this code does not know.
    pub fn from_json(s: &str) -> Result<Self, EventError> {
        let env: Envelope = serde_json::from_str(s).map_err(EventError::Decode)?;
        if env.v != ENVELOPE_VERSION {
            return Err(EventError::UnsupportedVersion(env.v));
        }
        Ok(env)
    }
}

/// Errors encoding or decoding events.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The envelope could not be serialised.
    #[error("cannot encode event: {0}")]
    Encode(#[source] serde_json::Error),
    /// The bytes are not a valid envelope.
    #[error("cannot decode event: {0}")]
    Decode(#[source] serde_json::Error),
    /// The envelope was written by a newer (or unknown) format version.
    #[error("unsupported event envelope version {0}")]
    UnsupportedVersion(u32),
}

/// The kinds of resource an event can be about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResourceType {
    /// A SCIM User.
    User,
    /// A SCIM Group.
    Group,
    /// The account itself (license policy, holds); `resource_id` is the account id.
    Account,
}

/// W3C trace context (`traceparent`, `tracestate`), so one trace spans ingress and projector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceContext {
    /// The `traceparent` header value.
    pub traceparent: String,
    /// The `tracestate` header value, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
}

/// Who caused an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Actor {
    /// A SCIM client authenticated with the token of this id.
    ScimToken {
        /// The token's id (never the secret).
        token_id: String,
    },
    /// An operator through the admin API or CLI.
    Admin,
    /// Roster itself (e.g. the licensing worker).
    System,
}

/// A member named in a group write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The member's resource id.
    pub value: String,
}

/// The change an event asks for. The `type` tag names it; `payload` holds its data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "payload")]
pub enum Payload {
    /// POST /Users: create with these attributes (Roster's stored form).
    #[serde(rename = "user.created")]
    UserCreated {
        /// Normalised attributes.
        attributes: Map<String, Value>,
    },
    /// PUT /Users/{id}: replace all attributes.
    #[serde(rename = "user.replaced")]
    UserReplaced {
        /// Normalised attributes.
        attributes: Map<String, Value>,
        /// `If-Match` version, when the client sent one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        if_match: Option<u64>,
    },
    /// PATCH /Users/{id}: the PatchOp body, applied by the projector to the state at that point.
    #[serde(rename = "user.patched")]
    UserPatched {
        /// The PatchOp request body as received (syntax already checked).
        patch: Value,
        /// `If-Match` version, when the client sent one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        if_match: Option<u64>,
    },
    /// DELETE /Users/{id}.
    #[serde(rename = "user.deleted")]
    UserDeleted {
        /// `If-Match` version, when the client sent one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        if_match: Option<u64>,
    },
    /// POST /Groups.
    #[serde(rename = "group.created")]
    GroupCreated {
        /// Normalised attributes (without members).
        attributes: Map<String, Value>,
        /// Initial members.
        #[serde(default)]
        members: Vec<Member>,
    },
    /// PUT /Groups/{id}.
    #[serde(rename = "group.replaced")]
    GroupReplaced {
        /// Normalised attributes (without members).
        attributes: Map<String, Value>,
        /// The complete new member list.
        #[serde(default)]
        members: Vec<Member>,
        /// `If-Match` version, when the client sent one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        if_match: Option<u64>,
    },
    /// PATCH /Groups/{id}.
    #[serde(rename = "group.patched")]
    GroupPatched {
        /// The PatchOp request body as received (syntax already checked).
        patch: Value,
        /// `If-Match` version, when the client sent one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        if_match: Option<u64>,
    },
    /// DELETE /Groups/{id}.
    #[serde(rename = "group.deleted")]
    GroupDeleted {
        /// `If-Match` version, when the client sent one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        if_match: Option<u64>,
    },
    /// An operator set the account's license policy (already validated by the admin API).
    #[serde(rename = "license.policy_set")]
    LicensePolicySet {
        /// The policy document (SPEC.md, "License policy document").
        policy: Value,
    },
    /// An operator pinned a user's license.
    #[serde(rename = "license.override_set")]
    LicenseOverrideSet {
        /// The user.
        user_id: String,
        /// The pinned license (must exist in the policy in force).
        license: String,
    },
    /// An operator unpinned a user's license.
    #[serde(rename = "license.override_removed")]
    LicenseOverrideRemoved {
        /// The user.
        user_id: String,
    },
    /// The licensing worker moves a user from one license to another; the projector's seat guard applies it
    /// only if `from` is still the user's license and `to` has a free seat.
    #[serde(rename = "license.changed")]
    LicenseChanged {
        /// The user.
        user_id: String,
        /// The license the worker saw the user holding (`None` = none).
        from: Option<String>,
        /// The new license (`None` = revoke).
        to: Option<String>,
        /// Why, as the licensing reason JSON (`{"kind": "rule", "group": …, "license": …}`, …).
        reason: Value,
    },
    /// An operator confirmed or discarded a mass-revocation hold.
    #[serde(rename = "license.hold_resolved")]
    LicenseHoldResolved {
        /// The hold.
        hold_id: String,
        /// `true` = apply the held changes, `false` = keep the current licenses.
        confirm: bool,
    },
}

impl Payload {
    /// The `type` string of this payload.
    pub fn event_type(&self) -> &'static str {
        match self {
            Payload::UserCreated { .. } => "user.created",
            Payload::UserReplaced { .. } => "user.replaced",
            Payload::UserPatched { .. } => "user.patched",
            Payload::UserDeleted { .. } => "user.deleted",
            Payload::GroupCreated { .. } => "group.created",
            Payload::GroupReplaced { .. } => "group.replaced",
            Payload::GroupPatched { .. } => "group.patched",
            Payload::GroupDeleted { .. } => "group.deleted",
            Payload::LicensePolicySet { .. } => "license.policy_set",
            Payload::LicenseOverrideSet { .. } => "license.override_set",
            Payload::LicenseOverrideRemoved { .. } => "license.override_removed",
            Payload::LicenseChanged { .. } => "license.changed",
            Payload::LicenseHoldResolved { .. } => "license.hold_resolved",
        }
    }
}

/// What the projector decided for an event: the answer the ingress returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// HTTP status: 201/200/204 when applied, the error status when rejected.
    pub status: u16,
    /// The resource's version after the event, when applied and the resource still exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// The SCIM error (`scimType`, `detail`) when rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<OutcomeError>,
}

impl Outcome {
    /// Whether the event changed state.
    pub fn applied(&self) -> bool {
        self.error.is_none()
    }
}

/// A rejection, in SCIM terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeError {
    /// RFC 7644 `scimType`, if any.
    #[serde(default, rename = "scimType", skip_serializing_if = "Option::is_none")]
    pub scim_type: Option<String>,
    /// Human-readable detail.
    pub detail: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Envelope {
        Envelope {
            v: ENVELOPE_VERSION,
            event_id: Uuid::nil(),
            account_id: "acc".into(),
            resource_type: ResourceType::User,
            resource_id: "u1".into(),
            time: "2026-11-29T00:00:00.000Z".into(),
            request_id: None,
            trace_context: None,
            actor: Actor::ScimToken { token_id: "t1".into() },
            payload: Payload::UserPatched { patch: json!({"Operations": []}), if_match: Some(3) },
        }
    }

    #[test]
    fn envelope_round_trips_through_json() -> Result<(), EventError> {
        let e = sample();
        let back = Envelope::from_json(&e.to_json()?)?;
        assert_eq!(back, e);
        Ok(())
    }

    #[test]
    fn envelope_json_has_type_and_payload_at_top_level() -> Result<(), Box<dyn std::error::Error>> {
        let v: Value = serde_json::from_str(&sample().to_json()?)?;
        assert_eq!(v["type"], "user.patched");
        assert_eq!(v["payload"]["if_match"], 3);
        assert_eq!(v["actor"]["kind"], "scim_token");
        Ok(())
    }

    #[test]
    fn numbers_survive_decode_encode_cycles_exactly() -> Result<(), Box<dyn std::error::Error>> {
        // Found by fuzzing (event_decode): serde_json's default float parser may land one ulp
        // off, so every decode/encode cycle of a stored event could change a number.
        let huge_integer = format!("{}1{}3", "7".repeat(8), "7".repeat(103));
        let text = format!(r#"{{"a":{huge_integer},"b":7.777777717777778e+112,"c":0.1,"d":-2.2250738585072014e-308}}"#);
        let mut e = sample();
        e.payload = Payload::UserCreated { attributes: serde_json::from_str(&text)? };
        let once = Envelope::from_json(&e.to_json()?)?.to_json()?;
        let twice = Envelope::from_json(&once)?.to_json()?;
        assert_eq!(once, twice);
        let Payload::UserCreated { attributes } = Envelope::from_json(&once)?.payload else {
            return Err("payload type changed".into());
        };
        assert_eq!(attributes["a"].as_f64(), Some(huge_integer.parse::<f64>()?));
        assert_eq!(attributes["b"].as_f64(), Some(7.777777717777778e112));
        Ok(())
    }

    #[test]
    fn unknown_envelope_version_is_rejected() -> Result<(), Box<dyn std::error::Error>> {
        let mut v: Value = serde_json::from_str(&sample().to_json()?)?;
        v["v"] = json!(99);
        assert!(matches!(Envelope::from_json(&v.to_string()), Err(EventError::UnsupportedVersion(99))));
        Ok(())
    }

    #[test]
    fn license_changed_round_trips_with_null_from() -> Result<(), Box<dyn std::error::Error>> {
        let mut e = sample();
        e.actor = Actor::System;
        e.payload = Payload::LicenseChanged {
            user_id: "u1".into(),
            from: None,
            to: Some("developer".into()),
            reason: json!({"kind": "rule", "group": "dbt-developers", "license": "developer"}),
        };
        let text = e.to_json()?;
        let v: Value = serde_json::from_str(&text)?;
        assert_eq!(v["type"], "license.changed");
        assert_eq!(v["payload"]["from"], Value::Null);
        assert_eq!(v["actor"]["kind"], "system");
        assert_eq!(Envelope::from_json(&text)?, e);
        Ok(())
    }

    #[test]
    fn account_events_use_the_account_resource_type() -> Result<(), Box<dyn std::error::Error>> {
        let mut e = sample();
        e.resource_type = ResourceType::Account;
        e.payload = Payload::LicenseHoldResolved { hold_id: "h1".into(), confirm: true };
        let v: Value = serde_json::from_str(&e.to_json()?)?;
        assert_eq!(v["resource_type"], "Account");
        assert_eq!(v["type"], "license.hold_resolved");
        Ok(())
    }

    #[test]
    fn garbage_is_a_decode_error_not_a_panic() {
        assert!(matches!(Envelope::from_json("{\"v\":1"), Err(EventError::Decode(_))));
        assert!(matches!(Envelope::from_json("null"), Err(EventError::Decode(_))));
    }
}
