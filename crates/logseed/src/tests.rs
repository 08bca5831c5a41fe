#![allow(clippy::expect_used)]

use std::collections::HashSet;

use super::*;

const SHAPE: Shape = Shape { users: 40, groups: 4, memberships_per_user: 2, member_batch: 7 };

fn steps(script: &mut AccountScript, n: usize) -> Vec<Step> {
    (0..n).map(|_| script.next_step().expect("valid step")).collect()
}

fn initial_len(shape: Shape) -> usize {
    let memberships = shape.users * shape.memberships_per_user;
    // Each group's planned members are added in batches; the policy and one grant per member of the first group follow.
    shape.users + shape.groups + memberships.div_ceil(shape.member_batch) + shape.groups + 1
}

#[test]
fn the_initial_cycle_creates_users_then_empty_groups_then_adds_members() {
    let mut s = AccountScript::new(1, 0, SHAPE);
    let all = steps(&mut s, 200);
    let kinds: Vec<&str> = all.iter().map(|s| s.payload.event_type()).collect();
    assert!(kinds[..40].iter().all(|k| *k == "user.created"));
    assert!(kinds[40..44].iter().all(|k| *k == "group.created"));
    for st in &all[40..44] {
        let Payload::GroupCreated { members, .. } = &st.payload else { panic!("a group create") };
        assert!(members.is_empty(), "Entra creates groups empty");
    }
    let policy = kinds.iter().position(|k| *k == "license.policy_set").expect("a policy");
    assert!(kinds[44..policy].iter().all(|k| *k == "group.patched"));
    assert!(policy < initial_len(SHAPE));
}

#[test]
fn every_user_joins_the_asked_number_of_groups() {
    let mut s = AccountScript::new(2, 0, SHAPE);
    while s.next_step().expect("valid step").payload.event_type() != "license.policy_set" {}
    let mut counts = vec![0usize; 40];
    for g in &s.groups {
        for m in &g.members {
            counts[*m] += 1;
        }
    }
    assert!(counts.iter().all(|c| *c == 2), "{counts:?}");
}

#[test]
fn first_group_members_are_granted_the_license_after_the_policy() {
    let mut s = AccountScript::new(3, 0, SHAPE);
    let all = steps(&mut s, 300);
    let policy = all.iter().position(|s| s.payload.event_type() == "license.policy_set").expect("a policy");
    let granted: Vec<&Step> =
        all[policy + 1..].iter().take_while(|s| s.payload.event_type() == "license.changed").collect();
    assert_eq!(granted.len(), s.groups[0].planned.len());
}

#[test]
fn incremental_cycles_mix_updates_membership_changes_and_lifecycle_events() {
    let mut s = AccountScript::new(4, 0, SHAPE);
    let all = steps(&mut s, 3000);
    let kinds: HashSet<&str> = all.iter().map(|s| s.payload.event_type()).collect();
    for k in ["user.created", "user.patched", "user.deleted", "group.created", "group.patched", "license.changed"] {
        assert!(kinds.contains(k), "{k} missing");
    }
}

#[test]
fn expected_state_follows_deletions_and_removals() {
    let mut s = AccountScript::new(5, 0, SHAPE);
    steps(&mut s, 5000);
    let e = s.expected();
    let alive = s.users.iter().filter(|u| u.alive).count();
    assert_eq!(e.users, alive);
    assert!(e.active_users <= e.users);
    assert_eq!(e.groups, 4);
    let memberships: usize = s.groups.iter().map(|g| g.members.iter().filter(|m| s.users[**m].alive).count()).sum();
    assert_eq!(e.memberships, memberships);
    assert!(e.licensed <= e.users);
}

#[test]
fn expected_state_mid_initial_cycle_counts_only_created_users() {
    let mut s = AccountScript::new(6, 0, SHAPE);
    steps(&mut s, 10);
    assert_eq!(s.expected(), Expected { users: 10, active_users: 10, ..Expected::default() });
}

#[test]
fn scripts_are_reproducible_from_the_seed_and_distinct_across_accounts() {
    let ids = |seed, index| -> Vec<String> {
        let mut s = AccountScript::new(seed, index, SHAPE);
        steps(&mut s, 50).into_iter().map(|s| s.resource_id).collect()
    };
    assert_eq!(ids(7, 0), ids(7, 0));
    let a: HashSet<String> = ids(7, 0).into_iter().collect();
    assert!(ids(7, 1).iter().all(|id| !a.contains(id)));
}

#[test]
fn user_names_stay_unique_as_users_are_hired() {
    let mut s = AccountScript::new(8, 0, SHAPE);
    steps(&mut s, 5000);
    let names: HashSet<String> = s.users.iter().map(|u| u.model.user_name.to_lowercase()).collect();
    assert_eq!(names.len(), s.users.len());
}

#[test]
fn created_user_ids_are_time_ordered_like_the_ingress_assigns_them() {
    let mut s = AccountScript::new(6, 0, SHAPE);
    let created: Vec<String> = steps(&mut s, 40)
        .iter()
        .map(|st| {
            let id = uuid::Uuid::parse_str(&st.resource_id).expect("a uuid");
            assert_eq!(id.get_version_num(), 7, "{id}");
            st.resource_id.clone()
        })
        .collect();
    assert!(created.windows(2).all(|w| w[0] < w[1]), "ids sort in creation order: {created:?}");
}
