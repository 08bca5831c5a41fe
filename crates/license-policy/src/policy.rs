//! The license policy document (SPEC.md, "License policy document"): its types, parsing from JSON and
//! validation.
//!
//! Parsing works from a [`serde_json::Value`] rather than a derived `Deserialize` so that a bad document gets
//! every problem reported at once, in words an operator understands (`license_types[0].seats must be a
//! non-negative integer or null, got -1`), instead of serde's first type error.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// The most license types a policy may define; keeps evaluation cheap and documents a sane upper bound.
pub const MAX_LICENSE_TYPES: usize = 100;
/// The most rules a policy may define; keeps evaluation cheap and documents a sane upper bound.
pub const MAX_RULES: usize = 1000;
/// The longest license or group name (in characters) a policy may use; Entra display names are at most 256.
pub const MAX_NAME_CHARS: usize = 256;

/// An account's license policy: which license types exist, which groups grant them, and the default.
///
/// `Deserialize` checks the document's shape only (fields, types, non-negative seats); use [`parse_policy`]
/// or [`Policy::validate`] to also check its consistency before accepting it from an operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// The license types that exist, each with its precedence and seat limit.
    pub license_types: Vec<LicenseType>,
    /// Group → license rules; a user in the group is eligible for the license.
    pub rules: Vec<Rule>,
    /// The license every active user is eligible for regardless of groups; `None` = no default.
    pub default_license: Option<String>,
}

/// One license type: a name, its precedence and how many seats the account owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LicenseType {
    /// The license's name, as it appears in rules, overrides, events and the SCIM `licenseType` attribute.
    pub name: String,
    /// Precedence: a user eligible for several licenses gets the highest-ranked one with a free seat.
    pub rank: i64,
    /// How many users may hold the license at once; `None` = unlimited.
    pub seats: Option<u64>,
}

/// One rule: members of `group` (matched case-insensitively against a group's `displayName`) are eligible
/// for `license`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rule {
    /// The group's `displayName`, matched case-insensitively.
    pub group: String,
    /// The license the group grants; must name one of the policy's license types exactly.
    pub license: String,
}

/// One thing wrong with a policy document, phrased for the operator who sent it (the admin API answers 400
/// with these messages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyProblem {
    /// The document does not have the expected shape (wrong type, unknown or missing field).
    #[error("{path}: {message}")]
    Malformed {
        /// Where in the document, e.g. `license_types[2].rank`.
        path: String,
        /// What is wrong there.
        message: String,
    },
    /// A seat limit is negative, fractional or not a number.
    #[error("{path}: seats must be a non-negative integer or null (unlimited), got {got}")]
    InvalidSeats {
        /// Where in the document, e.g. `license_types[0].seats`.
        path: String,
        /// The offending JSON value.
        got: String,
    },
    /// More license types than [`MAX_LICENSE_TYPES`].
    #[error("too many license types: {count} (at most {max})")]
    TooManyLicenseTypes {
        /// How many the document has.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// More rules than [`MAX_RULES`].
    #[error("too many rules: {count} (at most {max})")]
    TooManyRules {
        /// How many the document has.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A license type with an empty (or all-whitespace) name.
    #[error("license_types[{index}]: the license name is empty")]
    EmptyLicenseName {
        /// Position in `license_types`.
        index: usize,
    },
    /// A license name longer than [`MAX_NAME_CHARS`].
    #[error("license_types[{index}]: the license name is longer than {max} characters")]
    LicenseNameTooLong {
        /// Position in `license_types`.
        index: usize,
        /// The limit.
        max: usize,
    },
    /// Two license types whose names are equal ignoring case.
    #[error(
        "license_types[{index}]: duplicate license name \"{name}\" (already defined at license_types[{first_index}]; \
         license names are compared case-insensitively)"
    )]
    DuplicateLicenseName {
        /// Position of the duplicate.
        index: usize,
        /// Position of the first definition.
        first_index: usize,
        /// The duplicate name as written.
        name: String,
    },
    /// Two license types with the same rank: which one wins would be ambiguous.
    #[error(
        "license_types[{index}]: duplicate rank {rank}: \"{name}\" and \"{other}\" both have it, so their precedence \
         is ambiguous; ranks must be unique"
    )]
    DuplicateRank {
        /// Position of the second license with that rank.
        index: usize,
        /// The shared rank.
        rank: i64,
        /// The second license's name.
        name: String,
        /// The first license's name.
        other: String,
    },
    /// A rule with an empty (or all-whitespace) group name.
    #[error("rules[{index}]: the group name is empty")]
    EmptyGroupName {
        /// Position in `rules`.
        index: usize,
    },
    /// A group name longer than [`MAX_NAME_CHARS`].
    #[error("rules[{index}]: the group name is longer than {max} characters")]
    GroupNameTooLong {
        /// Position in `rules`.
        index: usize,
        /// The limit.
        max: usize,
    },
    /// A rule that grants a license the policy does not define.
    #[error("rules[{index}]: the rule for group \"{group}\" names unknown license \"{license}\"{}", hint(.suggestion))]
    UnknownRuleLicense {
        /// Position in `rules`.
        index: usize,
        /// The rule's group.
        group: String,
        /// The unknown license name.
        license: String,
        /// A defined license whose name differs only in case, if any.
        suggestion: Option<String>,
    },
    /// The same group → license rule twice (groups compared case-insensitively).
    #[error(
        "rules[{index}]: duplicate rule: group \"{group}\" → license \"{license}\" is already at rules[{first_index}] \
         (group names are compared case-insensitively)"
    )]
    DuplicateRule {
        /// Position of the duplicate.
        index: usize,
        /// Position of the first occurrence.
        first_index: usize,
        /// The duplicate's group as written.
        group: String,
        /// The license.
        license: String,
    },
    /// A default license the policy does not define.
    #[error("default_license names unknown license \"{license}\"{}", hint(.suggestion))]
    UnknownDefaultLicense {
        /// The unknown license name.
        license: String,
        /// A defined license whose name differs only in case, if any.
        suggestion: Option<String>,
    },
}

fn hint(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!(" (did you mean \"{s}\"? license names in rules must match exactly)"),
        None => String::new(),
    }
}

/// Every problem found in a policy document; an invalid policy is rejected as a whole and changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid license policy: {}", Joined(.problems))]
pub struct PolicyError {
    /// The problems, in document order (shape problems first, then consistency problems).
    pub problems: Vec<PolicyProblem>,
}

struct Joined<'a>(&'a [PolicyProblem]);

impl fmt::Display for Joined<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl PolicyError {
    /// The problems as human-readable messages, for the admin API's 400 body.
    pub fn messages(&self) -> Vec<String> {
        self.problems.iter().map(ToString::to_string).collect()
    }
}

impl Policy {
    /// The empty policy: no license types, no rules, no default (licensing disabled; nobody holds a license).
    pub fn empty() -> Self {
        Policy { license_types: Vec::new(), rules: Vec::new(), default_license: None }
    }

    /// Whether the policy defines any license at all (an empty policy disables licensing).
    pub fn is_enabled(&self) -> bool {
        !self.license_types.is_empty()
    }

    /// Whether a rule names a group of this `displayName` (case-insensitively, as evaluation
    /// matches): renaming or deleting any other group cannot change anyone's license.
    pub fn names_group(&self, display_name: &str) -> bool {
        let lower = display_name.to_lowercase();
        self.rules.iter().any(|r| r.group.to_lowercase() == lower)
    }

    /// The license type with exactly this name, if the policy defines it.
    pub fn license(&self, name: &str) -> Option<&LicenseType> {
        self.license_types.iter().find(|t| t.name == name)
    }

    /// The rank of the license with exactly this name, if the policy defines it.
    pub fn rank_of(&self, name: &str) -> Option<i64> {
        self.license(name).map(|t| t.rank)
    }

    /// Checks the policy's consistency and reports every problem found (see [`PolicyProblem`]).
    pub fn validate(&self) -> Result<(), PolicyError> {
        let problems = check(&Draft::from_policy(self));
        if problems.is_empty() { Ok(()) } else { Err(PolicyError { problems }) }
    }

    /// Reads a policy document's shape (fields, types, non-negative seats) without checking its consistency;
    /// missing top-level fields default to empty (`{}` is the empty policy).
    pub fn from_value(value: &Value) -> Result<Policy, PolicyError> {
        let (draft, problems) = Draft::parse(value);
        if problems.is_empty() { Ok(draft.into_policy()) } else { Err(PolicyError { problems }) }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy::empty()
    }
}

impl<'de> Deserialize<'de> for Policy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Policy::from_value(&value).map_err(serde::de::Error::custom)
    }
}

/// Parses and validates a policy document as an operator sent it; `Err` lists every problem found.
pub fn parse_policy(value: &Value) -> Result<Policy, PolicyError> {
    let (draft, mut problems) = Draft::parse(value);
    problems.extend(check(&draft));
    if problems.is_empty() { Ok(draft.into_policy()) } else { Err(PolicyError { problems }) }
}

/// A policy parsed leniently: fields that could not be read are `None`, so consistency checks can still run on
/// the rest and the operator hears about every problem at once.
struct Draft {
    types: Vec<DraftType>,
    rules: Vec<DraftRule>,
    default_license: Option<String>,
}

struct DraftType {
    name: Option<String>,
    rank: Option<i64>,
    seats: Option<u64>,
}

struct DraftRule {
    group: Option<String>,
    license: Option<String>,
}

const TOP_FIELDS: &[&str] = &["license_types", "rules", "default_license"];
const TYPE_FIELDS: &[&str] = &["name", "rank", "seats"];
const RULE_FIELDS: &[&str] = &["group", "license"];

fn show(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 { format!("{}…", s.chars().take(60).collect::<String>()) } else { s }
}

fn malformed(path: impl Into<String>, message: impl Into<String>) -> PolicyProblem {
    PolicyProblem::Malformed { path: path.into(), message: message.into() }
}

/// Reports fields not in `allowed` and returns the object, or reports that `v` is not an object.
fn object<'v>(
    v: &'v Value,
    path: &str,
    allowed: &[&str],
    problems: &mut Vec<PolicyProblem>,
) -> Option<&'v Map<String, Value>> {
    let Some(obj) = v.as_object() else {
        problems.push(malformed(path, format!("expected an object, got {}", show(v))));
        return None;
    };
    for key in obj.keys() {
        if !allowed.contains(&key.as_str()) {
            problems.push(malformed(
                path,
                format!(
                    "unknown field \"{key}\" (expected {})",
                    allowed.iter().map(|a| format!("\"{a}\"")).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    Some(obj)
}

fn string_field(
    obj: &Map<String, Value>,
    field: &str,
    path: &str,
    problems: &mut Vec<PolicyProblem>,
) -> Option<String> {
    match obj.get(field) {
        None => {
            problems.push(malformed(path, format!("missing field \"{field}\"")));
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            problems.push(malformed(format!("{path}.{field}"), format!("expected a string, got {}", show(other))));
            None
        }
    }
}

impl Draft {
    fn parse(value: &Value) -> (Draft, Vec<PolicyProblem>) {
        let mut problems = Vec::new();
        let mut draft = Draft { types: Vec::new(), rules: Vec::new(), default_license: None };
        let Some(top) = object(value, "policy", TOP_FIELDS, &mut problems) else {
            return (draft, problems);
        };
        match top.get("license_types") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    draft.types.push(Self::parse_type(item, &format!("license_types[{i}]"), &mut problems));
                }
            }
            Some(other) => problems.push(malformed("license_types", format!("expected an array, got {}", show(other)))),
        }
        match top.get("rules") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    draft.rules.push(Self::parse_rule(item, &format!("rules[{i}]"), &mut problems));
                }
            }
            Some(other) => problems.push(malformed("rules", format!("expected an array, got {}", show(other)))),
        }
        match top.get("default_license") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => draft.default_license = Some(s.clone()),
            Some(other) => problems
                .push(malformed("default_license", format!("expected a license name or null, got {}", show(other)))),
        }
        (draft, problems)
    }

    fn parse_type(item: &Value, path: &str, problems: &mut Vec<PolicyProblem>) -> DraftType {
        let mut t = DraftType { name: None, rank: None, seats: None };
        let Some(obj) = object(item, path, TYPE_FIELDS, problems) else {
            return t;
        };
        t.name = string_field(obj, "name", path, problems);
        match obj.get("rank") {
            None => problems.push(malformed(path, "missing field \"rank\"")),
            Some(v) => match v.as_i64() {
                Some(r) => t.rank = Some(r),
                None => {
                    problems.push(malformed(format!("{path}.rank"), format!("expected an integer, got {}", show(v))))
                }
            },
        }
        match obj.get("seats") {
            None => problems.push(malformed(path, "missing field \"seats\" (use null for unlimited)")),
            Some(Value::Null) => {}
            Some(v) => match v.as_u64() {
                Some(s) => t.seats = Some(s),
                None => problems.push(PolicyProblem::InvalidSeats { path: format!("{path}.seats"), got: show(v) }),
            },
        }
        t
    }

    fn parse_rule(item: &Value, path: &str, problems: &mut Vec<PolicyProblem>) -> DraftRule {
        let mut r = DraftRule { group: None, license: None };
        let Some(obj) = object(item, path, RULE_FIELDS, problems) else {
            return r;
        };
        r.group = string_field(obj, "group", path, problems);
        r.license = string_field(obj, "license", path, problems);
        r
    }

    fn from_policy(p: &Policy) -> Draft {
        Draft {
            types: p
                .license_types
                .iter()
                .map(|t| DraftType { name: Some(t.name.clone()), rank: Some(t.rank), seats: t.seats })
                .collect(),
            rules: p
                .rules
                .iter()
                .map(|r| DraftRule { group: Some(r.group.clone()), license: Some(r.license.clone()) })
                .collect(),
            default_license: p.default_license.clone(),
        }
    }

    /// Only called when parsing reported no problem, so every field is present.
    fn into_policy(self) -> Policy {
        Policy {
            license_types: self
                .types
                .into_iter()
                .map(|t| LicenseType {
                    name: t.name.unwrap_or_default(),
                    rank: t.rank.unwrap_or_default(),
                    seats: t.seats,
                })
                .collect(),
            rules: self
                .rules
                .into_iter()
                .map(|r| Rule { group: r.group.unwrap_or_default(), license: r.license.unwrap_or_default() })
                .collect(),
            default_license: self.default_license,
        }
    }
}

/// The consistency checks; fields that could not be parsed are skipped.
fn check(d: &Draft) -> Vec<PolicyProblem> {
    let mut problems = Vec::new();
    if d.types.len() > MAX_LICENSE_TYPES {
        problems.push(PolicyProblem::TooManyLicenseTypes { count: d.types.len(), max: MAX_LICENSE_TYPES });
    }
    if d.rules.len() > MAX_RULES {
        problems.push(PolicyProblem::TooManyRules { count: d.rules.len(), max: MAX_RULES });
    }

    let mut by_lower: HashMap<String, usize> = HashMap::new();
    let mut by_rank: HashMap<i64, &str> = HashMap::new();
    for (index, t) in d.types.iter().enumerate() {
        if let Some(name) = &t.name {
            if name.trim().is_empty() {
                problems.push(PolicyProblem::EmptyLicenseName { index });
            } else if name.chars().count() > MAX_NAME_CHARS {
                problems.push(PolicyProblem::LicenseNameTooLong { index, max: MAX_NAME_CHARS });
            }
            match by_lower.get(&name.to_lowercase()) {
                Some(&first_index) => {
                    problems.push(PolicyProblem::DuplicateLicenseName { index, first_index, name: name.clone() })
                }
                None => {
                    by_lower.insert(name.to_lowercase(), index);
                }
            }
        }
        if let Some(rank) = t.rank {
            let name = t.name.as_deref().unwrap_or("?");
            match by_rank.get(&rank) {
                Some(other) => problems.push(PolicyProblem::DuplicateRank {
                    index,
                    rank,
                    name: name.to_owned(),
                    other: (*other).to_owned(),
                }),
                None => {
                    by_rank.insert(rank, name);
                }
            }
        }
    }
    let defined: Vec<&str> = d.types.iter().filter_map(|t| t.name.as_deref()).collect();
    let suggestion = |license: &str| -> Option<String> {
        let lower = license.to_lowercase();
        defined.iter().find(|n| n.to_lowercase() == lower).map(|n| (*n).to_owned())
    };

    let mut seen_rules: HashMap<(String, &str), usize> = HashMap::new();
    for (index, r) in d.rules.iter().enumerate() {
        if let Some(group) = &r.group {
            if group.trim().is_empty() {
                problems.push(PolicyProblem::EmptyGroupName { index });
            } else if group.chars().count() > MAX_NAME_CHARS {
                problems.push(PolicyProblem::GroupNameTooLong { index, max: MAX_NAME_CHARS });
            }
        }
        if let Some(license) = &r.license
            && !defined.contains(&license.as_str())
        {
            problems.push(PolicyProblem::UnknownRuleLicense {
                index,
                group: r.group.clone().unwrap_or_default(),
                license: license.clone(),
                suggestion: suggestion(license),
            });
        }
        if let (Some(group), Some(license)) = (&r.group, &r.license) {
            match seen_rules.get(&(group.to_lowercase(), license.as_str())) {
                Some(&first_index) => problems.push(PolicyProblem::DuplicateRule {
                    index,
                    first_index,
                    group: group.clone(),
                    license: license.clone(),
                }),
                None => {
                    seen_rules.insert((group.to_lowercase(), license.as_str()), index);
                }
            }
        }
    }
    if let Some(license) = &d.default_license
        && !defined.contains(&license.as_str())
    {
        problems
            .push(PolicyProblem::UnknownDefaultLicense { license: license.clone(), suggestion: suggestion(license) });
    }
    problems
}
