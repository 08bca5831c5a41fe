//! Waiting for the projector's decision on an event (read-your-writes).

use std::sync::Arc;
use std::time::{Duration, Instant};

use roster_db::Db;
use roster_events::Outcome;
use roster_projector::OutcomeHub;
use tokio::sync::oneshot;
use uuid::Uuid;

/// How a write learns its outcome: from the in-process projector when there is one, otherwise by
/// polling the outcome table with exponential back-off (a separate projector process).
#[derive(Clone)]
pub struct OutcomeWaiter {
    db: Db,
    hub: Option<Arc<OutcomeHub>>,
}

/// A registration made before appending, so the outcome cannot be missed.
pub struct Pending {
    event_id: Uuid,
    rx: Option<oneshot::Receiver<Outcome>>,
}

impl OutcomeWaiter {
    /// A waiter; `hub` is the in-process projector's outcome hub, if it runs in this process.
    pub fn new(db: Db, hub: Option<Arc<OutcomeHub>>) -> Self {
        Self { db, hub }
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
        loop {
            if let Ok(Some(o)) = roster_store::outcomes::get(&self.db, &id).await {
                return Some(o);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            tokio::time::sleep(delay.min(deadline - now)).await;
            delay = (delay * 2).min(Duration::from_millis(100));
        }
    }
}
