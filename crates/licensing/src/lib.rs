//! The licensing worker (issue 4): a reconciler that keeps every account's licenses equal to what its
//! policy allocates.
//!
//! Each round it reads the per-account change counter the projector maintains (`account_state.seq`). For
//! every account with a policy whose counter moved since it last reconciled it, it re-evaluates exactly the
//! users the projector marked (`license_dirty`: the users of a changed membership, every member of a renamed
//! or deleted group, the user of an override; a policy change marks the whole account), plus those whose
//! seats the change could move: the holders of a license a marked user is pinned to, and, when seats of a
//! limited license moved or are free, the users waiting for a seat (`seats_exhausted`). Everyone else keeps
//! what they hold, and the scoped evaluation gives the same result as [`roster_license_policy::allocate`]
//! over the whole account (see `docs/licensing.md` for the argument; tests compare the two). After a start,
//! and every `full_every`, it evaluates each account from scratch, so a crash or restart at any point
//! converges to the same result, whatever marks were lost.
//!
//! It appends the resulting `license.changed` events (actor `system`) to the event log and never writes a
//! license itself: the projector applies each change through its seat guard, serially per account, so seats
//! are never over-allocated even with several workers; a change rejected because the state moved on marks
//! its user again and is recomputed in the next round.
//!
//! The mass-revocation guard: when the changes (other than users' own deactivations and deletions) would
//! revoke or downgrade more than the configured share of the active users, they are recorded as a
//! `pending` hold instead of applied, until an operator confirms it (`license.hold_resolved`).

mod plan;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use roster_db::{Db, StoreError};
use roster_eventlog::{EventLog, LogError};
use roster_events::{Actor, ENVELOPE_VERSION, Envelope, Payload, ResourceType};
use roster_license_policy::{Change, HoldThreshold, Policy, SeatUse};
use roster_store::licensing::{self, AccountSnapshot, Hold};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use uuid::Uuid;

pub use plan::{Plan, is_revocation, order, plan};

/// How old the change a licensing round reacts to may be for the round to join its trace (the
/// projector applies events within moments; a round after a longer backlog starts its own trace).
const TRACE_PARENT_WINDOW: Duration = Duration::from_secs(3600);

/// Most `license.changed` events appended per call.
pub const APPEND_BATCH: usize = 2000;

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
    /// How often each account is evaluated from scratch even when no marks ask for it (anti-entropy).
    pub full_every: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(200),
            hold: Some(HoldThreshold::default()),
            account_labels: false,
            full_every: Duration::from_secs(3600),
        }
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
    /// Users whose change had to wait (marked again for the next round).
    pub deferred: usize,
    /// Users evaluated (the whole account for a full evaluation).
    pub evaluated: usize,
}

/// The reconciler.
pub struct LicensingWorker {
    db: Db,
    log: Arc<dyn EventLog>,
    config: WorkerConfig,
    /// The change counter of each account at its last successful reconciliation and when it was last
    /// evaluated from scratch (in memory: empty after a restart, so every account is evaluated in full once).
    reconciled: HashMap<String, (i64, Instant)>,
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

    /// One round: reconciles every licensed account whose change counter moved (in full after a start and
    /// every `full_every`, otherwise the marked users); returns how many accounts it reconciled.
    pub async fn round(&mut self) -> Result<usize, WorkerError> {
        let accounts = licensing::licensed_accounts(&self.db).await?;
        let mut done = 0;
        let mut first_error = None;
        for (account, seq) in accounts {
            let memo = self.reconciled.get(&account).copied();
            let full_due = memo.is_none_or(|(_, at)| at.elapsed() >= self.config.full_every);
            if !full_due && memo.is_some_and(|(s, _)| s == seq) {
                continue;
            }
            let span = self.reconcile_span(&account).await;
            let result = if full_due {
                self.reconcile_full(&account, seq).instrument(span.clone()).await.map(|r| (Some(r), true))
            } else {
                self.reconcile_marked(&account, seq).instrument(span.clone()).await
            };
            match result {
                Ok((r, full)) => {
                    let r_deferred = r.as_ref().is_some_and(|r| r.deferred > 0);
                    if let Some(r) = r {
                        span.record("roster.licensing.appended", r.appended);
                        span.record("roster.licensing.held", r.held);
                        if r.appended > 0 || r.held > 0 {
                            span.in_scope(|| {
                                tracing::info!(account = %account, appended = r.appended, held = r.held, full, "licenses reconciled")
                            });
                        }
                        self.gauges.insert(account.clone(), (r.seats, r.held > 0));
                    }
                    let at = match memo {
                        Some((_, at)) if !full => at,
                        _ => Instant::now(),
                    };
                    // Deferred changes are retried next round even though the counter has not moved.
                    let seen = if r_deferred { -1 } else { seq };
                    self.reconciled.insert(account, (seen, at));
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

    /// Evaluates one account from scratch now, whatever its counter and marks say.
    pub async fn reconcile(&self, account: &str) -> Result<Reconciled, WorkerError> {
        let seq = licensing::seq(&self.db, account).await?;
        self.reconcile_full(account, seq).await
    }

    /// Re-evaluates the users marked in `account` and those whose seats their changes can move; falls back
    /// to a full evaluation when a mark asks for the whole account, a hold is open, or the scoped changes
    /// would trip the mass-revocation guard. `None` when nothing was marked; the flag says whether it went
    /// full. `seq` is the account's counter read before the marks.
    pub async fn reconcile_marked(&self, account: &str, seq: i64) -> Result<(Option<Reconciled>, bool), WorkerError> {
        let marks = licensing::dirty(&self.db, account).await?;
        let Some(upto) = marks.iter().map(|(_, m)| *m).max() else {
            return Ok((None, false));
        };
        if marks.iter().any(|(u, _)| u == licensing::WHOLE_ACCOUNT) {
            return self.reconcile_full(account, seq.max(upto)).await.map(|r| (Some(r), true));
        }
        let holds = licensing::holds(&self.db, account).await?;
        if holds.iter().any(|h| h.status == "pending" || h.status == "confirmed") {
            return self.reconcile_full(account, seq.max(upto)).await.map(|r| (Some(r), true));
        }
        let Some(policy) = licensing::get_policy(&self.db, account).await? else {
            licensing::clear_dirty(&self.db, account, upto).await?;
            return Ok((Some(Reconciled::default()), false));
        };
        let held = licensing::seat_counts(&self.db, account).await?;
        let active = licensing::active_users(&self.db, account).await?;
        let mut scope: BTreeSet<String> = marks.into_iter().map(|(u, _)| u).collect();
        let mut scoped = self.plan_scope(account, &policy, &scope, &held, active).await?;
        if scoped.moves_limited_seats(&policy) {
            // Seats of a limited license moved or are free: the users waiting for one contend for them.
            scope.extend(licensing::waiting_users(&self.db, account).await?);
            scoped = self.plan_scope(account, &policy, &scope, &held, active).await?;
        }
        if scoped.plan.holding {
            return self.reconcile_full(account, seq.max(upto)).await.map(|r| (Some(r), true));
        }
        self.append(account, &scoped.plan.apply).await?;
        licensing::clear_dirty(&self.db, account, upto).await?;
        self.remark(account, &scoped.plan.deferred, upto).await?;
        let seats = scoped.seats_after(&policy);
        let r = Reconciled {
            appended: scoped.plan.apply.len(),
            held: 0,
            seats,
            deferred: scoped.plan.deferred.len(),
            evaluated: scoped.snap.users.len(),
        };
        Ok((Some(r), false))
    }

    /// Plans the users in `scope` (plus the holders of any limited license one of them is pinned to, whom a
    /// pin can displace) against the seats the rest of the account leaves them.
    async fn plan_scope(
        &self,
        account: &str,
        policy: &Policy,
        scope: &BTreeSet<String>,
        held: &BTreeMap<String, u64>,
        active: usize,
    ) -> Result<Scoped, WorkerError> {
        let ids: Vec<String> = scope.iter().cloned().collect();
        let mut snap = licensing::snapshot_of(&self.db, account, &ids).await?;
        let pinned: BTreeSet<&String> =
            snap.overrides.values().filter(|l| policy.license(l).is_some_and(|t| t.seats.is_some())).collect();
        let mut extra = Vec::new();
        for license in pinned {
            extra.extend(
                licensing::holders(&self.db, account, license).await?.into_iter().filter(|h| !scope.contains(h)),
            );
        }
        if !extra.is_empty() {
            extra.sort();
            extra.dedup();
            let more = licensing::snapshot_of(&self.db, account, &extra).await?;
            snap.users.extend(more.users);
            snap.groups.extend(more.groups);
            snap.overrides.extend(more.overrides);
        }
        let mut inside: BTreeMap<String, u64> = BTreeMap::new();
        for u in snap.users.iter().filter(|u| u.active) {
            if let Some(l) = &u.license {
                *inside.entry(l.clone()).or_default() += 1;
            }
        }
        let mut reduced = policy.clone();
        for lt in &mut reduced.license_types {
            if let Some(limit) = lt.seats {
                let outside =
                    held.get(&lt.name).copied().unwrap_or(0).saturating_sub(inside.get(&lt.name).copied().unwrap_or(0));
                lt.seats = Some(limit.saturating_sub(outside));
            }
        }
        let current = snap.holdings();
        let plan =
            plan::plan(&reduced, &snap.inputs(), &current, &snap.waiting(), active, self.config.hold.as_ref(), false);
        Ok(Scoped { snap, plan, held: held.clone() })
    }

    async fn reconcile_full(&self, account: &str, seq: i64) -> Result<Reconciled, WorkerError> {
        let Some(policy) = licensing::get_policy(&self.db, account).await? else {
            licensing::clear_dirty(&self.db, account, seq).await?;
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
            &snap.waiting(),
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
        licensing::clear_dirty(&self.db, account, seq).await?;
        // While a hold is open its grants wait for the operator, not for the next round.
        let deferred: &[String] = if plan.holding { &[] } else { &plan.deferred };
        self.remark(account, deferred, seq).await?;
        let seats = roster_license_policy::seat_use(&policy, &after);
        Ok(Reconciled {
            appended: plan.apply.len(),
            held: plan.held.len(),
            seats,
            deferred: deferred.len(),
            evaluated: snap.users.len(),
        })
    }

    /// Marks users whose change had to wait, so the next round looks at them again.
    async fn remark(&self, account: &str, users: &[String], mark: i64) -> Result<(), WorkerError> {
        let marks: Vec<(String, i64)> = users.iter().map(|u| (u.clone(), mark)).collect();
        licensing::mark_dirty(&self.db, account, &marks).await?;
        Ok(())
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

/// A plan for part of an account.
struct Scoped {
    snap: AccountSnapshot,
    plan: Plan,
    /// Active holders per license in the whole account before the plan.
    held: BTreeMap<String, u64>,
}

impl Scoped {
    /// Active holders per license in the whole account once the plan applies.
    fn used_after(&self) -> BTreeMap<String, u64> {
        let active: HashMap<&str, bool> = self.snap.users.iter().map(|u| (u.id.as_str(), u.active)).collect();
        let mut used = self.held.clone();
        for c in self.plan.apply.iter().filter(|c| active.get(c.user.as_str()).copied().unwrap_or(false)) {
            if let Some(n) = c.from.as_ref().and_then(|f| used.get_mut(f)) {
                *n = n.saturating_sub(1);
            }
            if let Some(t) = &c.to {
                *used.entry(t.clone()).or_default() += 1;
            }
        }
        used
    }

    /// Whether a seat of a limited license changes hands in the plan or is left free: only then can a user
    /// waiting for a seat be affected.
    fn moves_limited_seats(&self, policy: &Policy) -> bool {
        let limited =
            |l: &Option<String>| l.as_ref().is_some_and(|l| policy.license(l).is_some_and(|t| t.seats.is_some()));
        let moves = |c: &&Change| c.from != c.to && (limited(&c.from) || limited(&c.to));
        if self.plan.apply.iter().chain(&self.plan.held).any(|c| moves(&c)) {
            return true;
        }
        let used = self.used_after();
        policy
            .license_types
            .iter()
            .any(|t| t.seats.is_some_and(|limit| used.get(&t.name).copied().unwrap_or(0) < limit))
    }

    fn seats_after(&self, policy: &Policy) -> BTreeMap<String, SeatUse> {
        roster_license_policy::seat_use_from_counts(policy, &self.used_after())
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
