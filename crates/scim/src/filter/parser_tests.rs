//! Specification of the filter grammar, Entra's tolerances and the error messages.

use super::*;
use crate::ScimType;

fn ok(s: &str) -> Filter {
    match parse(s, &FilterLimits::default()) {
        Ok(f) => f,
        Err(e) => panic!("{s:?} should parse: {e}"),
    }
}

fn err(s: &str) -> ScimError {
    match parse(s, &FilterLimits::default()) {
        Ok(f) => panic!("{s:?} should fail, got {f:?}"),
        Err(e) => {
            assert_eq!(e.status, 400, "{s:?}");
            assert_eq!(e.scim_type, Some(ScimType::InvalidFilter), "{s:?}");
            e
        }
    }
}

fn path(attr: &str) -> AttrPath {
    AttrPath::simple(attr)
}

fn cmp(p: AttrPath, op: CompareOp, v: CompValue) -> Filter {
    Filter::Compare { path: p, op, value: v }
}

fn s(v: &str) -> CompValue {
    CompValue::String(v.to_string())
}

fn and(a: Filter, b: Filter) -> Filter {
    Filter::And(Box::new(a), Box::new(b))
}

fn or(a: Filter, b: Filter) -> Filter {
    Filter::Or(Box::new(a), Box::new(b))
}

const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

#[test]
fn entra_test_connection_query_parses_as_username_equality() {
    assert_eq!(
        ok(r#"userName eq "7d420df3-9995-4831-a406-ecf8166f5f6a""#),
        cmp(path("userName"), CompareOp::Eq, s("7d420df3-9995-4831-a406-ecf8166f5f6a"))
    );
}

#[test]
fn unquoted_bare_token_is_accepted_as_a_string() {
    assert_eq!(ok("externalId eq jyoung"), cmp(path("externalId"), CompareOp::Eq, s("jyoung")));
    assert_eq!(ok("userName eq jdoe@contoso.com"), cmp(path("userName"), CompareOp::Eq, s("jdoe@contoso.com")));
}

#[test]
fn unquoted_datetime_is_a_bare_string() {
    assert_eq!(
        ok("meta.Created gt 2015-10-10T14:38:21.8617979-07:00"),
        cmp(AttrPath::sub("meta", "Created"), CompareOp::Gt, s("2015-10-10T14:38:21.8617979-07:00"))
    );
}

#[test]
fn every_operator_parses_case_insensitively() {
    let ops = [
        ("eq", CompareOp::Eq),
        ("NE", CompareOp::Ne),
        ("Co", CompareOp::Co),
        ("sW", CompareOp::Sw),
        ("ew", CompareOp::Ew),
        ("GT", CompareOp::Gt),
        ("ge", CompareOp::Ge),
        ("Lt", CompareOp::Lt),
        ("le", CompareOp::Le),
    ];
    for (word, op) in ops {
        assert_eq!(ok(&format!("title {word} \"x\"")), cmp(path("title"), op, s("x")), "{word}");
    }
}

#[test]
fn present_operator_has_no_value() {
    assert_eq!(ok("title pr"), Filter::Present(path("title")));
    assert_eq!(ok("title PR"), Filter::Present(path("title")));
}

#[test]
fn and_binds_tighter_than_or() {
    assert_eq!(
        ok(r#"a eq "1" or b eq "2" and c eq "3""#),
        or(
            cmp(path("a"), CompareOp::Eq, s("1")),
            and(cmp(path("b"), CompareOp::Eq, s("2")), cmp(path("c"), CompareOp::Eq, s("3")))
        )
    );
}

#[test]
fn logical_operators_are_left_associative() {
    assert_eq!(
        ok("a pr and b pr and c pr"),
        and(and(Filter::Present(path("a")), Filter::Present(path("b"))), Filter::Present(path("c")))
    );
}

#[test]
fn parentheses_override_precedence() {
    assert_eq!(
        ok(r#"(a eq "1" or b eq "2") and c eq "3""#),
        and(
            or(cmp(path("a"), CompareOp::Eq, s("1")), cmp(path("b"), CompareOp::Eq, s("2"))),
            cmp(path("c"), CompareOp::Eq, s("3"))
        )
    );
}

#[test]
fn not_wraps_a_parenthesised_filter() {
    assert_eq!(ok("not (title pr)"), Filter::Not(Box::new(Filter::Present(path("title")))));
    assert_eq!(ok("NOT(title pr)"), Filter::Not(Box::new(Filter::Present(path("title")))));
}

#[test]
fn keywords_and_logic_are_case_insensitive() {
    assert_eq!(ok("a pr AND b pr"), and(Filter::Present(path("a")), Filter::Present(path("b"))));
    assert_eq!(ok("a pr Or b pr"), or(Filter::Present(path("a")), Filter::Present(path("b"))));
}

#[test]
fn runs_of_whitespace_are_tolerated() {
    assert_eq!(
        ok("  userName   eq\t \"bjensen\"   and  active  eq  true  "),
        and(
            cmp(path("userName"), CompareOp::Eq, s("bjensen")),
            cmp(path("active"), CompareOp::Eq, CompValue::Bool(true))
        )
    );
}

#[test]
fn attribute_names_that_start_with_keywords_are_not_keywords() {
    assert_eq!(ok("notes pr"), Filter::Present(path("notes")));
    assert_eq!(ok("a pr and organization pr"), and(Filter::Present(path("a")), Filter::Present(path("organization"))));
}

#[test]
fn sub_attribute_paths_parse() {
    assert_eq!(
        ok(r#"name.familyName co "O'Malley""#),
        cmp(AttrPath::sub("name", "familyName"), CompareOp::Co, s("O'Malley"))
    );
}

#[test]
fn urn_qualified_path_splits_at_the_last_colon() {
    let f = ok(&format!("{ENT}:employeeNumber eq \"42\""));
    let expected = AttrPath { urn: Some(ENT.into()), attr: "employeeNumber".into(), sub_attr: None };
    assert_eq!(f, cmp(expected, CompareOp::Eq, s("42")));
}

#[test]
fn urn_qualified_sub_attribute_keeps_the_dots_of_the_urn() {
    let f = ok(&format!("{ENT}:manager.value eq \"m1\""));
    let expected = AttrPath { urn: Some(ENT.into()), attr: "manager".into(), sub_attr: Some("value".into()) };
    assert_eq!(f, cmp(expected, CompareOp::Eq, s("m1")));
}

#[test]
fn core_schema_qualified_path_parses() {
    let f = ok(r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#);
    let Filter::Compare { path, .. } = f else { panic!("not a comparison") };
    assert_eq!(path.urn.as_deref(), Some("urn:ietf:params:scim:schemas:core:2.0:User"));
    assert_eq!(path.attr, "userName");
}

#[test]
fn ref_is_a_valid_attribute_name() {
    assert_eq!(ok(r#"members.$ref eq "x""#), cmp(AttrPath::sub("members", "$ref"), CompareOp::Eq, s("x")));
}

#[test]
fn value_path_has_relative_inner_paths() {
    let f = ok(r#"emails[type eq "work" and value co "@example.com"]"#);
    assert_eq!(
        f,
        Filter::ValuePath {
            path: path("emails"),
            filter: Box::new(and(
                cmp(path("type"), CompareOp::Eq, s("work")),
                cmp(path("value"), CompareOp::Co, s("@example.com"))
            )),
        }
    );
}

#[test]
fn value_paths_combine_with_logic() {
    let f = ok(r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#);
    assert!(matches!(f, Filter::Or(ref a, ref b)
        if matches!(**a, Filter::ValuePath { .. }) && matches!(**b, Filter::ValuePath { .. })));
}

#[test]
fn rfc_examples_all_parse() {
    for f in [
        r#"userName eq "bjensen""#,
        r#"name.familyName co "O'Malley""#,
        r#"userName sw "J""#,
        r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#,
        "title pr",
        r#"meta.lastModified gt "2011-05-13T04:42:34Z""#,
        r#"meta.lastModified ge "2011-05-13T04:42:34Z""#,
        r#"meta.lastModified lt "2011-05-13T04:42:34Z""#,
        r#"meta.lastModified le "2011-05-13T04:42:34Z""#,
        r#"title pr and userType eq "Employee""#,
        r#"title pr or userType eq "Intern""#,
        r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#,
        r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
        r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
        r#"userType eq "Employee" and (emails.type eq "work")"#,
        r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
    ] {
        ok(f);
    }
}

#[test]
fn entra_reference_check_with_and_parses() {
    assert_eq!(
        ok(r#"id eq "2441309d85324e7793ae" and manager eq "00aa00aa""#),
        and(
            cmp(path("id"), CompareOp::Eq, s("2441309d85324e7793ae")),
            cmp(path("manager"), CompareOp::Eq, s("00aa00aa"))
        )
    );
}

#[test]
fn reference_postman_filter_with_bare_values_parses() {
    let f = ok("name.FamilyName eq Employee and (emails.Value co example.com or emails.Value co example.org)");
    assert_eq!(
        f,
        and(
            cmp(AttrPath::sub("name", "FamilyName"), CompareOp::Eq, s("Employee")),
            or(
                cmp(AttrPath::sub("emails", "Value"), CompareOp::Co, s("example.com")),
                cmp(AttrPath::sub("emails", "Value"), CompareOp::Co, s("example.org"))
            )
        )
    );
}

#[test]
fn literals_true_false_null_are_case_insensitive() {
    assert_eq!(ok("active eq TRUE"), cmp(path("active"), CompareOp::Eq, CompValue::Bool(true)));
    assert_eq!(ok("active eq False"), cmp(path("active"), CompareOp::Eq, CompValue::Bool(false)));
    assert_eq!(ok("title eq Null"), cmp(path("title"), CompareOp::Eq, CompValue::Null));
}

#[test]
fn quoted_true_is_a_string_not_a_boolean() {
    assert_eq!(ok(r#"active eq "true""#), cmp(path("active"), CompareOp::Eq, s("true")));
}

#[test]
fn json_numbers_parse_as_numbers() {
    for (text, expected) in [("42", "42"), ("-7", "-7"), ("3.25", "3.25"), ("1e3", "1000.0"), ("0", "0")] {
        let f = ok(&format!("x eq {text}"));
        let Filter::Compare { value: CompValue::Number(n), .. } = f else { panic!("{text} is not a number") };
        assert_eq!(n.to_string(), expected, "{text}");
    }
}

#[test]
fn number_like_tokens_that_are_not_json_numbers_are_strings() {
    assert_eq!(ok("x eq 0123"), cmp(path("x"), CompareOp::Eq, s("0123")));
    assert_eq!(ok("x eq 1."), cmp(path("x"), CompareOp::Eq, s("1.")));
    assert_eq!(ok("x eq +1"), cmp(path("x"), CompareOp::Eq, s("+1")));
}

#[test]
fn string_escapes_are_decoded() {
    assert_eq!(ok(r#"x eq "a\"b\\c\/d\b\f\n\r\t""#), cmp(path("x"), CompareOp::Eq, s("a\"b\\c/d\u{8}\u{c}\n\r\t")));
}

#[test]
fn unicode_escapes_and_surrogate_pairs_are_decoded() {
    assert_eq!(ok(r#"x eq "caf\u00e9""#), cmp(path("x"), CompareOp::Eq, s("café")));
    assert_eq!(ok(r#"x eq "\ud83d\ude00""#), cmp(path("x"), CompareOp::Eq, s("😀")));
}

#[test]
fn raw_unicode_in_strings_is_kept() {
    assert_eq!(ok("x eq \"Zoë 😀\""), cmp(path("x"), CompareOp::Eq, s("Zoë 😀")));
}

#[test]
fn brackets_and_parentheses_inside_strings_are_literal() {
    assert_eq!(ok(r#"x eq "a ) ] ( [ and or""#), cmp(path("x"), CompareOp::Eq, s("a ) ] ( [ and or")));
}

#[test]
fn empty_string_value_is_allowed() {
    assert_eq!(ok(r#"x eq """#), cmp(path("x"), CompareOp::Eq, s("")));
}

// ---- malformed input ----

#[test]
fn empty_filter_is_rejected() {
    assert!(err("").detail.contains("empty"));
    assert!(err("   ").detail.contains("empty"));
}

#[test]
fn unknown_operator_is_named_with_its_position() {
    let e = err(r#"userName xx "a""#);
    assert!(e.detail.contains("Unknown operator 'xx'"), "{}", e.detail);
    assert!(e.detail.contains("position 10"), "{}", e.detail);
}

#[test]
fn missing_operator_is_rejected() {
    assert!(err("userName").detail.contains("Expected an operator"));
    assert!(err(r#"userName "x""#).detail.contains("Expected an operator"));
    assert!(err("userName = x").detail.contains("Expected an operator"));
}

#[test]
fn missing_value_is_rejected() {
    assert!(err("userName eq").detail.contains("Missing value"));
    assert!(err("userName eq ").detail.contains("Missing value"));
    assert!(err("(userName eq)").detail.contains("Missing value"));
    assert!(err("userName eq and active eq true").detail.contains("Missing value"));
}

#[test]
fn present_with_a_value_is_rejected() {
    let e = err(r#"title pr "x""#);
    assert!(e.detail.contains("'pr' takes no value"), "{}", e.detail);
}

#[test]
fn trailing_garbage_is_rejected_with_position() {
    let e = err(r#"userName eq "a" extra"#);
    assert!(e.detail.contains("Unexpected 'extra'"), "{}", e.detail);
    assert!(e.detail.contains("position 17"), "{}", e.detail);
}

#[test]
fn unquoted_value_with_spaces_is_rejected() {
    assert!(err("displayName eq Sales Team").detail.contains("Unexpected 'Team'"));
}

#[test]
fn unbalanced_parentheses_are_rejected() {
    assert!(err(r#"(userName eq "a""#).detail.contains("Missing ')'"));
    assert!(err(r#"userName eq "a")"#).detail.contains("Unbalanced ')'"));
    assert!(err("()").detail.contains("Expected an attribute path"));
}

#[test]
fn unbalanced_brackets_are_rejected() {
    assert!(err(r#"emails[type eq "work""#).detail.contains("Missing ']'"));
    assert!(err(r#"emails[type eq "work"]]"#).detail.contains("Unbalanced ']'"));
    assert!(err("emails[]").detail.contains("Empty value filter"));
}

#[test]
fn unterminated_string_is_rejected() {
    let e = err(r#"userName eq "abc"#);
    assert!(e.detail.contains("Unterminated string"), "{}", e.detail);
    assert!(e.detail.contains("position 13"), "{}", e.detail);
}

#[test]
fn invalid_escapes_are_rejected() {
    assert!(err(r#"x eq "\q""#).detail.contains("Invalid escape"));
    assert!(err(r#"x eq "\u12""#).detail.contains("four hexadecimal digits"));
    assert!(err(r#"x eq "\ud83d""#).detail.contains("Unpaired"));
    assert!(err(r#"x eq "\ude00""#).detail.contains("Unpaired"));
    assert!(err(r#"x eq "\ud83d\u0041""#).detail.contains("surrogate"));
}

#[test]
fn not_without_parentheses_is_rejected() {
    assert!(err("not title pr").detail.contains("Expected '(' after 'not'"));
}

#[test]
fn dangling_logical_operator_is_rejected() {
    assert!(err("title pr and").detail.contains("filter ended"));
    assert!(err("title pr or ").detail.contains("filter ended"));
    assert!(err("and title pr").detail.contains("Expected an expression before 'and'"));
}

#[test]
fn nested_value_filters_are_rejected() {
    assert!(err(r#"emails[type[value eq "x"] eq "y"]"#).detail.contains("Nested value filters"));
}

#[test]
fn dotted_or_urn_paths_inside_brackets_are_rejected() {
    assert!(err(r#"emails[emails.type eq "work"]"#).detail.contains("Inside '[ ]'"));
}

#[test]
fn value_filter_after_a_sub_attribute_is_rejected() {
    assert!(err(r#"name.givenName[value eq "x"]"#).detail.contains("must follow a multi-valued attribute"));
}

#[test]
fn sub_attribute_after_bracket_is_rejected_in_filters() {
    assert!(err(r#"emails[type eq "work"].value eq "x""#).detail.contains("only allowed in PATCH paths"));
}

#[test]
fn malformed_attribute_names_are_rejected() {
    assert!(err(r#"1abc eq "x""#).detail.contains("not an attribute name"));
    assert!(err(r#"a.b.c eq "x""#).detail.contains("at most one"));
    assert!(err(r#"foo:bar eq "x""#).detail.contains("schema URN"));
    assert!(err(r#"urn:x: eq "x""#).detail.contains("not an attribute name"));
    assert!(err(r#"name. eq "x""#).detail.contains("not an attribute name"));
}

#[test]
fn quote_right_after_a_bare_value_is_rejected() {
    assert!(err(r#"x eq ab"c""#).detail.contains("Unexpected"));
}

#[test]
fn filter_longer_than_max_len_names_the_limit() {
    let limits = FilterLimits { max_len: 10, max_nodes: 200 };
    let e = parse(r#"userName eq "abcdef""#, &limits).err();
    let detail = e.map(|e| e.detail).unwrap_or_default();
    assert!(detail.contains("max_len"), "{detail}");
    assert!(detail.contains("10"), "{detail}");
}

#[test]
fn filter_with_too_many_nodes_names_the_limit() {
    let limits = FilterLimits { max_len: 4096, max_nodes: 3 };
    assert!(parse("a pr and b pr", &limits).is_ok());
    let e = parse("a pr and b pr and c pr", &limits).err();
    assert_eq!(e.as_ref().and_then(|e| e.scim_type), Some(ScimType::InvalidFilter));
    assert!(e.map(|e| e.detail).unwrap_or_default().contains("max_nodes"));
}

#[test]
fn default_limits_are_4096_bytes_and_200_nodes() {
    assert_eq!(FilterLimits::default(), FilterLimits { max_len: 4096, max_nodes: 200 });
}

#[test]
fn deep_nesting_is_rejected_without_overflowing_the_stack() {
    let deep = format!("{}title pr{}", "(".repeat(2000), ")".repeat(2000));
    assert!(err(&deep).detail.contains("nested deeper"));
    let fine = format!("{}title pr{}", "(".repeat(10), ")".repeat(10));
    assert_eq!(ok(&fine), Filter::Present(path("title")));
}

#[test]
fn positions_count_characters_not_bytes() {
    let e = err("x eq \"é\" zz");
    assert!(e.detail.contains("position 10"), "{}", e.detail);
}

#[test]
fn nul_in_a_string_literal_is_invalid_filter() {
    // Raw or escaped: no stored value can contain U+0000, and Postgres fails a query that does.
    for f in ["userName eq \"a\u{0}b\"", r#"userName eq "a\u0000b""#, r#"displayName co "\u0000""#] {
        let e = err(f);
        assert!(e.detail.contains("NUL"), "{f:?}: {}", e.detail);
    }
    ok(r#"userName eq "a\u0001b""#);
}
