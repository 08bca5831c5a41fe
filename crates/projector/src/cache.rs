//! The write-back cache of a batch's user and group rows.
//!
//! Entra's incremental cycles are mostly PATCHes of users and groups, and each cost a lookup and
//! an update of the resource's row. A batch loads the rows its events name with one query per
//! account before it applies, decides against them in memory and writes the changed ones back
//! with multi-row updates. The cache is exact because of two rules its users keep:
//! - whatever reads those rows' attributes from the database outside the cache (a name check, a
//!   run of license changes, the seat guard) runs after the changed rows are written back; a run
//!   of creates asks the cache whether a held change moves one of its userNames, and writes back
//!   first only then;
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
}

impl<R> Default for RowCache<R> {
    fn default() -> Self {
        Self { rows: HashMap::new(), dirty: BTreeSet::new() }
    }
}

fn key(account: &str, id: &str) -> Key {
    (account.to_string(), id.to_string())
}

impl<R: Clone> RowCache<R> {
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
        self.rows.insert(k.clone(), Some(row));
        self.dirty.insert(k);
    }

    /// The row was written outside the cache (forgotten: the next read goes to the database) or
    /// deleted (known absent). Any change the cache held for it is dropped.
    pub(crate) fn changed_elsewhere(&mut self, account: &str, id: &str, deleted: bool) {
        let k = key(account, id);
        self.dirty.remove(&k);
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

    /// The changed rows of an account that are not written back yet.
    pub(crate) fn dirty_rows<'a>(&'a self, account: &'a str) -> impl Iterator<Item = &'a R> + 'a {
        self.dirty.iter().filter(move |(a, _)| a == account).filter_map(|k| self.rows.get(k).and_then(Option::as_ref))
    }

    /// The rows to write back, per account, in a stable order; they count as written from now on.
    pub(crate) fn take_dirty(&mut self) -> BTreeMap<String, Vec<R>> {
        let mut out: BTreeMap<String, Vec<R>> = BTreeMap::new();
        for (account, id) in std::mem::take(&mut self.dirty) {
            if let Some(Some(row)) = self.rows.get(&(account.clone(), id)) {
                out.entry(account).or_default().push(row.clone());
            }
        }
        out
    }
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
}
