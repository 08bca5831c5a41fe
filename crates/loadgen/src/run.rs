//! Orchestration of a run: accounts, the scenarios and their phases, and the correctness check.

use std::collections::{BTreeMap, HashMap};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::Error;
use crate::bodies::{self, Dialect};
use crate::client::{AccountAccess, Admin, Answer, Scim, contains, total_results};
use crate::config::{Config, Scenario};
use crate::encode::{eq_filter, form_encode, group_lookup_query, user_lookup_query};
use crate::evloop::{Call, Step};
use crate::model::{AccountModel, GroupModel, Mismatch, ObservedGroup, ObservedUser, UserModel, compare};
use crate::pool::{Progress, parallel, run_tasks};
use crate::prng::Rng;
use crate::report::{self, Report};
use crate::stats::{Kind, LatencySummary, Stats, round3};

/// Given names (as sent, ASCII form for the UPN); a few are non-ASCII on purpose.
const GIVEN: &[(&str, &str)] = &[
    ("Jane", "jane"),
    ("John", "john"),
    ("Zoë", "zoe"),
    ("José", "jose"),
    ("Björn", "bjorn"),
    ("Aisha", "aisha"),
    ("Wei", "wei"),
    ("Priya", "priya"),
    ("Liam", "liam"),
    ("Olga", "olga"),
    ("Kenji", "kenji"),
    ("Fatima", "fatima"),
];
/// Family names (as sent, ASCII form for the UPN).
const FAMILY: &[(&str, &str)] = &[
    ("Doe", "doe"),
    ("Smith", "smith"),
    ("O'Brien", "obrien"),
    ("Müller", "muller"),
    ("García", "garcia"),
    ("Nguyen", "nguyen"),
    ("Kowalski", "kowalski"),
    ("Okafor", "okafor"),
    ("Tanaka", "tanaka"),
    ("Johansson", "johansson"),
    ("Rossi", "rossi"),
    ("Dubois", "dubois"),
];
/// Group name stems; spaces, `&` and `/` exercise the filter encoding.
const GROUP_WORDS: &[&str] =
    &["dbt-developers", "dbt-readers", "Sales Team", "R&D / Europe", "Finance", "IT Ops", "Marketing EMEA", "Support"];

/// Share of live users whose attributes change in an incremental cycle.
const PATCH_SHARE: f64 = 0.10;
/// Share of live users deactivated in an incremental cycle.
const DEACTIVATE_SHARE: f64 = 0.03;
/// Share of live users hard-deleted in an incremental cycle.
const DELETE_SHARE: f64 = 0.01;
/// Share of the inactive users reactivated in an incremental cycle.
const REACTIVATE_SHARE: f64 = 0.5;
/// Chance that a group is renamed in an incremental cycle.
const RENAME_CHANCE: f64 = 0.2;
/// Share of a group's members removed in an incremental cycle.
const REMOVE_SHARE: f64 = 0.05;
/// New members per group in an incremental cycle, as a share of the average group size.
const ADD_SHARE: f64 = 0.03;
/// Page size of the correctness check.
const CHECK_PAGE: usize = 1000;

/// A point in time with the CPU time consumed so far by the load generator and by the server (when its pid is
/// known), so that each phase can report how busy both were.
#[derive(Clone, Copy, Debug)]
pub struct Mark {
    /// When.
    pub at: Instant,
    /// CPU seconds of the load generator so far.
    pub loadgen_cpu: Option<f64>,
    /// CPU seconds of the server so far.
    pub server_cpu: Option<f64>,
    /// Run-queue wait seconds of the server's threads so far.
    pub server_wait: Option<f64>,
    /// Busy CPU seconds of the whole machine so far.
    pub machine_busy: Option<f64>,
}

impl Mark {
    /// Now.
    pub fn now(server_pid: Option<u32>) -> Self {
        let pid = server_pid.map(|p| p.to_string());
        Mark {
            at: Instant::now(),
            loadgen_cpu: report::cpu_secs("self"),
            server_cpu: pid.as_deref().and_then(report::cpu_secs),
            server_wait: pid.as_deref().and_then(report::runqueue_wait_secs),
            machine_busy: report::machine_busy_secs(),
        }
    }
}

/// The measurements of one phase of one account.
#[derive(Clone, Debug)]
pub struct PhaseRecord {
    /// Phase name (`users`, `groups`, `memberships`, `incremental`, …).
    pub name: String,
    /// When it started.
    pub start: Mark,
    /// When it ended.
    pub end: Mark,
    /// Its requests.
    pub stats: Stats,
}

impl PhaseRecord {
    fn new(name: &str, start: Mark, stats: Stats, server_pid: Option<u32>) -> Self {
        PhaseRecord { name: name.to_owned(), start, end: Mark::now(server_pid), stats }
    }
}

/// One single-member-add measurement point of the member-add scenario.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MemberAddPoint {
    /// Members in the group when the samples were taken (it grows by one per sample).
    pub group_size: usize,
    /// Successful single-member adds measured.
    pub samples: usize,
    /// Their latency.
    #[serde(flatten)]
    pub latency: LatencySummary,
    /// Median latency relative to the median at the first (empty-group) point.
    pub p50_vs_empty: f64,
    /// 99th percentile relative to the one at the first (empty-group) point.
    pub p99_vs_empty: f64,
}

/// The result of the member-add scenario for one account.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MemberAddResult {
    /// Account index.
    pub account: usize,
    /// Members at the end.
    pub final_size: usize,
    /// Single-member add latency by group size.
    pub points: Vec<MemberAddPoint>,
}

/// One timed policy change of the relicense scenario.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RelicenseStep {
    /// `first-policy` (no policy before) or `policy-change` (every member's license changes).
    pub name: String,
    /// Users whose license the policy changes.
    pub users: usize,
    /// Round trip of the `PUT …/license-policy` (it returns once the policy event is applied).
    pub put_secs: f64,
    /// From sending the PUT until a poll first counted every member holding the new license (and nobody the old
    /// one), as then confirmed by `GET …/seats`; `null` when that did not happen within `--relicense-timeout-secs`.
    pub decided_secs: Option<f64>,
    /// Polls made while waiting (each counts both licenses' holders through SCIM).
    pub polls: usize,
    /// Seat use seen by the last poll (license name to users holding it).
    pub seats: BTreeMap<String, u64>,
}

/// The result of the relicense scenario for one account.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RelicenseResult {
    /// Account index.
    pub account: usize,
    /// Members of the group the policies name.
    pub members: usize,
    /// The first policy, then the change.
    pub steps: Vec<RelicenseStep>,
}

/// Time between the relicense scenario's polls, fine enough for a 10 s target.
const RELICENSE_POLL: Duration = Duration::from_millis(250);
/// The user's license as a SCIM filter path; counting its holders with `count=0` is cheap, unlike
/// `GET …/seats`, which reads the whole account and, polled, would compete with the licensing worker.
const LICENSE_TYPE_ATTR: &str = "urn:ietf:params:scim:schemas:extension:roster:2.0:User:licenseType";

/// The correctness check of one account.
#[derive(Clone, Debug, Default)]
pub struct AccountCheck {
    /// Differences found.
    pub mismatches: Vec<Mismatch>,
    /// The check's requests.
    pub stats: Stats,
    /// Users listed by the server.
    pub users_found: usize,
    /// Groups listed by the server.
    pub groups_found: usize,
    /// Memberships read from the server.
    pub memberships_found: usize,
}

/// The state of one account during a run.
pub struct AccountRun {
    /// Index in creation order.
    pub index: usize,
    /// Endpoint and credentials.
    pub access: AccountAccess,
    /// SCIM client.
    pub scim: Scim,
    /// What was sent so far.
    pub model: AccountModel,
    /// Measurements per phase.
    pub phases: Vec<PhaseRecord>,
    /// Member-add results (member-add scenario).
    pub member_add: Option<MemberAddResult>,
    /// Relicense results (relicense scenario).
    pub relicense: Option<RelicenseResult>,
    /// The latest correctness check.
    pub check: AccountCheck,
    rng: Rng,
    seed: u64,
    next_user_seq: u64,
    next_group_seq: u64,
    domain: String,
    server_pid: Option<u32>,
}

/// Settings shared by the account threads.
struct Ctx<'a> {
    cfg: &'a Config,
    admin: &'a Admin,
    progress: &'a Progress,
    deadline: Option<Instant>,
}

impl Ctx<'_> {
    fn expired(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

/// Either PATCH dialect with equal chance.
fn dialect(rng: &mut Rng) -> Dialect {
    if rng.chance(0.5) { Dialect::Legacy } else { Dialect::Flagged }
}

/// `max(1, round(n * share))`, or 0 when `n` is 0.
fn portion(n: usize, share: f64) -> usize {
    if n == 0 { 0 } else { ((n as f64 * share).round() as usize).max(1) }
}

/// The group sizes at which the member-add scenario measures single adds: empty, powers of ten from 1,000 below
/// `users`, and `users`.
pub fn member_add_checkpoints(users: usize) -> Vec<usize> {
    let mut v = vec![0];
    let mut p = 1000;
    while p < users {
        v.push(p);
        p *= 10;
    }
    if users > 0 {
        v.push(users);
    }
    v.dedup();
    v
}

impl AccountRun {
    fn new(index: usize, access: AccountAccess, cfg: &Config, progress: &Progress) -> Self {
        let scim = Scim::new(&access.scim_base_url, &access.token, progress.counter.clone(), cfg.max_retries);
        let seed = cfg.seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        AccountRun {
            index,
            access,
            scim,
            model: AccountModel::default(),
            phases: Vec::new(),
            member_add: None,
            relicense: None,
            check: AccountCheck::default(),
            rng: Rng::derive(seed, 0xACC0),
            seed,
            next_user_seq: 0,
            next_group_seq: 0,
            domain: format!("tenant{index}.loadgen.example"),
            server_pid: cfg.server_pid,
        }
    }

    /// The user with sequence number `seq`, derived from the seed only.
    fn user_spec(&self, seq: u64) -> UserModel {
        let mut r = Rng::derive(self.seed, seq.wrapping_add(1) << 8);
        let (given, g) = GIVEN[r.below(GIVEN.len())];
        let (family, f) = FAMILY[r.below(FAMILY.len())];
        let upn = format!("{g}.{f}.{seq}@{}", self.domain);
        UserModel {
            id: String::new(),
            user_name: upn.clone(),
            given_name: given.to_owned(),
            family_name: family.to_owned(),
            email: upn,
            external_id: format!("{g}{f}{seq}"),
            active: true,
        }
    }

    fn group_name(seq: u64) -> String {
        format!("{} {seq}", GROUP_WORDS[seq as usize % GROUP_WORDS.len()])
    }

    /// Creates `n` users, each preceded by Entra's matching lookup when `lookup` is set.
    fn create_users(&mut self, ctx: &Ctx, n: usize, lookup: bool, phase: &str, deadline: Option<Instant>) {
        ctx.progress.set_phase(phase);
        let specs: Vec<(u64, UserModel)> = (0..n)
            .map(|_| {
                let seq = self.next_user_seq;
                self.next_user_seq += 1;
                (seq, self.user_spec(seq))
            })
            .collect();
        let start = Mark::now(self.server_pid);
        // One flow per user: Entra's lookup when asked for, then the create.
        let create = |i: usize| {
            let (seq, u) = &specs[i];
            // Every other user carries the legacy string "True", as Entra does.
            Call {
                kind: Kind::UserCreate,
                method: "POST",
                path: "/Users".into(),
                body: Some(bodies::user_create(u, seq % 2 == 1)),
                expect: 201,
            }
        };
        let mut pending = 0..specs.len();
        let next = || {
            let i = pending.next()?;
            let call = if lookup {
                let path = format!("/Users?{}", user_lookup_query(&specs[i].1.user_name));
                Call { kind: Kind::UserLookup, method: "GET", path, body: None, expect: 200 }
            } else {
                create(i)
            };
            Some((i, call))
        };
        let judge = |i: usize, ans: Answer, st: &mut Stats| {
            if ans.status == 200 {
                if total_results(&ans.body) != Some(0) {
                    Scim::unexpected(st, Kind::UserLookup, || {
                        let q = user_lookup_query(&specs[i].1.user_name);
                        format!("GET /Users?{q}: expected no match: {}", ans.snippet())
                    });
                    return Step::Stop;
                }
                return Step::Then(create(i));
            }
            match ans.id() {
                Some(id) => Step::Done(id),
                None => {
                    Scim::unexpected(st, Kind::UserCreate, || format!("POST /Users: no id in {}", ans.snippet()));
                    Step::Stop
                }
            }
        };
        let (created, stats) = self.scim.flows(ctx.cfg.concurrency, deadline, next, judge);
        let mut ids: Vec<Option<String>> = vec![None; specs.len()];
        for (i, id) in created {
            ids[i] = Some(id);
        }
        self.phases.push(PhaseRecord::new(phase, start, stats, self.server_pid));
        for ((seq, mut u), r) in specs.into_iter().zip(ids) {
            if let Some(id) = r {
                u.id = id;
                self.model.users.insert(seq, u);
            }
        }
    }

    /// Creates `n` groups, empty, each preceded by the displayName lookup.
    fn create_groups(&mut self, ctx: &Ctx, n: usize, phase: &str) {
        ctx.progress.set_phase(phase);
        let specs: Vec<(u64, String, String)> = (0..n)
            .map(|_| {
                let seq = self.next_group_seq;
                self.next_group_seq += 1;
                (seq, Self::group_name(seq), self.rng.guid())
            })
            .collect();
        let scim = &self.scim;
        let start = Mark::now(self.server_pid);
        let (results, stats) = run_tasks(ctx.cfg.concurrency, &specs, ctx.deadline, |(_, name, ext), st| {
            let q = format!("/Groups?{}", group_lookup_query(name));
            let ans = scim.call(st, Kind::GroupLookup, "GET", &q, None, &[200])?;
            if total_results(&ans.body) != Some(0) {
                Scim::unexpected(st, Kind::GroupLookup, || format!("GET {q}: expected no match: {}", ans.snippet()));
                return None;
            }
            let body = bodies::group_create(name, ext);
            let ans = scim.call(st, Kind::GroupCreate, "POST", "/Groups", Some(&body), &[201])?;
            ans.id()
        });
        self.phases.push(PhaseRecord::new(phase, start, stats, self.server_pid));
        for ((seq, name, ext), r) in specs.into_iter().zip(results) {
            if let Some(Some(id)) = r {
                let g = GroupModel { id, display_name: name, external_id: ext, members: Default::default() };
                self.model.groups.insert(seq, g);
            }
        }
    }

    /// Adds members by PATCH in batches; `tasks` are (group seq, group id, member ids).
    fn add_members(&mut self, ctx: &Ctx, tasks: Vec<(u64, String, Vec<String>)>, phase: &str) {
        ctx.progress.set_phase(phase);
        let scim = &self.scim;
        let start = Mark::now(self.server_pid);
        let (results, stats) = run_tasks(ctx.cfg.concurrency, &tasks, ctx.deadline, |(_, gid, ids), st| {
            let body = bodies::members_add(ids, Dialect::Legacy);
            scim.call(st, Kind::MemberAdd, "PATCH", &format!("/Groups/{gid}"), Some(&body), &[200, 204]).is_some()
        });
        self.phases.push(PhaseRecord::new(phase, start, stats, self.server_pid));
        for ((gseq, _, ids), ok) in tasks.into_iter().zip(results) {
            if ok == Some(true)
                && let Some(g) = self.model.groups.get_mut(&gseq)
            {
                g.members.extend(ids);
            }
        }
    }

    /// The initial membership sync: each user joins `memberships_per_user` random groups; members are added in
    /// batches of `member_batch`, batches of different groups interleaved.
    fn initial_memberships(&mut self, ctx: &Ctx) {
        let gseqs: Vec<u64> = self.model.groups.keys().copied().collect();
        let m = ctx.cfg.memberships_per_user.min(gseqs.len());
        if m == 0 {
            return;
        }
        let mut per_group: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        for (seq, u) in &self.model.users {
            let mut r = Rng::derive(self.seed ^ 0x6D65_6D62, *seq);
            for gi in r.sample_indices(gseqs.len(), m) {
                per_group.entry(gseqs[gi]).or_default().push(u.id.clone());
            }
        }
        let batch = ctx.cfg.member_batch.max(1);
        let chunked: Vec<(u64, Vec<Vec<String>>)> =
            per_group.into_iter().map(|(g, ids)| (g, ids.chunks(batch).map(<[String]>::to_vec).collect())).collect();
        let rounds = chunked.iter().map(|(_, c)| c.len()).max().unwrap_or(0);
        let mut tasks = Vec::new();
        for r in 0..rounds {
            for (g, chunks) in &chunked {
                if let (Some(ids), Some(gm)) = (chunks.get(r), self.model.groups.get(g)) {
                    tasks.push((*g, gm.id.clone(), ids.clone()));
                }
            }
        }
        self.add_members(ctx, tasks, "memberships");
    }

    /// One incremental cycle: user changes (each preceded by the matching lookup), then group changes (renames,
    /// member removals and additions, each group preceded by its lookup).
    fn incremental(&mut self, ctx: &Ctx, cycle: usize) {
        ctx.progress.set_phase("incremental");
        let scim = self.scim.clone();
        // --- users ---
        let mut order: Vec<u64> = self.model.users.keys().copied().collect();
        self.rng.shuffle(&mut order);
        let n = order.len();
        let (mut deact, mut patch, mut delete) =
            (portion(n, DEACTIVATE_SHARE), portion(n, PATCH_SHARE), portion(n, DELETE_SHARE));
        let inactive = self.model.users.values().filter(|u| !u.active).count();
        let mut react = portion(inactive, REACTIVATE_SHARE);
        let mut tasks: Vec<(u64, UserModel, UserOp)> = Vec::new();
        for seq in order {
            let Some(u) = self.model.users.get(&seq) else { continue };
            let dialect = dialect(&mut self.rng);
            let op = if !u.active {
                if react == 0 {
                    continue;
                }
                react -= 1;
                UserOp::SetActive(true, dialect)
            } else if deact > 0 {
                deact -= 1;
                UserOp::SetActive(false, dialect)
            } else if patch > 0 {
                patch -= 1;
                UserOp::Update(self.changed(seq, u, cycle), dialect)
            } else if delete > 0 {
                delete -= 1;
                UserOp::Delete
            } else {
                continue;
            };
            tasks.push((seq, u.clone(), op));
        }
        let start = Mark::now(self.server_pid);
        let (results, stats) = run_tasks(ctx.cfg.concurrency, &tasks, ctx.deadline, |(_, u, op), st| {
            if matches!(op, UserOp::Delete) {
                return scim.call(st, Kind::UserDelete, "DELETE", &format!("/Users/{}", u.id), None, &[204]).is_some();
            }
            let q = format!("/Users?{}", user_lookup_query(&u.user_name));
            let Some(ans) = scim.call(st, Kind::UserLookup, "GET", &q, None, &[200]) else { return false };
            if total_results(&ans.body) != Some(1) || !contains(&ans.body, &u.id) {
                Scim::unexpected(st, Kind::UserLookup, || format!("GET {q}: expected {}: {}", u.id, ans.snippet()));
            }
            let (kind, body) = match op {
                UserOp::SetActive(true, d) => (Kind::UserReactivate, bodies::user_set_active(true, *d)),
                UserOp::SetActive(false, d) => (Kind::UserDeactivate, bodies::user_set_active(false, *d)),
                UserOp::Update(new, d) => match bodies::user_update(u, new, *d) {
                    Some(b) => (Kind::UserPatch, b),
                    None => return true,
                },
                UserOp::Delete => return false,
            };
            scim.call(st, kind, "PATCH", &format!("/Users/{}", u.id), Some(&body), &[200, 204]).is_some()
        });
        self.phases.push(PhaseRecord::new("incremental", start, stats, self.server_pid));
        for ((seq, _, op), ok) in tasks.into_iter().zip(results) {
            if ok != Some(true) {
                continue;
            }
            match op {
                UserOp::Delete => self.model.delete_user(seq),
                UserOp::SetActive(a, _) => {
                    if let Some(u) = self.model.users.get_mut(&seq) {
                        u.active = a;
                    }
                }
                UserOp::Update(new, _) => {
                    self.model.users.insert(seq, new);
                }
            }
        }
        if ctx.expired() {
            return;
        }
        // --- groups ---
        let live: Vec<String> = self.model.users.values().map(|u| u.id.clone()).collect();
        let avg = if self.model.groups.is_empty() { 0 } else { self.model.memberships() / self.model.groups.len() };
        // Members are considered in user sequence order, not id order, so that the choices do not depend on the
        // ids the server hands out.
        let seq_of: HashMap<&str, u64> = self.model.users.iter().map(|(seq, u)| (u.id.as_str(), *seq)).collect();
        let mut gtasks = Vec::new();
        let rng = &mut self.rng;
        for (gseq, g) in &self.model.groups {
            let rename =
                rng.chance(RENAME_CHANCE).then(|| (format!("{} v{cycle}", Self::group_name(*gseq)), dialect(rng)));
            let mut members: Vec<&String> = g.members.iter().collect();
            members.sort_by_key(|id| seq_of.get(id.as_str()).copied().unwrap_or(u64::MAX));
            let remove: Vec<String> = rng
                .sample_indices(members.len(), portion(members.len(), REMOVE_SHARE))
                .into_iter()
                .map(|i| members[i].clone())
                .collect();
            let mut add: Vec<String> = Vec::new();
            for _ in 0..portion(avg.max(1), ADD_SHARE) {
                if live.is_empty() {
                    break;
                }
                let id = &live[rng.below(live.len())];
                if !g.members.contains(id) && !add.contains(id) {
                    add.push(id.clone());
                }
            }
            gtasks.push(GroupTask {
                seq: *gseq,
                id: g.id.clone(),
                name: g.display_name.clone(),
                rename,
                remove,
                remove_dialect: dialect(rng),
                add,
                add_dialect: dialect(rng),
            });
        }
        let start = Mark::now(self.server_pid);
        let (results, stats) = run_tasks(ctx.cfg.concurrency, &gtasks, ctx.deadline, |t, st| {
            let mut done = [false; 3];
            let q = format!("/Groups?{}", group_lookup_query(&t.name));
            let Some(ans) = scim.call(st, Kind::GroupLookup, "GET", &q, None, &[200]) else { return done };
            if total_results(&ans.body) != Some(1) || !contains(&ans.body, &t.id) {
                Scim::unexpected(st, Kind::GroupLookup, || format!("GET {q}: expected {}: {}", t.id, ans.snippet()));
            }
            let path = format!("/Groups/{}", t.id);
            if let Some((name, d)) = &t.rename {
                let body = bodies::group_rename(name, *d);
                done[0] = scim.call(st, Kind::GroupRename, "PATCH", &path, Some(&body), &[200, 204]).is_some();
            }
            if !t.remove.is_empty() {
                let body = bodies::members_remove(&t.remove, t.remove_dialect);
                done[1] = scim.call(st, Kind::MemberRemove, "PATCH", &path, Some(&body), &[200, 204]).is_some();
            }
            if !t.add.is_empty() {
                let body = bodies::members_add(&t.add, t.add_dialect);
                done[2] = scim.call(st, Kind::MemberAdd, "PATCH", &path, Some(&body), &[200, 204]).is_some();
            }
            done
        });
        self.phases.push(PhaseRecord::new("incremental", start, stats, self.server_pid));
        for (t, done) in gtasks.into_iter().zip(results) {
            let (Some(done), Some(g)) = (done, self.model.groups.get_mut(&t.seq)) else { continue };
            if done[0]
                && let Some((name, _)) = t.rename
            {
                g.display_name = name;
            }
            if done[1] {
                for id in &t.remove {
                    g.members.remove(id);
                }
            }
            if done[2] {
                g.members.extend(t.add);
            }
        }
    }

    /// A changed copy of a user: family name, given name, UPN (userName, email and family name together, like a
    /// marriage), or externalId.
    fn changed(&self, seq: u64, u: &UserModel, cycle: usize) -> UserModel {
        let mut r = Rng::derive(self.seed ^ 0xC4A6_0000 ^ cycle as u64, seq);
        let mut new = u.clone();
        let (family, f) = FAMILY[r.below(FAMILY.len())];
        let family = if family == u.family_name { format!("{family}-Smith") } else { family.to_owned() };
        match r.below(10) {
            0..=3 => new.family_name = family,
            4..=5 => {
                let (given, _) = GIVEN[r.below(GIVEN.len())];
                new.given_name = if given == u.given_name { format!("{given} Jr") } else { given.to_owned() };
            }
            6..=8 => {
                new.user_name = format!("{f}.{seq}.v{cycle}@{}", self.domain);
                new.email = new.user_name.clone();
                new.family_name = family;
            }
            _ => new.external_id = format!("{}-v{cycle}", u.external_id),
        }
        new
    }

    /// The full Entra simulation for this account.
    fn full(&mut self, ctx: &Ctx) {
        self.create_users(ctx, ctx.cfg.users, true, "users", ctx.deadline);
        self.create_groups(ctx, ctx.cfg.groups, "groups");
        self.initial_memberships(ctx);
        for cycle in 1..=ctx.cfg.incremental_cycles {
            if ctx.expired() {
                break;
            }
            self.incremental(ctx, cycle);
        }
    }

    /// `userName eq` lookups of random existing users until `deadline`.
    fn lookups(&mut self, ctx: &Ctx, deadline: Instant) {
        ctx.progress.set_phase("lookups");
        let users: Vec<(String, String)> = self
            .model
            .users
            .values()
            .map(|u| (format!("/Users?{}", user_lookup_query(&u.user_name)), u.id.clone()))
            .collect();
        if users.is_empty() {
            return;
        }
        let start = Mark::now(self.server_pid);
        let mut rng = Rng::derive(self.seed ^ 0x100C, 1);
        let next = || {
            let i = rng.below(users.len());
            Some((i, Call { kind: Kind::UserLookup, method: "GET", path: users[i].0.clone(), body: None, expect: 200 }))
        };
        let judge = |i: usize, ans: Answer, st: &mut Stats| {
            let (q, id) = &users[i];
            if total_results(&ans.body) != Some(1) || !contains(&ans.body, id) {
                Scim::unexpected(st, Kind::UserLookup, || format!("GET {q}: expected {id}: {}", ans.snippet()));
            }
            Step::<()>::Stop
        };
        let (_, stats) = self.scim.flows(ctx.cfg.concurrency, Some(deadline), next, judge);
        self.phases.push(PhaseRecord::new("lookups", start, stats, self.server_pid));
    }

    /// The member-add scenario: one group grown to `users` members in batches, with `samples` single-member adds
    /// measured (sequentially) at each checkpoint size.
    fn member_add(&mut self, ctx: &Ctx) {
        let cfg = ctx.cfg;
        let checkpoints = member_add_checkpoints(cfg.users);
        let extras = checkpoints.len() * cfg.samples;
        self.create_users(ctx, cfg.users + extras, false, "create-users", ctx.deadline);
        self.create_groups(ctx, 1, "create-group");
        let Some((gseq, gid)) = self.model.groups.iter().next().map(|(s, g)| (*s, g.id.clone())) else { return };
        let ids: Vec<String> = self.model.users.values().map(|u| u.id.clone()).collect();
        let split = cfg.users.min(ids.len());
        let (fill, singles) = ids.split_at(split);
        let (mut next_fill, mut next_single) = (0, 0);
        let mut points = Vec::new();
        let size = |m: &AccountModel| m.groups.get(&gseq).map_or(0, |g| g.members.len());
        for target in checkpoints {
            if ctx.expired() {
                break;
            }
            let current = size(&self.model);
            if target > current {
                let want = (target - current).min(fill.len() - next_fill);
                let batch = cfg.member_batch.max(1);
                let tasks: Vec<(u64, String, Vec<String>)> =
                    fill[next_fill..next_fill + want].chunks(batch).map(|c| (gseq, gid.clone(), c.to_vec())).collect();
                next_fill += want;
                self.add_members(ctx, tasks, "fill");
            }
            ctx.progress.set_phase("single-add");
            let at = size(&self.model);
            let mut st = Stats::new();
            let mut samples = Vec::new();
            let start = Mark::now(self.server_pid);
            let path = format!("/Groups/{gid}");
            for _ in 0..cfg.samples {
                let Some(id) = singles.get(next_single) else { break };
                next_single += 1;
                let body = bodies::members_add(std::slice::from_ref(id), Dialect::Legacy);
                if let Some(ans) = self.scim.call(&mut st, Kind::MemberAdd, "PATCH", &path, Some(&body), &[200, 204]) {
                    samples.push(ans.micros);
                    if let Some(g) = self.model.groups.get_mut(&gseq) {
                        g.members.insert(id.clone());
                    }
                }
            }
            self.phases.push(PhaseRecord::new("single-add", start, st, self.server_pid));
            let latency = LatencySummary::of(&samples);
            let (base50, base99) = points
                .first()
                .map_or((latency.p50_ms, latency.p99_ms), |p: &MemberAddPoint| (p.latency.p50_ms, p.latency.p99_ms));
            let ratio = |x: f64, base: f64| if base > 0.0 { round3(x / base) } else { 0.0 };
            points.push(MemberAddPoint {
                group_size: at,
                samples: samples.len(),
                p50_vs_empty: ratio(latency.p50_ms, base50),
                p99_vs_empty: ratio(latency.p99_ms, base99),
                latency,
            });
        }
        self.member_add = Some(MemberAddResult { account: self.index, final_size: size(&self.model), points });
    }

    /// The relicense scenario: one group of `users` members; a policy granting its members `standard` is set
    /// and timed until every member holds it, then changed to grant `premium` (ranked higher, so it is no
    /// revocation and never held for an operator) and timed again.
    fn relicense(&mut self, ctx: &Ctx) {
        let cfg = ctx.cfg;
        self.create_users(ctx, cfg.users, false, "create-users", ctx.deadline);
        self.create_groups(ctx, 1, "create-group");
        let Some((gseq, gid, name)) =
            self.model.groups.iter().next().map(|(s, g)| (*s, g.id.clone(), g.display_name.clone()))
        else {
            return;
        };
        let ids: Vec<String> = self.model.users.values().map(|u| u.id.clone()).collect();
        let tasks = ids.chunks(cfg.member_batch.max(1)).map(|c| (gseq, gid.clone(), c.to_vec())).collect();
        self.add_members(ctx, tasks, "fill");
        let members = self.model.groups.get(&gseq).map_or(0, |g| g.members.len());
        let mut steps = Vec::new();
        for (step, license, other) in
            [("first-policy", "standard", "premium"), ("policy-change", "premium", "standard")]
        {
            ctx.progress.set_phase(step);
            let policy = serde_json::json!({
                "license_types": [
                    {"name": "standard", "rank": 20, "seats": null},
                    {"name": "premium", "rank": 30, "seats": null}
                ],
                "rules": [{"group": name, "license": license}],
                "default_license": null
            });
            let mut st = Stats::new();
            let start = Mark::now(self.server_pid);
            let sent = Instant::now();
            let put = ctx.admin.put_license_policy(&mut st, &self.access.id, &policy);
            let put_secs = round3(sent.elapsed().as_secs_f64());
            if let Err(e) = put {
                // An HTTP error is among the phase's errors; either way the step shows it was never decided.
                eprintln!("roster-loadgen: {step}: {e}");
                self.phases.push(PhaseRecord::new(step, start, st, self.server_pid));
                let seats = BTreeMap::new();
                steps.push(RelicenseStep {
                    name: step.to_owned(),
                    users: members,
                    put_secs,
                    decided_secs: None,
                    polls: 0,
                    seats,
                });
                break;
            }
            let until = sent + Duration::from_secs(cfg.relicense_timeout_secs);
            let (mut decided_secs, mut polls, mut seats) = (None, 0, BTreeMap::new());
            let holders = |st: &mut Stats, l: &str| {
                let q = format!("/Users?count=0&filter={}", form_encode(&eq_filter(LICENSE_TYPE_ATTR, l)));
                let ans = self.scim.call(st, Kind::LicenseCount, "GET", &q, None, &[200])?;
                total_results(&ans.body).map(|n| n as usize)
            };
            loop {
                polls += 1;
                if holders(&mut st, license) == Some(members) && holders(&mut st, other) == Some(0) {
                    let seen = round3(sent.elapsed().as_secs_f64());
                    // Confirmed by the admin API's seat use, which reads the licensing state itself.
                    if let Ok(s) = ctx.admin.seats_used(&mut st, &self.access.id) {
                        seats = s;
                    }
                    let held = |l: &str| seats.get(l).copied().unwrap_or(0) as usize;
                    if held(license) == members && held(other) == 0 {
                        decided_secs = Some(seen);
                        break;
                    }
                }
                if Instant::now() >= until {
                    break;
                }
                thread::sleep(RELICENSE_POLL);
            }
            self.phases.push(PhaseRecord::new(step, start, st, self.server_pid));
            steps.push(RelicenseStep { name: step.to_owned(), users: members, put_secs, decided_secs, polls, seats });
        }
        self.relicense = Some(RelicenseResult { account: self.index, members, steps });
    }

    /// Reads the account back through SCIM and compares it with the model.
    fn check(&mut self, concurrency: usize) {
        let mut st = Stats::new();
        let mut result = AccountCheck::default();
        let fail = |field: &str, e: String| Mismatch {
            account: self.index,
            resource: "Account",
            id: self.access.id.clone(),
            field: field.to_owned(),
            expected: "readable".into(),
            actual: e,
        };
        let users = match list_all(&self.scim, &mut st, Kind::CheckUsers, "/Users?", ObservedUser::from_json) {
            Ok(v) => v,
            Err(e) => {
                result.mismatches.push(fail("list users", e));
                result.stats = st;
                self.check = result;
                return;
            }
        };
        let prefix = "/Groups?excludedAttributes=members&";
        let listed = match list_all(&self.scim, &mut st, Kind::CheckGroups, prefix, ObservedGroup::from_json) {
            Ok(v) => v,
            Err(e) => {
                result.mismatches.push(fail("list groups", e));
                result.stats = st;
                self.check = result;
                return;
            }
        };
        let scim = &self.scim;
        let (details, dst) = run_tasks(concurrency, &listed, None, |g, s| {
            let ans = scim.call(s, Kind::CheckGroup, "GET", &format!("/Groups/{}", g.id), None, &[200])?;
            let mut o = ObservedGroup::from_json(&ans.json());
            if o.members.is_none() {
                o.members = Some(Vec::new());
            }
            Some(o)
        });
        st.merge(dst);
        let mut groups = Vec::with_capacity(listed.len());
        for (g, d) in listed.into_iter().zip(details) {
            match d.flatten() {
                Some(d) => groups.push(d),
                None => {
                    result.mismatches.push(fail("get group", format!("GET /Groups/{} failed", g.id)));
                    groups.push(g);
                }
            }
        }
        result.users_found = users.len();
        result.groups_found = groups.len();
        result.memberships_found = groups.iter().map(|g| g.members.as_ref().map_or(0, Vec::len)).sum();
        result.mismatches.extend(compare(self.index, &self.model, &users, &groups));
        result.stats = st;
        self.check = result;
    }
}

/// What an incremental cycle does to one user.
enum UserOp {
    /// `PATCH active` (true = reactivate).
    SetActive(bool, Dialect),
    /// `PATCH` of changed attributes to this new state.
    Update(UserModel, Dialect),
    /// `DELETE`.
    Delete,
}

/// What an incremental cycle does to one group.
struct GroupTask {
    seq: u64,
    id: String,
    name: String,
    rename: Option<(String, Dialect)>,
    remove: Vec<String>,
    remove_dialect: Dialect,
    add: Vec<String>,
    add_dialect: Dialect,
}

/// Reads every page of a list (`prefix` ends with `?` or `&`), `count=1000` per page, converting each resource
/// with `convert` as the page arrives (so that a large account is never held as JSON values all at once).
fn list_all<T>(
    scim: &Scim,
    st: &mut Stats,
    kind: Kind,
    prefix: &str,
    convert: impl Fn(&Value) -> T,
) -> Result<Vec<T>, String> {
    let mut out = Vec::new();
    let mut start = 1;
    loop {
        let path = format!("{prefix}startIndex={start}&count={CHECK_PAGE}");
        let ans = scim.call(st, kind, "GET", &path, None, &[200]).ok_or_else(|| format!("GET {path} failed"))?;
        let v = ans.json();
        let total = v["totalResults"].as_u64().ok_or_else(|| format!("GET {path}: no totalResults"))? as usize;
        let page = v["Resources"].as_array().map_or(&[][..], Vec::as_slice);
        out.extend(page.iter().map(&convert));
        if page.is_empty() || out.len() >= total {
            return Ok(out);
        }
        start += page.len();
    }
}

/// The result of the correctness check over all accounts.
#[derive(Clone, Debug, Default)]
pub struct CheckOutcome {
    /// Whether every account matched its model.
    pub passed: bool,
    /// How many times the check ran (more than one with `--converge-timeout-secs`).
    pub attempts: usize,
    /// All mismatches of the last attempt.
    pub mismatches: Vec<Mismatch>,
    /// Users, groups and memberships found by the last attempt.
    pub found: (usize, usize, usize),
}

fn now_unix_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

/// Rough number of requests of a run, for the progress bar.
fn estimate(cfg: &Config) -> u64 {
    let a = cfg.accounts as u64;
    let u = cfg.users as u64;
    let g = cfg.groups as u64;
    let check = u / CHECK_PAGE as u64 + 2;
    let batches = (u * cfg.memberships_per_user.min(cfg.groups) as u64).div_ceil(cfg.member_batch.max(1) as u64);
    let per_account = match cfg.scenario {
        Scenario::Full => {
            let cycle = u * 3 / 10 + g * 3;
            2 * u + 2 * g + batches + cycle * cfg.incremental_cycles as u64 + check + g
        }
        Scenario::Creates => u + check,
        // The lookups themselves are timed, not counted.
        Scenario::Lookups => u + 2 * g + batches + check,
        Scenario::Relicense => u + u / cfg.member_batch.max(1) as u64 + check + 3,
        Scenario::MemberAdd => {
            let cps = member_add_checkpoints(cfg.users).len() as u64;
            u + cps * cfg.samples as u64 * 2 + u / cfg.member_batch.max(1) as u64 + check + 3
        }
    };
    a * per_account + 2 * a
}

/// Runs a whole load test as configured and returns its report (the caller prints and saves it).
pub fn run(cfg: &Config) -> Result<Report, Error> {
    if cfg.accounts == 0 || cfg.concurrency == 0 || cfg.member_batch == 0 {
        return Err(Error::new("--accounts, --concurrency and --member-batch must be positive"));
    }
    let started_unix_ms = now_unix_ms();
    let pid = cfg.server_pid;
    let t0 = Mark::now(pid);
    let mut progress = Progress::new(estimate(cfg), !cfg.no_progress);

    // Accounts and tokens.
    progress.set_phase("setup");
    let admin = Admin::new(&cfg.admin_url, &cfg.admin_token);
    let nonce = format!("{:x}", started_unix_ms % 0xFFFF_FFFF);
    let mut setup = Stats::new();
    let mut accounts = Vec::with_capacity(cfg.accounts);
    for i in 0..cfg.accounts {
        let name = format!("loadgen-{}-{nonce}-{i}", cfg.seed);
        let access = admin.create_account(&mut setup, &name, cfg.public_url.as_deref())?;
        accounts.push(AccountRun::new(i, access, cfg, &progress));
    }
    let setup = PhaseRecord::new("setup", t0, setup, pid);

    // Load.
    let load_start = Mark::now(pid);
    let deadline = cfg.duration_secs.map(|s| load_start.at + Duration::from_secs(s));
    let ctx = Ctx { cfg, admin: &admin, progress: &progress, deadline };
    match cfg.scenario {
        Scenario::Full => parallel(&mut accounts, |a| a.full(&ctx)),
        Scenario::Creates => parallel(&mut accounts, |a| a.create_users(&ctx, cfg.users, false, "creates", deadline)),
        Scenario::Lookups => {
            // Seeding is not timed out: the deadline is the lookups' own.
            let seeding = Ctx { deadline: None, ..ctx };
            parallel(&mut accounts, |a| {
                a.create_users(&seeding, cfg.users, false, "seed-users", None);
                a.create_groups(&seeding, cfg.groups, "seed-groups");
                a.initial_memberships(&seeding);
            });
            let until = Instant::now() + Duration::from_secs(cfg.duration_secs.unwrap_or(10));
            parallel(&mut accounts, |a| a.lookups(&ctx, until));
        }
        Scenario::MemberAdd => parallel(&mut accounts, |a| a.member_add(&ctx)),
        Scenario::Relicense => parallel(&mut accounts, |a| a.relicense(&ctx)),
    }
    let load_end = Mark::now(pid);

    // Correctness check, repeated until it passes or the convergence timeout expires.
    progress.set_phase("check");
    let check_start = Mark::now(pid);
    let until = check_start.at + Duration::from_secs(cfg.converge_timeout_secs);
    let mut outcome = CheckOutcome::default();
    let mut check_stats = Stats::new();
    loop {
        outcome.attempts += 1;
        let conc = cfg.concurrency;
        parallel(&mut accounts, |a| a.check(conc));
        outcome.mismatches = accounts.iter().flat_map(|a| a.check.mismatches.iter().cloned()).collect();
        outcome.found = accounts.iter().fold((0, 0, 0), |f, a| {
            (f.0 + a.check.users_found, f.1 + a.check.groups_found, f.2 + a.check.memberships_found)
        });
        for a in &mut accounts {
            check_stats.merge(std::mem::take(&mut a.check.stats));
        }
        outcome.passed = outcome.mismatches.is_empty();
        if outcome.passed || Instant::now() >= until {
            break;
        }
        thread::sleep(Duration::from_millis(250));
    }
    let check = PhaseRecord::new("check", check_start, check_stats, pid);
    progress.finish();

    let mut phases = vec![setup];
    for a in &mut accounts {
        phases.append(&mut a.phases);
    }
    phases.push(check);
    let resources = report::Resources::measure(&t0, &Mark::now(pid), pid);
    Ok(report::build(report::Inputs {
        cfg,
        accounts: &accounts,
        started_unix_ms,
        t0,
        load: (load_start, load_end),
        phases,
        outcome,
        resources,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(index: usize, seed: u64) -> AccountRun {
        let mut cfg = Config::new("http://127.0.0.1:1", "t", None);
        cfg.seed = seed;
        let access = AccountAccess {
            id: "a".into(),
            name: "n".into(),
            scim_base_url: "http://127.0.0.1:1/scim/v2/accounts/a".into(),
            token: "t".into(),
        };
        AccountRun::new(index, access, &cfg, &Progress::new(0, false))
    }

    #[test]
    fn checkpoints_cover_empty_powers_of_ten_and_the_target() {
        assert_eq!(member_add_checkpoints(10_000), vec![0, 1000, 10_000]);
        assert_eq!(member_add_checkpoints(100_000), vec![0, 1000, 10_000, 100_000]);
        assert_eq!(member_add_checkpoints(2500), vec![0, 1000, 2500]);
        assert_eq!(member_add_checkpoints(50), vec![0, 50]);
        assert_eq!(member_add_checkpoints(0), vec![0]);
    }

    #[test]
    fn portion_is_at_least_one_when_there_is_anything() {
        assert_eq!(portion(0, 0.5), 0);
        assert_eq!(portion(10, 0.01), 1);
        assert_eq!(portion(1000, 0.03), 30);
    }

    #[test]
    fn generated_users_depend_only_on_seed_account_and_sequence() {
        let a = account(0, 1);
        let u = a.user_spec(7);
        assert_eq!(u, account(0, 1).user_spec(7));
        assert_ne!(u, a.user_spec(8));
        assert_ne!(u.user_name, account(1, 1).user_spec(7).user_name);
        assert!(u.user_name.ends_with("@tenant0.loadgen.example"), "{}", u.user_name);
        assert!(u.user_name.contains(".7@"), "{}", u.user_name);
        assert_eq!(u.email, u.user_name);
        assert!(u.active);
        // Changes always change something and keep userName and email together.
        for seq in 0..50 {
            let u = a.user_spec(seq);
            let c = a.changed(seq, &u, 1);
            assert_ne!(c, u);
            assert_eq!(c.email, c.user_name);
            assert!(bodies::user_update(&u, &c, Dialect::Legacy).is_some());
        }
    }
}
