//! SQL text shared by the batched statements: placeholder lists for `IN (…)` and row tuples for
//! multi-row `INSERT`/`VALUES`.

/// Ids per `IN (…)` lookup: far below both databases' bind-parameter limits.
pub(crate) const IN_CHUNK: usize = 500;

/// Memberships joined to their groups, for statements that then name their members (`AND
/// m.member_id …`). `CROSS JOIN` makes the memberships SQLite's outer loop, found by member
/// through `scim_members_member_group`; left to itself, SQLite could start from the account's
/// groups and walk all their members, a cost that grows with the account (`tests/page_cost.rs`).
/// Such statements sort in Rust, not with `ORDER BY g.id`, which also drew SQLite to that plan.
/// Postgres plans a `CROSS JOIN` with a join condition as any inner join.
pub(crate) const MEMBERSHIPS_AND_GROUPS: &str =
    "FROM scim_members m CROSS JOIN scim_groups g WHERE g.account_id = m.account_id AND g.id = m.group_id";

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
}
