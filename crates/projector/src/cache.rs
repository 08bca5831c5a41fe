//! The write-back cache of a batch's user and group rows, and its held membership changes.
//!
//! Entra's incremental cycles are mostly PATCHes of users and groups, and each cost a lookup and
//! an update of the resource's row. A batch loads the rows its events name with one query per
//! account before it applies, decides against them in memory and writes the changed ones back
//! with multi-row updates. The cache is exact because of two rules its users keep:
//! - whatever reads those rows' attributes from the database outside the cache (a user's rename
//!   check, a run of license changes, the seat guard) runs after the changed rows are written
//!   back; a run of creates and a group's name check ask the cache whether a held change moves
//!   one of their names, and write back first only then;
//! - whatever writes those rows outside the cache (creates, license changes, deletions) tells the
//!   cache, which forgets or drops the row.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// (account, resource id).
type Key = (String, String);

/// Rows of one table as the events applied so far left them.
#[derive(Debug)]
pub(crate) struct RowCache<R> {
    /// `None`: no such row.
    rows: HashMap<Key, Option<R>>,
    /// Rows changed since they were last written back.
    dirty: BTreeSet<Key>,
    /// The unique name of a row (a folded userName or displayName), when the cache indexes them.
    name_of: Option<fn(&R) -> String>,
    /// How many changed rows hold each (account, name): a name check asks it for every create
    /// and rename, and a walk over the changed rows made that quadratic in a batch.
    dirty_names: HashMap<Key, usize>,
}

impl<R> Default for RowCache<R> {
    fn default() -> Self {
        Self { rows: HashMap::new(), dirty: BTreeSet::new(), name_of: None, dirty_names: HashMap::new() }
    }
}

fn key(account: &str, id: &str) -> Key {
    (account.to_string(), id.to_string())
}

impl<R: Clone> RowCache<R> {
    /// A cache that can tell whether a changed row holds a name ([`Self::dirty_holds_name`]).
    pub(crate) fn with_names(name_of: fn(&R) -> String) -> Self {
        Self { name_of: Some(name_of), ..Self::default() }
    }

    /// Whether a changed row, not written back yet, holds this name in the account.
    pub(crate) fn dirty_holds_name(&self, account: &str, name: &str) -> bool {
        self.dirty_names.contains_key(&key(account, name))
    }

    /// Counts (`+1`) or uncounts (`-1`) the name of the dirty row under `k`.
    fn count_name(&mut self, k: &Key, delta: isize) {
        let Some(name_of) = self.name_of else { return };
        let Some(Some(row)) = self.rows.get(k) else { return };
        let name = (k.0.clone(), name_of(row));
        let n = self.dirty_names.entry(name.clone()).or_default();
        *n = n.saturating_add_signed(delta);
        if *n == 0 {
            self.dirty_names.remove(&name);
        }
    }

    /// The row as the cache knows it: `None` when the cache does not know the id.
    pub(crate) fn get(&self, account: &str, id: &str) -> Option<Option<R>> {
        self.rows.get(&key(account, id)).cloned()
    }

    /// Remembers a row read from the database (or its absence).
    pub(crate) fn remember(&mut self, account: &str, id: &str, row: Option<R>) {
        self.rows.insert(key(account, id), row);
    }

    /// Remembers the rows read for `ids` of an account: those among `rows`, and the absence of
    /// the others.
    pub(crate) fn load<'a>(
        &mut self,
        account: &str,
        ids: impl IntoIterator<Item = &'a str>,
        rows: Vec<R>,
        id_of: impl Fn(&R) -> &str,
    ) {
        for id in ids {
            self.remember(account, id, None);
        }
        for row in rows {
            let id = id_of(&row).to_string();
            self.remember(account, &id, Some(row));
        }
    }

    /// Stores a changed row, to be written back.
    pub(crate) fn put(&mut self, account: &str, id: &str, row: R) {
        let k = key(account, id);
        if self.dirty.contains(&k) {
            self.count_name(&k, -1);
        }
        self.rows.insert(k.clone(), Some(row));
        self.count_name(&k, 1);
        self.dirty.insert(k);
    }

    /// The row was written outside the cache (forgotten: the next read goes to the database) or
    /// deleted (known absent). Any change the cache held for it is dropped.
    pub(crate) fn changed_elsewhere(&mut self, account: &str, id: &str, deleted: bool) {
        let k = key(account, id);
        if self.dirty.contains(&k) {
            self.count_name(&k, -1);
            self.dirty.remove(&k);
        }
        if deleted {
            self.rows.insert(k, None);
        } else {
            self.rows.remove(&k);
        }
    }

    /// Whether a change to this row is waiting to be written back (its database row is stale).
    pub(crate) fn is_dirty(&self, account: &str, id: &str) -> bool {
        self.dirty.contains(&key(account, id))
    }

    /// The rows to write back, per account, in a stable order; they count as written from now on.
    pub(crate) fn take_dirty(&mut self) -> BTreeMap<String, Vec<R>> {
        let mut out: BTreeMap<String, Vec<R>> = BTreeMap::new();
        self.dirty_names.clear();
        for (account, id) in std::mem::take(&mut self.dirty) {
            if let Some(Some(row)) = self.rows.get(&(account.clone(), id)) {
                out.entry(account).or_default().push(row.clone());
            }
        }
        out
    }
}

/// (account, group, member).
type Membership = (String, String, String);

/// The membership changes of a batch not yet written: Entra adds and removes members one PATCH
/// at a time, and each was two statements of its own (the resolution and the write). The last
/// change of a membership wins, which is what applying them in order leaves: an add keeps a row
/// that is already there, a removal ignores one that is not. Whatever reads the members table
/// runs after [`MemberChanges::take`] is written; whatever deletes memberships outside it drops
/// the changes it supersedes first ([`MemberChanges::drop_group`], [`MemberChanges::drop_member`]).
#[derive(Debug, Default)]
pub(crate) struct MemberChanges {
    /// `Some(type)`: added; `None`: removed.
    changes: BTreeMap<Membership, Option<&'static str>>,
    /// The keys of `changes` as (account, member, group): a user's deletion finds its changes
    /// without walking the batch's (a walk per deletion was 3.5% of a replay's CPU).
    by_member: BTreeSet<Membership>,
}

/// One account's changes to write: adds as (group, member, type), removals as (group, member).
pub(crate) type AccountMemberChanges = (Vec<(String, String, &'static str)>, Vec<(String, String)>);

impl MemberChanges {
    /// Records an added membership.
    pub(crate) fn add(&mut self, account: &str, group: &str, member: &str, kind: &'static str) {
        self.record(account, group, member, Some(kind));
    }

    /// Records a removed membership.
    pub(crate) fn remove(&mut self, account: &str, group: &str, member: &str) {
        self.record(account, group, member, None);
    }

    fn record(&mut self, account: &str, group: &str, member: &str, change: Option<&'static str>) {
        let key = (account.to_string(), group.to_string(), member.to_string());
        if self.changes.insert(key, change).is_none() {
            self.by_member.insert((account.to_string(), member.to_string(), group.to_string()));
        }
    }

    /// Forgets the changes to a group's members: all of them are about to be deleted.
    pub(crate) fn drop_group(&mut self, account: &str, group: &str) {
        for (a, g, m) in prefixed(self.changes.range(start(account, group)..).map(|(k, _)| k), account, group) {
            self.changes.remove(&(a.clone(), g.clone(), m.clone()));
            self.by_member.remove(&(a, m, g));
        }
    }

    /// Forgets the changes naming this resource as a member: its memberships are about to be deleted.
    pub(crate) fn drop_member(&mut self, account: &str, member: &str) {
        for (a, m, g) in prefixed(self.by_member.range(start(account, member)..), account, member) {
            self.by_member.remove(&(a.clone(), m.clone(), g.clone()));
            self.changes.remove(&(a, g, m));
        }
    }

    /// Whether there is nothing to write.
    pub(crate) fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The changes to write, per account, in a stable order; they count as written from now on.
    pub(crate) fn take(&mut self) -> BTreeMap<String, AccountMemberChanges> {
        self.by_member.clear();
        let mut out: BTreeMap<String, AccountMemberChanges> = BTreeMap::new();
        for ((account, group, member), change) in std::mem::take(&mut self.changes) {
            let (adds, removes) = out.entry(account).or_default();
            match change {
                Some(kind) => adds.push((group, member, kind)),
                None => removes.push((group, member)),
            }
        }
        out
    }
}

/// The leading keys of `keys` (an ordered range from [`start`]) that begin with (`first`, `second`).
fn prefixed<'a>(keys: impl Iterator<Item = &'a Membership>, first: &str, second: &str) -> Vec<Membership> {
    keys.take_while(|(a, b, _)| a == first && b == second).cloned().collect()
}

/// The smallest key that begins with (`first`, `second`).
fn start(first: &str, second: &str) -> Membership {
    (first.to_string(), second.to_string(), String::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loaded_ids_without_a_row_are_known_absent() {
        let mut c: RowCache<(String, u32)> = RowCache::default();
        c.load("a", ["1", "2"], vec![("2".to_string(), 7)], |r| r.0.as_str());
        assert_eq!(c.get("a", "1"), Some(None));
        assert_eq!(c.get("a", "2"), Some(Some(("2".to_string(), 7))));
        assert_eq!(c.get("b", "2"), None, "per account");
        assert!(c.take_dirty().is_empty(), "loading changes nothing");
    }

    #[test]
    fn a_put_row_is_read_back_and_written_back_once() {
        let mut c: RowCache<u32> = RowCache::default();
        c.put("a", "1", 7);
        assert_eq!(c.get("a", "1"), Some(Some(7)));
        assert_eq!(c.take_dirty(), BTreeMap::from([("a".to_string(), vec![7])]));
        assert!(c.take_dirty().is_empty());
        assert_eq!(c.get("a", "1"), Some(Some(7)), "written back rows stay cached");
    }

    #[test]
    fn an_unknown_id_is_not_the_same_as_a_known_absent_one() {
        let mut c: RowCache<u32> = RowCache::default();
        assert_eq!(c.get("a", "1"), None);
        c.remember("a", "1", None);
        assert_eq!(c.get("a", "1"), Some(None));
    }

    #[test]
    fn a_row_written_elsewhere_is_forgotten_with_its_pending_change() {
        let mut c: RowCache<u32> = RowCache::default();
        c.put("a", "1", 7);
        c.changed_elsewhere("a", "1", false);
        assert_eq!(c.get("a", "1"), None);
        assert!(c.take_dirty().is_empty());
    }

    #[test]
    fn a_deleted_row_is_known_absent_and_never_written_back() {
        let mut c: RowCache<u32> = RowCache::default();
        c.put("a", "1", 7);
        c.changed_elsewhere("a", "1", true);
        assert_eq!(c.get("a", "1"), Some(None));
        assert!(c.take_dirty().is_empty());
    }

    #[test]
    fn dirty_rows_are_grouped_by_account() {
        let mut c: RowCache<u32> = RowCache::default();
        c.put("b", "1", 1);
        c.put("a", "2", 2);
        c.put("a", "1", 3);
        let d = c.take_dirty();
        assert_eq!(d["a"], vec![3, 2]);
        assert_eq!(d["b"], vec![1]);
    }

    fn strings(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn the_last_change_of_a_membership_wins() {
        let mut m = MemberChanges::default();
        m.add("a", "g", "u1", "User");
        m.remove("a", "g", "u1");
        m.remove("a", "g", "u2");
        m.add("a", "g", "u2", "User");
        let out = m.take();
        assert_eq!(out["a"].0, vec![("g".to_string(), "u2".to_string(), "User")]);
        assert_eq!(out["a"].1, strings(&[("g", "u1")]));
        assert!(m.is_empty(), "taken changes count as written");
    }

    #[test]
    fn member_changes_are_grouped_by_account() {
        let mut m = MemberChanges::default();
        m.add("b", "g", "u", "User");
        m.remove("a", "g", "u");
        let out = m.take();
        assert_eq!(out.len(), 2);
        assert!(out["a"].0.is_empty() && out["b"].1.is_empty());
    }

    #[test]
    fn dropping_a_group_keeps_the_changes_of_other_groups_and_accounts() {
        let mut m = MemberChanges::default();
        m.add("a", "g1", "u", "User");
        m.remove("a", "g1", "v");
        m.add("a", "g2", "u", "User");
        m.add("b", "g1", "u", "User");
        m.drop_group("a", "g1");
        let out = m.take();
        assert_eq!(out["a"].0, vec![("g2".to_string(), "u".to_string(), "User")]);
        assert!(out["a"].1.is_empty());
        assert_eq!(out["b"].0.len(), 1);
    }

    #[test]
    fn dropping_a_member_forgets_it_in_every_group_of_its_account_only() {
        let mut m = MemberChanges::default();
        m.add("a", "g1", "u", "User");
        m.remove("a", "g2", "u");
        m.add("a", "g1", "v", "User");
        m.add("b", "g1", "u", "User");
        m.drop_member("a", "u");
        let out = m.take();
        assert_eq!(out["a"].0, vec![("g1".to_string(), "v".to_string(), "User")]);
        assert!(out["a"].1.is_empty());
        assert_eq!(out["b"].0.len(), 1);
    }

    #[test]
    fn dropping_a_group_or_member_spares_those_whose_ids_it_prefixes() {
        let mut m = MemberChanges::default();
        m.add("a", "g1", "u", "User");
        m.add("a", "g10", "u", "User");
        m.add("a", "g10", "u1", "User");
        m.add("a1", "g1", "u", "User");
        m.drop_group("a", "g1");
        m.drop_member("a", "u");
        let out = m.take();
        assert_eq!(out["a"].0, vec![("g10".to_string(), "u1".to_string(), "User")]);
        assert_eq!(out["a1"].0, vec![("g1".to_string(), "u".to_string(), "User")]);
    }

    #[test]
    fn a_membership_dropped_with_its_group_is_not_dropped_again_with_its_member() {
        let mut m = MemberChanges::default();
        m.add("a", "g", "u", "User");
        m.drop_group("a", "g");
        m.remove("a", "g", "u");
        m.drop_member("a", "v");
        assert_eq!(m.take()["a"].1, strings(&[("g", "u")]));
        m.add("a", "g", "u", "User");
        m.drop_member("a", "u");
        assert!(m.is_empty(), "the change recorded after the take is the member's");
    }

    fn named() -> RowCache<(String, u32)> {
        RowCache::with_names(|r| r.0.to_lowercase())
    }

    #[test]
    fn a_changed_row_holds_its_name_until_written_back() {
        let mut c = named();
        c.load("a", ["1"], vec![("Ann".to_string(), 1)], |_| "1");
        assert!(!c.dirty_holds_name("a", "ann"), "a loaded row is in the database already");
        c.put("a", "1", ("Ann".to_string(), 2));
        assert!(c.dirty_holds_name("a", "ann"));
        assert!(!c.dirty_holds_name("b", "ann"), "per account");
        c.take_dirty();
        assert!(!c.dirty_holds_name("a", "ann"));
    }

    #[test]
    fn a_renamed_row_holds_only_its_new_name() {
        let mut c = named();
        c.put("a", "1", ("Ann".to_string(), 1));
        c.put("a", "1", ("Bob".to_string(), 2));
        assert!(!c.dirty_holds_name("a", "ann"));
        assert!(c.dirty_holds_name("a", "bob"));
    }

    #[test]
    fn a_name_two_changed_rows_held_stays_held_while_one_does() {
        let mut c = named();
        c.put("a", "1", ("Ann".to_string(), 1));
        c.put("a", "2", ("ann".to_string(), 1));
        c.changed_elsewhere("a", "1", true);
        assert!(c.dirty_holds_name("a", "ann"));
        c.changed_elsewhere("a", "2", false);
        assert!(!c.dirty_holds_name("a", "ann"));
    }
}
