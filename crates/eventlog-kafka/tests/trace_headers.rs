//! W3C trace context through a (mock) Kafka cluster: the producer writes it as headers and the
//! projector's source reads it back from them.

#![allow(clippy::expect_used)]

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use roster_eventlog::{BatchSource, EventLog, Record};
use roster_eventlog_kafka::{KafkaConfig, KafkaLog, KafkaSource};
use roster_events::{Actor, ENVELOPE_VERSION, Envelope, Payload, ResourceType, TraceContext};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const RELAYED: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn envelope(trace_context: Option<TraceContext>) -> Envelope {
    Envelope {
        v: ENVELOPE_VERSION,
        event_id: uuid::Uuid::now_v7(),
        account_id: "acc".into(),
        resource_type: ResourceType::User,
        resource_id: "u1".into(),
        time: "2026-11-29T00:00:00.000Z".into(),
        request_id: None,
        trace_context,
        actor: Actor::System,
        payload: Payload::UserDeleted { if_match: None },
    }
}

/// Reads records until `n` arrived (or a minute passed).
async fn read(source: &mut KafkaSource, n: usize) -> Vec<Record> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while out.len() < n && tokio::time::Instant::now() < deadline {
        if let Some(b) = source.next_batch(100).await.expect("reading the mock topic") {
            out.extend(b.records);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_context_travels_in_kafka_headers_from_producer_to_projector() {
    let mock = MockCluster::new(1).expect("librdkafka's mock cluster");
    mock.create_topic("events", 1, 1).expect("topic");
    let mut cfg = KafkaConfig::new(mock.bootstrap_servers(), "events");
    cfg.group = "trace-headers".into();
    let traced = TraceContext::parse(Some(TRACEPARENT), Some("rojo=00f067aa0ba902b7"));

    // 1. Roster's own producer: the context is in the payload and in the headers.
    KafkaLog::new(cfg.clone()).expect("producer").append(vec![envelope(traced.clone())]).await.expect("append");

    // 2. A relay that re-parents the message: same payload, a different `traceparent` header.
    // 3. A producer that sets only the header: the payload has no context at all.
    let raw: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", mock.bootstrap_servers()).create().expect("raw producer");
    for (payload_context, header) in [(traced.clone(), RELAYED), (None, TRACEPARENT)] {
        let json = envelope(payload_context).to_json().expect("encode");
        let headers = OwnedHeaders::new().insert(Header { key: "traceparent", value: Some(header) });
        raw.send(FutureRecord::to("events").key("acc").payload(&json).headers(headers), Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .expect("raw produce");
    }

    let mut source = KafkaSource::new(&cfg).expect("consumer");
    let records = read(&mut source, 3).await;
    let contexts: Vec<Option<TraceContext>> =
        records.into_iter().map(|r| r.envelope.expect("decodable").trace_context).collect();
    assert_eq!(
        contexts,
        vec![traced, TraceContext::parse(Some(RELAYED), None), TraceContext::parse(Some(TRACEPARENT), None)]
    );
}
