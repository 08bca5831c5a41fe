//! The simulator's own model of what it sent (what Entra believes the target holds), and the comparison of that
//! model with what Roster returns.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use serde::Serialize;
use serde_json::Value;

/// A user as the simulator provisioned it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserModel {
    /// Roster's id (from the POST response).
    pub id: String,
    /// `userName` (the user principal name).
    pub user_name: String,
    /// `name.givenName`.
    pub given_name: String,
    /// `name.familyName`.
    pub family_name: String,
    /// The work email (`emails[type eq "work"].value`, equal to the UPN in our mapping).
    pub email: String,
    /// `externalId` (the mail nickname).
    pub external_id: String,
    /// `active`.
    pub active: bool,
}

/// A group as the simulator provisioned it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupModel {
    /// Roster's id.
    pub id: String,
    /// `displayName`.
    pub display_name: String,
    /// `externalId` (the Entra object id).
    pub external_id: String,
    /// Roster ids of the member users.
    pub members: BTreeSet<String>,
}

/// Everything the simulator sent to one account, keyed by the simulator's own sequence numbers so that the choice
/// of work stays deterministic whatever ids the server hands out.
#[derive(Clone, Debug, Default)]
pub struct AccountModel {
    /// Live users by sequence number.
    pub users: BTreeMap<u64, UserModel>,
    /// Groups by sequence number.
    pub groups: BTreeMap<u64, GroupModel>,
}

impl AccountModel {
    /// Removes a deleted user, and its memberships (Roster drops the memberships of a deleted user).
    pub fn delete_user(&mut self, seq: u64) {
        if let Some(u) = self.users.remove(&seq) {
            for g in self.groups.values_mut() {
                g.members.remove(&u.id);
            }
        }
    }

    /// The number of memberships across all groups.
    pub fn memberships(&self) -> usize {
        self.groups.values().map(|g| g.members.len()).sum()
    }
}

/// A user as read back from Roster (only the attributes the simulator checks).
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedUser {
    /// `id`.
    pub id: String,
    /// `userName`.
    pub user_name: Option<String>,
    /// `name.givenName`.
    pub given_name: Option<String>,
    /// `name.familyName`.
    pub family_name: Option<String>,
    /// `emails` as (value, type, primary) triples.
    pub emails: Vec<(Option<String>, Option<String>, Value)>,
    /// `externalId`.
    pub external_id: Option<String>,
    /// `active`, as JSON (so a string `"True"` coming back is caught).
    pub active: Value,
}

impl ObservedUser {
    /// Extracts the checked attributes from a SCIM User resource.
    pub fn from_json(v: &Value) -> Self {
        let s = |x: &Value| x.as_str().map(str::to_owned);
        let emails = v["emails"]
            .as_array()
            .map(|a| a.iter().map(|e| (s(&e["value"]), s(&e["type"]), e["primary"].clone())).collect())
            .unwrap_or_default();
        ObservedUser {
            id: s(&v["id"]).unwrap_or_default(),
            user_name: s(&v["userName"]),
            given_name: s(&v["name"]["givenName"]),
            family_name: s(&v["name"]["familyName"]),
            emails,
            external_id: s(&v["externalId"]),
            active: v["active"].clone(),
        }
    }
}

/// A group as read back from Roster.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedGroup {
    /// `id`.
    pub id: String,
    /// `displayName`.
    pub display_name: Option<String>,
    /// `externalId`.
    pub external_id: Option<String>,
    /// `members[].value`; `None` when the member list was not read.
    pub members: Option<Vec<String>>,
}

impl ObservedGroup {
    /// Extracts the checked attributes from a SCIM Group resource (members only if the resource carries them).
    pub fn from_json(v: &Value) -> Self {
        let s = |x: &Value| x.as_str().map(str::to_owned);
        let members = match &v["members"] {
            Value::Array(a) => Some(a.iter().map(|m| s(&m["value"]).unwrap_or_default()).collect()),
            _ => None,
        };
        ObservedGroup {
            id: s(&v["id"]).unwrap_or_default(),
            display_name: s(&v["displayName"]),
            external_id: s(&v["externalId"]),
            members,
        }
    }
}

/// One difference between the model and the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    /// Account index (0-based, in creation order).
    pub account: usize,
    /// `User` or `Group`.
    pub resource: &'static str,
    /// Roster id of the resource.
    pub id: String,
    /// What differs (`missing`, `unexpected`, `userName`, `members`, …).
    pub field: String,
    /// What the model says.
    pub expected: String,
    /// What the server returned.
    pub actual: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "account {} {} {}: {} expected {} got {}",
            self.account, self.resource, self.id, self.field, self.expected, self.actual
        )
    }
}

fn opt(s: &Option<String>) -> String {
    match s {
        Some(s) => format!("{s:?}"),
        None => "<absent>".to_owned(),
    }
}

/// Compares the model of one account with what the server returned; an empty result means they agree. Groups
/// whose `members` is `None` are compared without members.
pub fn compare(
    account: usize,
    model: &AccountModel,
    users: &[ObservedUser],
    groups: &[ObservedGroup],
) -> Vec<Mismatch> {
    let mut out = Vec::new();
    let mut push = |resource: &'static str, id: &str, field: &str, expected: String, actual: String| {
        out.push(Mismatch { account, resource, id: id.to_owned(), field: field.to_owned(), expected, actual });
    };

    let mut seen: HashMap<&str, &ObservedUser> = HashMap::with_capacity(users.len());
    for u in users {
        if seen.insert(u.id.as_str(), u).is_some() {
            push("User", &u.id, "duplicate", "listed once".into(), "listed twice".into());
        }
    }
    let expected_ids: BTreeSet<&str> = model.users.values().map(|u| u.id.as_str()).collect();
    for m in model.users.values() {
        let Some(o) = seen.get(m.id.as_str()) else {
            push("User", &m.id, "missing", format!("user {:?}", m.user_name), "not listed".into());
            continue;
        };
        let checks: [(&str, &String, &Option<String>); 4] = [
            ("userName", &m.user_name, &o.user_name),
            ("name.givenName", &m.given_name, &o.given_name),
            ("name.familyName", &m.family_name, &o.family_name),
            ("externalId", &m.external_id, &o.external_id),
        ];
        for (field, want, got) in checks {
            if got.as_ref() != Some(want) {
                push("User", &m.id, field, format!("{want:?}"), opt(got));
            }
        }
        let want_emails = vec![(Some(m.email.clone()), Some("work".to_owned()), Value::Bool(true))];
        if o.emails != want_emails {
            let show = |e: &[(Option<String>, Option<String>, Value)]| {
                e.iter().map(|(v, t, p)| format!("{}/{}/{}", opt(v), opt(t), p)).collect::<Vec<_>>().join(", ")
            };
            push("User", &m.id, "emails", format!("[{}]", show(&want_emails)), format!("[{}]", show(&o.emails)));
        }
        if o.active != Value::Bool(m.active) {
            push("User", &m.id, "active", m.active.to_string(), o.active.to_string());
        }
    }
    for u in users {
        if !expected_ids.contains(u.id.as_str()) {
            push("User", &u.id, "unexpected", "absent (never created or deleted)".into(), opt(&u.user_name));
        }
    }

    let observed_groups: HashMap<&str, &ObservedGroup> = groups.iter().map(|g| (g.id.as_str(), g)).collect();
    let expected_groups: BTreeSet<&str> = model.groups.values().map(|g| g.id.as_str()).collect();
    for m in model.groups.values() {
        let Some(o) = observed_groups.get(m.id.as_str()) else {
            push("Group", &m.id, "missing", format!("group {:?}", m.display_name), "not listed".into());
            continue;
        };
        if o.display_name.as_ref() != Some(&m.display_name) {
            push("Group", &m.id, "displayName", format!("{:?}", m.display_name), opt(&o.display_name));
        }
        if o.external_id.as_ref() != Some(&m.external_id) {
            push("Group", &m.id, "externalId", format!("{:?}", m.external_id), opt(&o.external_id));
        }
        if let Some(members) = &o.members {
            let got: BTreeSet<&str> = members.iter().map(String::as_str).collect();
            let want: BTreeSet<&str> = m.members.iter().map(String::as_str).collect();
            if got != want || got.len() != members.len() {
                let missing: Vec<&str> = want.difference(&got).copied().take(5).collect();
                let extra: Vec<&str> = got.difference(&want).copied().take(5).collect();
                push(
                    "Group",
                    &m.id,
                    "members",
                    format!("{} members", want.len()),
                    format!(
                        "{} members ({} listed); missing {} e.g. {:?}; unexpected {} e.g. {:?}",
                        got.len(),
                        members.len(),
                        want.difference(&got).count(),
                        missing,
                        got.difference(&want).count(),
                        extra
                    ),
                );
            }
        }
    }
    for g in groups {
        if !expected_groups.contains(g.id.as_str()) {
            push("Group", &g.id, "unexpected", "absent".into(), opt(&g.display_name));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(id: &str, name: &str) -> UserModel {
        UserModel {
            id: id.into(),
            user_name: format!("{name}@contoso.com"),
            given_name: "Jane".into(),
            family_name: "Doe".into(),
            email: format!("{name}@contoso.com"),
            external_id: name.into(),
            active: true,
        }
    }

    fn user_json(u: &UserModel) -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "id": u.id, "userName": u.user_name, "externalId": u.external_id, "active": u.active,
            "name": {"givenName": u.given_name, "familyName": u.family_name, "formatted": "ignored"},
            "emails": [{"value": u.email, "type": "work", "primary": true}],
            "meta": {"resourceType": "User"}
        })
    }

    fn sample() -> AccountModel {
        let mut m = AccountModel::default();
        m.users.insert(0, user("u0", "jdoe"));
        m.users.insert(1, user("u1", "asmith"));
        m.users.insert(2, user("u2", "bjones"));
        m.groups.insert(
            0,
            GroupModel {
                id: "g0".into(),
                display_name: "Sales Team".into(),
                external_id: "x0".into(),
                members: ["u0".to_owned(), "u1".to_owned()].into_iter().collect(),
            },
        );
        m
    }

    fn observed(m: &AccountModel) -> (Vec<ObservedUser>, Vec<ObservedGroup>) {
        let users = m.users.values().map(|u| ObservedUser::from_json(&user_json(u))).collect();
        let groups = m
            .groups
            .values()
            .map(|g| {
                ObservedGroup::from_json(&json!({
                    "id": g.id, "displayName": g.display_name, "externalId": g.external_id,
                    "members": g.members.iter().map(|id| json!({"value": id, "$ref": "x", "display": "d"})).collect::<Vec<_>>()
                }))
            })
            .collect();
        (users, groups)
    }

    #[test]
    fn identical_state_has_no_mismatch() {
        let m = sample();
        let (u, g) = observed(&m);
        assert_eq!(compare(0, &m, &u, &g), vec![]);
    }

    #[test]
    fn attribute_differences_are_detected() {
        let m = sample();
        let (mut u, g) = observed(&m);
        u[0].family_name = Some("Other".into());
        u[1].active = json!("True");
        u[2].emails[0].2 = json!(false);
        u[2].user_name = None;
        let d = compare(3, &m, &u, &g);
        let fields: Vec<&str> = d.iter().map(|x| x.field.as_str()).collect();
        assert_eq!(fields, vec!["name.familyName", "active", "userName", "emails"]);
        assert!(d.iter().all(|x| x.account == 3 && x.resource == "User"));
        assert_eq!(d[0].expected, "\"Doe\"");
        assert_eq!(d[0].actual, "\"Other\"");
        assert_eq!(d[2].actual, "<absent>");
        assert!(d[0].to_string().contains("name.familyName expected \"Doe\" got \"Other\""));
    }

    #[test]
    fn missing_and_unexpected_resources_are_detected() {
        let m = sample();
        let (mut u, mut g) = observed(&m);
        u.remove(1);
        u.push(ObservedUser::from_json(&json!({"id": "zombie", "userName": "ghost"})));
        g.push(ObservedGroup::from_json(&json!({"id": "g9", "displayName": "Extra"})));
        let d = compare(0, &m, &u, &g);
        let fields: Vec<(&str, &str)> = d.iter().map(|x| (x.id.as_str(), x.field.as_str())).collect();
        assert_eq!(fields, vec![("u1", "missing"), ("zombie", "unexpected"), ("g9", "unexpected")]);
    }

    #[test]
    fn member_set_differences_are_detected() {
        let m = sample();
        let (u, mut g) = observed(&m);
        g[0].members = Some(vec!["u0".into(), "u2".into()]);
        let d = compare(0, &m, &u, &g);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].field, "members");
        assert!(d[0].actual.contains("missing 1"), "{}", d[0].actual);
        assert!(d[0].actual.contains("unexpected 1"), "{}", d[0].actual);
        // A duplicated member is a mismatch too.
        g[0].members = Some(vec!["u0".into(), "u1".into(), "u1".into()]);
        assert_eq!(compare(0, &m, &u, &g).len(), 1);
        // Without members read, only the group attributes are compared.
        g[0].members = None;
        g[0].display_name = Some("Renamed".into());
        let d = compare(0, &m, &u, &g);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].field, "displayName");
    }

    #[test]
    fn deleting_a_user_drops_its_memberships() {
        let mut m = sample();
        assert_eq!(m.memberships(), 2);
        m.delete_user(1);
        assert!(!m.users.contains_key(&1));
        assert_eq!(m.memberships(), 1);
        assert!(!m.groups[&0].members.contains("u1"));
        m.delete_user(42);
        assert_eq!(m.users.len(), 2);
    }
}
