//! The projector loop: read a batch, apply it in one transaction, publish outcomes.

use std::sync::Arc;
use std::time::Duration;

use roster_db::{Db, StoreError};
use roster_eventlog::{EventLog, LogError, Record};
use roster_events::Outcome;
use roster_store::{outcomes, write};
use sea_orm::TransactionTrait;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{OutcomeHub, apply_event};

/// Errors that stop a projection step (retried with back-off by [`Projector::run`]).
#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    /// The read model database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The event log failed.
    #[error(transparent)]
    Log(#[from] LogError),
}

impl From<sea_orm::DbErr> for ProjectorError {
    fn from(e: sea_orm::DbErr) -> Self {
        ProjectorError::Store(StoreError::Db(e))
    }
}

/// Projector settings.
#[derive(Debug, Clone)]
pub struct ProjectorConfig {
    /// Name under which positions are stored (one per read model).
    pub consumer: String,
    /// Most events applied per transaction.
    pub max_batch: usize,
    /// How often to look for events appended by other processes when nothing wakes us.
    pub poll_interval: Duration,
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        Self { consumer: "projector".into(), max_batch: 1000, poll_interval: Duration::from_millis(100) }
    }
}

/// Applies the log to the read model.
pub struct Projector {
    db: Db,
    log: Arc<dyn EventLog>,
    hub: Option<Arc<OutcomeHub>>,
    config: ProjectorConfig,
}

impl Projector {
    /// A projector over `log` writing to `db`; `hub` delivers outcomes to in-process waiters.
    pub fn new(db: Db, log: Arc<dyn EventLog>, hub: Option<Arc<OutcomeHub>>, config: ProjectorConfig) -> Self {
        Self { db, log, hub, config }
    }

    /// Runs until cancelled, backing off on errors; never loses or repeats an event.
    pub async fn run(&self, cancel: CancellationToken) {
        let mut appended = self.log.appended();
        let mut backoff = Duration::from_millis(100);
        while !cancel.is_cancelled() {
            match self.step().await {
                Ok(n) if n > 0 => {
                    backoff = Duration::from_millis(100);
                    continue;
                }
                Ok(_) => {
                    backoff = Duration::from_millis(100);
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = appended.changed() => {}
                        _ = tokio::time::sleep(self.config.poll_interval) => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "projector step failed");
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Applies at most one batch per partition; returns how many events were applied.
    pub async fn step(&self) -> Result<usize, ProjectorError> {
        let mut total = 0;
        for partition in self.log.partitions() {
            let from = write::consumer_position(&self.db, &self.config.consumer, partition).await?.unwrap_or(1);
            let records = self.log.read(partition, from, self.config.max_batch).await?;
            if records.is_empty() {
                continue;
            }
            total += records.len();
            let outcomes = self.apply_batch(partition, &records).await?;
            if let Some(hub) = &self.hub {
                for (id, outcome) in outcomes {
                    hub.complete(&id, outcome);
                }
            }
        }
        Ok(total)
    }

    /// Applies records in one transaction; returns the outcomes to publish after commit.
    pub async fn apply_batch(
        &self,
        partition: i32,
        records: &[Record],
    ) -> Result<Vec<(Uuid, Outcome)>, ProjectorError> {
        let Some(last) = records.last() else { return Ok(Vec::new()) };
        let txn = self.db.begin().await?;
        // First statement is a write, so on SQLite the transaction holds the write lock from the start.
        write::set_consumer_position(&txn, &self.config.consumer, partition, last.position.offset + 1).await?;
        let mut published = Vec::with_capacity(records.len());
        for record in records {
            let env = match &record.envelope {
                Ok(env) => env,
                Err(e) => {
                    tracing::error!(partition, offset = record.position.offset, error = %e, "undecodable event in the log; skipped");
                    continue;
                }
            };
            if outcomes::get(&txn, &env.event_id.to_string()).await?.is_some() {
                // The same event appended twice (a producer retry): applied once, as the first copy decided.
                continue;
            }
            let outcome = apply_event(&txn, env).await?;
            let json = env.to_json().map_err(|e| StoreError::Corrupt(e.to_string()))?;
            outcomes::insert(&txn, env, &json, partition, record.position.offset, &outcome).await?;
            published.push((env.event_id, outcome));
        }
        txn.commit().await?;
        Ok(published)
    }
}
