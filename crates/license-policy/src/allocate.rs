//! Seat allocation for a whole account, the changes it implies, the mass-revocation guard and previews.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::eval::{Candidate, Compiled, Reason};
use crate::policy::Policy;

/// A user's id (the SCIM resource id), the key of every per-user map here.
pub type UserId = String;

/// Everything about one user that licensing depends on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UserInput {
    /// The user's id.
    pub id: UserId,
    /// The `displayName`s of the groups the user belongs to.
    pub groups: Vec<String>,
    /// SCIM `active`; inactive users hold no license.
    pub active: bool,
    /// Whether the user is deleted; deleted users hold no license.
    pub deleted: bool,
    /// A license pinned by an operator override, if any.
    #[serde(rename = "override")]
    pub override_license: Option<String>,
}

/// The license one user gets and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The license, or `None` for no license.
    pub license: Option<String>,
    /// Why.
    pub reason: Reason,
}

/// Seat use of one license type (`GET …/seats`, the Prometheus gauges).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeatUse {
    /// How many users hold the license.
    pub used: u64,
    /// The seat limit; `None` = unlimited.
    pub limit: Option<u64>,
}

impl SeatUse {
    /// Free seats; `None` = unlimited.
    pub fn free(&self) -> Option<u64> {
        self.limit.map(|l| l.saturating_sub(self.used))
    }
}

/// The licenses of every user of an account under one policy, and the resulting seat use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// Every user's license and reason, by user id.
    pub assignments: BTreeMap<UserId, Assignment>,
    /// Seat use of every license type the policy defines, by license name.
    pub seats: BTreeMap<String, SeatUse>,
}

impl Allocation {
    /// Who holds which license (users without one are absent): the `current` to pass to the next
    /// [`allocate`], and what [`diff`] compares against.
    pub fn holdings(&self) -> HashMap<UserId, String> {
        self.assignments.iter().filter_map(|(id, a)| a.license.clone().map(|l| (id.clone(), l))).collect()
    }

    /// The license assigned to `user`, if any.
    pub fn license_of(&self, user: &str) -> Option<&str> {
        self.assignments.get(user).and_then(|a| a.license.as_deref())
    }
}

/// Counts who holds each license type of `policy` in `holdings` (holdings of licenses the policy does not
/// define are not counted).
pub fn seat_use(policy: &Policy, holdings: &HashMap<UserId, String>) -> BTreeMap<String, SeatUse> {
    let mut seats: BTreeMap<String, SeatUse> = BTreeMap::new();
    for t in &policy.license_types {
        seats.entry(t.name.clone()).or_insert(SeatUse { used: 0, limit: t.seats });
    }
    for license in holdings.values() {
        if let Some(s) = seats.get_mut(license) {
            s.used += 1;
        }
    }
    seats
}

/// Seat use of every license type of `policy`, from holder counts per license (e.g. a database aggregate).
pub fn seat_use_from_counts(policy: &Policy, used: &BTreeMap<String, u64>) -> BTreeMap<String, SeatUse> {
    policy
        .license_types
        .iter()
        .map(|t| (t.name.clone(), SeatUse { used: used.get(&t.name).copied().unwrap_or(0), limit: t.seats }))
        .collect()
}

/// Decides every user's license under `policy`, given who holds what now (`current`).
///
/// The result is a pure function of its inputs (the order of `users` does not matter; a user id listed twice
/// is evaluated once, using the entry that sorts first) and a fixed point: passing its own
/// [`Allocation::holdings`] back as `current` yields the same allocation. No license ever exceeds its seat
/// limit.
///
/// Algorithm: every active, non-deleted user has a preference list (see [`crate::eligible`]): an override
/// first, then rule and default licenses by rank descending (an override's fallbacks are only those ranked
/// below it). Licenses are filled one at a time from the highest rank to the lowest. The users contending for
/// a license are those not yet seated whose next preference it is; they are ordered by (1) pinned to this
/// license by an override, (2) currently holding it, (3) user id, and the first `seats` of them get it. The
/// others move on to their next preference, which always has a lower rank and so is filled later; a user seated
/// below their first preference, or not at all, gets reason `seats_exhausted` naming the license they wanted.
/// Consequences: a user is never kept from a better license that has a free seat (upgrades happen as soon as
/// a seat frees); a holder of a license who still qualifies for it only loses it to another holder (when the
/// limit shrank below the number of holders, the lowest ids keep it) or to an operator's pin; freed seats go to
/// waiting users by user id; and if pins alone exceed a limit, pinned holders keep their seats first, then
/// pinned users by id, and the rest fall back like everyone else.
pub fn allocate(policy: &Policy, users: &[UserInput], current: &HashMap<UserId, String>) -> Allocation {
    let compiled = Compiled::new(policy);
    let mut sorted: Vec<&UserInput> = users.iter().collect();
    sorted.sort();
    sorted.dedup_by(|a, b| a.id == b.id);

    let mut assignments: BTreeMap<UserId, Assignment> = BTreeMap::new();
    // Users still to place: their preferences and the index of the one they are contending for.
    let mut prefs: Vec<(&UserInput, Vec<(usize, Candidate)>)> = Vec::new();
    for u in sorted {
        if u.deleted {
            assignments.insert(u.id.clone(), Assignment { license: None, reason: Reason::Deleted });
            continue;
        }
        match compiled.preferences(&u.groups, u.active, u.override_license.as_deref()) {
            None => {
                assignments.insert(u.id.clone(), Assignment { license: None, reason: Reason::Deactivated });
            }
            Some(p) if p.is_empty() => {
                assignments.insert(u.id.clone(), Assignment { license: None, reason: Reason::NoMatch });
            }
            Some(p) => prefs.push((u, p)),
        }
    }

    let n = compiled.licenses.len();
    // contenders[pos] = (user index, preference index) of users whose next preference is license `pos`.
    let mut contenders: Vec<Vec<(usize, usize)>> = vec![Vec::new(); n];
    for (ui, (_, p)) in prefs.iter().enumerate() {
        contenders[p[0].0].push((ui, 0));
    }
    let mut seats: BTreeMap<String, SeatUse> = BTreeMap::new();
    for pos in 0..n {
        let license = compiled.licenses[pos];
        let mut queue = std::mem::take(&mut contenders[pos]);
        queue.sort_by_cached_key(|&(ui, pi)| {
            let (user, p) = &prefs[ui];
            let pinned = matches!(p[pi].1.reason, Reason::Override { .. });
            let holder = current.get(&user.id).is_some_and(|l| *l == license.name);
            (!pinned, !holder, user.id.as_str())
        });
        let limit = license.seats.map_or(usize::MAX, |s| usize::try_from(s).unwrap_or(usize::MAX));
        let mut used: u64 = 0;
        for (k, (ui, pi)) in queue.into_iter().enumerate() {
            let (user, p) = &prefs[ui];
            if k < limit {
                used += 1;
                let reason = if pi == 0 {
                    p[pi].1.reason.clone()
                } else {
                    Reason::SeatsExhausted {
                        wanted: p[0].1.license.clone(),
                        fallback: Some(Box::new(p[pi].1.reason.clone())),
                    }
                };
                assignments.insert(user.id.clone(), Assignment { license: Some(license.name.clone()), reason });
            } else if let Some((next_pos, _)) = p.get(pi + 1) {
                contenders[*next_pos].push((ui, pi + 1));
            } else {
                let reason = Reason::SeatsExhausted { wanted: p[0].1.license.clone(), fallback: None };
                assignments.insert(user.id.clone(), Assignment { license: None, reason });
            }
        }
        seats.insert(license.name.clone(), SeatUse { used, limit: license.seats });
    }
    Allocation { assignments, seats }
}

/// One user's license change: what the license event stream must record to get from one state to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The user.
    pub user: UserId,
    /// The license held before, if any.
    pub from: Option<String>,
    /// The license held after, if any.
    pub to: Option<String>,
    /// Why the user holds `to` (or nothing).
    pub reason: Reason,
}

/// The license changes that take `before` (who holds what) to `after`, sorted by user id.
///
/// Only users whose license differs appear. A user who holds a license in `before` but is absent from `after`
/// (no longer in the account) loses it with reason `deleted`.
pub fn diff(before: &HashMap<UserId, String>, after: &Allocation) -> Vec<Change> {
    let ids: BTreeSet<&str> =
        before.keys().map(String::as_str).chain(after.assignments.keys().map(String::as_str)).collect();
    let mut changes = Vec::new();
    for id in ids {
        let from = before.get(id);
        let (to, reason) = match after.assignments.get(id) {
            Some(a) => (a.license.as_ref(), &a.reason),
            None => (None, &Reason::Deleted),
        };
        if from != to {
            changes.push(Change { user: id.to_owned(), from: from.cloned(), to: to.cloned(), reason: reason.clone() });
        }
    }
    changes
}

/// How many active users a set of changes would revoke or downgrade, for the mass-revocation guard.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RevocationImpact {
    /// Changes that take a license away (`to` is none) or replace it with a lower-ranked one, excluding those
    /// caused by the user's own deactivation or deletion.
    pub revoked_or_downgraded: usize,
    /// `revoked_or_downgraded` as a share of the account's active users (0.0–1.0).
    pub share: f64,
}

/// Measures how many of `changes` revoke or downgrade a license, relative to `active_users`.
///
/// Ranks are looked up in `policy`, the policy in force *after* the changes: a change away from a license it
/// no longer defines counts as a downgrade (the license was removed). Changes with reason `deactivated` or
/// `deleted` are never counted: those seats free at once.
pub fn revocation_share(policy: &Policy, changes: &[Change], active_users: usize) -> RevocationImpact {
    let count = changes
        .iter()
        .filter(|c| !c.reason.is_deactivation())
        .filter(|c| match (&c.from, &c.to) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(from), Some(to)) => match (policy.rank_of(from), policy.rank_of(to)) {
                (Some(f), Some(t)) => t < f,
                _ => true,
            },
        })
        .count();
    let share = if active_users == 0 { if count > 0 { 1.0 } else { 0.0 } } else { count as f64 / active_users as f64 };
    RevocationImpact { revoked_or_downgraded: count, share }
}

/// When a single group or policy change is held for an operator instead of applied (issue 4).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HoldThreshold {
    /// Hold when more than this share of active users would lose or be downgraded (default 0.2).
    pub share: f64,
    /// …and at least this many users would (default 10).
    pub min_users: usize,
}

impl Default for HoldThreshold {
    fn default() -> Self {
        HoldThreshold { share: 0.2, min_users: 10 }
    }
}

impl HoldThreshold {
    /// Whether a change with this impact must be held until an operator confirms it.
    pub fn should_hold(&self, impact: &RevocationImpact) -> bool {
        impact.revoked_or_downgraded >= self.min_users && impact.share > self.share
    }
}

/// A dry run of a proposed policy (`POST …/license-policy/preview`): who would change, and seat use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preview {
    /// The license changes applying the proposed policy would make, by user id.
    pub changes: Vec<Change>,
    /// Seat use now: current holdings counted against the current policy's license types.
    pub seats_before: BTreeMap<String, SeatUse>,
    /// Seat use under the proposed policy.
    pub seats_after: BTreeMap<String, SeatUse>,
    /// How many active users the proposed policy would revoke or downgrade.
    pub impact: RevocationImpact,
}

impl Preview {
    /// Whether applying the proposed policy would be held by the mass-revocation guard.
    pub fn would_hold(&self, threshold: &HoldThreshold) -> bool {
        threshold.should_hold(&self.impact)
    }
}

/// Previews `proposed` against the account's users and current holdings (allocate + diff + seat use + impact).
pub fn preview(
    current_policy: &Policy,
    proposed: &Policy,
    users: &[UserInput],
    current: &HashMap<UserId, String>,
) -> Preview {
    let after = allocate(proposed, users, current);
    let changes = diff(current, &after);
    let active_users = after.assignments.values().filter(|a| !a.reason.is_deactivation()).count();
    let impact = revocation_share(proposed, &changes, active_users);
    Preview { changes, seats_before: seat_use(current_policy, current), seats_after: after.seats, impact }
}
