//! Request bodies in the exact shapes Entra sends (see `docs/entra-behavior.md` in the shared docs).

use serde_json::{Value, json};

use crate::model::UserModel;

/// The SCIM core User schema.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The enterprise User extension schema.
pub const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// The SCIM core Group schema.
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// The extra Microsoft group schema Entra sends on group creation.
pub const MS_GROUP_SCHEMA: &str = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group";
/// The PatchOp message schema.
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// The path Entra uses for the work email.
pub const WORK_EMAIL_PATH: &str = "emails[type eq \"work\"].value";

/// Which PATCH dialect Entra speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// The default for non-gallery apps: `Replace`/`Add`/`Remove`, one op per attribute, booleans as strings.
    Legacy,
    /// With the `aadOptscim062020` flag: lower-case ops, JSON booleans, path-less `replace` with dotted keys.
    Flagged,
}

/// `POST /Users` with "our mapping" (entra-behavior.md §1.3); `active` is the legacy string `"True"` when
/// `active_as_string` is set.
pub fn user_create(u: &UserModel, active_as_string: bool) -> String {
    let active = if active_as_string { json!(if u.active { "True" } else { "False" }) } else { json!(u.active) };
    json!({
        "schemas": [USER_SCHEMA, ENTERPRISE_SCHEMA],
        "externalId": u.external_id,
        "userName": u.user_name,
        "active": active,
        "emails": [{"primary": true, "type": "work", "value": u.email}],
        "meta": {"resourceType": "User"},
        "name": {"familyName": u.family_name, "givenName": u.given_name}
    })
    .to_string()
}

/// `POST /Groups`: created empty, with the Microsoft schema URI.
pub fn group_create(display_name: &str, external_id: &str) -> String {
    json!({
        "schemas": [GROUP_SCHEMA, MS_GROUP_SCHEMA],
        "externalId": external_id,
        "displayName": display_name,
        "meta": {"resourceType": "Group"}
    })
    .to_string()
}

fn patch(ops: Vec<Value>) -> String {
    json!({"schemas": [PATCH_OP], "Operations": ops}).to_string()
}

/// `PATCH /Groups/{id}` adding members: legacy `{"op":"Add","path":"members","value":[{"$ref":null,"value":…}]}`,
/// flagged `{"op":"add", …, "value":[{"value":…}]}`.
pub fn members_add(ids: &[String], dialect: Dialect) -> String {
    let value: Vec<Value> = match dialect {
        Dialect::Legacy => ids.iter().map(|id| json!({"$ref": null, "value": id})).collect(),
        Dialect::Flagged => ids.iter().map(|id| json!({"value": id})).collect(),
    };
    let op = if dialect == Dialect::Legacy { "Add" } else { "add" };
    patch(vec![json!({"op": op, "path": "members", "value": value})])
}

/// `PATCH /Groups/{id}` removing members: legacy one `Remove` with a `value` list, flagged one
/// `remove members[value eq "…"]` op per member.
pub fn members_remove(ids: &[String], dialect: Dialect) -> String {
    match dialect {
        Dialect::Legacy => {
            let value: Vec<Value> = ids.iter().map(|id| json!({"$ref": null, "value": id})).collect();
            patch(vec![json!({"op": "Remove", "path": "members", "value": value})])
        }
        Dialect::Flagged => {
            patch(ids.iter().map(|id| json!({"op": "remove", "path": format!("members[value eq \"{id}\"]")})).collect())
        }
    }
}

/// `PATCH /Groups/{id}` renaming: legacy `Replace displayName`, flagged a path-less `replace`.
pub fn group_rename(display_name: &str, dialect: Dialect) -> String {
    match dialect {
        Dialect::Legacy => patch(vec![json!({"op": "Replace", "path": "displayName", "value": display_name})]),
        Dialect::Flagged => patch(vec![json!({"op": "replace", "value": {"displayName": display_name}})]),
    }
}

/// `PATCH /Users/{id}` setting `active`: legacy `"value":"False"`/`"True"` strings, flagged JSON booleans.
pub fn user_set_active(active: bool, dialect: Dialect) -> String {
    match dialect {
        Dialect::Legacy => {
            patch(vec![json!({"op": "Replace", "path": "active", "value": if active { "True" } else { "False" }})])
        }
        Dialect::Flagged => patch(vec![json!({"op": "replace", "path": "active", "value": active})]),
    }
}

/// `PATCH /Users/{id}` with the attributes that differ between `old` and `new` (userName, work email,
/// name.givenName, name.familyName, externalId). Legacy: one `Replace` per attribute with a path; flagged: the
/// email through its filtered path and the rest in one path-less `replace` with dotted keys. `None` when nothing
/// differs.
pub fn user_update(old: &UserModel, new: &UserModel, dialect: Dialect) -> Option<String> {
    let mut changed: Vec<(&str, &str)> = Vec::new();
    if old.user_name != new.user_name {
        changed.push(("userName", &new.user_name));
    }
    if old.email != new.email {
        changed.push((WORK_EMAIL_PATH, &new.email));
    }
    if old.given_name != new.given_name {
        changed.push(("name.givenName", &new.given_name));
    }
    if old.family_name != new.family_name {
        changed.push(("name.familyName", &new.family_name));
    }
    if old.external_id != new.external_id {
        changed.push(("externalId", &new.external_id));
    }
    if changed.is_empty() {
        return None;
    }
    Some(match dialect {
        Dialect::Legacy => {
            patch(changed.iter().map(|(path, v)| json!({"op": "Replace", "path": path, "value": v})).collect())
        }
        Dialect::Flagged => {
            let mut ops = Vec::new();
            let mut rest = serde_json::Map::new();
            for (path, v) in changed {
                if path == WORK_EMAIL_PATH {
                    ops.push(json!({"op": "replace", "path": path, "value": v}));
                } else {
                    rest.insert(path.to_owned(), json!(v));
                }
            }
            if !rest.is_empty() {
                ops.push(json!({"op": "replace", "value": Value::Object(rest)}));
            }
            patch(ops)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jane() -> UserModel {
        UserModel {
            id: "id1".into(),
            user_name: "jdoe@contoso.com".into(),
            given_name: "Jane".into(),
            family_name: "Doe".into(),
            email: "jdoe@contoso.com".into(),
            external_id: "jdoe".into(),
            active: true,
        }
    }

    fn parse(s: &str) -> Value {
        serde_json::from_str(s).unwrap_or(Value::Null)
    }

    #[test]
    fn create_body_follows_our_mapping() {
        let v = parse(&user_create(&jane(), false));
        assert_eq!(v["userName"], "jdoe@contoso.com");
        assert_eq!(v["active"], true);
        assert_eq!(v["emails"][0], json!({"primary": true, "type": "work", "value": "jdoe@contoso.com"}));
        assert_eq!(v["name"], json!({"familyName": "Doe", "givenName": "Jane"}));
        assert_eq!(v["externalId"], "jdoe");
        assert_eq!(parse(&user_create(&jane(), true))["active"], "True");
    }

    #[test]
    fn legacy_and_flagged_updates() {
        let old = jane();
        let mut new = jane();
        new.user_name = "jane.doe@contoso.com".into();
        new.email = new.user_name.clone();
        new.family_name = "Doe-Smith".into();
        let legacy = parse(&user_update(&old, &new, Dialect::Legacy).unwrap_or_default());
        assert_eq!(
            legacy["Operations"],
            json!([
                {"op": "Replace", "path": "userName", "value": "jane.doe@contoso.com"},
                {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "jane.doe@contoso.com"},
                {"op": "Replace", "path": "name.familyName", "value": "Doe-Smith"}
            ])
        );
        let flagged = parse(&user_update(&old, &new, Dialect::Flagged).unwrap_or_default());
        assert_eq!(
            flagged["Operations"],
            json!([
                {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "jane.doe@contoso.com"},
                {"op": "replace", "value": {"userName": "jane.doe@contoso.com", "name.familyName": "Doe-Smith"}}
            ])
        );
        assert!(user_update(&old, &old, Dialect::Legacy).is_none());
    }

    #[test]
    fn active_and_member_shapes() {
        assert_eq!(
            parse(&user_set_active(false, Dialect::Legacy))["Operations"][0],
            json!({"op": "Replace", "path": "active", "value": "False"})
        );
        assert_eq!(parse(&user_set_active(true, Dialect::Flagged))["Operations"][0]["value"], true);
        let ids = vec!["a".to_owned(), "b".to_owned()];
        assert_eq!(
            parse(&members_add(&ids, Dialect::Legacy))["Operations"][0],
            json!({"op": "Add", "path": "members", "value": [{"$ref": null, "value": "a"}, {"$ref": null, "value": "b"}]})
        );
        assert_eq!(
            parse(&members_remove(&ids, Dialect::Flagged))["Operations"],
            json!([{"op": "remove", "path": "members[value eq \"a\"]"}, {"op": "remove", "path": "members[value eq \"b\"]"}])
        );
        assert_eq!(parse(&members_remove(&ids, Dialect::Legacy))["Operations"][0]["op"], "Remove");
        assert_eq!(parse(&group_rename("X", Dialect::Flagged))["Operations"][0]["value"]["displayName"], "X");
        assert_eq!(parse(&group_create("G", "e"))["schemas"][1], MS_GROUP_SCHEMA);
    }
}
