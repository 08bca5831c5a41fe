//! SQL text shared by the batched statements: placeholder lists for `IN (…)` and row tuples for
//! multi-row `INSERT`/`VALUES`.

use sea_orm::DbBackend;

/// Ids per `IN (…)` lookup: far below both databases' bind-parameter limits.
pub(crate) const IN_CHUNK: usize = 500;

/// Memberships joined to their groups, for statements that then name their members (`AND
/// m.member_id …`). `CROSS JOIN` makes the memberships SQLite's outer loop, found by member
/// through `scim_members_member_group`; left to itself, SQLite could start from the account's
/// groups and walk all their members, a cost that grows with the account (`tests/page_cost.rs`).
/// Such statements sort in Rust, not with `ORDER BY g.id`, which also drew SQLite to that plan.
/// Postgres plans a `CROSS JOIN` with a join condition as any inner join.
const MEMBERSHIPS_AND_GROUPS: &str =
    "FROM scim_members m CROSS JOIN scim_groups g WHERE g.account_id = m.account_id AND g.id = m.group_id";

/// `FROM …` the rows of `table` (named `alias`) in one account whose `keys` columns equal one of
/// `n` tuples of values. Its parameters are the account, then the tuples' values in order.
///
/// On Postgres each tuple is a probe of the index that `keys` complete, whatever the planner
/// believes about the account's size. It cannot know it: from statistics sampled before the
/// account grew (a replay, a new tenant's first sync) it estimated one row and walked the whole
/// account for every statement (60 membership removals in an account of 18,000 memberships took
/// 267 ms instead of 0.5 ms); without statistics on `account_id` (migration
/// `m20261130_000005_account_statistics`) it assumes a two-hundredth of the table, which a batch
/// of keys still outnumbers in a table of tens of thousands of rows (`tests/plan_stability.rs`).
/// The account comes from a subquery the planner cannot see into, and `OFFSET 0` keeps each probe
/// a subquery of its own, which the planner cannot turn back into a join. The rows also carry their
/// `ctid` as `row_ctid`, so that deletions and updates reach them without a second search. That is
/// safe only because an account's rows are written by one transaction at a time, the projector's,
/// which holds its partition's position lock (`write::lock_consumer_position`): a row that another
/// transaction updated between the probe and the write would have moved to a new `ctid` and be
/// skipped.
///
/// SQLite plans by its indexes, not by sampled statistics, so it keeps the plain `IN`.
pub(crate) fn keyed_rows(b: DbBackend, table: &str, alias: &str, keys: &[&str], n: usize) -> String {
    match b {
        // One key: planning the probe costs more than it saves, and without statistics on
        // `account_id` the unique index wins over a walk for a single value anyway.
        DbBackend::Postgres if n > 1 || keys.len() > 1 => probed_rows(table, alias, keys, keys.len(), n),
        _ if keys.len() == 1 => {
            format!(
                "FROM {table} AS {alias} WHERE {alias}.account_id = ? AND {alias}.{} IN ({})",
                keys[0],
                placeholders(n)
            )
        }
        _ => {
            // `IN (VALUES …)` would keep SQLite to the account's part of the key, a walk over all
            // its rows; a subquery of the values lets it look each one up.
            let columns: Vec<String> = (1..=keys.len()).map(|i| format!("column{i}")).collect();
            let qualified: Vec<String> = keys.iter().map(|k| format!("{alias}.{k}")).collect();
            format!(
                "FROM {table} AS {alias} WHERE {alias}.account_id = ? AND ({}) IN (SELECT {} FROM (VALUES {}) AS v)",
                qualified.join(", "),
                columns.join(", "),
                value_rows(n, keys.len())
            )
        }
    }
}

/// Postgres's form of [`keyed_rows`], with tuples `width` wide: `k.column1…` are the tuple's
/// values, the first `keys.len()` of them the key, so that the others can carry what a statement
/// writes to the row it found.
pub(crate) fn probed_rows(table: &str, alias: &str, keys: &[&str], width: usize, n: usize) -> String {
    let names: Vec<String> = (1..=width).map(|i| format!("column{i}")).collect();
    let conditions: String = keys.iter().zip(&names).map(|(key, name)| format!(" AND {key} = k.{name}")).collect();
    format!(
        "FROM (SELECT CAST(? AS text) AS probe_account OFFSET 0) AS p CROSS JOIN (VALUES {}) AS k({}) \
         CROSS JOIN LATERAL (SELECT *, ctid AS row_ctid FROM {table} \
         WHERE account_id = p.probe_account{conditions} OFFSET 0) AS {alias}",
        value_rows(n, width),
        names.join(", ")
    )
}

/// `FROM … WHERE …` the memberships (`m`) of `n` members of one account, each with its group
/// (`g`: `id`, `display_name`); callers may add `AND …` conditions. Its parameters are the account,
/// then the member ids. On Postgres both the memberships and their groups are probes, as in
/// [`keyed_rows`]: a page of users' groups walked all of the account's memberships when the planner
/// misjudged the account's size (`tests/plan_stability.rs`).
pub(crate) fn members_with_groups(b: DbBackend, n: usize) -> String {
    match b {
        DbBackend::Postgres if n > 1 => format!(
            "{} CROSS JOIN LATERAL (SELECT id, display_name FROM scim_groups \
             WHERE account_id = m.account_id AND id = m.group_id OFFSET 0) AS g WHERE TRUE",
            probed_rows("scim_members", "m", &["member_id"], 1, n)
        ),
        _ => format!("{MEMBERSHIPS_AND_GROUPS} AND m.account_id = ? AND m.member_id IN ({})", placeholders(n)),
    }
}

/// `?, ?, …` for an `IN` list of `n` values.
pub(crate) fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// `(?, ?), (?, ?), …`: `rows` tuples of `width` placeholders, for multi-row `VALUES`.
pub(crate) fn value_rows(rows: usize, width: usize) -> String {
    vec![format!("({})", placeholders(width)); rows].join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_rows_are_comma_separated_tuples_of_the_width() {
        assert_eq!(value_rows(2, 3), "(?, ?, ?), (?, ?, ?)");
        assert_eq!(placeholders(1), "?");
    }

    #[test]
    fn keyed_rows_take_the_account_then_each_tuple_on_both_backends() {
        for b in [DbBackend::Postgres, DbBackend::Sqlite] {
            let one = keyed_rows(b, "scim_users", "u", &["id"], 3);
            assert_eq!(one.matches('?').count(), 1 + 3, "{one}");
            let first = one.find('?').unwrap_or_default();
            assert!(one[..first].ends_with("CAST(") || one[..first].ends_with("account_id = "), "{one}");
            let single = keyed_rows(b, "scim_users", "u", &["id"], 1);
            assert!(single.ends_with("u.id IN (?)"), "{single}");
            let pairs = keyed_rows(b, "scim_members", "m", &["group_id", "member_id"], 2);
            assert_eq!(pairs.matches('?').count(), 1 + 2 * 2, "{pairs}");
        }
        let update = probed_rows("scim_users", "t", &["id"], 3, 2);
        assert_eq!(update.matches('?').count(), 1 + 2 * 3);
        assert!(update.contains("id = k.column1") && !update.contains("k.column2 AND"), "{update}");
    }
}
