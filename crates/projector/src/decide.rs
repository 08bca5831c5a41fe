//! Deciding and applying one event inside the projector's transaction.

use roster_db::StoreError;
use roster_eventlog::Record;
use roster_events::{Envelope, Member, Outcome, OutcomeError, Payload};
use roster_scim::ScimError;
use roster_scim::filter::{AttrPath, Filter};
use roster_scim::patch::{MemberOp, MemberRef, PatchLimits, PatchRequest};
use roster_scim::schema::ResourceKind;
use roster_store::licensing;
use roster_store::write::{self, GroupRow, UserRow, fold};
use sea_orm::ConnectionTrait;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::cache::{MemberChanges, RowCache};

type Decision = Result<Outcome, ScimError>;

fn ok(status: u16, version: Option<i64>) -> Decision {
    Ok(Outcome { status, version: version.map(|v| v as u64), error: None })
}

fn rejected(e: ScimError) -> Outcome {
    Outcome {
        status: e.status,
        version: None,
        error: Some(OutcomeError { scim_type: e.scim_type.map(|t| t.as_str().to_string()), detail: e.detail }),
    }
}

fn check_version(if_match: Option<u64>, current: i64) -> Result<(), ScimError> {
    match if_match {
        Some(v) if v as i64 != current => Err(ScimError::precondition_failed(format!(
            "If-Match W/\"{v}\" does not match the current version W/\"{current}\""
        ))),
        _ => Ok(()),
    }
}

/// What applying a batch needs beyond its transaction: the users whose license an event may change (so
/// the licensing worker re-evaluates exactly them), and the seat guard's policies and holder counts,
/// cached for the batch because the worker's changes arrive by the thousand.
#[derive(Debug, Default)]
pub struct ApplyContext {
    /// Accounts with a license policy: only their changes are marked.
    licensed: HashSet<String>,
    /// Users the last event may have changed the license of ([`licensing::WHOLE_ACCOUNT`] = all).
    touched: Vec<String>,
    policies: HashMap<String, roster_license_policy::Policy>,
    /// Active holders per (account, license), kept exact while only license changes apply.
    holders: HashMap<(String, String), u64>,
    /// The run of `user.created` events being applied, if prefetched.
    creates: Option<CreateRun>,
    /// The run of `license.changed` events being applied, if prefetched.
    licenses: Option<LicenseRun>,
    /// The batch's user rows, when the batch prefetched them (see [`crate::cache`]); without,
    /// each event reads and writes at once.
    users: Option<RowCache<UserRow>>,
    /// The batch's group rows, likewise.
    groups: Option<RowCache<GroupRow>>,
    /// The batch's membership changes not yet written, when the batch prefetched.
    members: Option<MemberChanges>,
    /// What the ids the batch's member changes name are, looked up before the batch applies and
    /// kept exact by its creates and deletions: (account, id) → `User`, `Group` or `None` (no
    /// such resource). An id not in it is looked up when needed.
    kinds: HashMap<(String, String), Option<&'static str>>,
    /// Users deleted by the batch and not yet deleted in the database, per account, when the batch
    /// caches its users: Entra's deprovisioning comes one user at a time between PATCHes, and each
    /// deletion was a statement of its own. The cache already knows them absent; whatever reads
    /// users, memberships or pins from the database outside it runs after they are written
    /// ([`Self::write_users`], [`Self::write_members`]), or checks that none of them is in its
    /// answer (a run of creates).
    deleting: BTreeMap<String, BTreeSet<String>>,
}

/// A user as a license change sees it: (active, license).
type LicenseState = (bool, Option<String>);

/// A row of a multi-row license update: (user, license, reason).
type LicenseUpdate<'a> = (&'a str, Option<&'a str>, &'a str);

/// A run of consecutive `license.changed` events (a policy change re-licenses thousands of users):
/// the users' (active, license) are looked up once, each change is decided against that state,
/// and the updates are written together when the run ends. Exact for the same reason as
/// [`CreateRun`]; the seat guard's policy and holder counts are loaded before the run changes
/// anything, and kept exact by each applied change as before.
#[derive(Debug, Default)]
struct LicenseRun {
    /// The events the lookup covered.
    events: HashSet<uuid::Uuid>,
    /// (account, user) → (active, license), or `None` for a user that does not exist.
    users: HashMap<(String, String), Option<LicenseState>>,
    /// (account, user) → the license and reason to write; the last change of a user wins.
    pending: HashMap<(String, String), (Option<String>, String)>,
}

/// A run of consecutive `user.created` events (an initial Entra cycle is thousands of them):
/// their ids and userNames are checked against one lookup made up front, and the new rows are
/// inserted together when the run ends, instead of three round trips per user. Exact because
/// nothing else touches the users table while the run lasts: any other event ends it first.
#[derive(Debug, Default)]
struct CreateRun {
    /// The events the lookup covered.
    events: HashSet<uuid::Uuid>,
    /// (account, id) of existing users: in the database, or created earlier in the run.
    ids: HashSet<(String, String)>,
    /// (account, folded userName) of existing users.
    names: HashSet<(String, String)>,
    /// Rows created by the run, in order; not yet inserted unless `inserted`.
    pending: Vec<(String, UserRow)>,
    /// The run's one create was inserted when the run began ([`ApplyContext::create_alone`]).
    inserted: bool,
}

/// A table the batch's write-back cache holds (see [`crate::cache`]): how to read and write its rows.
trait Cached: Clone + Sized {
    /// The row's resource id.
    fn id(&self) -> &str;
    /// The context's cache of this table.
    fn cache(ctx: &mut ApplyContext) -> &mut Option<RowCache<Self>>;
    /// One row from the database.
    async fn find<C: ConnectionTrait>(c: &C, account: &str, id: &str) -> Result<Option<Self>, StoreError>;
    /// Writes one changed row.
    async fn update<C: ConnectionTrait>(c: &C, account: &str, row: &Self) -> Result<(), StoreError>;
    /// Writes many changed rows of one account.
    async fn update_many<C: ConnectionTrait>(c: &C, account: &str, rows: &[&Self]) -> Result<(), StoreError>;
}

impl Cached for UserRow {
    fn id(&self) -> &str {
        &self.id
    }
    fn cache(ctx: &mut ApplyContext) -> &mut Option<RowCache<Self>> {
        &mut ctx.users
    }
    async fn find<C: ConnectionTrait>(c: &C, account: &str, id: &str) -> Result<Option<Self>, StoreError> {
        write::find_user(c, account, id).await
    }
    async fn update<C: ConnectionTrait>(c: &C, account: &str, row: &Self) -> Result<(), StoreError> {
        write::update_user(c, account, row).await
    }
    async fn update_many<C: ConnectionTrait>(c: &C, account: &str, rows: &[&Self]) -> Result<(), StoreError> {
        write::update_users(c, account, rows).await
    }
}

impl Cached for GroupRow {
    fn id(&self) -> &str {
        &self.id
    }
    fn cache(ctx: &mut ApplyContext) -> &mut Option<RowCache<Self>> {
        &mut ctx.groups
    }
    async fn find<C: ConnectionTrait>(c: &C, account: &str, id: &str) -> Result<Option<Self>, StoreError> {
        write::find_group(c, account, id).await
    }
    async fn update<C: ConnectionTrait>(c: &C, account: &str, row: &Self) -> Result<(), StoreError> {
        write::update_group(c, account, row).await
    }
    async fn update_many<C: ConnectionTrait>(c: &C, account: &str, rows: &[&Self]) -> Result<(), StoreError> {
        write::update_groups(c, account, rows).await
    }
}

impl ApplyContext {
    /// A context for a batch in which `licensed` accounts have a license policy.
    pub fn new(licensed: impl IntoIterator<Item = String>) -> Self {
        Self { licensed: licensed.into_iter().collect(), ..Self::default() }
    }

    /// The users the last applied event may have changed the license of (empty for unlicensed accounts).
    pub fn take_touched(&mut self) -> Vec<String> {
        std::mem::take(&mut self.touched)
    }

    fn is_licensed(&self, account: &str) -> bool {
        self.licensed.contains(account)
    }

    fn touch(&mut self, account: &str, ids: impl IntoIterator<Item = String>) {
        if self.is_licensed(account) {
            self.touched.extend(ids);
        }
    }

    /// Drops cached counts of an account after a change that may move them (an activation, a deletion).
    fn forget_counts(&mut self, account: &str) {
        self.holders.retain(|(a, _), _| a != account);
    }

    async fn policy<C: ConnectionTrait>(
        &mut self,
        c: &C,
        account: &str,
    ) -> Result<&roster_license_policy::Policy, StoreError> {
        if !self.policies.contains_key(account) {
            let p = licensing::get_policy(c, account).await?.unwrap_or_else(roster_license_policy::Policy::empty);
            self.policies.insert(account.to_string(), p);
        }
        Ok(&self.policies[account])
    }

    /// Whether the account's policy names a group of any of these displayNames. Only such a
    /// group's members can have their license changed by it (licensing counts a user's direct
    /// groups that a rule names), so only its changes mark users: at 100,000 members a rename's
    /// walk was the price of every rename in a licensed account, and every member change marked
    /// its users for the licensing worker.
    async fn names_group<C: ConnectionTrait>(
        &mut self,
        c: &C,
        account: &str,
        names: &[&str],
    ) -> Result<bool, StoreError> {
        if !self.is_licensed(account) {
            return Ok(false);
        }
        let policy = self.policy(c, account).await?;
        Ok(names.iter().any(|n| policy.names_group(n)))
    }

    async fn holders<C: ConnectionTrait>(&mut self, c: &C, account: &str, license: &str) -> Result<u64, StoreError> {
        let key = (account.to_string(), license.to_string());
        if let Some(n) = self.holders.get(&key) {
            return Ok(*n);
        }
        let n = licensing::count_holders(c, account, license).await?;
        self.holders.insert(key, n);
        Ok(n)
    }

    /// Starts a run when `next` (the batch's records from here on) begins with a `user.created` or a
    /// `license.changed` event: the run is the events of that kind up to the first of another kind.
    /// Ends the current run first.
    pub async fn begin_run<C: ConnectionTrait>(&mut self, c: &C, next: &[&Record]) -> Result<(), StoreError> {
        let Some(first) = next.first().and_then(|r| r.envelope.as_ref().ok()) else { return Ok(()) };
        if !matches!(first.payload, Payload::UserCreated { .. } | Payload::LicenseChanged { .. }) {
            return Ok(());
        }
        let kind = std::mem::discriminant(&first.payload);
        let run: Vec<&Envelope> = next
            .iter()
            .filter_map(|r| r.envelope.as_ref().ok())
            .take_while(|e| std::mem::discriminant(&e.payload) == kind)
            .collect();
        match first.payload {
            Payload::UserCreated { .. } => self.begin_creates(c, &run).await,
            _ => self.begin_licenses(c, &run).await,
        }
    }

    /// Starts a run of `user.created` events (see [`CreateRun`]). Ends the current run first.
    async fn begin_creates<C: ConnectionTrait>(&mut self, c: &C, events: &[&Envelope]) -> Result<(), StoreError> {
        self.flush(c).await?;
        if let [env] = events
            && self.create_alone(c, env).await?
        {
            return Ok(());
        }
        let mut run = CreateRun::default();
        let mut per_account: HashMap<&str, (Vec<&str>, Vec<String>)> = HashMap::new();
        for env in events {
            let Payload::UserCreated { attributes } = &env.payload else { continue };
            run.events.insert(env.event_id);
            let (ids, names) = per_account.entry(env.account_id.as_str()).or_default();
            ids.push(env.resource_id.as_str());
            names.push(fold(&user_name_of(attributes)));
        }
        for (account, (ids, names)) in per_account {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let mut taken = write::taken_ids_and_names(c, account, &ids, &names).await?;
            if self.hides_user_names(account, &names, &taken) {
                // A change or deletion held in the cache moves one of these ids or names: the
                // database must show it.
                self.write_users(c).await?;
                taken = write::taken_ids_and_names(c, account, &ids, &names).await?;
            }
            let (taken_ids, taken_names) = taken;
            run.ids.extend(taken_ids.into_iter().map(|id| (account.to_string(), id)));
            run.names.extend(taken_names.into_iter().map(|(name, _)| (account.to_string(), name)));
        }
        self.creates = Some(run);
        Ok(())
    }

    /// A run of one create (Entra's new hire between PATCHes and deprovisionings) inserted at once,
    /// unless its id or userName is taken: the unique indexes answer in the insert itself, where
    /// the lookup and the insert were two statements, the lookup mostly planning. Only when the
    /// cache cannot make that answer wrong: no changed row holds the userName now (the database
    /// does not show it taken). When the insert finds the id or the userName taken, the run is
    /// looked up as any other, weighing the changes and deletions the cache holds. Returns whether
    /// the run began inserted.
    async fn create_alone<C: ConnectionTrait>(&mut self, c: &C, env: &Envelope) -> Result<bool, StoreError> {
        let Payload::UserCreated { attributes } = &env.payload else { return Ok(false) };
        let account = env.account_id.as_str();
        let user_name = fold(&user_name_of(attributes));
        if self.users.as_ref().is_some_and(|cache| cache.dirty_holds_name(account, &user_name)) {
            return Ok(false);
        }
        let row = CreateRun::row(env, attributes);
        if !write::insert_user_if_free(c, account, &row).await? {
            return Ok(false);
        }
        let mut run = CreateRun { inserted: true, ..CreateRun::default() };
        run.events.insert(env.event_id);
        self.creates = Some(run);
        Ok(true)
    }

    /// Whether no group but `except` holds this displayName, case-insensitively. The database
    /// answers; the cache's changed groups are written back first only when one of them makes
    /// that answer stale (see [`Self::hides_group_name`]): a rename in a batch of member changes
    /// then costs no write-back of the groups those changes touched.
    async fn group_name_free<C: ConnectionTrait>(
        &mut self,
        c: &C,
        account: &str,
        name: &str,
        except: &str,
    ) -> Result<Result<(), ScimError>, StoreError> {
        let folded = fold(name);
        let mut holder = write::group_id_by_name(c, account, &folded).await?;
        if self.hides_group_name(account, &folded, holder.as_deref()) {
            self.write_groups(c).await?;
            holder = write::group_id_by_name(c, account, &folded).await?;
        }
        Ok(match holder {
            Some(id) if id != except => Err(ScimError::uniqueness(format!(
                "displayName {name:?} is already used by another group in this account"
            ))),
            _ => Ok(()),
        })
    }

    /// Whether a group change held in the cache makes the database's answer about this folded
    /// displayName stale: the group holding it in the database has a change waiting (it may have
    /// been renamed away), or a changed group holds it now.
    fn hides_group_name(&self, account: &str, folded: &str, holder: Option<&str>) -> bool {
        let Some(cache) = self.groups.as_ref() else { return false };
        holder.is_some_and(|h| cache.is_dirty(account, h)) || cache.dirty_holds_name(account, folded)
    }

    /// Whether a user change held in the cache makes the database's answer about these ids and
    /// folded userNames (`taken`: the ids taken, and each name taken with its holder) stale: a
    /// changed user holds one of the names in the database (and may have renamed away from it),
    /// or now holds one of them in the cache; or a held deletion frees one of the ids or names.
    /// Otherwise a run of creates can be checked, and inserted, while those changes wait: an Entra
    /// cycle's new hires between its PATCHes and deprovisionings then no longer cost a write-back
    /// each.
    fn hides_user_names(&self, account: &str, folded: &[&str], taken: &(Vec<String>, Vec<(String, String)>)) -> bool {
        let Some(cache) = self.users.as_ref() else { return false };
        let (ids, names) = taken;
        names.iter().any(|(_, holder)| cache.is_dirty(account, holder) || self.is_deleting(account, holder))
            || ids.iter().any(|id| self.is_deleting(account, id))
            || folded.iter().any(|name| cache.dirty_holds_name(account, name))
    }

    /// Starts a run of `license.changed` events (see [`LicenseRun`]). Ends the current run first.
    async fn begin_licenses<C: ConnectionTrait>(&mut self, c: &C, events: &[&Envelope]) -> Result<(), StoreError> {
        self.flush(c).await?;
        self.write_users(c).await?;
        let mut run = LicenseRun::default();
        let mut per_account: HashMap<&str, Vec<&str>> = HashMap::new();
        let mut granted: HashSet<(&str, &str)> = HashSet::new();
        for env in events {
            let Payload::LicenseChanged { user_id, to, .. } = &env.payload else { continue };
            run.events.insert(env.event_id);
            per_account.entry(env.account_id.as_str()).or_default().push(user_id.as_str());
            if let Some(to) = to {
                granted.insert((env.account_id.as_str(), to.as_str()));
            }
        }
        for (account, ids) in per_account {
            for id in &ids {
                run.users.insert((account.to_string(), (*id).to_string()), None);
            }
            for (id, active, license) in licensing::license_states(c, account, &ids).await? {
                run.users.insert((account.to_string(), id), Some((active, license)));
            }
        }
        // The seat guard reads the database only before the run has changed it. Only a license
        // with a seat limit needs its holders counted: at 100,000 users each count walked the
        // account's holders, once per run of changes.
        for (account, license) in granted {
            let limited = self.policy(c, account).await?.license(license).is_some_and(|lt| lt.seats.is_some());
            if limited {
                self.holders(c, account, license).await?;
            }
        }
        self.licenses = Some(run);
        Ok(())
    }

    /// Turns on the row caches for a batch (see [`crate::cache`]): loads the users and groups
    /// its PATCH, PUT and DELETE events are about, with one query per account and table.
    pub async fn prefetch<C: ConnectionTrait>(&mut self, c: &C, batch: &[&Record]) -> Result<(), StoreError> {
        let mut users: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        let mut groups: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        let mut members: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for env in batch.iter().filter_map(|r| r.envelope.as_ref().ok()) {
            let account = env.account_id.as_str();
            match &env.payload {
                Payload::GroupCreated { members: listed, .. } | Payload::GroupReplaced { members: listed, .. } => {
                    members.entry(account).or_default().extend(listed.iter().map(|m| m.value.as_str()));
                }
                Payload::GroupPatched { patch, .. } => patch_values(patch, members.entry(account).or_default()),
                _ => {}
            }
            let ids = match env.payload {
                Payload::UserPatched { .. } | Payload::UserReplaced { .. } | Payload::UserDeleted { .. } => &mut users,
                Payload::GroupPatched { .. } | Payload::GroupReplaced { .. } | Payload::GroupDeleted { .. } => {
                    &mut groups
                }
                _ => continue,
            };
            ids.entry(env.account_id.as_str()).or_default().insert(env.resource_id.as_str());
        }
        let mut user_cache = RowCache::with_names(|u: &UserRow| fold(&u.user_name));
        for (account, ids) in users {
            let ids: Vec<&str> = ids.into_iter().collect();
            let rows = write::find_users(c, account, &ids).await?;
            user_cache.load(account, ids, rows, |u| u.id.as_str());
        }
        let mut group_cache = RowCache::with_names(|g: &GroupRow| fold(&g.display_name));
        for (account, ids) in groups {
            let ids: Vec<&str> = ids.into_iter().collect();
            let rows = write::find_groups(c, account, &ids).await?;
            group_cache.load(account, ids, rows, |g| g.id.as_str());
        }
        for (account, ids) in members {
            let ids: Vec<String> = ids.into_iter().map(str::to_owned).collect();
            let found = write::resource_kinds(c, account, &ids).await?;
            for id in ids {
                let kind = found.get(&id).copied();
                self.kinds.insert((account.to_string(), id), kind);
            }
        }
        self.users = Some(user_cache);
        self.groups = Some(group_cache);
        self.members = Some(MemberChanges::default());
        Ok(())
    }

    /// Resolves member ids to their kinds; any id that is not a user or group of this account (or
    /// is the group itself) rejects the whole request.
    async fn resolve_members<C: ConnectionTrait>(
        &mut self,
        c: &C,
        account: &str,
        group_id: &str,
        ids: &[String],
    ) -> Result<Result<Vec<(String, &'static str)>, ScimError>, StoreError> {
        if ids.iter().any(|id| id == group_id) {
            return Ok(Err(ScimError::invalid_value("a group cannot be a member of itself")));
        }
        let unknown: Vec<String> =
            ids.iter().filter(|id| !self.kinds.contains_key(&(account.to_string(), (*id).clone()))).cloned().collect();
        if !unknown.is_empty() {
            // A user the batch deleted is among the unknown ids: its kind was forgotten.
            self.write_deletions(c).await?;
            let found = write::resource_kinds(c, account, &unknown).await?;
            for id in unknown {
                let kind = found.get(&id).copied();
                self.kinds.insert((account.to_string(), id), kind);
            }
        }
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            match self.kinds.get(&(account.to_string(), id.clone())).copied().flatten() {
                Some(k) => out.push((id.clone(), k)),
                None => {
                    return Ok(Err(ScimError::invalid_value(format!(
                        "member {id:?} does not exist in this account; no change was made"
                    ))));
                }
            }
        }
        Ok(Ok(out))
    }

    /// A resource was created or deleted: keeps the looked-up kinds exact. A group wins over a
    /// user of the same id, as in [`write::resource_kinds`]; a deletion forgets the id, since
    /// the other kind may still hold it.
    fn resource_changed(&mut self, account: &str, id: &str, created: Option<&'static str>) {
        let key = (account.to_string(), id.to_string());
        match created {
            Some("Group") => {
                self.kinds.insert(key, Some("Group"));
            }
            Some(kind) => {
                if let Some(known) = self.kinds.get_mut(&key)
                    && *known != Some("Group")
                {
                    *known = Some(kind);
                }
            }
            None => {
                self.kinds.remove(&key);
            }
        }
    }

    /// Adds memberships: held with the batch's other member changes, or written at once.
    async fn add_members<C: ConnectionTrait>(
        &mut self,
        c: &C,
        account: &str,
        group: &str,
        rows: &[(String, &'static str)],
    ) -> Result<(), StoreError> {
        match self.members.as_mut() {
            Some(m) => {
                for (id, kind) in rows {
                    m.add(account, group, id, kind);
                }
                Ok(())
            }
            None => write::add_members(c, account, group, rows).await,
        }
    }

    /// Removes memberships: held with the batch's other member changes, or written at once.
    async fn remove_members<C: ConnectionTrait>(
        &mut self,
        c: &C,
        account: &str,
        group: &str,
        ids: &[String],
    ) -> Result<(), StoreError> {
        match self.members.as_mut() {
            Some(m) => {
                for id in ids {
                    m.remove(account, group, id);
                }
                Ok(())
            }
            None => write::remove_members(c, account, group, ids).await,
        }
    }

    /// Removes every member of a group; the held changes to its members go with them.
    async fn remove_all_members<C: ConnectionTrait>(
        &mut self,
        c: &C,
        account: &str,
        group: &str,
    ) -> Result<(), StoreError> {
        if let Some(m) = self.members.as_mut() {
            m.drop_group(account, group);
        }
        write::remove_all_members(c, account, group).await
    }

    /// Writes the held membership changes: before anything reads the members table, and at the
    /// end of the batch.
    pub async fn write_members<C: ConnectionTrait>(&mut self, c: &C) -> Result<(), StoreError> {
        // A deleted user's memberships go with the held deletion.
        self.write_deletions(c).await?;
        let Some(m) = self.members.as_mut().filter(|m| !m.is_empty()) else { return Ok(()) };
        for (account, (adds, removes)) in m.take() {
            let adds: Vec<(&str, &str, &'static str)> =
                adds.iter().map(|(g, id, kind)| (g.as_str(), id.as_str(), *kind)).collect();
            let removes: Vec<(&str, &str)> = removes.iter().map(|(g, id)| (g.as_str(), id.as_str())).collect();
            write::change_members(c, &account, &adds, &removes).await?;
        }
        Ok(())
    }

    /// The user members of a group as the database holds them, after the held changes.
    async fn user_members<C: ConnectionTrait>(
        &mut self,
        c: &C,
        account: &str,
        group: &str,
    ) -> Result<Vec<String>, StoreError> {
        self.write_members(c).await?;
        user_members(c, account, group).await
    }

    /// A user or group as the events applied so far left it.
    async fn row<T: Cached, C: ConnectionTrait>(
        &mut self,
        c: &C,
        account: &str,
        id: &str,
    ) -> Result<Option<T>, StoreError> {
        if let Some(row) = T::cache(self).as_ref().and_then(|cache| cache.get(account, id)) {
            return Ok(row);
        }
        let row = T::find(c, account, id).await?;
        if let Some(cache) = T::cache(self).as_mut() {
            cache.remember(account, id, row.clone());
        }
        Ok(row)
    }

    /// Stores a changed user or group: in the cache when there is one, otherwise at once.
    async fn put<T: Cached, C: ConnectionTrait>(&mut self, c: &C, account: &str, row: T) -> Result<(), StoreError> {
        match T::cache(self).as_mut() {
            Some(cache) => {
                let id = row.id().to_owned();
                cache.put(account, &id, row);
                Ok(())
            }
            None => T::update(c, account, &row).await,
        }
    }

    /// A user or group row was deleted, or written outside the cache.
    fn changed_elsewhere<T: Cached>(&mut self, account: &str, id: &str, deleted: bool) {
        if let Some(cache) = T::cache(self).as_mut() {
            cache.changed_elsewhere(account, id, deleted);
        }
    }

    /// Writes back the changed rows of one table.
    async fn write_back<T: Cached, C: ConnectionTrait>(&mut self, c: &C) -> Result<(), StoreError> {
        let Some(cache) = T::cache(self).as_mut() else { return Ok(()) };
        for (account, rows) in cache.take_dirty() {
            let rows: Vec<&T> = rows.iter().collect();
            T::update_many(c, &account, &rows).await?;
        }
        Ok(())
    }

    /// Writes back the changed user rows: before anything reads users' attributes from the
    /// database, and at the end of the batch.
    pub async fn write_users<C: ConnectionTrait>(&mut self, c: &C) -> Result<(), StoreError> {
        self.write_deletions(c).await?;
        self.write_back::<UserRow, C>(c).await
    }

    /// Deletes a user with its memberships and pin: held with the batch's other deletions when the
    /// batch caches its users (see [`ApplyContext::deleting`]), at once otherwise.
    async fn delete_user<C: ConnectionTrait>(&mut self, c: &C, account: &str, id: &str) -> Result<(), StoreError> {
        if self.users.is_none() {
            return write::delete_user(c, account, id).await;
        }
        self.deleting.entry(account.to_string()).or_default().insert(id.to_string());
        Ok(())
    }

    /// Whether the batch deleted this user and the database still holds it.
    fn is_deleting(&self, account: &str, id: &str) -> bool {
        self.deleting.get(account).is_some_and(|ids| ids.contains(id))
    }

    /// Writes the held deletions of users, one statement per account.
    async fn write_deletions<C: ConnectionTrait>(&mut self, c: &C) -> Result<(), StoreError> {
        for (account, ids) in std::mem::take(&mut self.deleting) {
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            write::delete_users(c, &account, &ids).await?;
        }
        Ok(())
    }

    /// Writes back the changed group rows: before a group name check whose answer they make
    /// stale, and at the end of the batch.
    pub async fn write_groups<C: ConnectionTrait>(&mut self, c: &C) -> Result<(), StoreError> {
        self.write_back::<GroupRow, C>(c).await
    }

    /// Whether the current run of creates or of license changes covers this event.
    pub fn run_covers(&self, env: &Envelope) -> bool {
        self.creates.as_ref().is_some_and(|r| r.events.contains(&env.event_id))
            || self.licenses.as_ref().is_some_and(|r| r.events.contains(&env.event_id))
    }

    /// Ends the current run: writes its rows. Called before any other event applies and at the
    /// end of the batch.
    pub async fn flush<C: ConnectionTrait>(&mut self, c: &C) -> Result<(), StoreError> {
        if let Some(run) = self.creates.take() {
            if !run.inserted {
                let rows: Vec<(&str, &UserRow)> = run.pending.iter().map(|(a, u)| (a.as_str(), u)).collect();
                write::insert_users(c, &rows).await?;
            }
            for (account, row) in &run.pending {
                self.changed_elsewhere::<UserRow>(account, &row.id, false);
            }
        }
        if let Some(run) = self.licenses.take() {
            let mut per_account: HashMap<&str, Vec<LicenseUpdate<'_>>> = HashMap::new();
            for ((account, user), (license, reason)) in &run.pending {
                per_account.entry(account.as_str()).or_default().push((
                    user.as_str(),
                    license.as_deref(),
                    reason.as_str(),
                ));
            }
            for (account, rows) in per_account {
                licensing::set_licenses(c, account, &rows).await?;
            }
            for (account, user) in run.pending.keys() {
                self.changed_elsewhere::<UserRow>(account, user, false);
            }
        }
        Ok(())
    }

    fn moved_seat(&mut self, account: &str, from: Option<&str>, to: Option<&str>) {
        if let Some(n) = from.and_then(|l| self.holders.get_mut(&(account.to_string(), l.to_string()))) {
            *n = n.saturating_sub(1);
        }
        if let Some(n) = to.and_then(|l| self.holders.get_mut(&(account.to_string(), l.to_string()))) {
            *n += 1;
        }
    }
}

/// User members of a group (licensing counts direct user membership only).
async fn user_members<C: ConnectionTrait>(c: &C, account: &str, group: &str) -> Result<Vec<String>, StoreError> {
    Ok(write::member_rows(c, account, group)
        .await?
        .into_iter()
        .filter(|(_, t)| t == "User")
        .map(|(id, _)| id)
        .collect())
}

/// Decides and applies one event; a rejection is an `Ok` outcome with an error, a database failure
/// is an `Err` that aborts the whole batch (to be retried).
pub async fn apply_event<C: ConnectionTrait>(
    c: &C,
    env: &Envelope,
    ctx: &mut ApplyContext,
) -> Result<Outcome, StoreError> {
    let account = env.account_id.as_str();
    let in_run = ctx.run_covers(env);
    if !in_run {
        ctx.flush(c).await?;
    }
    // Only these events keep to the user cache (groups read users' existence alone, from the
    // kinds the batch looked up, and write the held deletions before looking up any other; a run
    // of creates checked its ids and names against the cache when it began); anything else may
    // read users' attributes from the database.
    let keeps_to_cache = matches!(
        env.payload,
        Payload::UserPatched { .. }
            | Payload::UserReplaced { .. }
            | Payload::UserDeleted { .. }
            | Payload::GroupCreated { .. }
            | Payload::GroupReplaced { .. }
            | Payload::GroupPatched { .. }
            | Payload::GroupDeleted { .. }
    ) || (in_run && matches!(env.payload, Payload::UserCreated { .. }));
    if !keeps_to_cache {
        ctx.write_users(c).await?;
    }
    let decision = match &env.payload {
        Payload::UserCreated { attributes } => match ctx.creates.as_mut().filter(|_| in_run) {
            Some(run) => run.create(env, attributes),
            None => {
                let decision = user_created(c, env, attributes).await?;
                ctx.changed_elsewhere::<UserRow>(account, &env.resource_id, false);
                decision
            }
        },
        Payload::UserReplaced { attributes, if_match } => {
            user_replaced(c, env, attributes.clone(), *if_match, ctx).await?
        }
        Payload::UserPatched { patch, if_match } => user_patched(c, env, patch, *if_match, ctx).await?,
        Payload::UserDeleted { if_match } => user_deleted(c, env, *if_match, ctx).await?,
        Payload::GroupCreated { attributes, members } => group_created(c, env, attributes, members, ctx).await?,
        Payload::GroupReplaced { attributes, members, if_match } => {
            group_replaced(c, env, attributes, members, *if_match, ctx).await?
        }
        Payload::GroupPatched { patch, if_match } => group_patched(c, env, patch, *if_match, ctx).await?,
        Payload::GroupDeleted { if_match } => group_deleted(c, env, *if_match, ctx).await?,
        Payload::LicensePolicySet { policy } => policy_set(c, env, policy).await?,
        Payload::LicenseOverrideSet { user_id, license } => override_set(c, env, user_id, license).await?,
        Payload::LicenseOverrideRemoved { user_id } => override_removed(c, env, user_id).await?,
        Payload::LicenseChanged { user_id, from, to, reason } => {
            license_changed(c, env, user_id, from.as_deref(), to.as_deref(), reason, ctx).await?
        }
        Payload::LicenseHoldResolved { hold_id, confirm } => hold_resolved(c, env, hold_id, *confirm).await?,
    };
    let applied = decision.as_ref().is_ok_and(|o| o.status < 300);
    if applied {
        match &env.payload {
            Payload::UserCreated { .. } => ctx.resource_changed(account, &env.resource_id, Some("User")),
            Payload::GroupCreated { .. } => ctx.resource_changed(account, &env.resource_id, Some("Group")),
            Payload::UserDeleted { .. } | Payload::GroupDeleted { .. } => {
                ctx.resource_changed(account, &env.resource_id, None);
            }
            _ => {}
        }
    }
    match &env.payload {
        // A PATCH or PUT marks its user only when it changes `active` (`save_user`).
        Payload::UserCreated { .. } | Payload::UserDeleted { .. } if applied => {
            ctx.forget_counts(account);
            ctx.touch(account, [env.resource_id.clone()]);
        }
        Payload::LicenseOverrideSet { user_id, .. } | Payload::LicenseOverrideRemoved { user_id } if applied => {
            ctx.touch(account, [user_id.clone()]);
        }
        Payload::LicensePolicySet { .. } if applied => {
            ctx.licensed.insert(account.to_string());
            ctx.policies.remove(account);
            ctx.touch(account, [licensing::WHOLE_ACCOUNT.to_string()]);
        }
        Payload::LicenseHoldResolved { .. } if applied => ctx.touch(account, [licensing::WHOLE_ACCOUNT.to_string()]),
        // A proposal the state overtook: the worker must look at this user again.
        Payload::LicenseChanged { user_id, .. } if !applied => ctx.touch(account, [user_id.clone()]),
        _ => {}
    }
    Ok(decision.unwrap_or_else(rejected))
}

fn user_name_of(attrs: &Map<String, Value>) -> String {
    attrs.get("userName").and_then(Value::as_str).unwrap_or_default().to_string()
}

async fn ensure_user_name_free<C: ConnectionTrait>(
    c: &C,
    account: &str,
    user_name: &str,
    except: &str,
) -> Result<Result<(), ScimError>, StoreError> {
    Ok(match write::user_id_by_name(c, account, &fold(user_name)).await? {
        Some(id) if id != except => Err(ScimError::uniqueness(format!(
            "userName {user_name:?} is already used by another user in this account"
        ))),
        _ => Ok(()),
    })
}

/// A create decided with a query per check: the path of an `apply_event` outside a run, and the
/// reference `tests/batching.rs` holds [`CreateRun::create`] to.
async fn user_created<C: ConnectionTrait>(
    c: &C,
    env: &Envelope,
    attrs: &Map<String, Value>,
) -> Result<Decision, StoreError> {
    let account = &env.account_id;
    if write::find_user(c, account, &env.resource_id).await?.is_some() {
        return Ok(Err(ScimError::uniqueness(format!("a user with id {:?} already exists", env.resource_id))));
    }
    if let Err(e) = ensure_user_name_free(c, account, &user_name_of(attrs), "").await? {
        return Ok(Err(e));
    }
    write::insert_user(c, account, &CreateRun::row(env, attrs)).await?;
    Ok(ok(201, Some(1)))
}

impl CreateRun {
    /// The row a create makes.
    fn row(env: &Envelope, attrs: &Map<String, Value>) -> UserRow {
        UserRow::from_attributes(env.resource_id.clone(), attrs.clone(), env.time.clone(), env.time.clone(), 1, None)
    }

    /// [`user_created`] against the run's lookup: the same checks, in the same order.
    fn create(&mut self, env: &Envelope, attrs: &Map<String, Value>) -> Decision {
        let account = env.account_id.clone();
        let id_key = (account.clone(), env.resource_id.clone());
        if self.ids.contains(&id_key) {
            return Err(ScimError::uniqueness(format!("a user with id {:?} already exists", env.resource_id)));
        }
        let user_name = user_name_of(attrs);
        let name_key = (account.clone(), fold(&user_name));
        if self.names.contains(&name_key) {
            return Err(ScimError::uniqueness(format!(
                "userName {user_name:?} is already used by another user in this account"
            )));
        }
        let row = Self::row(env, attrs);
        self.ids.insert(id_key);
        self.names.insert(name_key);
        self.pending.push((account, row));
        ok(201, Some(1))
    }
}

fn not_found(kind: &str, id: &str) -> ScimError {
    ScimError::not_found(format!("{kind} {id:?} not found"))
}

async fn save_user<C: ConnectionTrait>(
    c: &C,
    env: &Envelope,
    mut current: UserRow,
    attrs: Map<String, Value>,
    ctx: &mut ApplyContext,
) -> Result<Decision, StoreError> {
    if attrs == current.resource {
        return Ok(ok(200, Some(current.version)));
    }
    if fold(&user_name_of(&attrs)) != fold(&current.user_name) {
        // The check reads the database: renames held in the cache must be there first.
        ctx.write_users(c).await?;
        if let Err(e) = ensure_user_name_free(c, &env.account_id, &user_name_of(&attrs), &current.id).await? {
            return Ok(Err(e));
        }
    }
    let version = current.version + 1;
    let was_active = current.active;
    current =
        UserRow::from_attributes(current.id, attrs, current.created, env.time.clone(), version, current.license_type);
    // Of a user's attributes, only `active` is an input of the license policy (with the user's
    // groups and override): other changes leave the license as it is, and marking their users made
    // the licensing worker evaluate every user Entra touched each cycle.
    if current.active != was_active {
        ctx.forget_counts(&env.account_id);
        ctx.touch(&env.account_id, [current.id.clone()]);
    }
    // A deactivated user's seat is free at once (the seat guard counts active holders only); the
    // licensing worker records the revocation as a `license.changed` event with reason `deactivated`.
    ctx.put(c, &env.account_id, current).await?;
    Ok(ok(200, Some(version)))
}

async fn user_replaced<C: ConnectionTrait>(
    c: &C,
    env: &Envelope,
    attrs: Map<String, Value>,
    if_match: Option<u64>,
    ctx: &mut ApplyContext,
) -> Result<Decision, StoreError> {
    let Some(current) = ctx.row::<UserRow, _>(c, &env.account_id, &env.resource_id).await? else {
        return Ok(Err(not_found("User", &env.resource_id)));
    };
    if let Err(e) = check_version(if_match, current.version) {
        return Ok(Err(e));
    }
    save_user(c, env, current, attrs, ctx).await
}

async fn user_patched<C: ConnectionTrait>(
    c: &C,
    env: &Envelope,
    patch: &Value,
    if_match: Option<u64>,
    ctx: &mut ApplyContext,
) -> Result<Decision, StoreError> {
    let Some(current) = ctx.row::<UserRow, _>(c, &env.account_id, &env.resource_id).await? else {
        return Ok(Err(not_found("User", &env.resource_id)));
    };
    if let Err(e) = check_version(if_match, current.version) {
        return Ok(Err(e));
    }
    let mut attrs = current.resource.clone();
    let applied = PatchRequest::parse(patch, &PatchLimits::UNBOUNDED)
        .and_then(|req| roster_scim::patch::apply(ResourceKind::User, &mut attrs, &req));
    match applied {
        Err(e) => Ok(Err(e)),
        Ok(ops) if !ops.is_empty() => Ok(Err(ScimError::invalid_path("users have no members attribute"))),
        Ok(_) => save_user(c, env, current, attrs, ctx).await,
    }
}

async fn user_deleted<C: ConnectionTrait>(
    c: &C,
    env: &Envelope,
    if_match: Option<u64>,
    ctx: &mut ApplyContext,
) -> Result<Decision, StoreError> {
    let Some(current) = ctx.row::<UserRow, _>(c, &env.account_id, &env.resource_id).await? else {
        return Ok(Err(not_found("User", &env.resource_id)));
    };
    if let Err(e) = check_version(if_match, current.version) {
        return Ok(Err(e));
    }
    if let Some(m) = ctx.members.as_mut() {
        m.drop_member(&env.account_id, &env.resource_id);
    }
    // The seat goes with the row, and the pin with it.
    ctx.delete_user(c, &env.account_id, &env.resource_id).await?;
    ctx.changed_elsewhere::<UserRow>(&env.account_id, &env.resource_id, true);
    Ok(ok(204, None))
}

/// Every string a PATCH body holds under a `value` key, at any depth: a superset of the member
/// ids its operations add, for [`ApplyContext::prefetch`] to look up with the batch's others. An
/// id it misses is looked up when the event applies; one it adds costs nothing.
fn patch_values<'a>(patch: &'a Value, out: &mut BTreeSet<&'a str>) {
    match patch {
        Value::Object(map) => {
            for (k, v) in map {
                match v {
                    Value::String(s) if k.eq_ignore_ascii_case("value") => {
                        out.insert(s.as_str());
                    }
                    _ => patch_values(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| patch_values(v, out)),
        _ => {}
    }
}

fn member_ids(members: &[Member]) -> Vec<String> {
    let mut ids: Vec<String> = members.iter().map(|m| m.value.clone()).collect();
    ids.sort();
    ids.dedup();
    ids
}

fn group_name_of(attrs: &Map<String, Value>) -> String {
    attrs.get("displayName").and_then(Value::as_str).unwrap_or_default().to_string()
}

async fn group_created<C: ConnectionTrait>(
    c: &C,
    env: &Envelope,
    attrs: &Map<String, Value>,
    members: &[Member],
    ctx: &mut ApplyContext,
) -> Result<Decision, StoreError> {
    let account = &env.account_id;
    if ctx.row::<GroupRow, _>(c, account, &env.resource_id).await?.is_some() {
        return Ok(Err(ScimError::uniqueness(format!("a group with id {:?} already exists", env.resource_id))));
    }
    if let Err(e) = ctx.group_name_free(c, account, &group_name_of(attrs), "").await? {
        return Ok(Err(e));
    }
    let resolved = match ctx.resolve_members(c, account, &env.resource_id, &member_ids(members)).await? {
        Ok(r) => r,
        Err(e) => return Ok(Err(e)),
    };
    let row = GroupRow::from_attributes(env.resource_id.clone(), attrs.clone(), env.time.clone(), env.time.clone(), 1);
    write::insert_group(c, account, &row).await?;
    ctx.changed_elsewhere::<GroupRow>(account, &row.id, false);
    ctx.add_members(c, account, &row.id, &resolved).await?;
    if ctx.names_group(c, account, &[&row.display_name]).await? {
        ctx.touch(account, resolved.into_iter().filter(|(_, k)| *k == "User").map(|(id, _)| id));
    }
    Ok(ok(201, Some(1)))
}

async fn group_replaced<C: ConnectionTrait>(
    c: &C,
    env: &Envelope,
    attrs: &Map<String, Value>,
    members: &[Member],
    if_match: Option<u64>,
    ctx: &mut ApplyContext,
) -> Result<Decision, StoreError> {
    let account = &env.account_id;
    let Some(current) = ctx.row::<GroupRow, _>(c, account, &env.resource_id).await? else {
        return Ok(Err(not_found("Group", &env.resource_id)));
    };
    if let Err(e) = check_version(if_match, current.version) {
        return Ok(Err(e));
    }
    if let Err(e) = ctx.group_name_free(c, account, &group_name_of(attrs), &current.id).await? {
        return Ok(Err(e));
    }
    let resolved = match ctx.resolve_members(c, account, &current.id, &member_ids(members)).await? {
        Ok(r) => r,
        Err(e) => return Ok(Err(e)),
    };
    let version = current.version + 1;
    let row = GroupRow::from_attributes(current.id.clone(), attrs.clone(), current.created, env.time.clone(), version);
    if ctx.names_group(c, account, &[&current.display_name, &row.display_name]).await? {
        let before = ctx.user_members(c, account, &row.id).await?;
        ctx.touch(account, before);
        ctx.touch(account, resolved.iter().filter(|(_, k)| *k == "User").map(|(id, _)| id.clone()));
    }
    ctx.remove_all_members(c, account, &row.id).await?;
    ctx.add_members(c, account, &row.id, &resolved).await?;
    ctx.put(c, account, row).await?;
    Ok(ok(200, Some(version)))
}

fn refs_ids(refs: &[MemberRef]) -> Vec<String> {
    let mut ids: Vec<String> = refs.iter().map(|m| m.value.clone()).collect();
    ids.sort();
    ids.dedup();
    ids
}

async fn group_patched<C: ConnectionTrait>(
    c: &C,
    env: &Envelope,
    patch: &Value,
    if_match: Option<u64>,
    ctx: &mut ApplyContext,
) -> Result<Decision, StoreError> {
    let account = &env.account_id;
    let Some(current) = ctx.row::<GroupRow, _>(c, account, &env.resource_id).await? else {
        return Ok(Err(not_found("Group", &env.resource_id)));
    };
    if let Err(e) = check_version(if_match, current.version) {
        return Ok(Err(e));
    }
    let mut attrs = current.resource.clone();
    let ops = match PatchRequest::parse(patch, &PatchLimits::UNBOUNDED)
        .and_then(|req| roster_scim::patch::apply(ResourceKind::Group, &mut attrs, &req))
    {
        Ok(ops) => ops,
        Err(e) => return Ok(Err(e)),
    };
    if group_name_of(&attrs) != current.display_name
        && let Err(e) = ctx.group_name_free(c, account, &group_name_of(&attrs), &current.id).await?
    {
        return Ok(Err(e));
    }
    // Decide everything before writing anything: a request naming an unknown member changes nothing.
    let added: Vec<String> = ops
        .iter()
        .flat_map(|op| match op {
            MemberOp::Add(refs) | MemberOp::Replace(refs) => refs_ids(refs),
            _ => Vec::new(),
        })
        .collect();
    let mut added = added;
    added.sort();
    added.dedup();
    let kinds = match ctx.resolve_members(c, account, &current.id, &added).await? {
        Ok(r) => r,
        Err(e) => return Ok(Err(e)),
    };
    let kind_of = |id: &str| kinds.iter().find(|(k, _)| k == id).map(|(_, t)| *t);

    let attrs_changed = attrs != current.resource;
    if !attrs_changed && ops.is_empty() {
        return Ok(ok(204, Some(current.version)));
    }
    if ctx.names_group(c, account, &[&current.display_name, &group_name_of(&attrs)]).await? {
        // Exactly the users whose groups change: every member on a rename or a wholesale replacement,
        // otherwise the named ones (an add to a 100,000-member group re-evaluates one user).
        let renamed = fold(&group_name_of(&attrs)) != fold(&current.display_name);
        let wholesale = ops.iter().any(|op| matches!(op, MemberOp::RemoveAll | MemberOp::Replace(_)));
        if renamed || wholesale {
            let before = ctx.user_members(c, account, &current.id).await?;
            ctx.touch(account, before);
        }
        for op in &ops {
            match op {
                MemberOp::Add(refs) | MemberOp::Replace(refs) => ctx.touch(account, refs_ids(refs)),
                MemberOp::Remove(ids) => ctx.touch(account, ids.iter().cloned()),
                MemberOp::RemoveAll => {}
                MemberOp::RemoveMatching(filter) => {
                    ctx.write_members(c).await?;
                    let matching = matching_members(c, account, &current.id, filter).await?;
                    ctx.touch(account, matching);
                }
            }
        }
    }
    for op in &ops {
        match op {
            MemberOp::Add(refs) => {
                let rows: Vec<(String, &'static str)> =
                    refs_ids(refs).into_iter().filter_map(|id| kind_of(&id).map(|k| (id, k))).collect();
                ctx.add_members(c, account, &current.id, &rows).await?;
            }
            MemberOp::Replace(refs) => {
                ctx.remove_all_members(c, account, &current.id).await?;
                let rows: Vec<(String, &'static str)> =
                    refs_ids(refs).into_iter().filter_map(|id| kind_of(&id).map(|k| (id, k))).collect();
                ctx.add_members(c, account, &current.id, &rows).await?;
            }
            MemberOp::Remove(ids) => ctx.remove_members(c, account, &current.id, ids).await?,
            MemberOp::RemoveAll => ctx.remove_all_members(c, account, &current.id).await?,
            MemberOp::RemoveMatching(filter) => {
                ctx.write_members(c).await?;
                let matching = matching_members(c, account, &current.id, filter).await?;
                ctx.remove_members(c, account, &current.id, &matching).await?;
            }
        }
    }
    let version = current.version + 1;
    let row = GroupRow::from_attributes(current.id.clone(), attrs, current.created, env.time.clone(), version);
    ctx.put(c, account, row).await?;
    Ok(ok(204, Some(version)))
}

/// Evaluates a member filter (`members[type eq "Group"]`) against the group's current members.
async fn matching_members<C: ConnectionTrait>(
    c: &C,
    account: &str,
    group: &str,
    filter: &Filter,
) -> Result<Vec<String>, StoreError> {
    let rows = write::member_rows(c, account, group).await?;
    let value_path = Filter::ValuePath { path: AttrPath::simple("members"), filter: Box::new(filter.clone()) };
    Ok(rows
        .into_iter()
        .filter(|(id, kind)| {
            let doc = json!({"members": [{"value": id, "type": kind}]});
            roster_scim::filter::matches(&value_path, ResourceKind::Group, &doc)
        })
        .map(|(id, _)| id)
        .collect())
}

async fn group_deleted<C: ConnectionTrait>(
    c: &C,
    env: &Envelope,
    if_match: Option<u64>,
    ctx: &mut ApplyContext,
) -> Result<Decision, StoreError> {
    let Some(current) = ctx.row::<GroupRow, _>(c, &env.account_id, &env.resource_id).await? else {
        return Ok(Err(not_found("Group", &env.resource_id)));
    };
    if let Err(e) = check_version(if_match, current.version) {
        return Ok(Err(e));
    }
    if ctx.names_group(c, &env.account_id, &[&current.display_name]).await? {
        let before = ctx.user_members(c, &env.account_id, &env.resource_id).await?;
        ctx.touch(&env.account_id, before);
    }
    if let Some(m) = ctx.members.as_mut() {
        m.drop_group(&env.account_id, &env.resource_id);
        m.drop_member(&env.account_id, &env.resource_id);
    }
    write::delete_group(c, &env.account_id, &env.resource_id).await?;
    ctx.changed_elsewhere::<GroupRow>(&env.account_id, &env.resource_id, true);
    Ok(ok(204, None))
}

fn conflict(detail: impl Into<String>) -> ScimError {
    ScimError::status(409, detail)
}

async fn policy_set<C: ConnectionTrait>(c: &C, env: &Envelope, policy: &Value) -> Result<Decision, StoreError> {
    match roster_license_policy::parse_policy(policy) {
        Err(e) => Ok(Err(ScimError::invalid_value(format!("invalid license policy: {}", e.messages().join("; "))))),
        Ok(p) => {
            licensing::set_policy(c, &env.account_id, &p, &env.time).await?;
            Ok(ok(200, None))
        }
    }
}

async fn override_set<C: ConnectionTrait>(
    c: &C,
    env: &Envelope,
    user_id: &str,
    license: &str,
) -> Result<Decision, StoreError> {
    if write::find_user(c, &env.account_id, user_id).await?.is_none() {
        return Ok(Err(not_found("User", user_id)));
    }
    let policy = licensing::get_policy(c, &env.account_id).await?.unwrap_or_else(roster_license_policy::Policy::empty);
    if policy.license(license).is_none() {
        return Ok(Err(ScimError::invalid_value(format!(
            "license {license:?} is not defined by the account's license policy"
        ))));
    }
    licensing::set_override(c, &env.account_id, user_id, license).await?;
    Ok(ok(200, None))
}

async fn override_removed<C: ConnectionTrait>(c: &C, env: &Envelope, user_id: &str) -> Result<Decision, StoreError> {
    if write::find_user(c, &env.account_id, user_id).await?.is_none() {
        return Ok(Err(not_found("User", user_id)));
    }
    licensing::remove_override(c, &env.account_id, user_id).await?;
    Ok(ok(200, None))
}

/// The seat guard: the only place a license is taken. The projector is serial per account, so counting
/// holders here can never over-allocate, whatever number of licensing workers propose changes.
async fn license_changed<C: ConnectionTrait>(
    c: &C,
    env: &Envelope,
    user_id: &str,
    from: Option<&str>,
    to: Option<&str>,
    reason: &Value,
    ctx: &mut ApplyContext,
) -> Result<Decision, StoreError> {
    let account = &env.account_id;
    let key = (account.clone(), user_id.to_string());
    let in_run = ctx.licenses.as_ref().is_some_and(|r| r.events.contains(&env.event_id));
    let current = match ctx.licenses.as_ref().filter(|_| in_run) {
        Some(run) => run.users.get(&key).cloned().flatten(),
        None => write::find_user(c, account, user_id).await?.map(|u| (u.active, u.license_type)),
    };
    let Some((active, license_type)) = current else {
        return Ok(Err(conflict(format!("user {user_id:?} no longer exists"))));
    };
    if license_type.as_deref() != from {
        return Ok(Err(conflict(format!(
            "user {user_id:?} holds {license_type:?}, not {from:?}: the state moved on; the licensing worker recomputes"
        ))));
    }
    if let Some(to) = to
        && from != Some(to)
    {
        if !active {
            return Ok(Err(conflict(format!("user {user_id:?} is inactive and can hold no license"))));
        }
        let Some(seats) = ctx.policy(c, account).await?.license(to).map(|lt| lt.seats) else {
            return Ok(Err(conflict(format!("license {to:?} is not defined by the account's license policy"))));
        };
        if let Some(limit) = seats {
            let used = ctx.holders(c, account, to).await?;
            if used >= limit {
                return Ok(Err(conflict(format!("no free seat for {to:?}: {used} of {limit} in use"))));
            }
        }
    }
    match ctx.licenses.as_mut().filter(|_| in_run) {
        Some(run) => {
            run.users.insert(key.clone(), Some((active, to.map(str::to_owned))));
            run.pending.insert(key, (to.map(str::to_owned), reason.to_string()));
        }
        None => {
            licensing::set_license(c, account, user_id, to, reason).await?;
            ctx.changed_elsewhere::<UserRow>(account, user_id, false);
        }
    }
    if active {
        ctx.moved_seat(account, from, to);
    }
    let kind = reason.get("kind").and_then(Value::as_str).unwrap_or("unknown");
    roster_telemetry::metrics().license_changes.with_label_values(&[kind]).inc();
    Ok(ok(200, None))
}

async fn hold_resolved<C: ConnectionTrait>(
    c: &C,
    env: &Envelope,
    hold_id: &str,
    confirm: bool,
) -> Result<Decision, StoreError> {
    let Some(hold) = licensing::get_hold(c, &env.account_id, hold_id).await? else {
        return Ok(Err(ScimError::not_found(format!("license hold {hold_id:?} not found"))));
    };
    let target = if confirm { "confirmed" } else { "discarded" };
    if hold.status == "pending" {
        licensing::set_hold_status(c, hold_id, "pending", target).await?;
        return Ok(ok(200, None));
    }
    // Holds are worker state, not derived from the log: a replay finds them already resolved.
    if hold.status == target || (confirm && hold.status == "applied") {
        return Ok(ok(200, None));
    }
    Ok(Err(conflict(format!("license hold {hold_id:?} is {}, not pending", hold.status))))
}
