//! SQL text shared by the batched statements: placeholder lists for `IN (…)` and row tuples for
//! multi-row `INSERT`/`VALUES`.

/// Ids per `IN (…)` lookup: far below both databases' bind-parameter limits.
pub(crate) const IN_CHUNK: usize = 500;

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
