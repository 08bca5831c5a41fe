//! In-process delivery of outcomes to waiting requests (read-your-writes without polling).

use std::collections::HashMap;
use std::sync::Mutex;

use roster_events::Outcome;
use tokio::sync::oneshot;
use uuid::Uuid;

/// Where requests wait for the outcome of their event when the projector runs in the same process.
#[derive(Debug, Default)]
pub struct OutcomeHub {
    waiters: Mutex<HashMap<Uuid, oneshot::Sender<Outcome>>>,
}

impl OutcomeHub {
    /// Registers interest in an event's outcome; call before appending so none is missed.
    pub fn register(&self, event_id: Uuid) -> oneshot::Receiver<Outcome> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut w) = self.waiters.lock() {
            w.insert(event_id, tx);
        }
        rx
    }

    /// Drops a registration (the request gave up or its append failed).
    pub fn forget(&self, event_id: &Uuid) {
        if let Ok(mut w) = self.waiters.lock() {
            w.remove(event_id);
        }
    }

    /// Delivers an outcome to its waiter, if any.
    pub fn complete(&self, event_id: &Uuid, outcome: Outcome) {
        let waiter = self.waiters.lock().ok().and_then(|mut w| w.remove(event_id));
        if let Some(tx) = waiter {
            let _ = tx.send(outcome);
        }
    }

    /// The events requests are waiting for (a process without an in-process projector looks
    /// their outcomes up in one query per wake-up).
    pub fn waiting_ids(&self) -> Vec<Uuid> {
        self.waiters.lock().map(|w| w.keys().copied().collect()).unwrap_or_default()
    }

    /// Number of requests currently waiting (a gauge for metrics and tests).
    pub fn waiting(&self) -> usize {
        self.waiters.lock().map(|w| w.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn registered_waiter_receives_its_outcome() {
        let hub = OutcomeHub::default();
        let id = Uuid::nil();
        let rx = hub.register(id);
        hub.complete(&id, Outcome { status: 201, version: Some(1), error: None });
        assert_eq!(rx.await.ok().map(|o| o.status), Some(201));
        assert_eq!(hub.waiting(), 0);
    }

    #[test]
    fn completing_an_unknown_event_is_harmless() {
        let hub = OutcomeHub::default();
        hub.complete(&Uuid::nil(), Outcome { status: 200, version: None, error: None });
        assert_eq!(hub.waiting(), 0);
    }
}
