//! The Kafka event log for production installs.
//!
//! - [`KafkaLog`] appends with an idempotent producer (`acks=all`), keyed by account id so one
//!   account's events stay in one partition, in order; W3C trace context travels in headers.
//! - [`KafkaSource`] is the projector's consumer-group reader: replicas split the partitions;
//!   offsets committed to Kafka are only a hint, the read model's stored positions decide.
//! - [`KafkaReplaySource`] reads every partition from the beginning to the current end, for
//!   `roster replay`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::FutureExt as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use roster_eventlog::{Batch, BatchDone, BatchSource, EventLog, LogError, PartitionEnds, Position, Record};
use roster_events::{Envelope, TRACEPARENT, TRACESTATE, TraceContext};

/// Connection and topic settings.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// The event log topic.
    pub topic: String,
    /// Partitions to create the topic with (when missing).
    pub partitions: i32,
    /// Replication factor to create the topic with; `None` = min(3, brokers in the cluster).
    pub replication: Option<i32>,
    /// The projector's consumer group.
    pub group: String,
    /// How long a produce may take before the append fails (the write is then not acknowledged).
    pub produce_timeout: Duration,
}

impl KafkaConfig {
    /// Settings with Roster's defaults for a broker list and topic.
    pub fn new(brokers: impl Into<String>, topic: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            topic: topic.into(),
            partitions: 12,
            replication: None,
            group: "roster-projector".into(),
            produce_timeout: Duration::from_secs(10),
        }
    }

    fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        // Reconnect within a second of a broker's return (librdkafka's default backs off to 10 s).
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", "roster")
            .set("log_level", "4")
            .set("reconnect.backoff.max.ms", "1000");
        c
    }
}

fn unavailable(what: &str, e: KafkaError) -> LogError {
    LogError::Unavailable(format!("{what}: {e}"))
}

/// Creates the topic if it does not exist; a clear error says why it cannot.
pub async fn ensure_topic(cfg: &KafkaConfig) -> Result<(), LogError> {
    let admin: AdminClient<DefaultClientContext> =
        cfg.client().create().map_err(|e| unavailable("cannot create a Kafka admin client", e))?;
    let metadata = admin
        .inner()
        .fetch_metadata(None, Timeout::After(Duration::from_secs(10)))
        .map_err(|e| unavailable(&format!("cannot reach Kafka at {}", cfg.brokers), e))?;
    if metadata.topics().iter().any(|t| t.name() == cfg.topic && !t.partitions().is_empty()) {
        return Ok(());
    }
    let replication = cfg.replication.unwrap_or_else(|| (metadata.brokers().len() as i32).clamp(1, 3));
    let topic = NewTopic::new(&cfg.topic, cfg.partitions, TopicReplication::Fixed(replication));
    let results = admin
        .create_topics([&topic], &AdminOptions::new().operation_timeout(Some(Timeout::After(Duration::from_secs(10)))))
        .await
        .map_err(|e| unavailable(&format!("cannot create topic {}", cfg.topic), e))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(LogError::Unavailable(format!(
                    "cannot create topic {name} with {} partitions and replication factor {replication}: {code}",
                    cfg.partitions
                )));
            }
        }
    }
    Ok(())
}

/// The producing side of the Kafka log.
#[derive(Clone)]
pub struct KafkaLog {
    producer: FutureProducer,
    cfg: Arc<KafkaConfig>,
}

impl KafkaLog {
    /// A producer for `cfg` (idempotent, `acks=all`).
    pub fn new(cfg: KafkaConfig) -> Result<Self, LogError> {
        let producer: FutureProducer = cfg
            .client()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "2")
            .set("message.timeout.ms", cfg.produce_timeout.as_millis().to_string())
            .create()
            .map_err(|e| unavailable("cannot create the Kafka producer", e))?;
        Ok(Self { producer, cfg: Arc::new(cfg) })
    }

    /// Waits for queued messages to be delivered (on shutdown).
    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = self.producer.flush(Timeout::After(timeout)) {
            tracing::warn!(error = %e, "Kafka producer flush did not complete");
        }
    }

    /// Messages queued in the producer (a gauge for operations).
    pub fn queue_len(&self) -> i32 {
        self.producer.in_flight_count()
    }
}

/// The headers of an envelope's message: its type, and its W3C trace context (`traceparent`,
/// `tracestate`) so that Kafka tooling and other consumers can follow the trace.
fn headers(env: &Envelope) -> OwnedHeaders {
    let mut h = OwnedHeaders::new_with_capacity(3);
    h = h.insert(Header { key: "event_type", value: Some(env.event_type()) });
    for (key, value) in env.trace_context.iter().flat_map(TraceContext::header_pairs) {
        h = h.insert(Header { key, value: Some(value) });
    }
    h
}

/// The W3C trace context in a message's headers, if a valid one is there.
fn trace_context_of<H: Headers>(headers: &H) -> Option<TraceContext> {
    let get = |name: &str| {
        headers.iter().find(|h| h.key == name).and_then(|h| h.value).and_then(|v| std::str::from_utf8(v).ok())
    };
    TraceContext::parse(get(TRACEPARENT), get(TRACESTATE))
}

#[async_trait]
impl EventLog for KafkaLog {
    async fn append(&self, events: Vec<Envelope>) -> Result<Vec<Position>, LogError> {
        let payloads = events
            .iter()
            .map(|env| env.to_json().map_err(|e| LogError::Encode(Arc::new(e))))
            .collect::<Result<Vec<_>, _>>()?;
        // Every message is queued before any delivery is awaited: `FutureProducer::send` queues on
        // its first poll, so awaiting one send after another made an append of n events n produce
        // round trips (a licensing round of 2,000 changes waited for 2,000 of them in turn).
        // librdkafka keeps the queue order per partition, which is the log's order.
        let deadline = tokio::time::Instant::now() + self.cfg.produce_timeout;
        let mut deliveries = Vec::with_capacity(events.len());
        for (env, payload) in events.iter().zip(&payloads) {
            let mut record =
                FutureRecord::to(&self.cfg.topic).key(env.account_id.as_str()).payload(payload).headers(headers(env));
            loop {
                match self.producer.send_result(record) {
                    Ok(delivery) => break deliveries.push(delivery),
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                        if tokio::time::Instant::now() < deadline =>
                    {
                        record = r;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err((e, _)) => return Err(unavailable("cannot queue the event for Kafka", e)),
                }
            }
        }
        roster_telemetry::metrics().producer_queue.set(i64::from(self.queue_len()));
        let mut positions = Vec::with_capacity(events.len());
        for d in deliveries {
            match tokio::time::timeout_at(deadline + Duration::from_secs(1), d).await {
                Ok(Ok(Ok(delivery))) => {
                    positions.push(Position { partition: delivery.partition, offset: delivery.offset })
                }
                Ok(Ok(Err((e, _)))) => return Err(unavailable("Kafka did not acknowledge the event", e)),
                Ok(Err(_)) => return Err(LogError::Unavailable("the Kafka producer was dropped".into())),
                Err(_) => return Err(LogError::Unavailable("Kafka did not acknowledge the event in time".into())),
            }
        }
        Ok(positions)
    }

    async fn check(&self) -> Result<(), LogError> {
        let producer = self.producer.clone();
        let topic = self.cfg.topic.clone();
        tokio::task::spawn_blocking(move || {
            let md = producer
                .client()
                .fetch_metadata(Some(&topic), Timeout::After(Duration::from_secs(3)))
                .map_err(|e| unavailable("Kafka metadata request failed", e))?;
            match md.topics().first() {
                Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(()),
                _ => Err(LogError::Unavailable(format!("topic {topic} is missing; run `roster migrate`"))),
            }
        })
        .await
        .map_err(|e| LogError::Unavailable(e.to_string()))?
    }

    async fn ends(&self) -> Result<Vec<PartitionEnds>, LogError> {
        let producer = self.producer.clone();
        let topic = self.cfg.topic.clone();
        tokio::task::spawn_blocking(move || {
            let timeout = Timeout::After(Duration::from_secs(3));
            let md = producer
                .client()
                .fetch_metadata(Some(&topic), timeout)
                .map_err(|e| unavailable("Kafka metadata request failed", e))?;
            let partitions: Vec<i32> =
                md.topics().first().map(|t| t.partitions().iter().map(|p| p.id()).collect()).unwrap_or_default();
            let mut ends = Vec::with_capacity(partitions.len());
            for partition in partitions {
                let (start, end) = producer
                    .client()
                    .fetch_watermarks(&topic, partition, timeout)
                    .map_err(|e| unavailable("Kafka watermark request failed", e))?;
                ends.push(PartitionEnds { partition, start, end });
            }
            Ok(ends)
        })
        .await
        .map_err(|e| LogError::Unavailable(e.to_string()))?
    }
}

fn record_of<M: Message>(m: &M) -> Record {
    let mut envelope = match m.payload().map(std::str::from_utf8) {
        Some(Ok(text)) => Envelope::from_json(text).map_err(Arc::new),
        _ => Envelope::from_json("").map_err(Arc::new),
    };
    // The headers are Kafka's place for trace context and win over the copy in the payload: a
    // relay that re-parents the message (or a producer that only sets headers) is followed.
    if let (Ok(env), Some(tc)) = (&mut envelope, m.headers().and_then(trace_context_of)) {
        env.trace_context = Some(tc);
    }
    Record { position: Position { partition: m.partition(), offset: m.offset() }, envelope }
}

/// Tracks partitions revoked by a rebalance so buffered records of them are dropped, and the high
/// watermarks librdkafka reports in its statistics, so lag needs no broker round trip (a blocking
/// watermark request per partition held the projector, and its shutdown, on a slow broker).
#[derive(Default)]
struct RebalanceContext {
    revoked: Mutex<Vec<i32>>,
    high: Mutex<HashMap<i32, i64>>,
}

impl ClientContext for RebalanceContext {
    // Read as plain JSON: only two fields per partition are needed, and rdkafka's typed
    // `Statistics` rejects the whole document when a librdkafka release adds or drops a field.
    fn stats_raw(&self, json: &[u8]) {
        let Ok(doc) = serde_json::from_slice::<serde_json::Value>(json) else { return };
        let Some(topics) = doc.get("topics").and_then(serde_json::Value::as_object) else { return };
        let Ok(mut high) = self.high.lock() else { return };
        for topic in topics.values() {
            let Some(partitions) = topic.get("partitions").and_then(serde_json::Value::as_object) else { continue };
            for (id, p) in partitions {
                let (Ok(partition), Some(hi)) =
                    (id.parse::<i32>(), p.get("hi_offset").and_then(serde_json::Value::as_i64))
                else {
                    continue;
                };
                // Partition -1 is librdkafka's internal "unassigned" queue; a negative offset
                // means no fetch response has reported the partition's end yet.
                if partition >= 0 && hi >= 0 {
                    high.insert(partition, hi);
                }
            }
        }
    }
}

impl ConsumerContext for RebalanceContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            if let Ok(mut r) = self.revoked.lock() {
                r.extend(tpl.elements().iter().map(|e| e.partition()));
            }
            tracing::info!(partitions = ?tpl.elements().iter().map(|e| e.partition()).collect::<Vec<_>>(), "partitions revoked");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            tracing::info!(partitions = ?tpl.elements().iter().map(|e| e.partition()).collect::<Vec<_>>(), "partitions assigned");
        }
    }
}

/// The projector's consumer-group reader.
pub struct KafkaSource {
    consumer: StreamConsumer<RebalanceContext>,
    topic: String,
    pending: BTreeMap<i32, Vec<Record>>,
    idle: Duration,
    next: HashMap<i32, i64>,
}

impl KafkaSource {
    /// Joins the consumer group of `cfg` and subscribes to the topic.
    pub fn new(cfg: &KafkaConfig) -> Result<Self, LogError> {
        let consumer: StreamConsumer<RebalanceContext> = cfg
            .client()
            .set("group.id", &cfg.group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .set("statistics.interval.ms", "1000")
            .create_with_context(RebalanceContext::default())
            .map_err(|e| unavailable("cannot create the Kafka consumer", e))?;
        consumer.subscribe(&[&cfg.topic]).map_err(|e| unavailable("cannot subscribe to the event topic", e))?;
        Ok(Self {
            consumer,
            topic: cfg.topic.clone(),
            pending: BTreeMap::new(),
            idle: Duration::from_millis(200),
            next: HashMap::new(),
        })
    }

    fn drop_revoked(&mut self) {
        let revoked: Vec<i32> =
            self.consumer.context().revoked.lock().map(|mut r| r.drain(..).collect()).unwrap_or_default();
        for p in revoked {
            self.pending.remove(&p);
        }
    }

    /// The partition's end as of librdkafka's last statistics (every second while assigned).
    fn high_watermark(&self, partition: i32) -> Option<i64> {
        self.consumer.context().high.lock().ok()?.get(&partition).copied()
    }

    fn take(&mut self, max: usize) -> Option<Batch> {
        let partition = *self.pending.keys().next()?;
        let records = self.pending.get_mut(&partition)?;
        let batch: Vec<Record> =
            if records.len() > max { records.drain(..max).collect() } else { std::mem::take(records) };
        if records.is_empty() {
            self.pending.remove(&partition);
        }
        Some(Batch { partition, records: batch })
    }

    /// Leaves the consumer group on shutdown. librdkafka commits the stored offsets and waits for the
    /// group to acknowledge, which blocks for a broker round trip or more: call it off the async
    /// workers (`spawn_blocking`) so a slow broker cannot hold the runtime past the grace period.
    /// The offsets are only for lag monitoring; the projector's positions live in the database.
    pub fn close(self) {
        let started = std::time::Instant::now();
        drop(self);
        tracing::debug!(took_ms = started.elapsed().as_millis() as u64, "Kafka consumer closed");
    }
}

#[async_trait]
impl BatchSource for KafkaSource {
    async fn next_batch(&mut self, max: usize) -> Result<Option<Batch>, LogError> {
        self.drop_revoked();
        if let Some(b) = self.take(max) {
            return Ok(Some(b));
        }
        let first = match tokio::time::timeout(self.idle, self.consumer.recv()).await {
            Err(_) => return Ok(None),
            // Transport errors (broker down, connection reset) are reported by librdkafka, which
            // reconnects on its own: treat them as "nothing yet" instead of backing off, so the
            // projector resumes within moments of the broker's return.
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "Kafka consumer error; librdkafka retries");
                return Ok(None);
            }
            Ok(Ok(m)) => record_of(&m),
        };
        let mut n = 1;
        self.pending.entry(first.position.partition).or_default().push(first);
        // Gather what is already buffered, without waiting: batches amortise the commit, and what
        // arrives while this batch applies makes the next one. Waiting for stragglers (2 ms each)
        // held every write of the batch for them and left the projector idle.
        while n < max {
            match self.consumer.recv().now_or_never() {
                Some(Ok(m)) => {
                    let r = record_of(&m);
                    self.pending.entry(r.position.partition).or_default().push(r);
                    n += 1;
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "Kafka consumer error; librdkafka retries");
                    break;
                }
                None => break,
            }
        }
        self.drop_revoked();
        Ok(self.take(max))
    }

    async fn lag(&mut self, partition: i32) -> Option<i64> {
        let next = *self.next.get(&partition)?;
        self.high_watermark(partition).map(|high| high - next)
    }

    fn partitions(&self) -> Vec<i32> {
        self.next.keys().copied().collect()
    }

    async fn done(&mut self, partition: i32, done: BatchDone) -> Result<(), LogError> {
        match done {
            BatchDone::Applied { next_offset } => {
                self.next.insert(partition, next_offset);
                // Only a hint for the next assignment; the database position is authoritative.
                // `rd_kafka_offset_store` commits `offset + 1`: pass the last applied offset.
                if let Err(e) = self.consumer.store_offset(&self.topic, partition, next_offset - 1) {
                    tracing::debug!(error = %e, partition, "offset store skipped (partition no longer assigned?)");
                }
                if let Some(buffered) = self.pending.get_mut(&partition) {
                    buffered.retain(|r| r.position.offset >= next_offset);
                }
            }
            BatchDone::Rewind { to } => {
                self.pending.remove(&partition);
                tracing::warn!(partition, to, "stored position is behind Kafka's; seeking back");
                self.consumer
                    .seek(&self.topic, partition, Offset::Offset(to), Timeout::After(Duration::from_secs(10)))
                    .map_err(|e| unavailable("seek failed", e))?;
            }
        }
        Ok(())
    }
}

/// Reads every partition from the beginning up to the end seen at start (for `roster replay`).
pub struct KafkaReplaySource {
    consumer: StreamConsumer,
    topic: String,
    remaining: HashMap<i32, i64>,
    pending: BTreeMap<i32, Vec<Record>>,
    total: i64,
}

impl KafkaReplaySource {
    /// Assigns all partitions of the topic at their beginning.
    pub fn new(cfg: &KafkaConfig) -> Result<Self, LogError> {
        let consumer: StreamConsumer = cfg
            .client()
            .set("group.id", format!("{}-replay", cfg.group))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .create()
            .map_err(|e| unavailable("cannot create the Kafka consumer", e))?;
        let md = consumer
            .fetch_metadata(Some(&cfg.topic), Timeout::After(Duration::from_secs(10)))
            .map_err(|e| unavailable("cannot read topic metadata", e))?;
        let partitions: Vec<i32> =
            md.topics().first().map(|t| t.partitions().iter().map(|p| p.id()).collect()).unwrap_or_default();
        if partitions.is_empty() {
            return Err(LogError::Unavailable(format!("topic {} has no partitions (does it exist?)", cfg.topic)));
        }
        let mut tpl = TopicPartitionList::new();
        let mut remaining = HashMap::new();
        let mut total = 0;
        for p in partitions {
            let (low, high) = consumer
                .fetch_watermarks(&cfg.topic, p, Timeout::After(Duration::from_secs(10)))
                .map_err(|e| unavailable("cannot read watermarks", e))?;
            if high > low {
                tpl.add_partition_offset(&cfg.topic, p, Offset::Offset(low)).map_err(|e| unavailable("assign", e))?;
                remaining.insert(p, high);
                total += high - low;
            }
        }
        consumer.assign(&tpl).map_err(|e| unavailable("cannot assign partitions", e))?;
        Ok(Self { consumer, topic: cfg.topic.clone(), remaining, pending: BTreeMap::new(), total })
    }

    /// How many events the replay will read.
    pub fn total(&self) -> i64 {
        self.total
    }
}

#[async_trait]
impl BatchSource for KafkaReplaySource {
    async fn next_batch(&mut self, max: usize) -> Result<Option<Batch>, LogError> {
        while self.pending.values().map(Vec::len).sum::<usize>() < max && !self.remaining.is_empty() {
            let m = match tokio::time::timeout(Duration::from_secs(30), self.consumer.recv()).await {
                Err(_) => return Err(LogError::Unavailable("no progress reading the topic for 30 s".into())),
                Ok(Err(e)) => return Err(unavailable("Kafka consumer error", e)),
                Ok(Ok(m)) => m,
            };
            let (p, o) = (m.partition(), m.offset());
            let Some(&end) = self.remaining.get(&p) else { continue };
            if o < end {
                self.pending.entry(p).or_default().push(record_of(&m));
            }
            if o + 1 >= end {
                self.remaining.remove(&p);
                let _ = self.consumer.incremental_unassign(&{
                    let mut t = TopicPartitionList::new();
                    t.add_partition(&self.topic, p);
                    t
                });
            }
        }
        let Some(partition) = self.pending.keys().next().copied() else { return Ok(None) };
        let records = self.pending.remove(&partition).unwrap_or_default();
        Ok(Some(Batch { partition, records }))
    }

    async fn done(&mut self, _partition: i32, _done: BatchDone) -> Result<(), LogError> {
        Ok(())
    }

    fn is_bounded(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]

    use roster_events::{Actor, ENVELOPE_VERSION, Payload, ResourceType};

    use super::*;

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

    fn tc(tracestate: Option<&str>) -> TraceContext {
        TraceContext::parse(Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), tracestate)
            .expect("valid traceparent")
    }

    #[test]
    fn trace_context_written_to_headers_is_read_back() {
        for original in [tc(None), tc(Some("rojo=00f067aa0ba902b7"))] {
            let h = headers(&envelope(Some(original.clone())));
            assert_eq!(trace_context_of(&h), Some(original));
        }
    }

    #[test]
    fn an_envelope_without_trace_context_writes_only_its_type() {
        let h = headers(&envelope(None));
        let keys: Vec<&str> = h.iter().map(|h| h.key).collect();
        assert_eq!(keys, vec!["event_type"]);
        assert_eq!(trace_context_of(&h), None);
    }

    #[test]
    fn a_malformed_traceparent_header_is_ignored() {
        let h = OwnedHeaders::new().insert(Header { key: TRACEPARENT, value: Some("not-a-traceparent") });
        assert_eq!(trace_context_of(&h), None);
        let h = OwnedHeaders::new().insert(Header { key: TRACEPARENT, value: Some(&[0xff_u8, 0xfe][..]) });
        assert_eq!(trace_context_of(&h), None);
    }
}
