//! Micro-benchmarks of translating SCIM filters (already parsed) and sort orders into SQL for both
//! dialects: this runs on every list request after the parse measured in roster-scim's benches.
//! Run with `cargo bench -p roster-filter-sql` (or `make bench`).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use roster_filter_sql::{Dialect, SortOrder, order_by, where_clause};
use roster_scim::filter::{AttrPath, Filter, FilterLimits, parse};
use roster_scim::schema::ResourceKind;

/// Unwraps setup results; a failure here is a broken benchmark, not a measurement.
fn ok<T, E: std::fmt::Debug>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e:?}"),
    }
}

/// Entra's lookups and one complex filter (multi-valued value filter, `not`, dateTime compare).
const FILTERS: &[(&str, ResourceKind, &str)] = &[
    ("user_name_eq", ResourceKind::User, r#"userName eq "jane.doe.42@tenant0.loadgen.example""#),
    ("group_display_name_eq", ResourceKind::Group, r#"displayName eq "R&D / Europe 12""#),
    (
        "group_has_member",
        ResourceKind::Group,
        r#"id eq "0190f1c2-7d3a-7b11-9a42-51c0ffee0001" and members eq "0190f1c2-7d3a-7b11-9a42-51c0ffee0002""#,
    ),
    (
        "complex",
        ResourceKind::User,
        r#"(emails[type eq "work" and value co "@contoso.com"] or userName sw "j") and not (active eq false) and meta.lastModified gt "2011-05-13T04:42:34Z" and name.familyName pr"#,
    ),
];

fn translate(c: &mut Criterion) {
    let parsed: Vec<(&str, ResourceKind, Filter)> = FILTERS
        .iter()
        .map(|(name, kind, text)| (*name, *kind, ok(parse(text, &FilterLimits::default()), "filter parses")))
        .collect();
    for (dialect, label) in [(Dialect::Sqlite, "sqlite"), (Dialect::Postgres, "postgres")] {
        let mut g = c.benchmark_group(format!("filter_sql_where_{label}"));
        for (name, kind, filter) in &parsed {
            g.bench_function(*name, |b| {
                b.iter(|| ok(where_clause(black_box(filter), *kind, dialect, "t", 2), "filter translates"))
            });
        }
        let sort = AttrPath::sub("name", "familyName");
        g.bench_function("order_by_name_family_name", |b| {
            b.iter(|| {
                ok(order_by(Some(black_box(&sort)), SortOrder::Descending, ResourceKind::User, dialect, "t"), "sorts")
            })
        });
        g.finish();
    }
}

criterion_group!(benches, translate);
criterion_main!(benches);
