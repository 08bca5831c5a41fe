//! OpenTelemetry tracing end to end: Roster exports spans over OTLP/HTTP to an in-test collector,
//! and one trace follows a SCIM write from the ingress through the event log (the embedded log,
//! or Kafka between separate processes) into the projector, the licensing worker and back.
//! Logs are JSON lines carrying the trace id, and neither spans nor logs contain the token or the
//! request body.

use std::time::Duration;

use serde_json::json;

use crate::harness::otlp::{Collector, SpanRecord};
use crate::harness::{Backend, Server, Spec, USER_SCHEMA, backend, poll, uid};

/// OTLP span kinds.
const SERVER: i32 = 2;
const PRODUCER: i32 = 4;
const CONSUMER: i32 = 5;

/// A server exporting to `collector`, with JSON logs at `debug` for Roster and its HTTP stack
/// (what leaks, leaks there).
fn traced_server(collector: &Collector) -> Server {
    let mut spec = Spec::fresh();
    spec.env.extend(
        [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("NO_PROXY", "127.0.0.1"),
            ("ROSTER_LOG_FORMAT", "json"),
            ("RUST_LOG", "info,roster=debug,actix_web=debug,actix_http=debug"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    Server::launch(spec)
}

/// Waits until `find` locates what it looks for in the collected spans.
#[track_caller]
fn wait_for<T>(collector: &Collector, what: &str, find: impl Fn(&[SpanRecord]) -> Option<T>) -> T {
    poll(Duration::from_secs(60), || find(&collector.spans())).unwrap_or_else(|| {
        panic!(
            "no {what} within 60 s; spans received:\n{}\nrequests: {:?}",
            describe(&collector.spans()),
            collector.requests()
        )
    })
}

fn describe(spans: &[SpanRecord]) -> String {
    spans
        .iter()
        .map(|s| {
            format!(
                "  {} {:?} trace={} span={} parent={} kind={} {:?}",
                s.service, s.name, s.trace_id, s.span_id, s.parent_span_id, s.kind, s.attributes
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The service names a span of each component may come from on this backend.
fn ingress_services() -> &'static [&'static str] {
    if backend() == Backend::Kafka { &["roster-ingress"] } else { &["roster-serve"] }
}

fn projector_services() -> &'static [&'static str] {
    if backend() == Backend::Kafka { &["roster-projector"] } else { &["roster-serve"] }
}

fn licensing_services() -> &'static [&'static str] {
    if backend() == Backend::Kafka { &["roster-licensing"] } else { &["roster-serve"] }
}

/// The projector's span for the event of type `event_type` whose parent is `parent`.
fn applied_under<'a>(spans: &'a [SpanRecord], event_type: &str, parent: &SpanRecord) -> Option<&'a SpanRecord> {
    spans.iter().find(|s| {
        s.attr("roster.event.type") == event_type && s.trace_id == parent.trace_id && s.parent_span_id == parent.span_id
    })
}

#[test]
fn one_trace_follows_a_scim_write_from_the_ingress_through_the_log_into_the_projector_and_licensing() {
    let collector = Collector::start();
    let srv = traced_server(&collector);
    let scim = srv.tenant();
    let acc = scim.account_id.clone();
    // Every active user gets a license: the user's creation makes the licensing worker append a
    // license.changed event, which the projector then applies.
    srv.admin(
        "PUT",
        &format!("/admin/v1/accounts/{acc}/license-policy"),
        Some(&json!({
            "license_types": [{"name": "member", "rank": 10, "seats": null}],
            "rules": [],
            "default_license": "member"
        })),
    )
    .expect_json(200);
    // The policy's own round first. A round's parent is the account's latest event when the round
    // starts, so a round that started for the policy and already saw the user would license the
    // user under the policy's trace.
    wait_for(&collector, "licensing round for the policy", |spans| {
        spans.iter().find(|s| s.name == "licensing.reconcile" && s.attr("roster.account.id") == acc).cloned()
    });

    // The client (say, a gateway in front of Roster) is tracing: our spans join its trace.
    let (client_trace, client_span) = (uid(), uid()[..16].to_owned());
    let marker = format!("body-marker-{}", uid());
    let user_name = format!("traced-{}@example.test", uid());
    let body = json!({"schemas": [USER_SCHEMA], "userName": user_name, "externalId": marker, "active": true});
    let r = scim
        .req("POST", "/Users", Some(&body))
        .header("traceparent", &format!("00-{client_trace}-{client_span}-01"))
        .send(scim.agent());
    assert!(matches!(r.status, 201 | 503), "create failed:\n{}", r.describe());

    // Ingress: a server span in the client's trace, child of the client's span.
    let request = wait_for(&collector, "SCIM request span", |spans| {
        spans.iter().find(|s| s.kind == SERVER && s.trace_id == client_trace).cloned()
    });
    assert_eq!(request.parent_span_id, client_span, "the request span is a child of the client's span");
    assert_eq!(request.name, "POST /scim/v2/accounts/{account}/Users");
    assert_eq!(request.attr("http.request.method"), "POST");
    assert_eq!(request.attr("http.route"), "/scim/v2/accounts/{account}/Users");
    assert_eq!(request.attr("http.response.status_code"), r.status.to_string());
    assert!(ingress_services().contains(&request.service.as_str()), "request span from {}", request.service);

    // The append to the log is a producer span under the request.
    let append = wait_for(&collector, "eventlog.append span under the request", |spans| {
        spans.iter().find(|s| s.name == "eventlog.append" && s.parent_span_id == request.span_id).cloned()
    });
    assert_eq!((append.kind, append.trace_id.as_str()), (PRODUCER, client_trace.as_str()));

    // Projector (another process on Kafka: the context crossed the log): a consumer span under
    // the request span.
    let applied = wait_for(&collector, "projector span for user.created under the request", |spans| {
        applied_under(spans, "user.created", &request).cloned()
    });
    assert_eq!(applied.kind, CONSUMER);
    assert_eq!(applied.name, "apply user.created");
    assert_eq!(applied.attr("roster.account.id"), acc);
    assert_eq!(applied.attr("roster.outcome.status"), "201");
    assert!(projector_services().contains(&applied.service.as_str()), "projector span from {}", applied.service);

    // Licensing worker: its round reacts to the user's creation, under the request span…
    let reconcile = wait_for(&collector, "licensing.reconcile span under the request", |spans| {
        spans
            .iter()
            .find(|s| {
                s.name == "licensing.reconcile"
                    && s.parent_span_id == request.span_id
                    && s.attr("roster.licensing.appended") == "1"
            })
            .cloned()
    });
    assert_eq!(reconcile.trace_id, client_trace);
    assert_eq!(reconcile.attr("roster.account.id"), acc);
    assert!(licensing_services().contains(&reconcile.service.as_str()), "licensing span from {}", reconcile.service);
    // …and the license.changed event it appended is applied in the same trace, under its round.
    let licensed = wait_for(&collector, "projector span for license.changed under the licensing round", |spans| {
        applied_under(spans, "license.changed", &reconcile).cloned()
    });
    assert!(projector_services().contains(&licensed.service.as_str()), "projector span from {}", licensed.service);

    // Logs are JSON lines, and the worker's line about this round carries the trace id.
    let trace_field = format!("\"trace_id\":\"{client_trace}\"");
    let logs = poll(Duration::from_secs(10), || {
        let logs = srv.logs();
        logs.lines().any(|l| l.contains(&trace_field) && l.contains("licenses reconciled")).then_some(logs)
    })
    .unwrap_or_else(|| panic!("no JSON log line with {trace_field}; logs:\n{}", srv.logs()));
    for line in logs.lines().filter_map(|l| l.strip_prefix("stderr| ")).filter(|l| l.starts_with('{')) {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
    }

    // Neither the token nor the request body leave the process, in spans or logs.
    for secret in [scim.token.as_str(), marker.as_str(), user_name.as_str()] {
        assert!(!logs.contains(secret), "the logs contain {secret:?}:\n{logs}");
        let spans = collector.spans();
        let leaked: Vec<&SpanRecord> =
            spans.iter().filter(|s| s.attributes.values().any(|v| v.contains(secret))).collect();
        assert!(leaked.is_empty(), "spans contain {secret:?}:\n{}", describe(&spans));
    }
}

#[test]
fn a_request_without_trace_context_starts_a_trace_that_the_projector_continues() {
    let collector = Collector::start();
    let srv = traced_server(&collector);
    let scim = srv.tenant();
    let r = scim
        .post("/Groups", &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "traced"}));
    assert!(matches!(r.status, 201 | 503), "create failed:\n{}", r.describe());

    let request = wait_for(&collector, "root SCIM request span", |spans| {
        spans.iter().find(|s| s.kind == SERVER && s.name == "POST /scim/v2/accounts/{account}/Groups").cloned()
    });
    assert_eq!(request.parent_span_id, "", "without a traceparent the request starts the trace");
    let applied = wait_for(&collector, "projector span for group.created under the request", |spans| {
        applied_under(spans, "group.created", &request).cloned()
    });
    assert_eq!(applied.kind, CONSUMER);

    // The admin API's requests (account and token creation) are not SCIM requests: no server span.
    assert!(
        collector.spans().iter().all(|s| s.kind != SERVER || s.name.contains("/scim/v2/")),
        "{}",
        describe(&collector.spans())
    );
}
