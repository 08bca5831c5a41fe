//! Waiting for the projector's decision on an event (read-your-writes).

use std::sync::Arc;
use std::time::{Duration, Instant};

use roster_db::Db;
use roster_events::Outcome;
use roster_projector::OutcomeHub;
use sea_orm::DbBackend;
use tokio::sync::{oneshot, watch};
use uuid::Uuid;

/// How a write learns its outcome: from the in-process projector when there is one, otherwise by
/// reading the outcome table — woken by Postgres `NOTIFY roster_applied` after each projector
/// commit, with exponential back-off polling as the safety net (and the only means on SQLite).
#[derive(Clone)]
pub struct OutcomeWaiter {
    db: Db,
    hub: Option<Arc<OutcomeHub>>,
    applied: Option<watch::Receiver<u64>>,
}

/// The channel the projector notifies after each committed batch (Postgres only).
pub const APPLIED_CHANNEL: &str = "roster_applied";

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

/// A registration made before appending, so the outcome cannot be missed.
pub struct Pending {
    event_id: Uuid,
    rx: Option<oneshot::Receiver<Outcome>>,
}

impl OutcomeWaiter {
    /// A waiter; `hub` is the in-process projector's outcome hub, if it runs in this process.
    pub fn new(db: Db, hub: Option<Arc<OutcomeHub>>) -> Self {
        let applied = (hub.is_none() && db.get_database_backend() == DbBackend::Postgres).then(|| spawn_listener(&db));
        Self { db, hub, applied }
    }

    /// Registers interest in `event_id`'s outcome.
    pub fn register(&self, event_id: Uuid) -> Pending {
        Pending { event_id, rx: self.hub.as_ref().map(|h| h.register(event_id)) }
    }

    /// Gives up on a registration (the append failed).
    pub fn cancel(&self, pending: Pending) {
        if let Some(h) = &self.hub {
            h.forget(&pending.event_id);
        }
    }

    /// Waits up to `timeout` for the outcome; `None` on time-out (the event stays durable and
    /// will be applied exactly once).
    pub async fn wait(&self, pending: Pending, timeout: Duration) -> Option<Outcome> {
        let Pending { event_id, rx } = pending;
        let result = match rx {
            Some(rx) => tokio::time::timeout(timeout, rx).await.ok().and_then(Result::ok),
            None => self.poll(event_id, timeout).await,
        };
        if result.is_none() {
            if let Some(h) = &self.hub {
                h.forget(&event_id);
            }
            // The projector may have finished just as we gave up, or published before we listened.
            return roster_store::outcomes::get(&self.db, &event_id.to_string()).await.ok().flatten();
        }
        result
    }

    async fn poll(&self, event_id: Uuid, timeout: Duration) -> Option<Outcome> {
        let deadline = Instant::now() + timeout;
        let id = event_id.to_string();
        let mut delay = Duration::from_millis(2);
        let mut applied = self.applied.clone();
        loop {
            if let Ok(Some(o)) = roster_store::outcomes::get(&self.db, &id).await {
                return Some(o);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            let wait = delay.min(deadline - now);
            match applied.as_mut() {
                Some(rx) => {
                    let _ = tokio::time::timeout(wait, rx.changed()).await;
                }
                None => tokio::time::sleep(wait).await,
            }
            delay = (delay * 2).min(Duration::from_millis(100));
        }
    }
}
