//! Groups as Entra provisions them: create with the ADSCIM schema URI, membership PATCHes in both
//! dialects (never "remove all" on a legacy `Remove` with a value array), all-or-nothing validation
//! of member ids, renames, `excludedAttributes=members`, and deletes.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::harness::scim::{id_of, patch_op};
use crate::harness::{GROUP_SCHEMA, Scim, Server, enc, ids, member_ids, set, uid, version_number, without_license};

static SERVER: OnceLock<Server> = OnceLock::new();

fn server() -> &'static Server {
    SERVER.get_or_init(Server::start)
}

/// Microsoft's "Create Group" example ([S1]), verbatim.
const MS_CREATE_GROUP: &str = r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group","http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],
 "externalId":"8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159","displayName":"displayName","meta":{"resourceType":"Group"}}"#;

fn users(scim: &Scim, n: usize) -> Vec<String> {
    let tag = uid();
    (0..n).map(|i| scim.user_id(&format!("m{i}-{tag}@contoso.com"))).collect()
}

/// Legacy `Add` of members with `$ref: null`.
fn legacy_add(ids: &[String]) -> Value {
    let value: Vec<Value> = ids.iter().map(|i| json!({"$ref": null, "value": i})).collect();
    json!({"op": "Add", "path": "members", "value": value})
}

/// Legacy `Remove` with a value array.
fn legacy_remove(ids: &[String]) -> Value {
    let value: Vec<Value> = ids.iter().map(|i| json!({"$ref": null, "value": i})).collect();
    json!({"op": "Remove", "path": "members", "value": value})
}

fn members_of(scim: &Scim, gid: &str) -> BTreeSet<String> {
    member_ids(&scim.get_group(gid))
}

#[test]
fn create_group_with_adscim_schema_and_meta_returns_201_without_members() {
    let scim = server().tenant();
    let r = scim.raw("POST", "/Groups", MS_CREATE_GROUP);
    let g = r.scim(201);
    let id = id_of(&g);
    assert_eq!(g["displayName"], "displayName");
    assert_eq!(g["externalId"], "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159");
    assert!(g.get("members").is_none() || g["members"] == json!([]), "members must be [] or absent: {g}");
    let schemas = g["schemas"].as_array().cloned().unwrap_or_default();
    assert!(schemas.iter().any(|s| s == GROUP_SCHEMA), "schemas: {g}");
    assert_eq!(g["meta"]["resourceType"], "Group");
    let _ = version_number(&g["meta"]["version"]);
    let loc = g["meta"]["location"].as_str().unwrap_or_default();
    assert!(loc.ends_with(&format!("/Groups/{id}")), "meta.location: {g}");
    assert_eq!(r.header("location"), Some(loc), "Location header:\n{}", r.describe());
    assert_eq!(r.header("etag"), g["meta"]["version"].as_str(), "ETag header:\n{}", r.describe());
    assert!(g["meta"]["created"].is_string() && g["meta"]["lastModified"].is_string(), "{g}");

    assert_eq!(scim.get_group(&id), g, "GET by id vs POST response");
    let found = scim.get("/Groups?excludedAttributes=members&filter=displayName+eq+%22displayName%22").list();
    assert_eq!(ids(&found), set(&[&id]));
}

#[test]
fn duplicate_display_name_in_other_case_is_409_uniqueness() {
    let scim = server().tenant();
    let g = scim.create_group("Engineering");
    scim.post("/Groups", &json!({"schemas": [GROUP_SCHEMA], "displayName": "ENGINEERING"}))
        .scim_error(409, Some("uniqueness"));
    scim.post("/Groups", &json!({"schemas": [GROUP_SCHEMA], "displayName": "Engineering"}))
        .scim_error(409, Some("uniqueness"));
    let all = scim.list_all("/Groups");
    assert_eq!(ids(&all), set(&[id_of(&g)]), "only the first group exists");

    // Renaming another group onto an existing name is a conflict too.
    let other = scim.create_group("Marketing");
    let oid = id_of(&other);
    scim.patch(
        &format!("/Groups/{oid}"),
        &patch_op(json!([{"op": "Replace", "path": "displayName", "value": "engineering"}])),
    )
    .scim_error(409, Some("uniqueness"));
    assert_eq!(scim.get_group(&oid)["displayName"], "Marketing");
}

#[test]
fn legacy_add_members_with_null_ref_in_batches_of_1_2_50_and_multiple_ops() {
    let scim = server().tenant();
    let us = users(&scim, 56);
    let g = scim.create_group(&format!("batch-{}", uid()));
    let gid = id_of(&g);
    let path = format!("/Groups/{gid}");

    // Exactly the captured shape ([S43]) for the first member.
    let body = format!(
        r#"{{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{{"op":"Add","path":"members","value":[{{"$ref":null,"value":"{}"}}]}}]}}"#,
        us[0]
    );
    scim.raw("PATCH", &path, &body).expect_empty(204);
    assert_eq!(members_of(&scim, &gid), set(&us[..1]));

    scim.patch_group_ok(&gid, json!([legacy_add(&us[1..3])]));
    assert_eq!(members_of(&scim, &gid), set(&us[..3]));

    scim.patch_group_ok(&gid, json!([legacy_add(&us[3..53])]));
    assert_eq!(members_of(&scim, &gid), set(&us[..53]));

    // Several operations in one request.
    scim.patch_group_ok(&gid, json!([legacy_add(&us[53..54]), legacy_add(&us[54..55]), legacy_add(&us[55..56])]));
    let got = scim.get_group(&gid);
    assert_eq!(member_ids(&got), set(&us));
    for m in got["members"].as_array().cloned().unwrap_or_default() {
        assert!(m["value"].is_string(), "member value: {m}");
        if let Some(r) = m.get("$ref").filter(|r| !r.is_null()) {
            let r = r.as_str().unwrap_or_default();
            assert!(r.ends_with(&format!("/Users/{}", m["value"].as_str().unwrap_or_default())), "member $ref: {m}");
        }
    }

    // The members' `groups` attribute lists the group.
    for uid_ in [&us[0], &us[30], &us[55]] {
        let u = scim.get_user(uid_);
        let groups: BTreeSet<String> = u["groups"]
            .as_array()
            .unwrap_or_else(|| panic!("user in a group lacks `groups`: {u}"))
            .iter()
            .map(|x| x["value"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(groups, set(&[&gid]), "user.groups: {u}");
    }
}

#[test]
fn legacy_remove_with_value_array_removes_only_the_listed_members() {
    let scim = server().tenant();
    let us = users(&scim, 5);
    let gid = id_of(&scim.create_group(&format!("rm-{}", uid())));
    scim.patch_group_ok(&gid, json!([legacy_add(&us)]));

    scim.patch_group_ok(&gid, json!([legacy_remove(&us[..2])]));
    assert_eq!(members_of(&scim, &gid), set(&us[2..]), "only the two listed members may go");

    // The [S2] form without `$ref`.
    let body = format!(
        r#"{{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{{"op":"Remove","path":"members","value":[{{"value":"{}"}}]}}]}}"#,
        us[2]
    );
    scim.raw("PATCH", &format!("/Groups/{gid}"), &body).expect_empty(204);
    assert_eq!(members_of(&scim, &gid), set(&us[3..]));
    let u = scim.get_user(&us[0]);
    assert!(
        u["groups"].as_array().is_none_or(|a| a.is_empty()),
        "a removed member's `groups` must not list the group: {u}"
    );
}

#[test]
fn flagged_add_and_remove_by_value_filter_path() {
    let scim = server().tenant();
    let us = users(&scim, 3);
    let gid = id_of(&scim.create_group(&format!("flag-{}", uid())));
    let path = format!("/Groups/{gid}");
    // [S2b] flagged add, no $ref.
    scim.patch_group_ok(
        &gid,
        json!([{"op": "add", "path": "members", "value": [{"value": us[0]}, {"value": us[1]}, {"value": us[2]}]}]),
    );
    assert_eq!(members_of(&scim, &gid), set(&us));
    // [S2] flagged remove, verbatim shape.
    let body = format!(
        r#"{{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
 "Operations":[{{"op":"remove","path":"members[value eq \"{}\"]"}}]}}"#,
        us[1]
    );
    scim.raw("PATCH", &path, &body).expect_empty(204);
    assert_eq!(members_of(&scim, &gid), set(&[&us[0], &us[2]]));
}

#[test]
fn adding_a_nonexistent_member_is_400_invalid_value_and_nothing_changes() {
    let scim = server().tenant();
    let us = users(&scim, 2);
    let name = format!("atomic-{}", uid());
    let gid = id_of(&scim.create_group(&name));
    scim.patch_group_ok(&gid, json!([legacy_add(&us[..1])]));
    let before = scim.get_group(&gid);

    let ghost = uuid::Uuid::new_v4().to_string();
    let new_name = format!("{name}-renamed");
    let bodies = [
        // rename first, then a good and a bad member, then a removal
        json!([
            {"op": "Replace", "path": "displayName", "value": new_name},
            legacy_add(&[us[1].clone(), ghost.clone()]),
            legacy_remove(&us[..1]),
        ]),
        // bad member first
        json!([legacy_add(std::slice::from_ref(&ghost)), {"op": "Replace", "path": "displayName", "value": new_name}]),
        // flagged dialect
        json!([{"op": "add", "path": "members", "value": [{"value": ghost}]}, {"op": "replace", "value": {"displayName": new_name}}]),
        // an id in Microsoft's non-UUID format that does not exist
        json!([legacy_add(&["5171a35d82074e068ce2".to_owned()])]),
    ];
    for ops in bodies {
        let r = scim.patch(&format!("/Groups/{gid}"), &patch_op(ops.clone()));
        r.scim_error(400, Some("invalidValue"));
        let after = scim.get_group(&gid);
        assert_eq!(after, before, "a rejected PATCH must change nothing (ops {ops})");
        assert!(scim.filter_groups(&format!("displayName eq \"{new_name}\"")).is_empty(), "rename must not apply");
    }
    let u = scim.get_user(&us[1]);
    assert!(
        u["groups"].as_array().is_none_or(|a| a.is_empty()),
        "the valid member of a rejected PATCH must not be added: {u}"
    );
}

#[test]
fn re_adding_a_present_member_and_removing_an_absent_one_are_204_no_ops() {
    let scim = server().tenant();
    let us = users(&scim, 2);
    let gid = id_of(&scim.create_group(&format!("idem-{}", uid())));
    scim.patch_group_ok(&gid, json!([legacy_add(&us[..1])]));
    scim.patch_group_ok(&gid, json!([legacy_add(&us[..1])]));
    let g = scim.get_group(&gid);
    assert_eq!(g["members"].as_array().map(Vec::len), Some(1), "no duplicate member: {g}");
    scim.patch_group_ok(&gid, json!([legacy_remove(&us[1..2])]));
    scim.patch_group_ok(&gid, json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", us[1])}]));
    assert_eq!(members_of(&scim, &gid), set(&us[..1]));
}

#[test]
fn rename_with_replace_display_name_string_then_filter_finds_new_name() {
    let scim = server().tenant();
    let old = format!("old-{}", uid());
    let gid = id_of(&scim.create_group(&old));
    let new = "1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName";
    let body = format!(
        r#"{{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
 "Operations":[{{"op":"Replace","path":"displayName","value":"{new}"}}]}}"#
    );
    scim.raw("PATCH", &format!("/Groups/{gid}"), &body).expect_empty(204);
    assert_eq!(scim.get_group(&gid)["displayName"], new);
    let found =
        scim.get(&format!("/Groups?excludedAttributes=members&filter=displayName+eq+%22{}%22", enc(new))).list();
    assert_eq!(ids(&found), set(&[&gid]));
    assert!(scim.filter_groups(&format!("displayName eq \"{old}\"")).is_empty(), "old name must not match");

    // Flagged, path-less (plausible under the flag).
    let newer = format!("newer-{}", uid());
    scim.patch_group_ok(&gid, json!([{"op": "replace", "value": {"displayName": newer}}]));
    assert_eq!(scim.get_group(&gid)["displayName"], newer.as_str());
}

#[test]
fn excluded_attributes_members_omits_members_on_get_by_id_and_list() {
    let scim = server().tenant();
    let us = users(&scim, 2);
    let name = format!("excl-{}", uid());
    let gid = id_of(&scim.create_group(&name));
    scim.patch_group_ok(&gid, json!([legacy_add(&us)]));

    let full = scim.get_group(&gid);
    assert_eq!(member_ids(&full), set(&us));

    let g = scim.get(&format!("/Groups/{gid}?excludedAttributes=members")).scim(200);
    assert!(g.get("members").is_none(), "excludedAttributes=members must drop the key: {g}");
    assert_eq!(g["displayName"], name.as_str());
    assert_eq!(g["id"], gid.as_str());

    let listed =
        scim.get(&format!("/Groups?excludedAttributes=members&filter=displayName+eq+%22{}%22", enc(&name))).list();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].get("members").is_none(), "list item must lack members: {}", listed[0]);
    // Parameter order must not matter.
    let listed =
        scim.get(&format!("/Groups?filter=displayName+eq+%22{}%22&excludedAttributes=members", enc(&name))).list();
    assert!(listed[0].get("members").is_none(), "list item must lack members: {}", listed[0]);
    for item in scim.get("/Groups?excludedAttributes=members").list() {
        assert!(item.get("members").is_none(), "unfiltered list item must lack members: {item}");
    }
}

#[test]
fn delete_group_is_204_then_404_and_members_lose_it() {
    let scim = server().tenant();
    let us = users(&scim, 1);
    let name = format!("del-{}", uid());
    let gid = id_of(&scim.create_group(&name));
    scim.patch_group_ok(&gid, json!([legacy_add(&us)]));
    scim.delete(&format!("/Groups/{gid}")).expect_empty(204);
    scim.get(&format!("/Groups/{gid}")).scim_error(404, None);
    scim.delete(&format!("/Groups/{gid}")).scim_error(404, None);
    scim.patch(&format!("/Groups/{gid}"), &patch_op(json!([legacy_add(&us)]))).scim_error(404, None);
    assert!(scim.filter_groups(&format!("displayName eq \"{name}\"")).is_empty());
    let u = scim.get_user(&us[0]);
    assert!(u["groups"].as_array().is_none_or(|a| a.is_empty()), "deleted group must leave user.groups: {u}");
    // The name is free again.
    scim.create_group(&name);
}

#[test]
fn deleting_a_user_removes_it_from_group_members() {
    let scim = server().tenant();
    let us = users(&scim, 3);
    let g1 = id_of(&scim.create_group(&format!("a-{}", uid())));
    let g2 = id_of(&scim.create_group(&format!("b-{}", uid())));
    scim.patch_group_ok(&g1, json!([legacy_add(&us)]));
    scim.patch_group_ok(&g2, json!([legacy_add(&us[..1])]));
    let before = scim.get_group(&g1);
    scim.delete(&format!("/Users/{}", us[0])).expect_empty(204);
    assert_eq!(members_of(&scim, &g1), set(&us[1..]));
    assert_eq!(members_of(&scim, &g2), BTreeSet::new());
    let after = scim.get_group(&g1);
    // Remaining state intact; the group stays patchable.
    assert_eq!(after["displayName"], before["displayName"]);
    scim.patch_group_ok(&g1, json!([legacy_remove(&us[1..2])]));
    assert_eq!(members_of(&scim, &g1), set(&us[2..]));
    // Adding the deleted user now is an unknown member.
    scim.patch(&format!("/Groups/{g1}"), &patch_op(json!([legacy_add(&us[..1])])))
        .scim_error(400, Some("invalidValue"));
}

#[test]
fn group_patch_bumps_version_and_list_matches_get() {
    let scim = server().tenant();
    let us = users(&scim, 1);
    let g = scim.create_group(&format!("ver-{}", uid()));
    let gid = id_of(&g);
    let v0 = version_number(&g["meta"]["version"]);
    scim.patch_group_ok(&gid, json!([legacy_add(&us)]));
    let g1 = scim.get_group(&gid);
    assert!(version_number(&g1["meta"]["version"]) > v0, "version must increase: {g1}");
    let listed = scim.filter_groups(&format!("displayName eq \"{}\"", g1["displayName"].as_str().unwrap_or_default()));
    assert_eq!(listed.len(), 1);
    assert_eq!(without_license(&listed[0]), g1, "list item vs GET by id");
}

#[test]
fn three_hundred_members_in_one_legacy_add_then_half_removed_in_one_op() {
    let scim = server().tenant();
    let us = users(&scim, 300);
    let gid = id_of(&scim.create_group(&format!("big-{}", uid())));
    scim.patch_group_ok(&gid, json!([legacy_add(&us)]));
    assert_eq!(members_of(&scim, &gid), set(&us));
    scim.patch_group_ok(&gid, json!([legacy_remove(&us[..150])]));
    assert_eq!(members_of(&scim, &gid), set(&us[150..]));
    let listed = scim.get(&format!("/Groups/{gid}?excludedAttributes=members")).scim(200);
    assert!(listed.get("members").is_none());
}

#[test]
fn a_filtered_user_lookup_lists_the_users_groups_as_a_read_by_id_does() {
    let scim = server().tenant();
    let us = users(&scim, 3);
    let tag = uid();
    let g1 = id_of(&scim.create_group(&format!("lookup-a-{tag}")));
    let g2 = id_of(&scim.create_group(&format!("lookup-b-{tag}")));
    scim.patch_group_ok(&g1, json!([legacy_add(&us[..2])]));
    scim.patch_group_ok(&g2, json!([legacy_add(&us[..1])]));

    for (i, id) in us.iter().enumerate() {
        let by_id = scim.get_user(id);
        let user_name = by_id["userName"].as_str().unwrap_or_default().to_owned();
        let found = scim.get(&format!("/Users?filter={}", enc(&format!("userName eq \"{user_name}\"")))).list();
        assert_eq!(found.len(), 1, "{found:?}");
        let listed = &found[0];
        let groups: Vec<String> = listed["groups"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|g| g["value"].as_str().unwrap_or_default().to_owned())
            .collect();
        let mut expected = match i {
            0 => vec![g1.clone(), g2.clone()],
            1 => vec![g1.clone()],
            _ => Vec::new(),
        };
        expected.sort();
        assert_eq!(groups, expected, "user {i} listed: {listed}");
        assert_eq!(listed["groups"], by_id["groups"], "the list and the read by id agree for user {i}");
    }
}
