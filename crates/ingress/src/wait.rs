//! Waiting for the projector's decision on an event (read-your-writes).

use std::sync::Arc;
use std::time::Duration;

use roster_db::Db;
use roster_events::Outcome;
use roster_projector::OutcomeHub;
use roster_store::write::APPLIED_CHANNEL;
use sea_orm::DbBackend;
use tokio::sync::{oneshot, watch};
use uuid::Uuid;

/// How a write learns its outcome. Requests register in an [`OutcomeHub`]: the in-process
/// projector's when there is one; otherwise a hub fed by one background task that looks up the
/// outcomes of *all* waiting events in one query each time it wakes — on Postgres
/// `NOTIFY roster_applied` (sent by the projector at each batch commit), with a short poll as the
/// safety net (and the only means on SQLite).
#[derive(Clone)]
pub struct OutcomeWaiter {
    db: Db,
    hub: Arc<OutcomeHub>,
    /// Set when the process stops: waits end by then, so in-flight writes get their 503 before
    /// the grace period runs out instead of a reset connection.
    stop_by: Arc<watch::Sender<Option<tokio::time::Instant>>>,
}

/// How often waiting events are looked up when no notification arrives.
const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// The safety-net poll when notifications are available.
const NOTIFIED_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Listens for projector commits and bumps a counter; reconnects after failures.
fn spawn_listener(db: &Db) -> watch::Receiver<u64> {
    let (tx, rx) = watch::channel(0u64);
    let pool = db.get_postgres_connection_pool().clone();
    tokio::spawn(async move {
        loop {
            let listener = async {
                let mut l = sea_orm::sqlx::postgres::PgListener::connect_with(&pool).await?;
                l.listen(APPLIED_CHANNEL).await?;
                loop {
                    l.recv().await?;
                    tx.send_modify(|n| *n = n.wrapping_add(1));
                }
                #[allow(unreachable_code)]
                Ok::<(), sea_orm::sqlx::Error>(())
            };
            if let Err(e) = listener.await {
                tracing::warn!(error = %e, "outcome notifications interrupted; polling until reconnected");
            }
            if tx.is_closed() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    rx
}

/// Completes waiting requests from the outcome table: one query for every waiter per wake-up, so
/// the database load does not grow with the number of requests in flight.
fn spawn_poller(db: Db, hub: Arc<OutcomeHub>) {
    let mut applied = (db.get_database_backend() == DbBackend::Postgres).then(|| spawn_listener(&db));
    tokio::spawn(async move {
        loop {
            match applied.as_mut() {
                Some(rx) => {
                    let _ = tokio::time::timeout(NOTIFIED_POLL_INTERVAL, rx.changed()).await;
                }
                None => tokio::time::sleep(POLL_INTERVAL).await,
            }
            let ids: Vec<String> = hub.waiting_ids().iter().map(Uuid::to_string).collect();
            if ids.is_empty() {
                continue;
            }
            match roster_store::outcomes::get_many(&db, &ids).await {
                Ok(found) => {
                    for (id, outcome) in found {
                        if let Ok(id) = Uuid::parse_str(&id) {
                            hub.complete(&id, outcome);
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "looking up outcomes failed; retrying"),
            }
        }
    });
}

/// Why a submitted change has no outcome to report.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The event log did not take the events: nothing was recorded.
    #[error("event log append failed: {0}")]
    Append(#[from] roster_eventlog::LogError),
    /// The events are durable but were not applied within the time-out; they will be, exactly once.
    #[error("the change is recorded but not applied yet; it will be applied exactly once")]
    NotYetApplied,
}

/// A registration made before appending, so the outcome cannot be missed.
pub struct Pending {
    event_id: Uuid,
    rx: oneshot::Receiver<Outcome>,
}

impl OutcomeWaiter {
    /// A waiter; `hub` is the in-process projector's outcome hub, if it runs in this process
    /// (otherwise outcomes are looked up in the database by a background task).
    pub fn new(db: Db, hub: Option<Arc<OutcomeHub>>) -> Self {
        let hub = match hub {
            Some(h) => h,
            None => {
                let h = Arc::new(OutcomeHub::default());
                spawn_poller(db.clone(), h.clone());
                h
            }
        };
        Self { db, hub, stop_by: Arc::new(watch::Sender::new(None)) }
    }

    /// Shutdown: every wait, current and future, ends by `deadline` (the write stays durable and
    /// the client is told it is not yet applied).
    pub fn stop_waiting_by(&self, deadline: tokio::time::Instant) {
        self.stop_by.send_replace(Some(deadline));
    }

    /// Resolves at the shutdown deadline, once one is set; never before.
    async fn stopped(&self) {
        let mut rx = self.stop_by.subscribe();
        loop {
            let deadline = *rx.borrow_and_update();
            if let Some(deadline) = deadline {
                tokio::time::sleep_until(deadline).await;
                return;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Appends `events` in order and waits up to `timeout` for the projector's decision on the last
    /// one (read-your-writes): the one sequence every write path (SCIM and admin) goes through.
    pub async fn submit(
        &self,
        log: &dyn roster_eventlog::EventLog,
        events: Vec<roster_events::Envelope>,
        timeout: Duration,
    ) -> Result<Outcome, SubmitError> {
        let Some(last) = events.last().map(|e| e.event_id) else {
            return Ok(Outcome { status: 200, version: None, error: None });
        };
        let pending = self.register(last);
        if let Err(e) = log.append(events).await {
            self.cancel(pending);
            return Err(e.into());
        }
        let waited = roster_telemetry::metrics().write_wait.start_timer();
        let outcome = self.wait(pending, timeout).await;
        waited.observe_duration();
        outcome.ok_or(SubmitError::NotYetApplied)
    }

    /// Registers interest in `event_id`'s outcome.
    pub fn register(&self, event_id: Uuid) -> Pending {
        Pending { event_id, rx: self.hub.register(event_id) }
    }

    /// Gives up on a registration (the append failed).
    pub fn cancel(&self, pending: Pending) {
        self.hub.forget(&pending.event_id);
    }

    /// Waits up to `timeout` for the outcome; `None` on time-out (the event stays durable and
    /// will be applied exactly once).
    pub async fn wait(&self, pending: Pending, timeout: Duration) -> Option<Outcome> {
        let Pending { event_id, rx } = pending;
        tokio::select! {
            received = tokio::time::timeout(timeout, rx) => {
                if let Ok(Ok(outcome)) = received {
                    return Some(outcome);
                }
            }
            () = self.stopped() => {}
        }
        self.hub.forget(&event_id);
        // The projector may have finished just as we gave up.
        roster_store::outcomes::get(&self.db, &event_id.to_string()).await.ok().flatten()
    }
}
