//! Micro-benchmarks of the SCIM hot paths every Entra request goes through: filter parsing and
//! validation, create-body normalization, and PATCH parsing and application in both of Entra's
//! dialects. Run with `cargo bench -p roster-scim` (or `make bench`, which also writes
//! docs/benchmarks.md).

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use roster_scim::filter::{FilterLimits, parse, validate};
use roster_scim::patch::{PatchLimits, PatchRequest, apply};
use roster_scim::resource::normalize;
use roster_scim::schema::ResourceKind;
use serde_json::{Map, Value, json};

/// Unwraps setup results; a failure here is a broken benchmark, not a measurement.
fn ok<T, E: std::fmt::Debug>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e:?}"),
    }
}

/// The filters Entra sends (entra-behavior.md §1.2, §1.7) and one deliberately complex filter.
const FILTERS: &[(&str, ResourceKind, &str)] = &[
    ("user_name_eq", ResourceKind::User, r#"userName eq "jane.doe.42@tenant0.loadgen.example""#),
    ("external_id_eq", ResourceKind::User, r#"externalId eq "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159""#),
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

fn filters(c: &mut Criterion) {
    let limits = FilterLimits::default();
    let mut g = c.benchmark_group("scim_filter_parse_validate");
    for (name, kind, text) in FILTERS {
        g.bench_function(*name, |b| {
            b.iter(|| {
                let f = ok(parse(black_box(text), &limits), "filter parses");
                ok(validate(&f, *kind), "filter validates");
                f
            })
        });
    }
    g.finish();
}

fn user_create_body() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "externalId": "janedoe42",
        "userName": "jane.doe.42@tenant0.loadgen.example",
        "active": "True",
        "emails": [{"primary": true, "type": "work", "value": "jane.doe.42@tenant0.loadgen.example"}],
        "meta": {"resourceType": "User"},
        "name": {"familyName": "Doe", "givenName": "Jane"}
    })
}

fn create(c: &mut Criterion) {
    let body = user_create_body();
    c.bench_function("scim_normalize/user_create_entra", |b| {
        b.iter(|| ok(normalize(ResourceKind::User, black_box(&body)), "create body normalizes"))
    });
}

fn stored(kind: ResourceKind, body: Value) -> Map<String, Value> {
    ok(normalize(kind, &body), "stored form normalizes").attributes
}

fn patch_body(ops: Value) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops})
}

fn member_refs(n: usize) -> Value {
    Value::Array((0..n).map(|i| json!({"value": format!("0190f1c2-7d3a-7b11-9a42-{i:012}")})).collect())
}

/// PATCH bodies as Entra sends them; members are not part of a group's stored form (they live in
/// `scim_members`), so the pure cost of adding one member does not depend on the group's size: the
/// member-add scenario of `make bench` measures that end to end.
fn patch_cases() -> Vec<(&'static str, ResourceKind, Map<String, Value>, Value)> {
    let user = stored(ResourceKind::User, user_create_body());
    let group = stored(ResourceKind::Group, json!({"displayName": "Sales Team 3", "externalId": "8aa1a0c0"}));
    vec![
        (
            "user_legacy_replace_email_and_family_name",
            ResourceKind::User,
            user.clone(),
            patch_body(json!([
                {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "updatedEmail@microsoft.com"},
                {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"}])),
        ),
        (
            "user_legacy_deactivate_string_bool",
            ResourceKind::User,
            user.clone(),
            patch_body(json!([{"op": "Replace", "path": "active", "value": "False"}])),
        ),
        (
            "user_flagged_pathless_replace_dotted_keys",
            ResourceKind::User,
            user,
            patch_body(json!([{"op": "replace", "value": {
                "displayName": "Foo Bar", "name.givenName": "Foo", "name.familyName": "Bar", "active": false}}])),
        ),
        (
            "group_legacy_add_1_member",
            ResourceKind::Group,
            group.clone(),
            patch_body(json!([{"op": "Add", "path": "members", "value": member_refs(1)}])),
        ),
        (
            "group_flagged_add_1_member",
            ResourceKind::Group,
            group.clone(),
            patch_body(json!([{"op": "add", "path": "members", "value": member_refs(1)}])),
        ),
        (
            "group_legacy_add_1000_members",
            ResourceKind::Group,
            group.clone(),
            patch_body(json!([{"op": "Add", "path": "members", "value": member_refs(1000)}])),
        ),
        (
            "group_flagged_remove_member_by_filter",
            ResourceKind::Group,
            group,
            patch_body(json!([{"op": "remove", "path": "members[value eq \"0190f1c2-7d3a-7b11-9a42-000000000007\"]"}])),
        ),
    ]
}

fn patches(c: &mut Criterion) {
    let limits = PatchLimits::default();
    let mut g = c.benchmark_group("scim_patch_parse_apply");
    for (name, kind, resource, body) in patch_cases() {
        g.bench_function(name, |b| {
            b.iter_batched_ref(
                || resource.clone(),
                |r| {
                    let req = ok(PatchRequest::parse(black_box(&body), &limits), "PATCH parses");
                    ok(apply(kind, r, &req), "PATCH applies")
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, filters, create, patches);
criterion_main!(benches);
