//! The projector loop: take a batch, apply it in one fenced transaction, publish outcomes.

use std::sync::Arc;
use std::time::Duration;

use roster_db::{Db, StoreError};
use roster_eventlog::{AfterCommit, BatchDone, BatchSource, InlineApply, InlineError, LogError, Position, Record};
use roster_events::Outcome;
use roster_store::{outcomes, write};
use sea_orm::{DatabaseTransaction, TransactionTrait};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use uuid::Uuid;

use crate::{ApplyContext, OutcomeHub, apply_event};

/// Errors that stop a projection step (retried with back-off by [`Projector::run`]).
#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    /// The read model database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The event log failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// A batch does not continue where the partition's stored position is (a replay lost events).
    #[error("partition {partition}: batch starts at offset {first}, but the next event to apply is at {next}")]
    Gap {
        /// The partition.
        partition: i32,
        /// The batch's first offset.
        first: i64,
        /// The stored position.
        next: i64,
    },
}

/// Attempts at one batch before a parallel replay gives up.
const REPLAY_ATTEMPTS: u32 = 5;

/// What keeps a batch's transaction from applying events a second writer applies too.
#[derive(Debug, Clone, Copy)]
enum Fence {
    /// The partition's stored position, locked for the transaction (`initial` when none is
    /// stored): replicas applying the same partition serialise on it, and a batch that would skip
    /// events is refused. `fresh`: the records were appended in this very transaction, so no copy
    /// of them can have been decided before (the database log never holds an event twice).
    Position { partition: i32, initial: i64, fresh: bool },
    /// A replay lane: the replay owns the database, its reader checks that every partition's
    /// batches follow on, and it stores the positions once all lanes have finished.
    Replay,
}

/// A replay's assignment of accounts to lanes, and where each partition's next batch must start.
struct Lanes {
    count: usize,
    of_account: std::collections::HashMap<String, usize>,
    next: std::collections::BTreeMap<i32, i64>,
}

impl Lanes {
    fn new(count: usize) -> Self {
        Self { count, of_account: Default::default(), next: Default::default() }
    }

    /// Refuses a batch that skips events of its partition (the source lost some), and notes where
    /// the next one must start. The first batch of a partition starts where the source started it.
    fn follow_on(&mut self, batch: &roster_eventlog::Batch) -> Result<(), ProjectorError> {
        let (Some(first), Some(last)) = (batch.records.first(), batch.records.last()) else { return Ok(()) };
        let next = self.next.entry(batch.partition).or_insert(first.position.offset);
        if first.position.offset > *next {
            return Err(ProjectorError::Gap { partition: batch.partition, first: first.position.offset, next: *next });
        }
        *next = (*next).max(last.position.offset + 1);
        Ok(())
    }

    /// The lane of a record's account: accounts take the lanes in turn as they first appear. An
    /// undecodable record has no account; lane 0 reports it.
    fn of(&mut self, record: &Record) -> usize {
        let Ok(env) = &record.envelope else { return 0 };
        if let Some(&lane) = self.of_account.get(&env.account_id) {
            return lane;
        }
        let lane = self.of_account.len() % self.count;
        self.of_account.insert(env.account_id.clone(), lane);
        lane
    }
}

impl From<sea_orm::DbErr> for ProjectorError {
    fn from(e: sea_orm::DbErr) -> Self {
        ProjectorError::Store(StoreError::Db(e))
    }
}

/// Projector settings.
#[derive(Debug, Clone)]
pub struct ProjectorConfig {
    /// Name under which positions are stored (one per log the read model follows).
    pub consumer: String,
    /// Most events applied per transaction.
    pub max_batch: usize,
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        Self { consumer: "projector".into(), max_batch: 1000 }
    }
}

/// What one batch did.
#[derive(Debug, Clone)]
pub struct BatchResult {
    /// What the source should do next.
    pub done: BatchDone,
    /// Outcomes of the events applied in this batch, to publish to waiters.
    pub outcomes: Vec<(Uuid, Outcome)>,
}

/// Applies the log to the read model.
#[derive(Clone)]
pub struct Projector {
    db: Db,
    hub: Option<Arc<OutcomeHub>>,
    config: ProjectorConfig,
}

impl Projector {
    /// A projector writing to `db`; `hub` delivers outcomes to in-process waiters.
    pub fn new(db: Db, hub: Option<Arc<OutcomeHub>>, config: ProjectorConfig) -> Self {
        Self { db, hub, config }
    }

    /// The stored next offset of a partition (1 when never run: database log offsets start at 1,
    /// Kafka's at 0, and a fenced batch never skips past the stored position).
    pub async fn position(&self, partition: i32) -> Result<Option<i64>, ProjectorError> {
        Ok(write::consumer_position(&self.db, &self.config.consumer, partition).await?)
    }

    /// Consumes `source` until cancelled (or, for a bounded source, until its end), backing off on
    /// errors; never loses or repeats an event. Returns how many events were applied.
    pub async fn run(&self, source: &mut dyn BatchSource, cancel: CancellationToken) -> u64 {
        self.run_with_progress(source, cancel, |_| {}).await
    }

    /// Like [`Projector::run`], calling `progress(n)` after each batch of `n` records.
    pub async fn run_with_progress(
        &self,
        source: &mut dyn BatchSource,
        cancel: CancellationToken,
        mut progress: impl FnMut(usize),
    ) -> u64 {
        let mut applied = 0u64;
        let mut backoff = Duration::from_millis(100);
        let mut last_success = std::time::Instant::now();
        while !cancel.is_cancelled() {
            let batch = tokio::select! {
                _ = cancel.cancelled() => break,
                b = source.next_batch(self.config.max_batch) => b,
            };
            let step = match batch {
                Ok(None) if source.is_bounded() => break,
                Ok(None) => {
                    // Idle: nothing to read means no lag (keeps the gauges true while quiet).
                    idle_lag(source).await;
                    last_success = std::time::Instant::now();
                    continue;
                }
                Ok(Some(batch)) => match self.apply_batch(batch.partition, &batch.records).await {
                    Ok(result) => {
                        record_batch_metrics(batch.partition, &batch.records, source.lag(batch.partition).await);
                        let n = batch.records.len();
                        applied += result.outcomes.len() as u64;
                        publish(self.hub.as_deref(), result.outcomes);
                        progress(n);
                        source.done(batch.partition, result.done).await.map_err(ProjectorError::from)
                    }
                    Err(e) => Err(e),
                },
                Err(e) => Err(e.into()),
            };
            match step {
                Ok(()) => {
                    backoff = Duration::from_millis(100);
                    last_success = std::time::Instant::now();
                }
                Err(e) => {
                    stalled_lag(last_success.elapsed());
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "projector step failed");
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
        applied
    }

    /// Applies a bounded source (a replay) with its accounts spread over `workers` lanes, each a
    /// task with its own transactions. An account's events all sit in one partition, in order, and
    /// nothing an event decides reads another account, so accounts are independent. Lanes are
    /// accounts rather than partitions because a few accounts hash unevenly: a million-event log
    /// of ten accounts once put 60% of its events in one of four partitions, and that partition's
    /// worker alone set the replay's length while the machine sat a third idle. Accounts go to
    /// lanes in turn as they first appear; an account's events stay in order on its lane.
    ///
    /// The replay owns the database, so its transactions are not fenced by the partitions' stored
    /// positions (two lanes would serialise on them): the reader checks instead that each
    /// partition's batches follow on, and the positions are stored once every lane has finished.
    /// A replay that stops part-way stores none. Stops at the first lane batch that fails
    /// [`REPLAY_ATTEMPTS`] times; calls `progress(n)` after each lane batch of `n` records;
    /// returns how many records were applied.
    pub async fn replay(
        &self,
        source: &mut dyn BatchSource,
        workers: usize,
        mut progress: impl FnMut(usize),
    ) -> Result<u64, ProjectorError> {
        let workers = workers.max(1);
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<Result<usize, ProjectorError>>();
        let mut queues = Vec::with_capacity(workers);
        let mut tasks = Vec::with_capacity(workers);
        for _ in 0..workers {
            // Two batches queued per lane: reading stays ahead without holding the whole topic.
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Record>>(2);
            let (this, done) = (self.clone(), done_tx.clone());
            tasks.push(tokio::spawn(async move {
                while let Some(records) = rx.recv().await {
                    let result = this.apply_lane_retrying(&records).await;
                    let failed = result.is_err();
                    if done.send(result).is_err() || failed {
                        break;
                    }
                }
            }));
            queues.push(tx);
        }
        drop(done_tx);
        let mut applied = 0u64;
        let mut account = |r: Result<usize, ProjectorError>| -> Result<(), ProjectorError> {
            let n = r?;
            applied += n as u64;
            progress(n);
            Ok(())
        };
        let max_batch = self.config.max_batch;
        let read = async move {
            let mut lanes = Lanes::new(workers);
            let mut buffers: Vec<Vec<Record>> = (0..workers).map(|_| Vec::new()).collect();
            while let Some(batch) = source.next_batch(max_batch).await? {
                lanes.follow_on(&batch)?;
                for record in batch.records {
                    let lane = lanes.of(&record);
                    buffers[lane].push(record);
                    if buffers[lane].len() >= max_batch {
                        // A closed queue means its lane stopped on an error, which `done_rx` reports.
                        if queues[lane].send(std::mem::take(&mut buffers[lane])).await.is_err() {
                            return Ok(None);
                        }
                    }
                }
            }
            for (queue, buffer) in queues.iter().zip(buffers) {
                if !buffer.is_empty() && queue.send(buffer).await.is_err() {
                    return Ok(None);
                }
            }
            // The lanes finish what is queued, then stop.
            drop(queues);
            Ok::<_, ProjectorError>(Some(lanes.next))
        };
        tokio::pin!(read);
        let mut ends = None;
        let mut reading = true;
        while reading {
            tokio::select! {
                r = &mut read => { ends = r?; reading = false; }
                Some(r) = done_rx.recv() => account(r)?,
            }
        }
        while let Some(r) = done_rx.recv().await {
            account(r)?;
        }
        for t in tasks {
            let _ = t.await;
        }
        if let Some(ends) = ends {
            let positions: Vec<(i32, i64)> = ends.into_iter().collect();
            let txn = self.db.begin().await?;
            write::store_consumer_positions(&txn, &self.config.consumer, &positions).await?;
            txn.commit().await?;
        }
        Ok(applied)
    }

    /// One replay lane's batch in its own transaction, with a few attempts: a replay has no one
    /// to retry it.
    async fn apply_lane_retrying(&self, records: &[Record]) -> Result<usize, ProjectorError> {
        let mut backoff = Duration::from_millis(100);
        let mut attempt = 1;
        loop {
            let result = async {
                let txn = self.db.begin().await?;
                self.apply_in(&txn, records, Fence::Replay).await?;
                txn.commit().await?;
                Ok::<_, ProjectorError>(())
            }
            .await;
            match result {
                Ok(()) => return Ok(records.len()),
                Err(e) if attempt < REPLAY_ATTEMPTS => {
                    tracing::warn!(error = %e, attempt, "replay batch failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Applies records of one partition in one transaction, fenced by the stored position: records
    /// before it were applied already (by us before a crash, or by another replica before a
    /// rebalance) and are skipped; a batch that starts after it would skip events and is refused.
    pub async fn apply_batch(&self, partition: i32, records: &[Record]) -> Result<BatchResult, ProjectorError> {
        let Some(first) = records.first() else {
            return Ok(BatchResult { done: BatchDone::Rewind { to: 0 }, outcomes: Vec::new() });
        };
        let _timer = roster_telemetry::metrics().batch_duration.start_timer();
        let txn = self.db.begin().await?;
        // Without a stored position, a consumer starts where its source started it.
        let fence = Fence::Position { partition, initial: first.position.offset, fresh: false };
        let result = self.apply_in(&txn, records, fence).await?;
        match result.done {
            BatchDone::Rewind { .. } => txn.rollback().await?,
            BatchDone::Applied { .. } => txn.commit().await?,
        }
        Ok(result)
    }

    /// [`Projector::apply_batch`] inside a transaction the caller commits (or, on `Rewind`, rolls
    /// back). A replay lane's records may come from several partitions; a fenced batch's all
    /// come from the fence's partition.
    async fn apply_in(
        &self,
        txn: &DatabaseTransaction,
        records: &[Record],
        fence: Fence,
    ) -> Result<BatchResult, ProjectorError> {
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return Ok(BatchResult { done: BatchDone::Rewind { to: 0 }, outcomes: Vec::new() });
        };
        let m = roster_telemetry::metrics();
        m.batch_size.observe(records.len() as f64);
        let (stored, fresh) = match fence {
            Fence::Position { partition, initial, fresh } => {
                // First statement is a write that locks the position row (and on SQLite takes the
                // write lock), so two replicas applying the same partition serialise here.
                let stored = write::lock_consumer_position(txn, &self.config.consumer, partition, initial).await?;
                if first.position.offset > stored {
                    return Ok(BatchResult { done: BatchDone::Rewind { to: stored }, outcomes: Vec::new() });
                }
                (Some(stored), fresh)
            }
            Fence::Replay => (None, false),
        };
        let mut published = Vec::with_capacity(records.len());
        let mut decisions = Vec::with_capacity(records.len());
        // Events of this batch already decided (a producer retry can put a second copy of an event
        // in the log): one query for the whole batch, then kept up to date as the batch applies.
        let mut decided: std::collections::HashSet<String> = if fresh {
            std::collections::HashSet::new()
        } else {
            let ids: Vec<String> =
                records.iter().filter_map(|r| r.envelope.as_ref().ok().map(|e| e.event_id.to_string())).collect();
            outcomes::get_many(txn, &ids).await?.into_iter().map(|(id, _)| id).collect()
        };
        // Records before the stored position were applied already (by this replica before a crash,
        // or by another before a rebalance), so each has an outcome. One without an outcome is an
        // event this read model never saw: the topic was deleted and recreated, and its offsets
        // started again below the stored position. It is applied like any new event (its id makes
        // that exactly once); skipping it would lose an acknowledged write.
        let unseen = |r: &&Record| r.envelope.as_ref().is_ok_and(|e| !decided.contains(&e.event_id.to_string()));
        let below = |r: &&Record| stored.is_some_and(|s| r.position.offset < s);
        let replaced = records.iter().filter(below).filter(unseen).count();
        if replaced > 0 {
            tracing::warn!(
                partition = first.position.partition,
                stored,
                replaced,
                "events below the stored position were never applied (the topic was recreated?): applying them"
            );
        }
        let live: Vec<&Record> = records.iter().filter(|r| !below(r) || unseen(r)).collect();
        // Events per account that changed something or marked a user: the licensing worker reconciles an
        // account when its counter moves, and each mark carries the counter value after its event.
        let mut changed: std::collections::BTreeMap<&str, i64> = std::collections::BTreeMap::new();
        let mut accounts: Vec<&str> =
            records.iter().filter_map(|r| r.envelope.as_ref().ok().map(|e| e.account_id.as_str())).collect();
        accounts.sort_unstable();
        accounts.dedup();
        let (licensed, seqs) = roster_store::licensing::account_seqs(txn, &accounts).await?;
        let mut ctx = ApplyContext::new(licensed);
        let mut marks: std::collections::BTreeMap<&str, std::collections::HashMap<String, i64>> =
            std::collections::BTreeMap::new();
        ctx.prefetch(txn, &live).await?;
        for (i, record) in live.iter().enumerate() {
            let env = match &record.envelope {
                Ok(env) => env,
                Err(e) => {
                    let Position { partition, offset } = record.position;
                    tracing::error!(partition, offset, error = %e, "undecodable event in the log; skipped");
                    continue;
                }
            };
            if !decided.insert(env.event_id.to_string()) {
                // The same event appended twice (a producer retry): applied once, as the first copy decided.
                continue;
            }
            if !ctx.run_covers(env) {
                // A run of creates or license changes: looked up together, written together.
                ctx.begin_run(txn, &live[i..]).await?;
            }
            let span = event_span(env, record.position);
            let outcome = apply_event(txn, env, &mut ctx).instrument(span.clone()).await?;
            if !span.is_disabled() {
                span.record("roster.outcome.status", outcome.status);
                if let Some(e) = &outcome.error {
                    span.record("roster.outcome.scim_type", e.scim_type.as_deref().unwrap_or_default());
                }
            }
            let touched = ctx.take_touched();
            if outcome.applied() || !touched.is_empty() {
                let n = changed.entry(env.account_id.as_str()).or_default();
                *n += 1;
                let mark = seqs.get(&env.account_id).copied().unwrap_or(0) + *n;
                let account_marks = marks.entry(env.account_id.as_str()).or_default();
                for user in touched {
                    account_marks.insert(user, mark);
                }
            }
            let envelope_json = env.to_json().map_err(|e| StoreError::Corrupt(e.to_string()))?;
            record_outcome_metrics(env.event_type(), &outcome);
            decisions.push(outcomes::NewOutcome {
                envelope: env,
                envelope_json,
                partition: record.position.partition,
                offset: record.position.offset,
                outcome: outcome.clone(),
            });
            published.push((env.event_id, outcome));
        }
        ctx.flush(txn).await?;
        ctx.write_users(txn).await?;
        ctx.write_groups(txn).await?;
        ctx.write_members(txn).await?;
        outcomes::insert_many(txn, &decisions).await?;
        for (account, users) in marks {
            let users: Vec<(String, i64)> = users.into_iter().collect();
            roster_store::licensing::mark_dirty(txn, account, &users).await?;
        }
        let next = (last.position.offset + 1).max(stored.unwrap_or(0));
        let bumps: Vec<(&str, i64)> = changed.into_iter().collect();
        let position = match fence {
            Fence::Position { partition, .. } => Some((self.config.consumer.as_str(), partition, next)),
            Fence::Replay => None,
        };
        // The notification wakes ingress replicas waiting for these outcomes (a replay has none).
        let notify = position.is_some() && !published.is_empty();
        write::finish_batch(txn, position, &bumps, notify).await?;
        // In a recreated topic the source reads on from this batch, not from the old position:
        // what it holds between the two is new too.
        let next_offset = if replaced > 0 { last.position.offset + 1 } else { next };
        Ok(BatchResult { done: BatchDone::Applied { next_offset }, outcomes: published })
    }
}

/// Delivers outcomes to the requests waiting in this process, if any.
fn publish(hub: Option<&OutcomeHub>, outcomes: Vec<(Uuid, Outcome)>) {
    if let Some(hub) = hub {
        for (id, outcome) in outcomes {
            hub.complete(&id, outcome);
        }
    }
}

/// In `roster serve`, the embedded log's group commits are applied in their own transaction.
#[async_trait::async_trait]
impl InlineApply for Projector {
    async fn apply(&self, txn: &DatabaseTransaction, records: &[Record]) -> Result<Option<AfterCommit>, InlineError> {
        let _timer = roster_telemetry::metrics().batch_duration.start_timer();
        // The database log starts at offset 1: a consumer without a position has applied nothing.
        let result = self.apply_in(txn, records, Fence::Position { partition: 0, initial: 1, fresh: true }).await?;
        match result.done {
            BatchDone::Rewind { .. } => Ok(None),
            BatchDone::Applied { .. } => {
                let hub = self.hub.clone();
                Ok(Some(Box::new(move || publish(hub.as_deref(), result.outcomes))))
            }
        }
    }
}

/// The span of one applied event, a child of the context the event carries (the SCIM request, or
/// the licensing round, that caused it), so one trace runs from the request through the log into
/// the read model. Nothing is built when spans are not exported (a batch holds up to 1000 events).
fn event_span(env: &roster_events::Envelope, Position { partition, offset }: Position) -> tracing::Span {
    if !roster_telemetry::trace::enabled() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "projector.apply",
        otel.name = %format_args!("apply {}", env.event_type()),
        otel.kind = "consumer",
        messaging.operation.type = "process",
        messaging.destination.partition.id = partition,
        roster.log.offset = offset,
        roster.event.id = %env.event_id,
        roster.event.type = env.event_type(),
        roster.account.id = env.account_id.as_str(),
        roster.outcome.status = tracing::field::Empty,
        roster.outcome.scim_type = tracing::field::Empty,
    );
    // Before the span is entered: a parent set later is ignored.
    if let Some(tc) = &env.trace_context {
        roster_telemetry::trace::set_parent(&span, tc);
    }
    span
}

fn record_batch_metrics(partition: i32, records: &[Record], lag_events: Option<i64>) {
    let m = roster_telemetry::metrics();
    let p = partition.to_string();
    if let Some(lag) = lag_events {
        m.lag_events.with_label_values(&[p.as_str()]).set(lag.max(0));
    }
    let newest = records.iter().rev().find_map(|r| r.envelope.as_ref().ok()).map(|e| e.time.clone());
    if let Some(t) = newest.and_then(|t| roster_scim::time::parse_datetime(&t).ok()) {
        let age = (chrono::Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0;
        m.lag_seconds.with_label_values(&[p.as_str()]).set(age);
    }
}

/// Counts an applied or rejected event by type (and reason).
fn record_outcome_metrics(event_type: &str, outcome: &Outcome) {
    let m = roster_telemetry::metrics();
    match &outcome.error {
        None => m.applied.with_label_values(&[event_type]).inc(),
        Some(e) => {
            let reason = e.scim_type.clone().unwrap_or_else(|| outcome.status.to_string());
            m.rejected.with_label_values(&[event_type, reason.as_str()]).inc();
        }
    }
}

/// After an idle poll: partitions the source reports as caught up have no lag.
async fn idle_lag(source: &mut dyn BatchSource) {
    let m = roster_telemetry::metrics();
    let mut partitions = known_partitions();
    partitions.extend(source.partitions());
    partitions.sort_unstable();
    partitions.dedup();
    for partition in partitions {
        let lag = source.lag(partition).await;
        let p = partition.to_string();
        if let Some(lag) = lag {
            m.lag_events.with_label_values(&[p.as_str()]).set(lag.max(0));
        }
        if lag.unwrap_or(0) <= 0 {
            m.lag_seconds.with_label_values(&[p.as_str()]).set(0.0);
        }
    }
}

/// While batches fail, lag grows with the time since the last success, so a stuck projector alerts.
fn stalled_lag(since_success: Duration) {
    let m = roster_telemetry::metrics();
    for partition in known_partitions() {
        let p = partition.to_string();
        let g = m.lag_seconds.with_label_values(&[p.as_str()]);
        g.set(g.get().max(since_success.as_secs_f64()));
    }
}

/// Partitions this process has reported lag for so far (partition 0 for the database log).
fn known_partitions() -> Vec<i32> {
    let families = roster_telemetry::metrics().lag_events.clone();
    let mut out: Vec<i32> = prometheus::core::Collector::collect(&families)
        .iter()
        .flat_map(|f| f.get_metric().iter())
        .filter_map(|m| m.get_label().iter().find(|l| l.name() == "partition").and_then(|l| l.value().parse().ok()))
        .collect();
    if out.is_empty() {
        out.push(0);
    }
    out
}
