//! Properties of `allocate` over random policies, users and current holdings.

use std::collections::HashMap;

use proptest::collection::vec;
use proptest::prelude::*;
use roster_license_policy::{
    Allocation, LicenseType, Policy, Reason, Rule, UserInput, allocate, diff, eligible, revocation_share,
};

const GROUPS: [&str; 6] = ["devs", "readers", "analysts", "it", "admins", "everyone"];

#[derive(Debug, Clone)]
struct Scenario {
    policy: Policy,
    users: Vec<UserInput>,
    current: HashMap<String, String>,
}

fn seat_limit() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![1 => Just(None), 3 => (0u64..5).prop_map(Some)]
}

/// 1–5 license types `l0…` with distinct ranks (some negative), random limits (unlimited and 0 included), up
/// to 12 rules over six groups written in random case, and maybe a default.
fn arb_policy() -> impl Strategy<Value = Policy> {
    (1usize..=5).prop_flat_map(|n| {
        (
            Just((0..5i64).collect::<Vec<_>>()).prop_shuffle(),
            vec(seat_limit(), n),
            vec((0..GROUPS.len(), 0..n, any::<bool>()), 0..12),
            proptest::option::of(0..n),
        )
            .prop_map(move |(ranks, seats, rules, default)| {
                let license_types = (0..n)
                    .map(|i| LicenseType { name: format!("l{i}"), rank: ranks[i] * 10 - 15, seats: seats[i] })
                    .collect();
                let mut out: Vec<Rule> = Vec::new();
                for (g, l, upper) in rules {
                    let group = if upper { GROUPS[g].to_uppercase() } else { GROUPS[g].to_owned() };
                    let license = format!("l{l}");
                    if !out.iter().any(|r| r.group.eq_ignore_ascii_case(&group) && r.license == license) {
                        out.push(Rule { group, license });
                    }
                }
                Policy { license_types, rules: out, default_license: default.map(|d| format!("l{d}")) }
            })
    })
}

/// A license name for a choice in 0..12: mostly none, sometimes `l0…l4` (defined or not), sometimes unknown.
fn license_choice(c: usize) -> Option<String> {
    match c {
        0..5 => Some(format!("l{c}")),
        5 => Some("zz".to_owned()),
        _ => None,
    }
}

fn arb_scenario() -> impl Strategy<Value = Scenario> {
    let user = (
        vec(any::<bool>(), GROUPS.len() + 1),
        any::<bool>(),
        prop::bool::weighted(0.85),
        prop::bool::weighted(0.1),
        0usize..12,
        0usize..8,
    );
    (arb_policy(), vec(user, 0..=40), 0usize..3).prop_map(|(policy, users, ghosts)| {
        let mut current = HashMap::new();
        let users = users
            .into_iter()
            .enumerate()
            .map(|(i, (mask, upper, active, deleted, pin, held))| {
                let id = format!("u{i:02}");
                let mut groups: Vec<String> = GROUPS
                    .iter()
                    .zip(&mask)
                    .filter(|(_, m)| **m)
                    .map(|(g, _)| if upper { g.to_uppercase() } else { (*g).to_owned() })
                    .collect();
                if mask[GROUPS.len()] {
                    groups.push("unrelated".to_owned());
                }
                if let Some(l) = license_choice(held) {
                    current.insert(id.clone(), l);
                }
                UserInput { id, groups, active, deleted, override_license: license_choice(pin) }
            })
            .collect();
        for g in 0..ghosts {
            current.insert(format!("ghost{g}"), "l0".to_owned());
        }
        Scenario { policy, users, current }
    })
}

fn preferences(policy: &Policy, u: &UserInput) -> Vec<String> {
    if u.deleted {
        return Vec::new();
    }
    eligible(policy, &u.groups, u.active, u.override_license.as_deref())
        .preferences()
        .into_iter()
        .map(|c| c.license)
        .collect()
}

fn rank(policy: &Policy, license: Option<&str>) -> i64 {
    license.and_then(|l| policy.rank_of(l)).unwrap_or(i64::MIN)
}

fn users_of<'a>(a: &'a Allocation, license: &'a str) -> impl Iterator<Item = &'a String> + 'a {
    a.assignments.iter().filter(move |(_, x)| x.license.as_deref() == Some(license)).map(|(id, _)| id)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn no_license_ever_exceeds_its_seat_limit(s in arb_scenario()) {
        let a = allocate(&s.policy, &s.users, &s.current);
        for t in &s.policy.license_types {
            let used = users_of(&a, &t.name).count() as u64;
            prop_assert_eq!(a.seats[&t.name].used, used);
            prop_assert_eq!(a.seats[&t.name].limit, t.seats);
            if let Some(limit) = t.seats {
                prop_assert!(used <= limit, "{} holds {} > {}", t.name, used, limit);
            }
        }
    }

    #[test]
    fn every_assigned_license_is_one_the_user_is_eligible_for(s in arb_scenario()) {
        let a = allocate(&s.policy, &s.users, &s.current);
        prop_assert_eq!(a.assignments.len(), s.users.len());
        for u in &s.users {
            let x = &a.assignments[&u.id];
            let prefs = preferences(&s.policy, u);
            if u.deleted {
                prop_assert_eq!(x.license.as_deref(), None);
                prop_assert_eq!(&x.reason, &Reason::Deleted);
            } else if !u.active {
                prop_assert_eq!(x.license.as_deref(), None);
                prop_assert_eq!(&x.reason, &Reason::Deactivated);
            } else if prefs.is_empty() {
                prop_assert_eq!(&x.reason, &Reason::NoMatch);
            }
            if let Some(l) = &x.license {
                prop_assert!(prefs.contains(l), "{} got {} but may hold only {:?}", u.id, l, prefs);
                let first = prefs.first() == Some(l);
                prop_assert_eq!(first, !matches!(x.reason, Reason::SeatsExhausted { .. }));
            } else if !prefs.is_empty() {
                let exhausted = matches!(&x.reason, Reason::SeatsExhausted { wanted, fallback: None } if *wanted == prefs[0]);
                prop_assert!(exhausted, "{:?}", x);
            }
        }
    }

    #[test]
    fn nobody_is_kept_from_a_preferred_license_with_a_free_seat(s in arb_scenario()) {
        let a = allocate(&s.policy, &s.users, &s.current);
        for u in &s.users {
            let held = a.license_of(&u.id);
            for better in preferences(&s.policy, u).iter().take_while(|l| Some(l.as_str()) != held) {
                prop_assert_eq!(a.seats[better].free(), Some(0), "{} wanted {} which has a free seat", u.id, better);
            }
        }
    }

    #[test]
    fn allocating_again_from_the_result_changes_nothing(s in arb_scenario()) {
        let first = allocate(&s.policy, &s.users, &s.current);
        let second = allocate(&s.policy, &s.users, &first.holdings());
        prop_assert_eq!(&first, &second);
    }

    #[test]
    fn result_does_not_depend_on_the_order_of_users(
        (s, shuffled) in arb_scenario().prop_flat_map(|s| {
            let users = s.users.clone();
            (Just(s), Just(users).prop_shuffle())
        })
    ) {
        prop_assert_eq!(allocate(&s.policy, &s.users, &s.current), allocate(&s.policy, &shuffled, &s.current));
    }

    #[test]
    fn qualifying_holders_never_lose_their_license_to_a_newcomer(s in arb_scenario()) {
        let a = allocate(&s.policy, &s.users, &s.current);
        for u in &s.users {
            let Some(held) = s.current.get(&u.id) else { continue };
            if !preferences(&s.policy, u).contains(held) {
                continue;
            }
            let now = a.license_of(&u.id);
            if rank(&s.policy, now) >= rank(&s.policy, Some(held)) {
                continue;
            }
            // u lost `held`: everyone holding it now held it before or was pinned to it by an operator.
            for other in users_of(&a, held) {
                let pinned = matches!(&a.assignments[other].reason, Reason::Override { license } if license == held);
                prop_assert!(
                    s.current.get(other) == Some(held) || pinned,
                    "{} lost {} to newcomer {}", u.id, held, other
                );
            }
        }
    }

    #[test]
    fn applying_the_diff_to_before_yields_after(s in arb_scenario()) {
        let a = allocate(&s.policy, &s.users, &s.current);
        let changes = diff(&s.current, &a);
        let mut state = s.current.clone();
        for c in &changes {
            prop_assert_eq!(state.get(&c.user), c.from.as_ref());
            prop_assert_ne!(&c.from, &c.to);
            match &c.to {
                Some(l) => state.insert(c.user.clone(), l.clone()),
                None => state.remove(&c.user),
            };
        }
        prop_assert_eq!(state, a.holdings());
        prop_assert!(changes.windows(2).all(|w| w[0].user < w[1].user));
        let impact = revocation_share(&s.policy, &changes, s.users.len());
        prop_assert!(impact.revoked_or_downgraded <= changes.len());
    }
}
