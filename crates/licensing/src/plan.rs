//! What one reconciliation of an account does, decided purely from loaded state: which license changes to
//! append now, in which order, and which to hold for an operator.

use std::collections::{HashMap, HashSet, VecDeque};

use roster_license_policy::{
    Change, HoldThreshold, Policy, Reason, RevocationImpact, UserId, UserInput, allocate, diff, revocation_share,
};
use serde::Serialize;

/// The outcome of planning one account.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// Changes to append now, ordered so that seats are freed before they are taken.
    pub apply: Vec<Change>,
    /// Changes held by the mass-revocation guard (empty when nothing is held).
    pub held: Vec<Change>,
    /// The revocation impact of the changes that are not the users' own deactivation or deletion.
    pub impact: RevocationImpact,
    /// Whether the guard holds part of the changes.
    pub holding: bool,
    /// Users with a change that neither applies now nor is held (a grant no seat frees for yet, or one
    /// that waits for a held revocation): the worker looks at them again next round.
    pub deferred: Vec<UserId>,
}

/// The users of `changes` that are in neither `apply` nor `held`.
fn deferred(changes: &[Change], apply: &[Change], held: &[Change]) -> Vec<UserId> {
    let placed: std::collections::HashSet<&str> = apply.iter().chain(held).map(|c| c.user.as_str()).collect();
    let mut out: Vec<UserId> =
        changes.iter().filter(|c| !placed.contains(c.user.as_str())).map(|c| c.user.clone()).collect();
    out.sort();
    out.dedup();
    out
}

/// Whether a change takes a license away or replaces it with a lower-ranked one (what the guard measures).
pub fn is_revocation(policy: &Policy, c: &Change) -> bool {
    if c.reason.is_deactivation() {
        return false;
    }
    match (&c.from, &c.to) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(from), Some(to)) => match (policy.rank_of(from), policy.rank_of(to)) {
            (Some(f), Some(t)) => t < f,
            _ => true,
        },
    }
}

/// Plans an account's reconciliation.
///
/// `waiting` are the users whose stored reason says they wait for a seat (`seats_exhausted`): a user who
/// starts or stops waiting without their license changing gets a change with `from == to` that records the
/// new reason, so the read model always knows who waits (the worker re-evaluates them when seats move, and
/// `GET …/licenses` explains it). `threshold` is `None` when the guard is off; `confirmed` is true when an operator confirmed a hold, in
/// which case everything is applied. When the guard holds, the revocations and downgrades are held; the
/// users' own deactivations and deletions and the remaining grants and upgrades that fit in the seats left
/// are applied.
pub fn plan(
    policy: &Policy,
    users: &[UserInput],
    current: &HashMap<UserId, String>,
    waiting: &HashSet<UserId>,
    active_users: usize,
    threshold: Option<&HoldThreshold>,
    confirmed: bool,
) -> Plan {
    let allocation = allocate(policy, users, current);
    let changes = diff(current, &allocation);
    let moved: HashSet<&str> = changes.iter().map(|c| c.user.as_str()).collect();
    let notes: Vec<Change> = allocation
        .assignments
        .iter()
        .filter(|(id, a)| {
            !moved.contains(id.as_str())
                && matches!(a.reason, Reason::SeatsExhausted { .. }) != waiting.contains(id.as_str())
        })
        .map(|(id, a)| Change {
            user: id.clone(),
            from: a.license.clone(),
            to: a.license.clone(),
            reason: a.reason.clone(),
        })
        .collect();
    let mut plan = plan_changes(policy, current, changes, active_users, threshold, confirmed);
    // Notes move no seat: they apply whatever the guard decides.
    plan.apply.extend(notes);
    plan
}

fn plan_changes(
    policy: &Policy,
    current: &HashMap<UserId, String>,
    changes: Vec<Change>,
    active_users: usize,
    threshold: Option<&HoldThreshold>,
    confirmed: bool,
) -> Plan {
    let rest: Vec<Change> = changes.iter().filter(|c| !c.reason.is_deactivation()).cloned().collect();
    let impact = revocation_share(policy, &rest, active_users);
    let holding = !confirmed && threshold.is_some_and(|t| t.should_hold(&impact));
    if !holding {
        let apply = order(policy, current, changes.clone());
        let deferred = deferred(&changes, &apply, &[]);
        return Plan { apply, held: Vec::new(), impact, holding, deferred };
    }
    let all = changes.clone();
    let (held, others): (Vec<Change>, Vec<Change>) = changes.into_iter().partition(|c| is_revocation(policy, c));
    // Grants and upgrades that only fit thanks to a held revocation's seat are left for after the decision.
    let ordered = order(policy, current, others);
    let mut counts = counts(current);
    let mut apply = Vec::with_capacity(ordered.len());
    for c in ordered {
        if fits(policy, &counts, &c) {
            step(&mut counts, &c);
            apply.push(c);
        }
    }
    let deferred = deferred(&all, &apply, &held);
    Plan { apply, held, impact, holding, deferred }
}

fn counts(current: &HashMap<UserId, String>) -> HashMap<String, u64> {
    let mut counts: HashMap<String, u64> = HashMap::new();
    for l in current.values() {
        *counts.entry(l.clone()).or_default() += 1;
    }
    counts
}

fn fits(policy: &Policy, counts: &HashMap<String, u64>, c: &Change) -> bool {
    match &c.to {
        None => true,
        Some(to) => match policy.license(to).and_then(|t| t.seats) {
            None => true,
            Some(limit) => counts.get(to).copied().unwrap_or(0) < limit,
        },
    }
}

fn step(counts: &mut HashMap<String, u64>, c: &Change) {
    if let Some(from) = &c.from
        && let Some(n) = counts.get_mut(from)
    {
        *n = n.saturating_sub(1);
    }
    if let Some(to) = &c.to {
        *counts.entry(to.clone()).or_default() += 1;
    }
}

/// Orders changes so that the projector's seat guard accepts each in turn, in linear time: revocations first,
/// then each change whose target has a free seat in the simulated state; a change that does not fit waits for
/// its target license, and every seat a change frees hands itself to the next change waiting for that license.
/// A cycle (users swapping full licenses) is broken by revoking one user first and granting their new license
/// once the others moved; a grant that nothing frees a seat for is left to the next round.
pub fn order(policy: &Policy, current: &HashMap<UserId, String>, changes: Vec<Change>) -> Vec<Change> {
    let mut counts = counts(current);
    let mut out = Vec::with_capacity(changes.len());
    let mut waiting: HashMap<String, VecDeque<Change>> = HashMap::new();
    let (free, takes): (Vec<Change>, Vec<Change>) = changes.into_iter().partition(|c| c.to.is_none());
    for c in free.into_iter().chain(takes) {
        admit(policy, &mut counts, &mut waiting, &mut out, c);
    }
    // Whatever still waits is a cycle or infeasible: break cycles by revoking one mover at a time.
    while let Some(license) = waiting.iter().find(|(_, q)| q.iter().any(|c| c.from.is_some())).map(|(l, _)| l.clone()) {
        let Some(queue) = waiting.get_mut(&license) else { break };
        let Some(pos) = queue.iter().position(|c| c.from.is_some()) else { break };
        let Some(mut stuck) = queue.remove(pos) else { break };
        let revoke =
            Change { user: stuck.user.clone(), from: stuck.from.take(), to: None, reason: stuck.reason.clone() };
        admit(policy, &mut counts, &mut waiting, &mut out, revoke);
        admit(policy, &mut counts, &mut waiting, &mut out, stuck);
    }
    out
}

/// Applies `c` to the simulated state if it fits (then cascades the seat it frees to the changes waiting for
/// it), or queues it behind its target license.
fn admit(
    policy: &Policy,
    counts: &mut HashMap<String, u64>,
    waiting: &mut HashMap<String, VecDeque<Change>>,
    out: &mut Vec<Change>,
    c: Change,
) {
    if !fits(policy, counts, &c) {
        if let Some(to) = &c.to {
            waiting.entry(to.clone()).or_default().push_back(c);
        }
        return;
    }
    step(counts, &c);
    let mut freed = c.from.clone();
    out.push(c);
    while let Some(license) = freed.take() {
        let Some(next) = waiting.get_mut(&license).and_then(VecDeque::pop_front) else { break };
        if !fits(policy, counts, &next) {
            waiting.entry(license).or_default().push_front(next);
            break;
        }
        step(counts, &next);
        freed = next.from.clone();
        out.push(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use roster_license_policy::parse_policy;
    use serde_json::json;

    fn policy(dev_seats: u64) -> Policy {
        match parse_policy(&json!({
            "license_types": [{"name": "developer", "rank": 40, "seats": dev_seats},
                              {"name": "analyst", "rank": 30, "seats": 1},
                              {"name": "read_only", "rank": 10, "seats": null}],
            "rules": [{"group": "dev", "license": "developer"},
                      {"group": "ana", "license": "analyst"},
                      {"group": "read", "license": "read_only"}],
            "default_license": null
        })) {
            Ok(p) => p,
            Err(e) => panic!("test policy invalid: {e:?}"),
        }
    }

    fn user(id: &str, groups: &[&str], active: bool) -> UserInput {
        UserInput {
            id: id.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            active,
            deleted: false,
            override_license: None,
        }
    }

    fn holdings(pairs: &[(&str, &str)]) -> HashMap<UserId, String> {
        pairs.iter().map(|(u, l)| (u.to_string(), l.to_string())).collect()
    }

    /// Applies changes the way the projector's seat guard does; panics on a change it would reject.
    fn apply_like_projector(policy: &Policy, current: &mut HashMap<UserId, String>, changes: &[Change]) {
        for c in changes {
            assert_eq!(current.get(&c.user), c.from.as_ref(), "from mismatch for {}", c.user);
            if let Some(to) = &c.to {
                let used = current.values().filter(|l| *l == to).count() as u64;
                if let Some(limit) = policy.license(to).and_then(|t| t.seats) {
                    assert!(used < limit, "seat guard would reject {c:?}");
                }
                current.insert(c.user.clone(), to.clone());
            } else {
                current.remove(&c.user);
            }
        }
    }

    #[test]
    fn freed_seats_are_released_before_they_are_taken() {
        let p = policy(1);
        // a held developer but left the group; b waits for developer.
        let users = [user("a", &["read"], true), user("b", &["dev"], true)];
        let mut current = holdings(&[("a", "developer"), ("b", "read_only")]);
        let plan = plan(&p, &users, &current, &HashSet::new(), 2, None, false);
        assert_eq!(plan.apply.len(), 2);
        apply_like_projector(&p, &mut current, &plan.apply);
        assert_eq!(current.get("b").map(String::as_str), Some("developer"));
        assert_eq!(current.get("a").map(String::as_str), Some("read_only"));
    }

    #[test]
    fn a_full_swap_cycle_is_broken_by_a_revocation_first() {
        let p = policy(1);
        let current = holdings(&[("a", "developer"), ("b", "analyst")]);
        let swap = vec![
            Change {
                user: "a".into(),
                from: Some("developer".into()),
                to: Some("analyst".into()),
                reason: roster_license_policy::Reason::NoMatch,
            },
            Change {
                user: "b".into(),
                from: Some("analyst".into()),
                to: Some("developer".into()),
                reason: roster_license_policy::Reason::NoMatch,
            },
        ];
        let ordered = order(&p, &current, swap);
        let mut state = current.clone();
        apply_like_projector(&p, &mut state, &ordered);
        assert_eq!(state, holdings(&[("a", "analyst"), ("b", "developer")]));
        assert_eq!(ordered.len(), 3);
    }

    #[test]
    fn a_mass_revocation_is_held_but_deactivations_are_not() {
        let p = policy(100);
        let mut users: Vec<UserInput> = (0..12).map(|i| user(&format!("u{i:02}"), &[], true)).collect();
        users.push(user("gone", &["dev"], false));
        let mut current: HashMap<UserId, String> =
            (0..12).map(|i| (format!("u{i:02}"), "developer".to_string())).collect();
        current.insert("gone".into(), "developer".into());
        let t = HoldThreshold::default();
        let plan = plan(&p, &users, &current, &HashSet::new(), 12, Some(&t), false);
        assert!(plan.holding);
        assert_eq!(plan.held.len(), 12);
        assert_eq!(plan.apply.len(), 1);
        assert_eq!(plan.apply[0].user, "gone");
    }

    #[test]
    fn a_confirmed_hold_applies_everything() {
        let p = policy(100);
        let users: Vec<UserInput> = (0..12).map(|i| user(&format!("u{i:02}"), &[], true)).collect();
        let current: HashMap<UserId, String> = (0..12).map(|i| (format!("u{i:02}"), "developer".to_string())).collect();
        let plan = plan(&p, &users, &current, &HashSet::new(), 12, Some(&HoldThreshold::default()), true);
        assert!(!plan.holding);
        assert_eq!(plan.apply.len(), 12);
        assert!(plan.apply.iter().all(|c| c.to.is_none()));
    }

    #[test]
    fn small_revocations_are_not_held() {
        let p = policy(100);
        let mut users: Vec<UserInput> = (0..50).map(|i| user(&format!("u{i:02}"), &["dev"], true)).collect();
        users[0].groups.clear();
        let current: HashMap<UserId, String> = (0..50).map(|i| (format!("u{i:02}"), "developer".to_string())).collect();
        let plan = plan(&p, &users, &current, &HashSet::new(), 50, Some(&HoldThreshold::default()), false);
        assert!(!plan.holding);
        assert_eq!(plan.apply.len(), 1);
    }

    #[test]
    fn while_holding_grants_that_need_a_held_seat_wait() {
        let p = policy(1);
        // Ten developers lose the group (held); "new" would take developer only after a revocation.
        let mut users: Vec<UserInput> = (0..10).map(|i| user(&format!("u{i:02}"), &[], true)).collect();
        users.push(user("new", &["dev"], true));
        users.push(user("fresh", &["read"], true));
        let mut current: HashMap<UserId, String> = HashMap::new();
        for i in 0..10 {
            current.insert(format!("u{i:02}"), if i == 0 { "developer".into() } else { "read_only".into() });
        }
        let plan =
            plan(&p, &users, &current, &HashSet::new(), 12, Some(&HoldThreshold { share: 0.2, min_users: 5 }), false);
        assert!(plan.holding);
        assert!(plan.apply.iter().all(|c| c.user != "new" || c.to.as_deref() != Some("developer")));
        assert!(plan.apply.iter().any(|c| c.user == "fresh"));
    }
}
