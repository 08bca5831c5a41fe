//! Unit tests on the generated SQL text and on the errors (both dialects).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use roster_scim::filter::{AttrPath, CompValue, CompareOp, Filter, FilterLimits, parse};
use roster_scim::schema::ResourceKind::{self, Group, User};
use roster_scim::{ScimError, ScimType};

use crate::{Dialect, SortOrder, SqlFragment, SqlParam, order_by, where_clause};

const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn f(text: &str) -> Filter {
    parse(text, &FilterLimits::default()).expect("test filter parses")
}

fn lite_k(kind: ResourceKind, text: &str) -> SqlFragment {
    where_clause(&f(text), kind, Dialect::Sqlite, "t", 1).expect("translates")
}

fn pg_k(kind: ResourceKind, text: &str) -> SqlFragment {
    where_clause(&f(text), kind, Dialect::Postgres, "t", 1).expect("translates")
}

fn lite(text: &str) -> SqlFragment {
    lite_k(User, text)
}

fn pg(text: &str) -> SqlFragment {
    pg_k(User, text)
}

fn err_k(kind: ResourceKind, text: &str) -> ScimError {
    let filter = f(text);
    let a = where_clause(&filter, kind, Dialect::Sqlite, "t", 1).expect_err("rejected on SQLite");
    let b = where_clause(&filter, kind, Dialect::Postgres, "t", 1).expect_err("rejected on Postgres");
    assert_eq!(a, b, "both dialects reject {text:?} the same way");
    a
}

fn err(text: &str) -> ScimError {
    err_k(User, text)
}

fn text(s: &str) -> SqlParam {
    SqlParam::Text(s.to_string())
}

fn assert_invalid_filter(e: &ScimError, mentions: &str) {
    assert_eq!(e.status, 400, "{e}");
    assert_eq!(e.scim_type, Some(ScimType::InvalidFilter), "{e}");
    assert!(e.detail.contains(mentions), "detail {:?} should mention {mentions:?}", e.detail);
}

fn sort(kind: ResourceKind, path: Option<&str>, order: SortOrder, dialect: Dialect) -> Result<String, ScimError> {
    let path = path.map(|p| match f(&format!("{p} pr")) {
        Filter::Present(p) => p,
        other => panic!("not a path: {other:?}"),
    });
    order_by(path.as_ref(), order, kind, dialect, "t")
}

// ------------------------------------------------------------------------------------ columns

#[test]
fn user_name_eq_is_a_plain_index_lookup_with_the_literal_lowercased_in_rust() {
    let l = lite(r#"userName eq "JDoe@Contoso.com""#);
    assert_eq!(l.sql, "t.user_name_lower = ?");
    assert_eq!(l.params, vec![text("jdoe@contoso.com")]);
    let p = pg(r#"userName eq "ÉMILIE@Contoso.com""#);
    assert_eq!(p.sql, "t.user_name_lower = $1::text");
    assert_eq!(p.params, vec![text("émilie@contoso.com")], "Unicode lowercasing, as the column");
}

#[test]
fn postgres_placeholders_are_numbered_from_first_param_with_type_casts() {
    let frag = where_clause(
        &f(r#"userName eq "a" and active eq true and displayName co "x""#),
        User,
        Dialect::Postgres,
        "t",
        5,
    )
    .unwrap();
    assert_eq!(
        frag.sql,
        "((t.user_name_lower = $5::text AND t.active = $6::boolean) AND \
         (t.display_name IS NOT NULL AND strpos(lower(t.display_name), lower($7::text)) > 0))"
    );
    assert_eq!(frag.params, vec![text("a"), SqlParam::Bool(true), text("x")]);
}

#[test]
fn sqlite_parameters_follow_placeholder_order() {
    let filters = [
        r#"displayName sw "ab" or externalId ew "cd""#,
        r#"emails[type eq "work" and value co "@x"] and not (userName eq "y")"#,
        r#"meta.created gt "2026-01-01T00:00:00Z" and title ne "z" and emails.value ne "w""#,
        r#"name.givenName sw "a" and name.familyName ew "b" and nickName co "c""#,
    ];
    for text_ in filters {
        let l = lite(text_);
        assert_eq!(l.sql.matches('?').count(), l.params.len(), "{text_}: {}", l.sql);
        let p = pg(text_);
        let highest = (1..=p.params.len()).rev().find(|n| p.sql.contains(&format!("${n}::")));
        assert_eq!(highest, Some(p.params.len()), "{text_}: {}", p.sql);
        assert!(!p.sql.contains(&format!("${}::", p.params.len() + 1)), "{}", p.sql);
    }
    assert_eq!(
        lite(r#"displayName sw "ab" or externalId ew "cd""#).params,
        vec![text("ab"), text("ab"), text("cd"), text("cd")],
        "sw/ew bind the literal twice on SQLite"
    );
    assert_eq!(pg(r#"externalId ew "cd""#).params, vec![text("cd")], "and reuse one $N on Postgres");
}

#[test]
fn group_display_name_uses_the_lowercased_column() {
    let l = lite_k(Group, r#"displayName eq "Sales Team""#);
    assert_eq!(l.sql, "t.display_name_lower = ?");
    assert_eq!(l.params, vec![text("sales team")]);
}

#[test]
fn user_display_name_lowers_both_sides_and_guards_null() {
    let l = lite(r#"displayName eq "Émilie Durand""#);
    assert_eq!(l.sql, "(t.display_name IS NOT NULL AND lower(t.display_name) = lower(?))");
    assert_eq!(l.params, vec![text("Émilie Durand")], "the literal is lowered by the same SQL lower()");
}

#[test]
fn ne_on_an_absent_value_is_true_and_every_leaf_is_two_valued() {
    assert_eq!(lite(r#"externalId ne "x""#).sql, "(t.external_id IS NULL OR t.external_id <> ?)");
    assert_eq!(lite(r#"externalId eq "x""#).sql, "(t.external_id IS NOT NULL AND t.external_id = ?)");
}

#[test]
fn case_exact_attributes_compare_without_lower() {
    assert_eq!(lite(r#"id eq "AbC""#).sql, "t.id = ?");
    assert_eq!(lite(r#"id eq "AbC""#).params, vec![text("AbC")]);
    assert!(!lite(r#"externalId co "X""#).sql.contains("lower"));
    assert!(lite(r#"title co "X""#).sql.contains("lower("));
}

#[test]
fn substring_operators_never_use_like() {
    let cases = [
        (r#"title co "50%_""#, "instr(lower(", "strpos(lower("),
        (
            r#"title sw "a""#,
            "substr(lower(json_extract(t.resource, '$.\"title\"')), 1, length(lower(?))) = lower(?)",
            "left(lower(",
        ),
        (
            r#"title ew "a""#,
            "substr(lower(json_extract(t.resource, '$.\"title\"')), -length(lower(?))) = lower(?)",
            "right(lower(",
        ),
    ];
    for (filter, sqlite_part, pg_part) in cases {
        let l = lite(filter);
        let p = pg(filter);
        assert!(l.sql.contains(sqlite_part), "{}", l.sql);
        assert!(p.sql.contains(pg_part), "{}", p.sql);
        assert!(!l.sql.to_uppercase().contains("LIKE") && !p.sql.to_uppercase().contains("LIKE"));
    }
    assert_eq!(lite(r#"title co "50%_""#).params, vec![text("50%_")], "no escaping needed");
}

#[test]
fn empty_substring_literal_means_the_value_exists() {
    assert_eq!(lite(r#"title co """#).sql, r#"json_extract(t.resource, '$."title"') IS NOT NULL"#);
    assert_eq!(lite(r#"id sw """#).sql, "1");
    assert!(lite(r#"title ew """#).params.is_empty());
}

#[test]
fn ordering_comparisons_on_strings_are_byte_ordered_on_postgres() {
    assert_eq!(pg(r#"userName gt "M""#).sql, r#"t.user_name_lower COLLATE "C" > $1::text"#);
    assert_eq!(lite(r#"userName gt "M""#).sql, "t.user_name_lower > ?");
}

#[test]
fn unquoted_numbers_compare_as_text_on_string_attributes() {
    let l = lite(&format!("{ENT}:employeeNumber eq 1001"));
    assert_eq!(l.params, vec![text("1001")]);
}

// ------------------------------------------------------------------------------------ JSON

#[test]
fn json_paths_use_canonical_names_in_both_dialects() {
    let l = lite(r#"name.givenName eq "x""#);
    assert!(l.sql.contains(r#"json_extract(t.resource, '$."name"."givenName"')"#), "{}", l.sql);
    let p = pg(r#"name.givenName eq "x""#);
    assert!(p.sql.contains("(t.resource::jsonb #>> '{name,givenName}')"), "{}", p.sql);
}

#[test]
fn extension_paths_quote_the_urn_key() {
    let l = lite(&format!("{ENT}:employeeNumber eq \"1\""));
    assert!(l.sql.contains(&format!("'$.\"{ENT}\".\"employeeNumber\"'")), "{}", l.sql);
    let p = pg(&format!("{ENT}:manager.value eq \"1\""));
    assert!(p.sql.contains(&format!("'{{\"{ENT}\",manager,value}}'")), "{}", p.sql);
    // Un-prefixed extension attributes resolve to their extension, as in the shared resolver.
    assert_eq!(lite(r#"employeeNumber eq "1""#), l);
}

#[test]
fn attribute_names_in_sql_come_from_the_schema_not_the_filter_text() {
    let l = lite(r#"NAME.GIVENNAME eq "x" and USERNAME eq "y""#);
    assert!(l.sql.contains(r#""givenName""#) && !l.sql.contains("GIVENNAME"), "{}", l.sql);
    assert!(l.sql.contains("user_name_lower"), "{}", l.sql);
}

#[test]
fn literals_never_reach_the_sql_text() {
    let evil = [r#"x' OR '1'='1"#, r#"'); DROP TABLE scim_users; --"#, r#"$$ || chr(39) || $$"#, "?"];
    for e in evil {
        let quoted = serde_json::to_string(e).unwrap();
        for attr in ["userName", "displayName", "title", "emails.value", "name.givenName", "externalId"] {
            let filter = format!("{attr} eq {quoted} or {attr} co {quoted} or {attr} ew {quoted}");
            for frag in [lite(&filter), pg(&filter)] {
                assert!(!frag.sql.contains(e) || e == "?", "{attr}: {}", frag.sql);
                assert!(frag.params.iter().all(|p| matches!(p, SqlParam::Text(_))));
            }
        }
    }
}

#[test]
fn json_booleans_compare_as_booleans() {
    let l = lite(r#"emails[primary eq true]"#);
    assert!(
        l.sql.contains(
            r#"(CASE json_type(fsql_e.value, '$."primary"') WHEN 'true' THEN 1 WHEN 'false' THEN 0 END) = ?"#
        ),
        "{}",
        l.sql
    );
    assert_eq!(l.params, vec![SqlParam::Bool(true)]);
    let p = pg(r#"emails[primary eq "False"]"#);
    assert!(p.sql.contains("(CASE jsonb_typeof(fsql_e #> '{primary}') WHEN 'boolean' THEN (fsql_e #>> '{primary}')::boolean END) = $1::boolean"), "{}", p.sql);
    assert_eq!(p.params, vec![SqlParam::Bool(false)]);
}

#[test]
fn present_excludes_null_and_empty_strings() {
    assert_eq!(
        lite("title pr").sql,
        r#"(json_extract(t.resource, '$."title"') IS NOT NULL AND json_extract(t.resource, '$."title"') <> '')"#
    );
    assert_eq!(lite("id pr").sql, "t.id <> ''");
    assert_eq!(pg("meta.created pr").sql, "TRUE");
    assert_eq!(pg("active pr").sql, "TRUE");
}

#[test]
fn eq_null_means_absent_and_ne_null_means_present() {
    assert_eq!(lite("displayName eq null").sql, "NOT (t.display_name IS NOT NULL)");
    assert_eq!(lite("externalId ne null").sql, "t.external_id IS NOT NULL");
    assert_eq!(pg("userName eq null").sql, "NOT (TRUE)");
    let l = lite("emails eq null");
    assert!(l.sql.starts_with("NOT (EXISTS (SELECT 1 FROM json_each("), "{}", l.sql);
}

// ------------------------------------------------------------------------------------ collections

#[test]
fn multi_valued_comparison_is_an_exists_over_the_array_with_implicit_value() {
    let l = lite(r#"emails co "x""#);
    assert_eq!(
        l.sql,
        r#"EXISTS (SELECT 1 FROM json_each(t.resource, '$."emails"') fsql_e WHERE (json_extract(fsql_e.value, '$."value"') IS NOT NULL AND instr(lower(json_extract(fsql_e.value, '$."value"')), lower(?)) > 0))"#
    );
    assert_eq!(l, lite(r#"emails.value co "x""#));
    let p = pg(r#"emails co "x""#);
    assert_eq!(
        p.sql,
        "EXISTS (SELECT 1 FROM jsonb_array_elements(CASE WHEN jsonb_typeof(t.resource::jsonb #> '{emails}') = 'array' \
         THEN t.resource::jsonb #> '{emails}' ELSE '[]'::jsonb END) fsql_e WHERE ((fsql_e #>> '{value}') IS NOT NULL \
         AND strpos(lower((fsql_e #>> '{value}')), lower($1::text)) > 0))"
    );
}

#[test]
fn value_path_requires_both_conditions_on_the_same_email() {
    let same = lite(r#"emails[type eq "work" and value co "@x"]"#);
    assert_eq!(same.sql.matches("EXISTS").count(), 1, "{}", same.sql);
    assert!(same.sql.contains(r#"json_extract(fsql_e.value, '$."type"')"#));
    let separate = lite(r#"emails.type eq "work" and emails.value co "@x""#);
    assert_eq!(separate.sql.matches("EXISTS").count(), 2, "{}", separate.sql);
}

#[test]
fn multi_valued_ne_holds_when_no_value_differs_or_none_exists() {
    let l = lite(r#"emails.value ne "x""#);
    assert!(l.sql.starts_with("(NOT EXISTS (SELECT 1 FROM json_each("), "{}", l.sql);
    assert!(l.sql.contains(" OR EXISTS ("), "{}", l.sql);
    assert_eq!(l.params, vec![text("x")]);
}

#[test]
fn group_members_are_an_exists_over_scim_members() {
    assert_eq!(
        lite_k(Group, r#"members eq "u1""#).sql,
        "EXISTS (SELECT 1 FROM scim_members fsql_m WHERE fsql_m.account_id = t.account_id \
         AND fsql_m.group_id = t.id AND fsql_m.member_id = ?)"
    );
    let vp = lite_k(Group, r#"members[value eq "u1" and type eq "User"]"#);
    assert_eq!(vp.sql.matches("EXISTS").count(), 1, "{}", vp.sql);
    assert!(vp.sql.contains("fsql_m.member_id = ? AND lower(fsql_m.member_type) = lower(?)"), "{}", vp.sql);
    let display = pg_k(Group, r#"members.display co "smith""#);
    assert!(display.sql.contains("FROM scim_users fsql_u"), "{}", display.sql);
}

#[test]
fn user_groups_are_an_exists_over_the_users_memberships() {
    let l = lite(r#"groups eq "g1""#);
    assert_eq!(
        l.sql,
        "EXISTS (SELECT 1 FROM scim_members fsql_m WHERE fsql_m.account_id = t.account_id \
         AND fsql_m.member_id = t.id AND fsql_m.member_type = 'User' AND fsql_m.group_id = ?)"
    );
    assert!(lite(r#"groups.display eq "Sales""#).sql.contains("fsql_g.display_name_lower"));
    assert_eq!(lite(r#"groups.display eq "Sales""#).params, vec![text("sales")]);
    let direct = lite(r#"groups.type eq "direct""#);
    assert!(direct.sql.ends_with("AND 1)"), "only direct memberships exist: {}", direct.sql);
}

// ------------------------------------------------------------------------------------ meta

#[test]
fn datetime_literals_are_normalized_to_the_stored_form() {
    let l = lite(r#"meta.created gt "2026-01-03T10:00:00+01:00""#);
    assert_eq!(l.sql, "t.created > ?");
    assert_eq!(l.params, vec![text("2026-01-03T09:00:00.000Z")]);
    assert_eq!(pg(r#"meta.lastModified le "2026-01-03T09:00:00.1Z""#).params, vec![text("2026-01-03T09:00:00.100Z")]);
}

#[test]
fn sub_millisecond_datetimes_compare_exactly() {
    let t = "2026-01-03T09:00:00.1234Z";
    assert_eq!(lite(&format!("meta.created ge \"{t}\"")).sql, "t.created > ?");
    assert_eq!(lite(&format!("meta.created ge \"{t}\"")).params, vec![text("2026-01-03T09:00:00.123Z")]);
    assert_eq!(lite(&format!("meta.created lt \"{t}\"")).sql, "t.created <= ?");
    assert_eq!(lite(&format!("meta.created gt \"{t}\"")).sql, "t.created > ?");
    assert_eq!(lite(&format!("meta.created eq \"{t}\"")).sql, "0");
    assert_eq!(pg(&format!("meta.created ne \"{t}\"")).sql, "TRUE");
}

#[test]
fn resource_type_is_a_constant() {
    assert_eq!(lite(r#"meta.resourceType eq "User""#).sql, "1");
    assert_eq!(pg_k(Group, r#"meta.resourceType eq "User""#).sql, "FALSE");
    assert_eq!(lite(r#"meta.resourceType eq "user""#).sql, "0", "caseExact");
    assert!(lite(r#"meta.resourceType eq "User""#).params.is_empty());
}

#[test]
fn version_compares_against_the_etag_form() {
    let l = lite(r#"meta.version eq "W/\"3\"""#);
    assert_eq!(l.sql, r#"('W/"' || CAST(t.version AS TEXT) || '"') = ?"#);
    assert_eq!(l.params, vec![text("W/\"3\"")]);
}

#[test]
fn active_binds_a_boolean_and_accepts_entra_strings() {
    assert_eq!(lite("active eq true").sql, "t.active = ?");
    assert_eq!(pg("active ne true").sql, "t.active <> $1::boolean");
    assert_eq!(lite(r#"active eq "False""#).params, vec![SqlParam::Bool(false)]);
    assert_eq!(lite(r#"active eq "TRUE""#).params, vec![SqlParam::Bool(true)]);
}

#[test]
fn license_type_uses_its_column() {
    let l = lite(r#"urn:ietf:params:scim:schemas:extension:roster:2.0:User:licenseType eq "E3""#);
    assert_eq!(l.sql, "(t.license_type IS NOT NULL AND lower(t.license_type) = lower(?))");
}

#[test]
fn the_alias_is_used_everywhere() {
    let frag = where_clause(&f(r#"userName eq "a" or emails co "b" or groups eq "g""#), User, Dialect::Sqlite, "u", 1)
        .unwrap();
    assert!(!frag.sql.contains("t."), "{}", frag.sql);
    assert!(
        frag.sql.contains("u.user_name_lower") && frag.sql.contains("u.resource") && frag.sql.contains("u.account_id")
    );
}

// ------------------------------------------------------------------------------------ errors

#[test]
fn unknown_attributes_are_invalid_filter() {
    assert_invalid_filter(&err(r#"foo eq "x""#), "foo");
    assert_invalid_filter(&err_k(Group, r#"userName eq "x""#), "userName");
    assert_invalid_filter(&err(r#"emails.foo eq "x""#), "foo");
    assert_invalid_filter(&err(r#"userName.foo eq "x""#), "foo");
    assert_invalid_filter(&err(r#"urn:example:params:x:2.0:Foo:bar eq "x""#), "bar");
}

#[test]
fn complex_attributes_without_a_value_sub_attribute_are_invalid_filter() {
    assert_invalid_filter(&err(r#"name eq "x""#), "name.");
    assert_invalid_filter(&err(r#"addresses co "x""#), "addresses");
    assert_invalid_filter(&err("name pr"), "name");
    assert_invalid_filter(&err("meta pr"), "meta");
}

#[test]
fn booleans_allow_only_eq_and_ne_with_a_boolean_literal() {
    assert_invalid_filter(&err("active gt true"), "active");
    assert_invalid_filter(&err(r#"active co "t""#), "eq or ne");
    assert_invalid_filter(&err(r#"active eq "yes""#), "true or false");
    assert_invalid_filter(&err("active eq 1"), "true or false");
}

#[test]
fn invalid_datetimes_and_substring_operators_on_them_are_invalid_filter() {
    assert_invalid_filter(&err(r#"meta.created gt "yesterday""#), "yesterday");
    assert_invalid_filter(&err(r#"meta.lastModified gt "2026-01-01""#), "RFC 3339");
    assert_invalid_filter(&err(r#"meta.created sw "2026""#), "sw");
}

#[test]
fn unsupported_attributes_are_invalid_filter() {
    assert_invalid_filter(&err(r#"meta.location eq "x""#), "location");
    assert_invalid_filter(&err(r#"password eq "x""#), "password");
    assert_invalid_filter(&err_k(Group, r#"members.$ref eq "x""#), "$ref");
    assert_invalid_filter(&err(r#"groups.$ref eq "x""#), "$ref");
}

#[test]
fn null_allows_only_eq_and_ne() {
    assert_invalid_filter(&err("displayName gt null"), "null");
}

#[test]
fn value_filters_cannot_nest_or_apply_to_simple_attributes() {
    let inner =
        Filter::Compare { path: AttrPath::simple("value"), op: CompareOp::Eq, value: CompValue::String("x".into()) };
    let nested = Filter::ValuePath {
        path: AttrPath::simple("emails"),
        filter: Box::new(Filter::ValuePath { path: AttrPath::simple("addresses"), filter: Box::new(inner.clone()) }),
    };
    let e = where_clause(&nested, User, Dialect::Sqlite, "t", 1).unwrap_err();
    assert_invalid_filter(&e, "Nested");
    let simple = Filter::ValuePath { path: AttrPath::simple("userName"), filter: Box::new(inner.clone()) };
    let e = where_clause(&simple, User, Dialect::Postgres, "t", 1).unwrap_err();
    assert_invalid_filter(&e, "userName");
    let on_sub = Filter::ValuePath { path: AttrPath::sub("emails", "value"), filter: Box::new(inner) };
    assert_invalid_filter(&where_clause(&on_sub, User, Dialect::Sqlite, "t", 1).unwrap_err(), "emails.value");
}

#[test]
fn a_bad_alias_or_placeholder_start_is_a_server_error() {
    let filter = f(r#"userName eq "a""#);
    for alias in ["", "t; DROP", "1t", "fsql_m"] {
        assert_eq!(where_clause(&filter, User, Dialect::Sqlite, alias, 1).unwrap_err().status, 500, "{alias:?}");
    }
    assert_eq!(where_clause(&filter, User, Dialect::Postgres, "t", 0).unwrap_err().status, 500);
}

// ------------------------------------------------------------------------------------ sorting

#[test]
fn default_order_is_created_then_id() {
    assert_eq!(sort(User, None, SortOrder::Ascending, Dialect::Sqlite).unwrap(), "t.created, t.id");
    assert_eq!(sort(Group, None, SortOrder::Descending, Dialect::Postgres).unwrap(), "t.created DESC, t.id DESC");
}

#[test]
fn sorting_by_a_non_null_column_ends_with_the_id_tiebreaker() {
    assert_eq!(sort(User, Some("userName"), SortOrder::Ascending, Dialect::Sqlite).unwrap(), "t.user_name_lower, t.id");
    assert_eq!(
        sort(User, Some("userName"), SortOrder::Descending, Dialect::Postgres).unwrap(),
        r#"t.user_name_lower COLLATE "C" DESC, t.id DESC"#
    );
    assert_eq!(
        sort(User, Some("meta.lastModified"), SortOrder::Ascending, Dialect::Postgres).unwrap(),
        "t.last_modified, t.id"
    );
}

#[test]
fn nullable_sort_keys_put_missing_values_last_ascending_and_first_descending() {
    assert_eq!(
        sort(User, Some("displayName"), SortOrder::Ascending, Dialect::Sqlite).unwrap(),
        "lower(t.display_name) IS NULL, lower(t.display_name), t.id"
    );
    assert_eq!(
        sort(User, Some("displayName"), SortOrder::Descending, Dialect::Sqlite).unwrap(),
        "lower(t.display_name) IS NULL DESC, lower(t.display_name) DESC, t.id DESC"
    );
    assert_eq!(
        sort(User, Some("displayName"), SortOrder::Ascending, Dialect::Postgres).unwrap(),
        r#"lower(t.display_name) COLLATE "C" NULLS LAST, t.id"#
    );
    assert_eq!(
        sort(User, Some("externalId"), SortOrder::Descending, Dialect::Postgres).unwrap(),
        r#"t.external_id COLLATE "C" DESC NULLS FIRST, t.id DESC"#
    );
}

#[test]
fn sorting_by_a_multi_valued_attribute_uses_the_primary_then_first_element() {
    let l = sort(User, Some("emails"), SortOrder::Ascending, Dialect::Sqlite).unwrap();
    assert!(l.contains(r#"ORDER BY CASE WHEN json_type(fsql_e.value, '$."primary"') = 'true' THEN 0 ELSE 1 END, fsql_e.key LIMIT 1"#), "{l}");
    let p = sort(User, Some("emails.value"), SortOrder::Ascending, Dialect::Postgres).unwrap();
    assert!(p.contains("WITH ORDINALITY AS fsql_o(fsql_e, fsql_n)"), "{p}");
    assert!(p.ends_with("NULLS LAST, t.id"), "{p}");
}

#[test]
fn sorting_by_a_constant_leaves_only_the_tiebreaker() {
    assert_eq!(sort(User, Some("meta.resourceType"), SortOrder::Descending, Dialect::Sqlite).unwrap(), "t.id DESC");
}

#[test]
fn sort_errors_are_invalid_value() {
    for bad in ["name", "foo", "meta", "password", "meta.location"] {
        let e = sort(User, Some(bad), SortOrder::Ascending, Dialect::Sqlite).unwrap_err();
        assert_eq!((e.status, e.scim_type), (400, Some(ScimType::InvalidValue)), "{bad}: {e}");
        assert!(e.detail.starts_with("sortBy"), "{}", e.detail);
    }
}
