//! Specification of PATCH message parsing and PATCH path syntax.

use serde_json::{Value, json};

use super::*;
use crate::filter::{AttrPath, CompValue, CompareOp, Filter};

const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn parsed(body: Value) -> PatchRequest {
    match PatchRequest::parse(&body, &PatchLimits::default()) {
        Ok(r) => r,
        Err(e) => panic!("should parse: {e}"),
    }
}

fn rejected(body: Value, t: ScimType) -> String {
    rejected_with(body, &PatchLimits::default(), t)
}

fn rejected_with(body: Value, limits: &PatchLimits, t: ScimType) -> String {
    match PatchRequest::parse(&body, limits) {
        Ok(r) => panic!("should fail, got {r:?}"),
        Err(e) => {
            assert_eq!((e.status, e.scim_type), (400, Some(t)), "{}", e.detail);
            e.detail
        }
    }
}

fn path_of(s: &str) -> PatchPath {
    match parse_path(s) {
        Ok(p) => p,
        Err(e) => panic!("{s:?} should parse: {e}"),
    }
}

fn bad_path(s: &str) -> String {
    match parse_path(s) {
        Ok(p) => panic!("{s:?} should fail, got {p:?}"),
        Err(e) => {
            assert_eq!((e.status, e.scim_type), (400, Some(ScimType::InvalidPath)), "{}", e.detail);
            e.detail
        }
    }
}

fn body(ops: Value) -> Value {
    json!({"schemas": [PATCH_OP_SCHEMA], "Operations": ops})
}

// ---- message ----

#[test]
fn capitalised_legacy_ops_parse() {
    let r = parsed(body(json!([
        {"op": "Add", "path": "nickName", "value": "Babs"},
        {"op": "Replace", "path": "active", "value": "False"},
        {"op": "Remove", "path": "title"},
        {"op": "ADD", "path": "title", "value": "x"}
    ])));
    let kinds: Vec<PatchOpKind> = r.operations.iter().map(|o| o.op).collect();
    assert_eq!(kinds, [PatchOpKind::Add, PatchOpKind::Replace, PatchOpKind::Remove, PatchOpKind::Add]);
    assert_eq!(r.operations[1].value, Some(json!("False")));
}

#[test]
fn operations_key_is_case_insensitive() {
    let r = parsed(json!({"schemas": [PATCH_OP_SCHEMA], "operations": [{"op": "add", "path": "title", "value": "x"}]}));
    assert_eq!(r.operations.len(), 1);
}

#[test]
fn operation_keys_are_case_insensitive() {
    let r = parsed(body(json!([{"OP": "replace", "Path": "title", "Value": "x"}])));
    assert_eq!(r.operations[0].path.as_ref().map(|p| p.attr.attr.as_str()), Some("title"));
    assert_eq!(r.operations[0].value, Some(json!("x")));
}

#[test]
fn schemas_may_list_other_urns_besides_patch_op() {
    parsed(
        json!({"schemas": ["urn:example:other", PATCH_OP_SCHEMA], "Operations": [{"op": "add", "path": "title", "value": "x"}]}),
    );
}

#[test]
fn missing_schemas_is_invalid_syntax() {
    let d = rejected(json!({"Operations": [{"op": "add", "path": "title", "value": "x"}]}), ScimType::InvalidSyntax);
    assert!(d.contains("schemas"), "{d}");
}

#[test]
fn schemas_without_patch_op_is_invalid_syntax() {
    rejected(
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "Operations": [{"op": "add", "path": "title", "value": "x"}]}),
        ScimType::InvalidSyntax,
    );
}

#[test]
fn missing_or_empty_operations_is_invalid_syntax() {
    rejected(json!({"schemas": [PATCH_OP_SCHEMA]}), ScimType::InvalidSyntax);
    assert!(rejected(body(json!([])), ScimType::InvalidSyntax).contains("empty"));
    rejected(body(json!({"op": "add"})), ScimType::InvalidSyntax);
}

#[test]
fn non_object_body_is_invalid_syntax() {
    rejected(json!([1, 2]), ScimType::InvalidSyntax);
    rejected(json!("patch"), ScimType::InvalidSyntax);
}

#[test]
fn unknown_op_is_invalid_syntax_and_named() {
    let d = rejected(body(json!([{"op": "copy", "path": "title", "value": "x"}])), ScimType::InvalidSyntax);
    assert!(d.contains("copy") && d.starts_with("Operation 1:"), "{d}");
    rejected(body(json!([{"path": "title", "value": "x"}])), ScimType::InvalidSyntax);
    rejected(body(json!([{"op": 1, "path": "title", "value": "x"}])), ScimType::InvalidSyntax);
    rejected(body(json!(["add"])), ScimType::InvalidSyntax);
}

#[test]
fn add_or_replace_without_value_is_invalid_value() {
    let d = rejected(body(json!([{"op": "add", "path": "title"}])), ScimType::InvalidValue);
    assert!(d.contains("no 'value'"), "{d}");
    rejected(body(json!([{"op": "replace", "path": "title"}])), ScimType::InvalidValue);
}

#[test]
fn explicit_null_value_is_kept_for_add_and_replace() {
    let r = parsed(body(json!([{"op": "replace", "path": "title", "value": null}])));
    assert_eq!(r.operations[0].value, Some(Value::Null));
}

#[test]
fn remove_without_path_is_no_target() {
    rejected(body(json!([{"op": "remove"}])), ScimType::NoTarget);
    rejected(body(json!([{"op": "remove", "path": ""}])), ScimType::NoTarget);
}

#[test]
fn empty_or_null_path_means_no_path_for_add() {
    let r = parsed(body(
        json!([{"op": "add", "path": "", "value": {"title": "x"}}, {"op": "add", "path": null, "value": {}}]),
    ));
    assert!(r.operations.iter().all(|o| o.path.is_none()));
}

#[test]
fn malformed_path_is_invalid_path_and_names_the_operation() {
    let d = rejected(
        body(
            json!([{"op": "add", "path": "title", "value": "x"}, {"op": "replace", "path": "emails[type eq", "value": "x"}]),
        ),
        ScimType::InvalidPath,
    );
    assert!(d.starts_with("Operation 2:"), "{d}");
    rejected(body(json!([{"op": "add", "path": 5, "value": "x"}])), ScimType::InvalidPath);
}

#[test]
fn too_many_operations_is_too_many() {
    let limits = PatchLimits { max_operations: 2, max_members_per_request: 10 };
    let ops = json!([{"op": "add", "path": "a", "value": 1}, {"op": "add", "path": "b", "value": 1}, {"op": "add", "path": "c", "value": 1}]);
    let d = rejected_with(body(ops), &limits, ScimType::TooMany);
    assert!(d.contains("3 operations") && d.contains("at most 2"), "{d}");
}

#[test]
fn too_many_members_across_operations_is_too_many() {
    let limits = PatchLimits { max_operations: 10, max_members_per_request: 3 };
    let ops = json!([
        {"op": "add", "path": "members", "value": [{"value": "1"}, {"value": "2"}]},
        {"op": "remove", "path": "members", "value": [{"value": "3"}]},
        {"op": "add", "value": {"members": [{"value": "4"}]}}
    ]);
    let d = rejected_with(body(ops), &limits, ScimType::TooMany);
    assert!(d.contains("4 group members"), "{d}");
}

#[test]
fn default_patch_limits() {
    assert_eq!(PatchLimits::default(), PatchLimits { max_operations: 1000, max_members_per_request: 10_000 });
}

// ---- paths ----

#[test]
fn simple_path() {
    assert_eq!(path_of("userName"), PatchPath { attr: AttrPath::simple("userName"), filter: None, sub_attr: None });
}

#[test]
fn sub_attribute_path() {
    let p = path_of("name.familyName");
    assert_eq!(p.attr, AttrPath::sub("name", "familyName"));
    assert_eq!(p.target_sub(), Some("familyName"));
}

#[test]
fn value_path_with_trailing_sub_attribute() {
    let p = path_of(r#"emails[type eq "work"].value"#);
    assert_eq!(p.attr, AttrPath::simple("emails"));
    assert_eq!(
        p.filter,
        Some(Filter::Compare {
            path: AttrPath::simple("type"),
            op: CompareOp::Eq,
            value: CompValue::String("work".into())
        })
    );
    assert_eq!(p.sub_attr.as_deref(), Some("value"));
    assert_eq!(p.target_sub(), Some("value"));
}

#[test]
fn value_path_without_sub_attribute() {
    let p = path_of(r#"members[value eq "7f4bc1a3-285e-48ae-8202-5accb43efb0e"]"#);
    assert_eq!(p.attr, AttrPath::simple("members"));
    assert!(p.filter.is_some());
    assert_eq!(p.sub_attr, None);
}

#[test]
fn urn_paths_for_extension_attributes() {
    let p = path_of(&format!("{ENT}:employeeNumber"));
    assert_eq!(p.attr, AttrPath { urn: Some(ENT.into()), attr: "employeeNumber".into(), sub_attr: None });
    let p = path_of(&format!("{ENT}:manager.value"));
    assert_eq!(p.attr, AttrPath { urn: Some(ENT.into()), attr: "manager".into(), sub_attr: Some("value".into()) });
    let p = path_of(&format!("{ENT}:manager"));
    assert_eq!(p.attr.attr, "manager");
}

#[test]
fn path_with_surrounding_whitespace_is_trimmed() {
    assert_eq!(path_of("  title ").attr, AttrPath::simple("title"));
}

#[test]
fn malformed_paths_are_invalid_path() {
    bad_path("");
    bad_path("emails[type eq \"work\"");
    bad_path("emails[type eq \"work\"].");
    bad_path("emails[type eq \"work\"]value");
    bad_path("emails[type eq \"work\"].value.x");
    bad_path("name.givenName[value eq \"x\"]");
    bad_path("a.b.c");
    bad_path("1abc");
    bad_path("title extra");
    bad_path("emails[]");
    bad_path("emails[type zz \"work\"]");
}

#[test]
fn invalid_path_detail_quotes_the_path_and_position() {
    let d = bad_path(r#"emails[type eq "work"]]"#);
    assert!(d.contains(r#"emails[type eq "work"]]"#) && d.contains("position"), "{d}");
}
