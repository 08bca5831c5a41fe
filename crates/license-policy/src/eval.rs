//! Evaluation of one user against a policy: which licenses they may hold, in order of preference, and why.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::policy::{LicenseType, Policy};

/// Why a user holds the license they hold (or none); recorded with every license change in the event log and
/// shown by `GET …/licenses`. Serialised as `{"kind": "rule", "group": …, "license": …}` and so on, with the
/// SPEC's words as kinds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// A rule grants the license to a group the user belongs to.
    Rule {
        /// The rule's group (as written in the policy).
        group: String,
        /// The license the rule grants.
        license: String,
    },
    /// An operator pinned the license for this user.
    Override {
        /// The pinned license.
        license: String,
    },
    /// The policy's default license.
    Default {
        /// The default license.
        license: String,
    },
    /// The license the user prefers has no free seat; they got the next eligible one (or none).
    SeatsExhausted {
        /// The user's preferred license, which had no free seat.
        wanted: String,
        /// Why the user holds the license they got instead; `None` when they got none.
        fallback: Option<Box<Reason>>,
    },
    /// The user is inactive (`active: false`): no license, the seat is free.
    Deactivated,
    /// The user is deleted: no license, the seat is free.
    Deleted,
    /// No rule matches the user's groups and there is no default license.
    NoMatch,
}

impl Reason {
    /// The SPEC's word for this reason (`rule`, `override`, `default`, `seats_exhausted`, `deactivated`,
    /// `deleted`, `no_match`), e.g. for metrics labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            Reason::Rule { .. } => "rule",
            Reason::Override { .. } => "override",
            Reason::Default { .. } => "default",
            Reason::SeatsExhausted { .. } => "seats_exhausted",
            Reason::Deactivated => "deactivated",
            Reason::Deleted => "deleted",
            Reason::NoMatch => "no_match",
        }
    }

    /// A sentence explaining the reason to an operator, e.g. `member of group "dbt-developers" (rule →
    /// developer)`.
    pub fn detail(&self) -> String {
        match self {
            Reason::Rule { group, license } => format!("member of group \"{group}\" (rule → {license})"),
            Reason::Override { license } => format!("pinned to {license} by an operator override"),
            Reason::Default { license } => format!("default license {license}"),
            Reason::SeatsExhausted { wanted, fallback: Some(f) } => {
                format!("no free seat for {wanted}; instead: {}", f.detail())
            }
            Reason::SeatsExhausted { wanted, fallback: None } => {
                format!("no free seat for {wanted} and no other eligible license has one")
            }
            Reason::Deactivated => "user is deactivated (active: false)".to_owned(),
            Reason::Deleted => "user is deleted".to_owned(),
            Reason::NoMatch => "no rule matches the user's groups and there is no default license".to_owned(),
        }
    }

    /// Whether the change this reason explains is the user's own deactivation or deletion (never held by the
    /// mass-revocation guard).
    pub fn is_deactivation(&self) -> bool {
        matches!(self, Reason::Deactivated | Reason::Deleted)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail())
    }
}

/// One license a user is eligible for, with the reason they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// The license.
    pub license: String,
    /// Its rank in the policy.
    pub rank: i64,
    /// Why the user is eligible (`Rule`, `Default` or `Override`).
    pub reason: Reason,
}

/// What one user may hold, before seats are considered. Serialised externally tagged: `"inactive"`,
/// `{"pinned": {"pin": …, "fallback": […]}}`, `{"candidates": […]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Eligibility {
    /// The user is inactive: no license (reason `deactivated`).
    Inactive,
    /// An operator override pins the license (reason `override`). Should the pinned license have no seat for
    /// this user (pins alone exceed its limit), they fall back to `fallback`: their rule and default candidates
    /// ranked *below* the pin, so an override is also a ceiling.
    Pinned {
        /// The pinned license, with reason `Override`.
        pin: Candidate,
        /// The lower-ranked candidates to fall back to, by rank descending.
        fallback: Vec<Candidate>,
    },
    /// The licenses reachable through rules and the default, by rank descending; empty = no license
    /// (reason `no_match`).
    Candidates(Vec<Candidate>),
}

impl Eligibility {
    /// The licenses in the order allocation tries them (the pin first, if any); empty = no license.
    pub fn preferences(&self) -> Vec<Candidate> {
        match self {
            Eligibility::Inactive => Vec::new(),
            Eligibility::Pinned { pin, fallback } => std::iter::once(pin).chain(fallback).cloned().collect(),
            Eligibility::Candidates(c) => c.clone(),
        }
    }

    /// The license the user would hold if seats were unlimited, with its reason.
    pub fn wanted(&self) -> (Option<String>, Reason) {
        match self {
            Eligibility::Inactive => (None, Reason::Deactivated),
            Eligibility::Pinned { pin, .. } => (Some(pin.license.clone()), pin.reason.clone()),
            Eligibility::Candidates(c) => match c.first() {
                Some(best) => (Some(best.license.clone()), best.reason.clone()),
                None => (None, Reason::NoMatch),
            },
        }
    }
}

/// What one user may hold according to `policy`, before seats are considered.
///
/// `groups` are the `displayName`s of the user's groups (matched case-insensitively; groups no rule names are
/// ignored). An override naming a license the policy does not define is ignored (the admin API refuses to set
/// one; a policy edit can leave one behind). When several of the user's groups grant the same license, the
/// reason names the rule group that sorts first (case-insensitively, then exactly), so the reason does not
/// depend on the order of `groups`.
pub fn eligible(policy: &Policy, groups: &[String], active: bool, override_: Option<&str>) -> Eligibility {
    Compiled::new(policy).eligibility(groups, active, override_)
}

/// A policy indexed for evaluating many users: licenses in precedence order and rules by lower-cased group.
pub(crate) struct Compiled<'p> {
    /// License types by precedence: rank descending, then name (ties only exist in invalid policies). The
    /// position in this list ("pos") is the license's identity inside the allocator.
    pub(crate) licenses: Vec<&'p LicenseType>,
    by_name: HashMap<&'p str, usize>,
    /// Lower-cased group → (pos, rule group as written), for rules naming a defined license.
    rules: HashMap<String, Vec<(usize, &'p str)>>,
    default: Option<usize>,
}

impl<'p> Compiled<'p> {
    pub(crate) fn new(policy: &'p Policy) -> Self {
        let mut licenses: Vec<&LicenseType> = Vec::new();
        for t in &policy.license_types {
            // An invalid policy may define a name twice; the first definition wins.
            if !licenses.iter().any(|l| l.name == t.name) {
                licenses.push(t);
            }
        }
        licenses.sort_by(|a, b| b.rank.cmp(&a.rank).then_with(|| a.name.cmp(&b.name)));
        let by_name: HashMap<&str, usize> = licenses.iter().enumerate().map(|(i, l)| (l.name.as_str(), i)).collect();
        let mut rules: HashMap<String, Vec<(usize, &str)>> = HashMap::new();
        for r in &policy.rules {
            if let Some(&pos) = by_name.get(r.license.as_str()) {
                rules.entry(r.group.to_lowercase()).or_default().push((pos, r.group.as_str()));
            }
        }
        let default = policy.default_license.as_deref().and_then(|d| by_name.get(d).copied());
        Compiled { licenses, by_name, rules, default }
    }

    pub(crate) fn pos(&self, license: &str) -> Option<usize> {
        self.by_name.get(license).copied()
    }

    fn candidate(&self, pos: usize, reason: Reason) -> (usize, Candidate) {
        let l = self.licenses[pos];
        (pos, Candidate { license: l.name.clone(), rank: l.rank, reason })
    }

    /// The user's preferences as (pos, candidate), strictly increasing in pos (= decreasing in rank); `None` for
    /// an inactive user.
    pub(crate) fn preferences(
        &self,
        groups: &[String],
        active: bool,
        override_: Option<&str>,
    ) -> Option<Vec<(usize, Candidate)>> {
        if !active {
            return None;
        }
        // pos → the rule group that names it in the reason: the smallest (lower-cased, as written).
        let mut granted: BTreeMap<usize, (String, &str)> = BTreeMap::new();
        for g in groups {
            let lower = g.to_lowercase();
            if let Some(rs) = self.rules.get(&lower) {
                for &(pos, rule_group) in rs {
                    let key = (lower.clone(), rule_group);
                    match granted.get(&pos) {
                        Some(existing) if (&existing.0, existing.1) <= (&key.0, key.1) => {}
                        _ => {
                            granted.insert(pos, key);
                        }
                    }
                }
            }
        }
        let mut out: Vec<(usize, Candidate)> = granted
            .into_iter()
            .map(|(pos, (_, group))| {
                self.candidate(pos, Reason::Rule { group: group.to_owned(), license: self.licenses[pos].name.clone() })
            })
            .collect();
        if let Some(d) = self.default
            && !out.iter().any(|(p, _)| *p == d)
        {
            out.push(self.candidate(d, Reason::Default { license: self.licenses[d].name.clone() }));
            out.sort_by_key(|(p, _)| *p);
        }
        if let Some(pin) = override_.and_then(|o| self.pos(o)) {
            let mut prefs = vec![self.candidate(pin, Reason::Override { license: self.licenses[pin].name.clone() })];
            prefs.extend(out.into_iter().filter(|(p, _)| *p > pin));
            return Some(prefs);
        }
        Some(out)
    }

    pub(crate) fn eligibility(&self, groups: &[String], active: bool, override_: Option<&str>) -> Eligibility {
        let Some(prefs) = self.preferences(groups, active, override_) else {
            return Eligibility::Inactive;
        };
        let pinned = override_.and_then(|o| self.pos(o)).is_some();
        let mut candidates = prefs.into_iter().map(|(_, c)| c);
        if pinned && let Some(pin) = candidates.next() {
            return Eligibility::Pinned { pin, fallback: candidates.collect() };
        }
        Eligibility::Candidates(candidates.collect())
    }
}
