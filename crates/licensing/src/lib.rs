//! The licensing worker (issue 4): a reconciler that keeps every account's licenses equal to what its
//! policy allocates.
//!
//! Each round it reads the per-account change counter the projector maintains (`account_state.seq`); for
//! every account with a policy whose counter moved since it last reconciled it (all of them after a start),
//! it loads the users, their groups and the pins, runs [`roster_license_policy::allocate`] and `diff`, and
//! appends the resulting `license.changed` events (actor `system`) to the event log. It never writes a
//! license itself: the projector applies each change through its seat guard, serially per account, so seats
//! are never over-allocated even with several workers; a change rejected because the state moved on is
//! simply recomputed in the next round. Because every round evaluates the account from scratch, a crash or
//! restart at any point converges to the same result.
//!
//! The mass-revocation guard: when the changes (other than users' own deactivations and deletions) would
//! revoke or downgrade more than the configured share of the active users, they are recorded as a
//! `pending` hold instead of applied, until an operator confirms it (`license.hold_resolved`).

mod plan;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use roster_db::{Db, StoreError};
use roster_eventlog::{EventLog, LogError};
use roster_events::{Actor, ENVELOPE_VERSION, Envelope, Payload, ResourceType};
use roster_license_policy::{Change, HoldThreshold, SeatUse};
use roster_store::licensing::{self, Hold};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use uuid::Uuid;

pub use plan::{Plan, is_revocation, order, plan};

/// How old the change a licensing round reacts to may be for the round to join its trace (the
/// projector applies events within moments; a round after a longer backlog starts its own trace).
const TRACE_PARENT_WINDOW: Duration = Duration::from_secs(3600);

/// Most `license.changed` events appended per call.
pub const APPEND_BATCH: usize = 500;

/// Errors of one reconciliation (retried in the next round).
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The read model failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The event log failed.
    #[error(transparent)]
    Log(#[from] LogError),
}

/// Worker settings (`--license-hold*` flags).
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Pause between rounds.
    pub interval: Duration,
    /// The mass-revocation guard; `None` = off.
    pub hold: Option<HoldThreshold>,
    /// Label the seat gauges with the account id (cardinality grows with accounts: opt-in).
    pub account_labels: bool,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self { interval: Duration::from_millis(200), hold: Some(HoldThreshold::default()), account_labels: false }
    }
}

/// What reconciling one account did (for logs and tests).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reconciled {
    /// `license.changed` events appended.
    pub appended: usize,
    /// Changes held for an operator (0 when nothing is held).
    pub held: usize,
    /// Seat use per license after this reconciliation (for the seat gauges).
    pub seats: BTreeMap<String, SeatUse>,
}

/// The reconciler.
pub struct LicensingWorker {
    db: Db,
    log: Arc<dyn EventLog>,
    config: WorkerConfig,
    /// The change counter of each account at its last successful reconciliation (in memory: empty after a
    /// restart, so every account is reconciled once).
    reconciled: HashMap<String, i64>,
    /// Last known seat use and pending-hold state per account, for the gauges.
    gauges: HashMap<String, (BTreeMap<String, SeatUse>, bool)>,
}

impl LicensingWorker {
    /// A worker reading `db` and appending to `log`.
    pub fn new(db: Db, log: Arc<dyn EventLog>, config: WorkerConfig) -> Self {
        Self { db, log, config, reconciled: HashMap::new(), gauges: HashMap::new() }
    }

    /// Reconciles until cancelled.
    pub async fn run(mut self, cancel: CancellationToken) {
        while !cancel.is_cancelled() {
            if let Err(e) = self.round().await {
                tracing::warn!(error = %e, "licensing round failed; retrying");
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(self.config.interval) => {}
            }
        }
    }

    /// One round: reconciles every licensed account whose change counter moved; returns how many accounts
    /// it reconciled.
    pub async fn round(&mut self) -> Result<usize, WorkerError> {
        let accounts = licensing::licensed_accounts(&self.db).await?;
        let mut done = 0;
        let mut first_error = None;
        for (account, seq) in accounts {
            if self.reconciled.get(&account) == Some(&seq) {
                continue;
            }
            let span = self.reconcile_span(&account).await;
            match self.reconcile(&account).instrument(span.clone()).await {
                Ok(r) => {
                    span.record("roster.licensing.appended", r.appended);
                    span.record("roster.licensing.held", r.held);
                    if r.appended > 0 || r.held > 0 {
                        span.in_scope(|| {
                            tracing::info!(account = %account, appended = r.appended, held = r.held, "licenses reconciled")
                        });
                    }
                    self.gauges.insert(account.clone(), (r.seats, r.held > 0));
                    self.reconciled.insert(account, seq);
                    done += 1;
                }
                Err(e) => {
                    span.in_scope(|| tracing::warn!(account = %account, error = %e, "reconciling licenses failed"));
                    first_error.get_or_insert(e);
                }
            }
        }
        self.publish_gauges();
        match first_error {
            Some(e) => Err(e),
            None => Ok(done),
        }
    }

    /// The span of one account's reconciliation: a child of the trace of the account's latest
    /// event (the change it reacts to), so the `license.changed` events it appends, which carry
    /// this span's context, continue the trace of the SCIM request that caused them. Nothing is
    /// looked up when spans are not exported.
    async fn reconcile_span(&self, account: &str) -> tracing::Span {
        if !roster_telemetry::trace::enabled() {
            return tracing::Span::none();
        }
        let span = tracing::info_span!(
            "licensing.reconcile",
            roster.account.id = account,
            roster.licensing.appended = tracing::field::Empty,
            roster.licensing.held = tracing::field::Empty,
        );
        match roster_store::outcomes::latest_trace_context(&self.db, account, TRACE_PARENT_WINDOW).await {
            Ok(Some(parent)) => roster_telemetry::trace::set_parent(&span, &parent),
            Ok(None) => {}
            Err(e) => tracing::debug!(account, error = %e, "no trace parent for the licensing round"),
        }
        span
    }

    /// Seats used and limits per license (summed over accounts unless account labels are on),
    /// and the number of accounts with a held mass revocation.
    fn publish_gauges(&self) {
        let m = roster_telemetry::metrics();
        m.seats_used.reset();
        m.seats_limit.reset();
        let mut totals: BTreeMap<(String, String), (u64, Option<u64>)> = BTreeMap::new();
        for (account, (seats, _)) in &self.gauges {
            let label = if self.config.account_labels { account.clone() } else { String::new() };
            for (license, usage) in seats {
                let e = totals.entry((license.clone(), label.clone())).or_insert((0, Some(0)));
                e.0 += usage.used;
                e.1 = match (e.1, usage.limit) {
                    (Some(a), Some(b)) => Some(a + b),
                    _ => None,
                };
            }
        }
        for ((license, account), (used, limit)) in totals {
            m.seats_used.with_label_values(&[license.as_str(), account.as_str()]).set(used as i64);
            if let Some(limit) = limit {
                m.seats_limit.with_label_values(&[license.as_str(), account.as_str()]).set(limit as i64);
            }
        }
        m.holds_pending.set(self.gauges.values().filter(|(_, held)| *held).count() as i64);
    }

    /// Reconciles one account now, whatever its counter says.
    pub async fn reconcile(&self, account: &str) -> Result<Reconciled, WorkerError> {
        let Some(policy) = licensing::get_policy(&self.db, account).await? else {
            return Ok(Reconciled::default());
        };
        let snap = licensing::snapshot(&self.db, account).await?;
        let current = snap.holdings();
        let holds = licensing::holds(&self.db, account).await?;
        let pending = holds.iter().find(|h| h.status == "pending");
        let confirmed = holds.iter().find(|h| h.status == "confirmed");
        let plan = plan::plan(
            &policy,
            &snap.inputs(),
            &current,
            snap.active_users(),
            self.config.hold.as_ref(),
            confirmed.is_some(),
        );

        if plan.holding {
            let changes = serde_json::to_value(&plan.held).unwrap_or(Value::Null);
            let summary = json!({
                "revoked_or_downgraded": plan.impact.revoked_or_downgraded,
                "share": plan.impact.share,
                "active_users": snap.active_users(),
                "threshold": self.config.hold,
            });
            match pending {
                Some(h) if h.changes == changes => {}
                Some(h) => licensing::update_pending_hold(&self.db, &h.id, &summary, &changes).await?,
                None => {
                    let hold = Hold {
                        id: Uuid::new_v4().simple().to_string(),
                        account_id: account.to_string(),
                        created_at: roster_scim::time::now(),
                        status: "pending".into(),
                        summary,
                        changes,
                    };
                    tracing::warn!(account, hold = %hold.id, held = plan.held.len(), "mass license revocation held for an operator");
                    licensing::insert_hold(&self.db, &hold).await?;
                }
            }
        } else if let Some(h) = pending {
            // The situation resolved itself (e.g. the group came back) before anyone decided.
            licensing::set_hold_status(&self.db, &h.id, "pending", "superseded").await?;
        }

        self.append(account, &plan.apply).await?;
        if !plan.holding
            && let Some(h) = confirmed
        {
            licensing::set_hold_status(&self.db, &h.id, "confirmed", "applied").await?;
        }
        let mut after = current.clone();
        for c in &plan.apply {
            match &c.to {
                Some(l) => after.insert(c.user.clone(), l.clone()),
                None => after.remove(&c.user),
            };
        }
        let seats = roster_license_policy::seat_use(&policy, &after);
        Ok(Reconciled { appended: plan.apply.len(), held: plan.held.len(), seats })
    }

    async fn append(&self, account: &str, changes: &[Change]) -> Result<(), WorkerError> {
        for chunk in changes.chunks(APPEND_BATCH) {
            let time = roster_scim::time::now();
            // The reconciliation's trace continues into the projector through the events.
            let trace_context = roster_telemetry::trace::current_context();
            let events = chunk
                .iter()
                .map(|c| Envelope { trace_context: trace_context.clone(), ..license_changed(account, &time, c) })
                .collect();
            self.log.append(events).await?;
        }
        Ok(())
    }
}

/// The `license.changed` envelope for one change.
pub fn license_changed(account: &str, time: &str, c: &Change) -> Envelope {
    Envelope {
        v: ENVELOPE_VERSION,
        event_id: Uuid::now_v7(),
        account_id: account.to_string(),
        resource_type: ResourceType::User,
        resource_id: c.user.clone(),
        time: time.to_string(),
        request_id: None,
        trace_context: None,
        actor: Actor::System,
        payload: Payload::LicenseChanged {
            user_id: c.user.clone(),
            from: c.from.clone(),
            to: c.to.clone(),
            reason: serde_json::to_value(&c.reason).unwrap_or(Value::Null),
        },
    }
}
