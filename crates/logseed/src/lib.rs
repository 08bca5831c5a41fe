//! Entra-shaped event logs written without a server, to measure `roster replay` at a million events.
//!
//! Driving the ingress to a million events takes longer than a benchmark run may (the split
//! deployment writes about a thousand a second on the development machine), so this crate writes
//! the events the ingress would have written for the same Entra traffic: the request bodies come
//! from the simulator's Entra shapes ([`roster_loadgen::bodies`]) and go through the ingress's own
//! normalisation, so the projector sees exactly what it would see in production. Each account's
//! script is an initial cycle (users, empty groups, member adds in batches, a license policy and
//! its grants) followed by incremental cycles for as long as events are asked for; the script
//! keeps a model of the state it produced, so the replayed read model can be checked against it.

use std::collections::BTreeSet;

use roster_events::{Member, Payload, ResourceType};
use roster_loadgen::bodies::{self, Dialect};
use roster_loadgen::model::UserModel;
use roster_loadgen::prng::Rng;
use roster_scim::ScimError;
use roster_scim::schema::ResourceKind;
use serde::Serialize;
use serde_json::{Value, json};

/// The license the seeded policy grants to the first group's members.
pub const LICENSE: &str = "developer";

/// The shape of the generated traffic, per account.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Users created in the initial cycle.
    pub users: usize,
    /// Groups created in the initial cycle.
    pub groups: usize,
    /// Groups each user joins in the initial cycle.
    pub memberships_per_user: usize,
    /// Members per member-add PATCH in the initial cycle.
    pub member_batch: usize,
}

/// One change as the ingress would append it (the envelope's ids and times are added by the writer).
#[derive(Debug, Clone)]
pub struct Step {
    /// What the change is about.
    pub resource_type: ResourceType,
    /// The resource's id.
    pub resource_id: String,
    /// The change.
    pub payload: Payload,
}

/// Why a script could not produce a step: a body the ingress itself would reject (a bug here).
#[derive(Debug, thiserror::Error)]
#[error("generated {what} is not what the ingress accepts: {source}")]
pub struct SeedError {
    what: &'static str,
    #[source]
    source: ScimError,
}

/// What one account holds after its steps so far, as the projector must have decided them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Expected {
    /// Users that exist.
    pub users: usize,
    /// Users that exist and are active.
    pub active_users: usize,
    /// Groups that exist.
    pub groups: usize,
    /// (group, user) memberships.
    pub memberships: usize,
    /// Users that exist and hold [`LICENSE`].
    pub licensed: usize,
}

impl std::ops::Add for Expected {
    type Output = Expected;
    fn add(self, o: Expected) -> Expected {
        Expected {
            users: self.users + o.users,
            active_users: self.active_users + o.active_users,
            groups: self.groups + o.groups,
            memberships: self.memberships + o.memberships,
            licensed: self.licensed + o.licensed,
        }
    }
}

#[derive(Debug, Clone)]
struct User {
    model: UserModel,
    alive: bool,
    licensed: bool,
}

#[derive(Debug, Clone)]
struct Group {
    id: String,
    display_name: String,
    external_id: String,
    members: BTreeSet<usize>,
    /// Members the initial cycle adds, in order.
    planned: Vec<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Users(usize),
    Groups(usize),
    Members { group: usize, offset: usize },
    Policy,
    Licenses(usize),
    Incremental,
}

/// One account's traffic: an initial cycle, then incremental cycles without end.
#[derive(Debug, Clone)]
pub struct AccountScript {
    rng: Rng,
    shape: Shape,
    users: Vec<User>,
    groups: Vec<Group>,
    phase: Phase,
    renames: usize,
    /// Resource ids minted so far: the clock of the time-ordered ids the ingress would assign.
    minted: u64,
}

impl AccountScript {
    /// The script of account number `index` (ids and names are unique across accounts and seeds).
    pub fn new(seed: u64, index: u64, shape: Shape) -> Self {
        let mut rng = Rng::derive(seed, index);
        let groups = (0..shape.groups)
            .map(|g| Group {
                id: resource_id(&mut rng, g as u64),
                display_name: format!("seed-{index}-group-{g}"),
                external_id: uuid_from(&mut rng),
                members: BTreeSet::new(),
                planned: Vec::new(),
            })
            .collect();
        let minted = shape.groups as u64;
        let mut script = Self { rng, shape, users: Vec::new(), groups, phase: Phase::Users(0), renames: 0, minted };
        for seq in 0..shape.users {
            let u = script.new_user(index, seq);
            script.users.push(u);
        }
        if !script.groups.is_empty() {
            for u in 0..shape.users {
                let mut picked = BTreeSet::new();
                while picked.len() < shape.memberships_per_user.min(shape.groups) {
                    picked.insert(script.rng.below(shape.groups));
                }
                for g in picked {
                    script.groups[g].planned.push(u);
                }
            }
        }
        script
    }

    fn new_user(&mut self, index: u64, seq: usize) -> User {
        let nick = format!("s{index}u{seq}r{}", self.rng.below(1_000_000));
        let user_name = format!("{nick}@seed.example.com");
        self.minted += 1;
        User {
            model: UserModel {
                id: resource_id(&mut self.rng, self.minted),
                user_name: user_name.clone(),
                given_name: format!("Given{seq}"),
                family_name: format!("Family{seq}"),
                email: user_name,
                external_id: nick,
                active: true,
            },
            alive: true,
            licensed: false,
        }
    }

    /// The state the steps so far leave behind.
    pub fn expected(&self) -> Expected {
        let created = match self.phase {
            Phase::Users(n) => &self.users[..n],
            _ => &self.users[..],
        };
        Expected {
            users: created.iter().filter(|u| u.alive).count(),
            active_users: created.iter().filter(|u| u.alive && u.model.active).count(),
            groups: match self.phase {
                Phase::Users(_) => 0,
                Phase::Groups(g) => g,
                _ => self.groups.len(),
            },
            memberships: self.groups.iter().map(|g| g.members.iter().filter(|u| self.users[**u].alive).count()).sum(),
            licensed: created.iter().filter(|u| u.alive && u.licensed).count(),
        }
    }

    fn dialect(&mut self) -> Dialect {
        if self.rng.chance(0.5) { Dialect::Legacy } else { Dialect::Flagged }
    }

    /// The next change of this account.
    pub fn next_step(&mut self) -> Result<Step, SeedError> {
        loop {
            if let Some(step) = self.advance()? {
                return Ok(step);
            }
        }
    }

    /// One move of the state machine; `None` when a phase ended without a step.
    fn advance(&mut self) -> Result<Option<Step>, SeedError> {
        match self.phase {
            Phase::Users(n) if n < self.users.len() => {
                self.phase = Phase::Users(n + 1);
                let body = bodies::user_create(&self.users[n].model, n.is_multiple_of(2));
                Ok(Some(user_created(&self.users[n].model.id, &body)?))
            }
            Phase::Users(_) => {
                self.phase = Phase::Groups(0);
                Ok(None)
            }
            Phase::Groups(g) if g < self.groups.len() => {
                self.phase = Phase::Groups(g + 1);
                let group = &self.groups[g];
                let body = bodies::group_create(&group.display_name, &group.external_id);
                let n = normalize(ResourceKind::Group, &body, "group")?;
                let members = n.members.iter().flatten().map(|m| Member { value: m.value.clone() }).collect();
                Ok(Some(step(
                    ResourceType::Group,
                    &group.id,
                    Payload::GroupCreated { attributes: n.attributes, members },
                )))
            }
            Phase::Groups(_) => {
                self.phase = Phase::Members { group: 0, offset: 0 };
                Ok(None)
            }
            Phase::Members { group, offset } if group < self.groups.len() => {
                let planned = &self.groups[group].planned;
                if offset >= planned.len() {
                    self.phase = Phase::Members { group: group + 1, offset: 0 };
                    return Ok(None);
                }
                let end = (offset + self.shape.member_batch.max(1)).min(planned.len());
                let batch: Vec<usize> = planned[offset..end].to_vec();
                self.phase = Phase::Members { group, offset: end };
                let dialect = self.dialect();
                Ok(Some(self.add_members(group, &batch, dialect)?))
            }
            Phase::Members { .. } => {
                self.phase = if self.groups.is_empty() { Phase::Incremental } else { Phase::Policy };
                Ok(None)
            }
            Phase::Policy => {
                self.phase = Phase::Licenses(0);
                let policy = json!({
                    "license_types": [{"name": LICENSE, "rank": 40, "seats": null}],
                    "rules": [{"group": self.groups[0].display_name, "license": LICENSE}],
                    "default_license": null
                });
                Ok(Some(Step {
                    resource_type: ResourceType::Account,
                    resource_id: String::new(),
                    payload: Payload::LicensePolicySet { policy },
                }))
            }
            Phase::Licenses(i) => {
                let holders: Vec<usize> = self.groups[0].members.iter().copied().collect();
                let Some(&u) = holders.get(i) else {
                    self.phase = Phase::Incremental;
                    return Ok(None);
                };
                self.phase = Phase::Licenses(i + 1);
                self.users[u].licensed = true;
                let reason = json!({"kind": "rule", "group": self.groups[0].display_name, "license": LICENSE});
                Ok(Some(Step {
                    resource_type: ResourceType::Account,
                    resource_id: String::new(),
                    payload: Payload::LicenseChanged {
                        user_id: self.users[u].model.id.clone(),
                        from: None,
                        to: Some(LICENSE.into()),
                        reason,
                    },
                }))
            }
            Phase::Incremental => self.incremental(),
        }
    }

    fn add_members(&mut self, group: usize, users: &[usize], dialect: Dialect) -> Result<Step, SeedError> {
        let ids: Vec<String> = users.iter().map(|u| self.users[*u].model.id.clone()).collect();
        self.groups[group].members.extend(users.iter().copied());
        group_patch(&self.groups[group].id, &bodies::members_add(&ids, dialect))
    }

    fn alive_user(&mut self) -> Option<usize> {
        for _ in 0..64 {
            let u = self.rng.below(self.users.len());
            if self.users[u].alive {
                return Some(u);
            }
        }
        self.users.iter().position(|u| u.alive)
    }

    /// One change of an incremental cycle, in roughly the mix Entra sends for a tenant in steady
    /// state: mostly attribute updates, then membership changes, (de)activations, renames, leavers
    /// and new hires.
    fn incremental(&mut self) -> Result<Option<Step>, SeedError> {
        let dialect = self.dialect();
        let roll = self.rng.below(100);
        let Some(u) = self.alive_user() else {
            return self.hire().map(Some);
        };
        if roll < 55 {
            let old = self.users[u].model.clone();
            let mut new = old.clone();
            new.given_name = format!("Given{}", self.rng.below(1_000_000));
            new.family_name = format!("Family{}", self.rng.below(1_000_000));
            self.users[u].model = new.clone();
            let Some(body) = bodies::user_update(&old, &new, dialect) else { return Ok(None) };
            return user_patch(&old.id, &body).map(Some);
        }
        if roll < 65 {
            let active = !self.users[u].model.active;
            self.users[u].model.active = active;
            return user_patch(&self.users[u].model.id, &bodies::user_set_active(active, dialect)).map(Some);
        }
        if self.groups.is_empty() {
            return Ok(None);
        }
        let g = self.rng.below(self.groups.len());
        if roll < 75 {
            let alive: Vec<usize> = self.groups[g].members.iter().copied().filter(|m| self.users[*m].alive).collect();
            let Some(&m) = alive.get(self.rng.below(alive.len())) else { return Ok(None) };
            self.groups[g].members.remove(&m);
            let id = self.users[m].model.id.clone();
            return group_patch(&self.groups[g].id, &bodies::members_remove(&[id], dialect)).map(Some);
        }
        if roll < 85 {
            if self.groups[g].members.contains(&u) {
                return Ok(None);
            }
            return self.add_members(g, &[u], dialect).map(Some);
        }
        if roll < 90 {
            // The licensed group keeps its name, so the policy's rule keeps matching it.
            if g == 0 {
                return Ok(None);
            }
            self.renames += 1;
            let name = format!("{} r{}", self.groups[g].display_name, self.renames);
            self.groups[g].display_name = name.clone();
            return group_patch(&self.groups[g].id, &bodies::group_rename(&name, dialect)).map(Some);
        }
        if roll < 95 {
            self.users[u].alive = false;
            return Ok(Some(step(
                ResourceType::User,
                &self.users[u].model.id,
                Payload::UserDeleted { if_match: None },
            )));
        }
        self.hire().map(Some)
    }

    fn hire(&mut self) -> Result<Step, SeedError> {
        let seq = self.users.len();
        let index = self.rng.next_u64();
        let u = self.new_user(index, seq);
        let body = bodies::user_create(&u.model, seq.is_multiple_of(2));
        let id = u.model.id.clone();
        self.users.push(u);
        user_created(&id, &body)
    }
}

/// A UUIDv7 as the ingress assigns to a created resource, its clock the creation order (one
/// millisecond apart from a fixed start), so a seeded log lays rows out as real traffic does.
fn resource_id(rng: &mut Rng, order: u64) -> String {
    const START_MS: u64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    let bits = (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64());
    let mut random = [0u8; 10];
    random.copy_from_slice(&bits.to_be_bytes()[..10]);
    uuid::Builder::from_unix_timestamp_millis(START_MS + order, &random).into_uuid().to_string()
}

fn uuid_from(rng: &mut Rng) -> String {
    let bits = (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64());
    uuid::Builder::from_random_bytes(bits.to_be_bytes()).into_uuid().to_string()
}

fn step(resource_type: ResourceType, id: &str, payload: Payload) -> Step {
    Step { resource_type, resource_id: id.to_string(), payload }
}

fn parse(body: &str, what: &'static str) -> Result<Value, SeedError> {
    serde_json::from_str(body).map_err(|e| SeedError { what, source: ScimError::invalid_syntax(e.to_string()) })
}

fn normalize(
    kind: ResourceKind,
    body: &str,
    what: &'static str,
) -> Result<roster_scim::resource::Normalized, SeedError> {
    roster_scim::resource::normalize(kind, &parse(body, what)?).map_err(|source| SeedError { what, source })
}

fn user_created(id: &str, body: &str) -> Result<Step, SeedError> {
    let n = normalize(ResourceKind::User, body, "user")?;
    Ok(step(ResourceType::User, id, Payload::UserCreated { attributes: n.attributes }))
}

/// A PATCH as the ingress takes it: syntax checked with the ingress's default limits.
fn checked_patch(body: &str) -> Result<Value, SeedError> {
    let v = parse(body, "PATCH")?;
    roster_scim::patch::PatchRequest::parse(&v, &roster_scim::patch::PatchLimits::default())
        .map_err(|source| SeedError { what: "PATCH", source })?;
    Ok(v)
}

fn user_patch(id: &str, body: &str) -> Result<Step, SeedError> {
    Ok(step(ResourceType::User, id, Payload::UserPatched { patch: checked_patch(body)?, if_match: None }))
}

fn group_patch(id: &str, body: &str) -> Result<Step, SeedError> {
    Ok(step(ResourceType::Group, id, Payload::GroupPatched { patch: checked_patch(body)?, if_match: None }))
}

#[cfg(test)]
mod tests;
