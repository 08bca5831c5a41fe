//! Micro-benchmarks of the event envelope's JSON encoding and decoding: every write is encoded once
//! by the ingress and decoded by each projector (and by a replay), so this bounds events/s.
//! Run with `cargo bench -p roster-events` (or `make bench`).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use roster_events::{Actor, ENVELOPE_VERSION, Envelope, Member, Payload, ResourceType, TraceContext};
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// Unwraps setup results; a failure here is a broken benchmark, not a measurement.
fn ok<T, E: std::fmt::Debug>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e:?}"),
    }
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn envelope(resource_type: ResourceType, payload: Payload) -> Envelope {
    Envelope {
        v: ENVELOPE_VERSION,
        event_id: Uuid::now_v7(),
        account_id: "0190f1c2-7d3a-7b11-9a42-51c0ffee0000".into(),
        resource_type,
        resource_id: Uuid::now_v7().to_string(),
        time: "2026-11-29T20:00:00.000Z".into(),
        request_id: Some("0190f1c2-7d3a-7b11-9a42-51c0ffee00aa".into()),
        trace_context: Some(TraceContext {
            traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
            tracestate: None,
        }),
        actor: Actor::ScimToken { token_id: "0190f1c2-7d3a-7b11-9a42-51c0ffee00bb".into() },
        payload,
    }
}

fn cases() -> Vec<(&'static str, Envelope)> {
    let user = object(json!({
        "userName": "jane.doe.42@tenant0.loadgen.example",
        "externalId": "janedoe42",
        "active": true,
        "name": {"givenName": "Jane", "familyName": "Doe"},
        "emails": [{"value": "jane.doe.42@tenant0.loadgen.example", "type": "work", "primary": true}]
    }));
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Add", "path": "members", "value": [{"value": "0190f1c2-7d3a-7b11-9a42-51c0ffee0002"}]}]});
    let members = (0..50).map(|i| Member { value: format!("0190f1c2-7d3a-7b11-9a42-{i:012}") }).collect();
    vec![
        ("user_created", envelope(ResourceType::User, Payload::UserCreated { attributes: user })),
        ("group_patched_add_member", envelope(ResourceType::Group, Payload::GroupPatched { patch, if_match: None })),
        (
            "group_created_50_members",
            envelope(
                ResourceType::Group,
                Payload::GroupCreated { attributes: object(json!({"displayName": "Sales Team 3"})), members },
            ),
        ),
        (
            "license_changed",
            envelope(
                ResourceType::User,
                Payload::LicenseChanged {
                    user_id: "0190f1c2-7d3a-7b11-9a42-51c0ffee0003".into(),
                    from: Some("read_only".into()),
                    to: Some("developer".into()),
                    reason: json!({"kind": "rule", "group": "dbt-developers", "license": "developer"}),
                },
            ),
        ),
    ]
}

fn encode_decode(c: &mut Criterion) {
    let cases = cases();
    let mut enc = c.benchmark_group("event_envelope_encode");
    for (name, env) in &cases {
        enc.bench_function(*name, |b| b.iter(|| ok(black_box(env).to_json(), "encodes")));
    }
    enc.finish();
    let mut dec = c.benchmark_group("event_envelope_decode");
    for (name, env) in &cases {
        let text = ok(env.to_json(), "encodes");
        dec.bench_function(*name, |b| b.iter(|| ok(Envelope::from_json(black_box(&text)), "decodes")));
    }
    dec.finish();
}

criterion_group!(benches, encode_decode);
criterion_main!(benches);
