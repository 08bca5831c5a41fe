//! Real-database tests: the read-model DDL in SQLite (in memory, always) and Postgres (when
//! `ROSTER_TEST_DATABASE_URL` names a server; a throwaway database `fsql_<random>` is created
//! and dropped), a fixture of users, groups and memberships, and a table of filters whose exact
//! matching ids are asserted on both backends.
//!
//! For every filter the table also checks:
//! - `NOT (filter)` selects exactly the other rows (every leaf is two-valued, so SQL's NULL logic
//!   never loses rows),
//! - the expected ids agree with the in-memory evaluator `roster_scim::filter::matches` run on
//!   the rendered resources (so SQL and in-memory filtering mean the same thing).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeSet;
use std::error::Error;

use roster_filter_sql::{Dialect, SortOrder, SqlParam, order_by, where_clause};
use roster_scim::filter::{AttrPath, Filter, FilterLimits, matches, parse};
use roster_scim::schema::ResourceKind::{self, Group, User};
use serde_json::{Value, json};
// Every statement here is either a test constant, a generated database name, or filter-sql
// output whose literals are all bind parameters: audited for `AssertSqlSafe`.
use sqlx::{AssertSqlSafe, Connection, Row};

type TestResult = Result<(), Box<dyn Error>>;

const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const RST: &str = "urn:ietf:params:scim:schemas:extension:roster:2.0:User";

/// The read-model DDL, identical on both backends.
const DDL: [&str; 4] = [
    "CREATE TABLE scim_users (
      account_id TEXT NOT NULL, id TEXT NOT NULL,
      user_name TEXT NOT NULL, user_name_lower TEXT NOT NULL,
      external_id TEXT NULL, display_name TEXT NULL,
      active BOOLEAN NOT NULL,
      created TEXT NOT NULL, last_modified TEXT NOT NULL,
      version BIGINT NOT NULL,
      license_type TEXT NULL,
      resource TEXT NOT NULL,
      PRIMARY KEY (account_id, id), UNIQUE (account_id, user_name_lower))",
    "CREATE TABLE scim_groups (
      account_id TEXT NOT NULL, id TEXT NOT NULL,
      display_name TEXT NOT NULL, display_name_lower TEXT NOT NULL,
      external_id TEXT NULL, created TEXT NOT NULL, last_modified TEXT NOT NULL, version BIGINT NOT NULL,
      resource TEXT NOT NULL,
      PRIMARY KEY (account_id, id), UNIQUE (account_id, display_name_lower))",
    "CREATE TABLE scim_members (
      account_id TEXT NOT NULL, group_id TEXT NOT NULL, member_id TEXT NOT NULL, member_type TEXT NOT NULL,
      PRIMARY KEY (account_id, group_id, member_id))",
    "CREATE INDEX scim_members_member_group ON scim_members (account_id, member_id, group_id)",
];

// ================================================================================== fixture

struct Res {
    account: &'static str,
    id: &'static str,
    created: &'static str,
    modified: &'static str,
    version: i64,
    /// Stored form: canonical names, extensions under their URN, no id/meta/groups/members.
    resource: Value,
}

struct Fixture {
    users: Vec<Res>,
    groups: Vec<Res>,
    /// (account, group, member, member type)
    members: Vec<(&'static str, &'static str, &'static str, &'static str)>,
}

fn res(
    account: &'static str,
    id: &'static str,
    created: &'static str,
    modified: Option<&'static str>,
    version: i64,
    resource: Value,
) -> Res {
    Res { account, id, created, modified: modified.unwrap_or(created), version, resource }
}

fn fixture() -> Fixture {
    let a = "acme";
    let users = vec![
        res(
            a,
            "u01",
            "2026-01-01T09:00:00.000Z",
            Some("2026-03-01T10:00:00.000Z"),
            3,
            json!({
                "userName": "JDoe@Contoso.com", "displayName": "John Doe", "active": true, "externalId": "ext-01",
                "name": {"givenName": "John", "familyName": "Doe", "formatted": "John Doe"},
                "title": "Sales Manager",
                "emails": [{"value": "jdoe@contoso.com", "type": "work", "primary": true},
                           {"value": "john@home.example", "type": "home"}],
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":
                    {"employeeNumber": "1001", "department": "Sales", "manager": {"value": "u10", "displayName": "Grace Hopper"}},
                "urn:ietf:params:scim:schemas:extension:roster:2.0:User": {"licenseType": "E3"}
            }),
        ),
        res(
            a,
            "u02",
            "2026-01-02T09:00:00.000Z",
            Some("2026-02-15T08:30:00.500Z"),
            1,
            json!({
                "userName": "asmith@contoso.com", "displayName": "Alice Smith", "active": true, "externalId": "EXT-02",
                "name": {"givenName": "Alice", "familyName": "Smith"},
                "emails": [{"value": "alice@home.example", "type": "home"},
                           {"value": "ASmith@Contoso.com", "type": "work", "primary": true}],
                "phoneNumbers": [{"value": "+1 555 0100", "type": "work"}],
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":
                    {"employeeNumber": "1002", "department": "Engineering", "manager": {"value": "u01"}},
                "urn:ietf:params:scim:schemas:extension:roster:2.0:User": {"licenseType": "E5"}
            }),
        ),
        res(
            a,
            "u03",
            "2026-01-03T09:00:00.000Z",
            None,
            1,
            json!({
                "userName": "bob.jones@fabrikam.com", "displayName": "Bob Jones", "active": false,
                "name": {"familyName": "Jones"},
                "emails": [{"value": "bob@fabrikam.com", "type": "work"}],
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "2001"},
                "urn:ietf:params:scim:schemas:extension:roster:2.0:User": {"licenseType": "e3"}
            }),
        ),
        res(
            a,
            "u04",
            "2026-01-04T09:00:00.000Z",
            Some("2026-04-01T00:00:00.000Z"),
            7,
            json!({
                "userName": "Émilie.Durand@contoso.com", "displayName": "Émilie Durand", "active": true,
                "name": {"givenName": "Émilie", "familyName": "Durand"},
                "emails": [{"value": "emilie@contoso.com", "type": "work", "primary": true}],
                "preferredLanguage": "fr-FR"
            }),
        ),
        res(
            a,
            "u05",
            "2026-01-05T09:00:00.000Z",
            None,
            1,
            json!({
                "userName": "zoë@example.org", "active": true, "externalId": "ext-05",
                "urn:ietf:params:scim:schemas:extension:roster:2.0:User": {"licenseType": ""}
            }),
        ),
        res(
            a,
            "u06",
            "2026-01-05T09:00:00.000Z",
            Some("2026-02-01T00:00:00.000Z"),
            2,
            json!({
                "userName": "carol@contoso.com", "displayName": "", "active": false,
                "emails": [], "name": {"givenName": ""}, "title": "Engineer"
            }),
        ),
        res(
            a,
            "u07",
            "2026-01-07T09:00:00.000Z",
            None,
            1,
            json!({
                "userName": "dave@contoso.com", "displayName": "Dave O'Brien", "active": true,
                "emails": [{"value": "dave%_@contoso.com", "type": "work"}],
                "nickName": "50% off_sale", "title": "engineer"
            }),
        ),
        res(
            a,
            "u08",
            "2026-02-01T00:00:00.000Z",
            None,
            1,
            json!({
                "userName": "eve@contoso.com", "displayName": "Eve", "active": true, "userType": "Contractor",
                "emails": [{"type": "work", "value": "eve@contoso.com", "primary": false},
                           {"type": "work", "value": "eve2@contoso.com", "primary": true}]
            }),
        ),
        res(
            a,
            "u09",
            "2026-02-02T00:00:00.000Z",
            None,
            1,
            json!({
                "userName": "frank@fabrikam.com", "displayName": "frank", "active": true,
                "emails": [{"value": "frank@fabrikam.com", "type": "home", "primary": true},
                           {"value": "frank.work@contoso.com", "type": "work"}],
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "1003"}
            }),
        ),
        res(
            a,
            "u10",
            "2026-02-03T12:00:00.000Z",
            None,
            1,
            json!({
                "userName": "grace@contoso.com", "displayName": "Grace Hopper", "active": true,
                "nickName": "Amazing Grace", "locale": "en-US", "title": "Rear Admiral",
                "emails": [{"value": "grace@contoso.com"}],
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":
                    {"employeeNumber": "0042", "department": "Engineering", "manager": {"value": "u01", "displayName": "John Doe"}},
                "urn:ietf:params:scim:schemas:extension:roster:2.0:User": {"licenseType": "E5"}
            }),
        ),
        res(
            a,
            "u11",
            "2026-02-04T00:00:00.000Z",
            None,
            1,
            json!({
                "userName": "heidi@contoso.com", "displayName": "HEIDI", "active": true, "externalId": "ext-11",
                "addresses": [{"type": "work", "locality": "Seattle", "country": "US", "primary": true},
                              {"type": "home", "locality": "Tacoma", "country": "US"}]
            }),
        ),
        res(
            a,
            "u12",
            "2026-02-05T00:00:00.000Z",
            None,
            1,
            json!({
                "userName": "ivan@contoso.com", "displayName": "Ivan", "active": true,
                "profileUrl": "https://example.com/Ivan",
                "emails": [{"value": "ivan@contoso.com", "type": "work", "primary": true}],
                "x509Certificates": [{"value": "MIIDQzCCAqygAwIBAgICEAAwDQYJKoZIhvcNAQEFBQAwTjELMAkGA1UEBhMCVVMx"}]
            }),
        ),
        // Another account, with ids and names that collide with acme's: never visible from acme.
        res(
            "other",
            "x01",
            "2026-01-01T00:00:00.000Z",
            None,
            1,
            json!({
                "userName": "JDoe@Contoso.com", "displayName": "John Doe", "active": true,
                "emails": [{"value": "jdoe@contoso.com", "type": "work"}]
            }),
        ),
        res(
            "other",
            "u05",
            "2026-01-01T00:00:00.000Z",
            None,
            1,
            json!({
                "userName": "someone@other.example", "active": true
            }),
        ),
    ];
    let groups = vec![
        res(a, "g1", "2026-01-10T00:00:00.000Z", None, 1, json!({"displayName": "Sales", "externalId": "gext-1"})),
        res(a, "g2", "2026-01-11T00:00:00.000Z", None, 1, json!({"displayName": "Engineering"})),
        res(a, "g3", "2026-01-12T00:00:00.000Z", None, 1, json!({"displayName": "Admins"})),
        res(
            a,
            "g4",
            "2026-01-13T00:00:00.000Z",
            None,
            1,
            json!({"displayName": "Empty Group", "externalId": "gext-4"}),
        ),
        res(a, "g5", "2026-01-14T00:00:00.000Z", None, 1, json!({"displayName": "Équipe Zürich"})),
        res("other", "g4", "2026-01-13T00:00:00.000Z", None, 1, json!({"displayName": "Other Group"})),
    ];
    let members = vec![
        (a, "g1", "u01", "User"),
        (a, "g1", "u02", "User"),
        (a, "g2", "u02", "User"),
        (a, "g2", "u03", "User"),
        (a, "g2", "u10", "User"),
        (a, "g2", "g3", "Group"),
        (a, "g3", "u10", "User"),
        (a, "g3", "u07", "User"),
        (a, "g5", "u04", "User"),
        ("other", "g4", "u05", "User"),
        ("other", "g4", "u02", "User"),
    ];
    Fixture { users, groups, members }
}

fn str_at<'v>(v: &'v Value, path: &[&str]) -> Option<&'v str> {
    path.iter().try_fold(v, |v, k| v.get(*k)).and_then(Value::as_str)
}

impl Fixture {
    fn ids(&self, kind: ResourceKind, account: &str) -> BTreeSet<String> {
        let rows = if kind == User { &self.users } else { &self.groups };
        rows.iter().filter(|r| r.account == account).map(|r| r.id.to_string()).collect()
    }

    fn display_of(&self, account: &str, id: &str) -> Option<String> {
        self.users
            .iter()
            .chain(&self.groups)
            .find(|r| r.account == account && r.id == id)
            .and_then(|r| str_at(&r.resource, &["displayName"]).map(str::to_string))
    }

    /// The resource as GET would render it (what the in-memory evaluator filters).
    fn rendered(&self, kind: ResourceKind, r: &Res) -> Value {
        let mut v = r.resource.clone();
        let o = v.as_object_mut().expect("object");
        o.insert("id".into(), json!(r.id));
        o.insert(
            "meta".into(),
            json!({"resourceType": kind.as_str(), "created": r.created, "lastModified": r.modified,
                   "version": format!("W/\"{}\"", r.version)}),
        );
        let refs: Vec<Value> = match kind {
            User => self
                .members
                .iter()
                .filter(|m| m.0 == r.account && m.2 == r.id && m.3 == "User")
                .map(|m| json!({"value": m.1, "display": self.display_of(m.0, m.1), "type": "direct"}))
                .collect(),
            Group => self
                .members
                .iter()
                .filter(|m| m.0 == r.account && m.1 == r.id)
                .map(|m| json!({"value": m.2, "type": m.3, "display": self.display_of(m.0, m.2)}))
                .collect(),
        };
        o.insert(if kind == User { "groups" } else { "members" }.into(), Value::Array(refs));
        v
    }
}

// ================================================================================== backends

/// A value for the fixture inserts (these may be NULL, unlike filter parameters).
enum Val {
    Text(Option<String>),
    Bool(bool),
    Int(i64),
}

enum Db {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl Db {
    fn dialect(&self) -> Dialect {
        match self {
            Db::Sqlite(_) => Dialect::Sqlite,
            Db::Postgres(_) => Dialect::Postgres,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    /// Placeholder number `n` (1-based) in this backend's syntax.
    fn ph(&self, n: usize) -> String {
        match self {
            Db::Sqlite(_) => "?".into(),
            Db::Postgres(_) => format!("${n}"),
        }
    }

    async fn exec(&mut self, sql: &str, vals: Vec<Val>) -> Result<(), Box<dyn Error>> {
        match self {
            Db::Sqlite(c) => {
                let mut q = sqlx::query::<sqlx::Sqlite>(AssertSqlSafe(sql.to_string()));
                for v in vals {
                    q = match v {
                        Val::Text(s) => q.bind(s),
                        Val::Bool(b) => q.bind(b),
                        Val::Int(i) => q.bind(i),
                    };
                }
                q.execute(&mut *c).await?;
            }
            Db::Postgres(c) => {
                let mut q = sqlx::query::<sqlx::Postgres>(AssertSqlSafe(sql.to_string()));
                for v in vals {
                    q = match v {
                        Val::Text(s) => q.bind(s),
                        Val::Bool(b) => q.bind(b),
                        Val::Int(i) => q.bind(i),
                    };
                }
                q.execute(&mut *c).await?;
            }
        }
        Ok(())
    }

    /// Runs a query whose first column is an id; `account` is bound first, then `params`.
    async fn ids(&mut self, sql: &str, account: &str, params: &[SqlParam]) -> Result<Vec<String>, Box<dyn Error>> {
        let rows = match self {
            Db::Sqlite(c) => {
                let mut q = sqlx::query::<sqlx::Sqlite>(AssertSqlSafe(sql.to_string())).bind(account.to_string());
                for p in params {
                    q = match p {
                        SqlParam::Text(s) => q.bind(s.clone()),
                        SqlParam::Bool(b) => q.bind(*b),
                        SqlParam::Int(i) => q.bind(*i),
                        SqlParam::Float(f) => q.bind(*f),
                    };
                }
                q.fetch_all(&mut *c).await?.iter().map(|r| r.try_get::<String, _>(0)).collect::<Result<Vec<_>, _>>()?
            }
            Db::Postgres(c) => {
                let mut q = sqlx::query::<sqlx::Postgres>(AssertSqlSafe(sql.to_string())).bind(account.to_string());
                for p in params {
                    q = match p {
                        SqlParam::Text(s) => q.bind(s.clone()),
                        SqlParam::Bool(b) => q.bind(*b),
                        SqlParam::Int(i) => q.bind(*i),
                        SqlParam::Float(f) => q.bind(*f),
                    };
                }
                q.fetch_all(&mut *c).await?.iter().map(|r| r.try_get::<String, _>(0)).collect::<Result<Vec<_>, _>>()?
            }
        };
        Ok(rows)
    }

    async fn load(&mut self, fx: &Fixture) -> TestResult {
        for ddl in DDL {
            self.exec(ddl, Vec::new()).await?;
        }
        let phs = |n: usize| (1..=n).map(|i| self.ph(i)).collect::<Vec<_>>().join(", ");
        let user_sql = format!(
            "INSERT INTO scim_users (account_id, id, user_name, user_name_lower, external_id, display_name, active, \
             created, last_modified, version, license_type, resource) VALUES ({})",
            phs(12)
        );
        let group_sql = format!(
            "INSERT INTO scim_groups (account_id, id, display_name, display_name_lower, external_id, created, \
             last_modified, version, resource) VALUES ({})",
            phs(9)
        );
        let member_sql =
            format!("INSERT INTO scim_members (account_id, group_id, member_id, member_type) VALUES ({})", phs(4));
        let t = |s: Option<&str>| Val::Text(s.map(str::to_string));
        for u in &fx.users {
            let r = &u.resource;
            let user_name = str_at(r, &["userName"]).expect("userName");
            let vals = vec![
                t(Some(u.account)),
                t(Some(u.id)),
                t(Some(user_name)),
                Val::Text(Some(user_name.to_lowercase())),
                t(str_at(r, &["externalId"])),
                t(str_at(r, &["displayName"])),
                Val::Bool(r.get("active").and_then(Value::as_bool).expect("active")),
                t(Some(u.created)),
                t(Some(u.modified)),
                Val::Int(u.version),
                t(str_at(r, &[RST, "licenseType"])),
                Val::Text(Some(r.to_string())),
            ];
            self.exec(&user_sql, vals).await?;
        }
        for g in &fx.groups {
            let r = &g.resource;
            let name = str_at(r, &["displayName"]).expect("displayName");
            let vals = vec![
                t(Some(g.account)),
                t(Some(g.id)),
                t(Some(name)),
                Val::Text(Some(name.to_lowercase())),
                t(str_at(r, &["externalId"])),
                t(Some(g.created)),
                t(Some(g.modified)),
                Val::Int(g.version),
                Val::Text(Some(r.to_string())),
            ];
            self.exec(&group_sql, vals).await?;
        }
        for (acct, group, member, ty) in &fx.members {
            self.exec(&member_sql, vec![t(Some(acct)), t(Some(group)), t(Some(member)), t(Some(ty))]).await?;
        }
        Ok(())
    }

    /// Ids of `kind` in account `acme` matching `condition` (a fragment with `params`), sorted.
    async fn select(
        &mut self,
        kind: ResourceKind,
        condition: &str,
        params: &[SqlParam],
    ) -> Result<BTreeSet<String>, Box<dyn Error>> {
        let sql = format!("SELECT t.id FROM {} t WHERE t.account_id = {} AND ({condition})", table(kind), self.ph(1));
        Ok(self.ids(&sql, "acme", params).await?.into_iter().collect())
    }
}

fn table(kind: ResourceKind) -> &'static str {
    match kind {
        User => "scim_users",
        Group => "scim_groups",
    }
}

async fn sqlite() -> Result<Db, Box<dyn Error>> {
    let mut db = Db::Sqlite(sqlx::SqliteConnection::connect("sqlite::memory:").await?);
    db.load(&fixture()).await?;
    Ok(db)
}

/// A throwaway Postgres database, dropped by [`PgScratch::drop_db`].
struct PgScratch {
    admin_url: String,
    name: String,
}

impl PgScratch {
    /// `None` (with a note) when `ROSTER_TEST_DATABASE_URL` is unset.
    async fn create() -> Result<Option<(PgScratch, Db)>, Box<dyn Error>> {
        let Ok(admin_url) = std::env::var("ROSTER_TEST_DATABASE_URL") else {
            eprintln!("note: ROSTER_TEST_DATABASE_URL is not set; skipping the Postgres run");
            return Ok(None);
        };
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.subsec_nanos();
        let name = format!("fsql_{}_{nanos:x}", std::process::id());
        let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
        sqlx::query::<sqlx::Postgres>(AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await?;
        admin.close().await?;
        let scratch = PgScratch { admin_url, name };
        let mut db = Db::Postgres(sqlx::PgConnection::connect(&scratch.url()).await?);
        db.load(&fixture()).await?;
        Ok(Some((scratch, db)))
    }

    fn url(&self) -> String {
        let (base, query) = match self.admin_url.split_once('?') {
            Some((b, q)) => (b, format!("?{q}")),
            None => (self.admin_url.as_str(), String::new()),
        };
        let base = base.strip_suffix('/').unwrap_or(base);
        let server = match base.rsplit_once('/') {
            Some((server, _db)) if !server.ends_with('/') => server,
            _ => base,
        };
        format!("{server}/{}{query}", self.name)
    }

    async fn drop_db(self, db: Db) -> TestResult {
        if let Db::Postgres(c) = db {
            c.close().await?;
        }
        let mut admin = sqlx::PgConnection::connect(&self.admin_url).await?;
        sqlx::query::<sqlx::Postgres>(AssertSqlSafe(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)))
            .execute(&mut admin)
            .await?;
        admin.close().await?;
        Ok(())
    }
}

// ================================================================================== the filter table

/// (kind, filter — `ENT:`/`RST:` stand for the extension URNs plus `:`, expected ids in `acme`)
const CASES: &[(ResourceKind, &str, &[&str])] = &[
    // --- userName: Rust-lowercased column, Unicode case-insensitive
    (User, r#"userName eq "JDoe@Contoso.com""#, &["u01"]),
    (User, r#"userName eq "jdoe@contoso.com""#, &["u01"]),
    (User, r#"userName eq "ÉMILIE.DURAND@CONTOSO.COM""#, &["u04"]),
    (User, r#"userName eq "zoë@example.org""#, &["u05"]),
    (
        User,
        r#"userName ne "jdoe@contoso.com""#,
        &["u02", "u03", "u04", "u05", "u06", "u07", "u08", "u09", "u10", "u11", "u12"],
    ),
    (User, r#"userName co "FABRIKAM""#, &["u03", "u09"]),
    (User, r#"userName sw "e""#, &["u08"]),
    (User, r#"userName sw "ZO""#, &["u05"]),
    (User, r#"userName ew ".org""#, &["u05"]),
    (User, r#"userName ew "a-suffix-much-longer-than-any-user-name@contoso.com""#, &[]),
    (User, r#"userName gt "grace@contoso.com""#, &["u01", "u04", "u05", "u11", "u12"]),
    (User, r#"userName le "bob.jones@fabrikam.com""#, &["u02", "u03"]),
    // --- User displayName: lower() on both sides, nullable
    (User, r#"displayName eq "john doe""#, &["u01"]),
    (User, r#"displayName eq "heidi""#, &["u11"]),
    (User, r#"displayName eq "Émilie Durand""#, &["u04"]),
    (User, r#"displayName sw "É""#, &["u04"]),
    (User, r#"displayName eq "Dave O'Brien""#, &["u07"]),
    (User, r#"displayName ne "Eve""#, &["u01", "u02", "u03", "u04", "u05", "u06", "u07", "u09", "u10", "u11", "u12"]),
    (User, r#"displayName co "o""#, &["u01", "u03", "u07", "u10"]),
    (User, "displayName pr", &["u01", "u02", "u03", "u04", "u07", "u08", "u09", "u10", "u11", "u12"]),
    (User, "displayName eq null", &["u05"]),
    (User, "displayName ne null", &["u01", "u02", "u03", "u04", "u06", "u07", "u08", "u09", "u10", "u11", "u12"]),
    // --- externalId and id: caseExact
    (User, r#"externalId eq "ext-02""#, &[]),
    (User, r#"externalId eq "EXT-02""#, &["u02"]),
    (User, r#"externalId sw "ext-""#, &["u01", "u05", "u11"]),
    (User, "externalId pr", &["u01", "u02", "u05", "u11"]),
    (User, r#"externalId ne "ext-01""#, &["u02", "u03", "u04", "u05", "u06", "u07", "u08", "u09", "u10", "u11", "u12"]),
    (User, r#"id eq "u03""#, &["u03"]),
    (User, r#"id eq "U03""#, &[]),
    (User, r#"id gt "u10""#, &["u11", "u12"]),
    (User, "id pr", &["u01", "u02", "u03", "u04", "u05", "u06", "u07", "u08", "u09", "u10", "u11", "u12"]),
    // --- active
    (User, "active eq true", &["u01", "u02", "u04", "u05", "u07", "u08", "u09", "u10", "u11", "u12"]),
    (User, "active eq false", &["u03", "u06"]),
    (User, "active ne true", &["u03", "u06"]),
    (User, r#"active eq "False""#, &["u03", "u06"]),
    (User, r#"active eq "True" and userName sw "j""#, &["u01"]),
    // --- meta
    (User, r#"meta.created gt "2026-02-01T00:00:00Z""#, &["u09", "u10", "u11", "u12"]),
    (User, r#"meta.created ge "2026-02-01T00:00:00Z""#, &["u08", "u09", "u10", "u11", "u12"]),
    (User, r#"meta.created lt "2026-01-03T10:00:00+01:00""#, &["u01", "u02"]),
    (User, r#"meta.created le "2026-01-03T10:00:00+01:00""#, &["u01", "u02", "u03"]),
    (User, r#"meta.created eq "2026-01-05T09:00:00.000Z""#, &["u05", "u06"]),
    (User, r#"meta.lastModified ge "2026-02-15T08:30:00.5004Z""#, &["u01", "u04"]),
    (User, r#"meta.lastModified gt "2026-02-15T08:30:00.499Z""#, &["u01", "u02", "u04"]),
    (User, r#"meta.lastModified eq "2026-02-15T08:30:00.5Z""#, &["u02"]),
    (
        User,
        r#"meta.lastModified lt "2026-02-15T08:30:00.5001Z""#,
        &["u02", "u03", "u05", "u06", "u07", "u08", "u09", "u10", "u11", "u12"],
    ),
    (
        User,
        r#"meta.resourceType eq "User""#,
        &["u01", "u02", "u03", "u04", "u05", "u06", "u07", "u08", "u09", "u10", "u11", "u12"],
    ),
    (User, r#"meta.resourceType eq "Group""#, &[]),
    (User, r#"meta.version eq "W/\"3\"""#, &["u01"]),
    (User, "meta.created pr", &["u01", "u02", "u03", "u04", "u05", "u06", "u07", "u08", "u09", "u10", "u11", "u12"]),
    (
        User,
        r#"meta[lastModified gt "2026-02-05T00:00:00Z" or created lt "2026-01-02T00:00:00Z"]"#,
        &["u01", "u02", "u04"],
    ),
    // --- single-valued complex (name) and simple JSON strings
    (User, r#"name.givenName eq "john""#, &["u01"]),
    (User, "name.givenName pr", &["u01", "u02", "u04"]),
    (
        User,
        r#"name.givenName ne "John""#,
        &["u02", "u03", "u04", "u05", "u06", "u07", "u08", "u09", "u10", "u11", "u12"],
    ),
    (User, r#"name.familyName co "o""#, &["u01", "u03"]),
    (User, r#"name[givenName eq "Alice" or familyName eq "Jones"]"#, &["u02", "u03"]),
    (User, r#"name.formatted sw "john""#, &["u01"]),
    (User, r#"title eq "engineer""#, &["u06", "u07"]),
    (User, r#"title gt "R""#, &["u01", "u10"]),
    (User, r#"title co """#, &["u01", "u06", "u07", "u10"]),
    (
        User,
        r#"nickName ne "Amazing Grace""#,
        &["u01", "u02", "u03", "u04", "u05", "u06", "u07", "u08", "u09", "u11", "u12"],
    ),
    (User, r#"userType eq "contractor""#, &["u08"]),
    (User, "locale pr", &["u10"]),
    (User, r#"preferredLanguage eq "fr-fr""#, &["u04"]),
    (User, r#"profileUrl eq "https://example.com/ivan""#, &["u12"]),
    // --- LIKE wildcards are ordinary characters
    (User, r#"nickName co "% off_""#, &["u07"]),
    (User, r#"nickName co "%""#, &["u07"]),
    (User, r#"emails.value co "%_@""#, &["u07"]),
    (User, r#"emails co "_""#, &["u07"]),
    // --- emails: multi-valued complex, implicit .value, value paths
    (User, r#"emails co "@contoso.com""#, &["u01", "u02", "u04", "u07", "u08", "u09", "u10", "u12"]),
    (User, r#"emails.value eq "asmith@contoso.com""#, &["u02"]),
    (User, r#"emails.type eq "work" and emails.value co "fabrikam""#, &["u03", "u09"]),
    (User, r#"emails[type eq "work" and value co "fabrikam"]"#, &["u03"]),
    (User, r#"emails[type eq "work" and primary eq true]"#, &["u01", "u02", "u04", "u08", "u12"]),
    (User, "emails[primary eq true]", &["u01", "u02", "u04", "u08", "u09", "u12"]),
    (User, r#"emails[not (type eq "work")]"#, &["u01", "u02", "u09", "u10"]),
    (User, r#"not (emails[type eq "work"])"#, &["u05", "u06", "u10", "u11"]),
    (User, r#"emails[value ew "@home.example"]"#, &["u01", "u02"]),
    (User, r#"emails[type eq "home"] and emails[type eq "work" and primary eq true]"#, &["u01", "u02"]),
    (User, "emails pr", &["u01", "u02", "u03", "u04", "u07", "u08", "u09", "u10", "u12"]),
    (
        User,
        r#"emails.value ne "grace@contoso.com""#,
        &["u01", "u02", "u03", "u04", "u05", "u06", "u07", "u08", "u09", "u11", "u12"],
    ),
    (User, "emails.value eq null", &["u05", "u06", "u11"]),
    (User, "emails.primary eq false", &["u08"]),
    (User, "emails.primary ne true", &["u03", "u05", "u06", "u07", "u08", "u10", "u11"]),
    (User, r#"addresses[type eq "work" and locality eq "seattle"]"#, &["u11"]),
    (User, r#"addresses[type eq "home" and locality eq "Seattle"]"#, &[]),
    (User, r#"addresses.locality eq "Tacoma""#, &["u11"]),
    (User, r#"phoneNumbers.value sw "+1 555""#, &["u02"]),
    (User, r#"x509Certificates.value sw "MIID""#, &["u12"]),
    // --- enterprise extension (JSON under the URN key) and roster extension (column)
    (User, r#"ENT:employeeNumber eq "1001""#, &["u01"]),
    (User, "ENT:employeeNumber eq 1001", &["u01"]),
    (User, r#"employeeNumber sw "100""#, &["u01", "u02", "u09"]),
    (User, r#"ENT:employeeNumber lt "1002""#, &["u01", "u10"]),
    (User, "ENT:employeeNumber pr", &["u01", "u02", "u03", "u09", "u10"]),
    (User, r#"ENT:manager.value eq "u01""#, &["u02", "u10"]),
    (User, r#"ENT:manager eq "u10""#, &["u01"]),
    (User, r#"ENT:manager[value eq "u01" and displayName pr]"#, &["u10"]),
    (
        User,
        r#"ENT:department ne "engineering""#,
        &["u01", "u03", "u04", "u05", "u06", "u07", "u08", "u09", "u11", "u12"],
    ),
    (User, r#"ENT:manager.displayName co "GRACE""#, &["u01"]),
    (
        User,
        r#"ENT:manager.displayName ne "John Doe""#,
        &["u01", "u02", "u03", "u04", "u05", "u06", "u07", "u08", "u09", "u11", "u12"],
    ),
    (User, r#"RST:licenseType eq "E3""#, &["u01", "u03"]),
    (User, "RST:licenseType pr", &["u01", "u02", "u03", "u10"]),
    (User, r#"RST:licenseType ne "e5""#, &["u01", "u03", "u04", "u05", "u06", "u07", "u08", "u09", "u11", "u12"]),
    // --- User groups (scim_members)
    (User, r#"groups eq "g1""#, &["u01", "u02"]),
    (User, r#"groups.value eq "g2" and groups.value eq "g1""#, &["u02"]),
    (User, r#"not (groups eq "g2")"#, &["u01", "u04", "u05", "u06", "u07", "u08", "u09", "u11", "u12"]),
    (User, "groups pr", &["u01", "u02", "u03", "u04", "u07", "u10"]),
    (User, r#"groups.display eq "engineering""#, &["u02", "u03", "u10"]),
    (User, r#"groups[display sw "ÉQUIPE"]"#, &["u04"]),
    (User, r#"groups.type eq "direct""#, &["u01", "u02", "u03", "u04", "u07", "u10"]),
    (User, r#"groups ne "g1""#, &["u02", "u03", "u04", "u05", "u06", "u07", "u08", "u09", "u10", "u11", "u12"]),
    (User, r#"groups[value eq "g3"]"#, &["u07", "u10"]),
    // --- logic
    (User, r#"(userName sw "a" or userName sw "b") and active eq true"#, &["u02"]),
    (User, r#"not (active eq true) or displayName eq "Eve""#, &["u03", "u06", "u08"]),
    (User, r#"not (not (userName eq "eve@contoso.com"))"#, &["u08"]),
    (User, r#"userName eq "jdoe@contoso.com" or userName eq "ivan@contoso.com""#, &["u01", "u12"]),
    (User, r#"title pr and not (title eq "engineer")"#, &["u01", "u10"]),
    (User, r#"userName eq "eve@contoso.com" or (active eq false and not (title pr))"#, &["u03", "u08"]),
    (User, r#"displayName eq "x' OR '1'='1""#, &[]),
    (User, r#"userName eq "\") OR 1=1 --""#, &[]),
    // --- Groups
    (Group, r#"displayName eq "sales""#, &["g1"]),
    (Group, r#"displayName eq "ÉQUIPE ZÜRICH""#, &["g5"]),
    (Group, r#"displayName sw "e" and members pr"#, &["g2"]),
    (Group, r#"id eq "g4""#, &["g4"]),
    (Group, r#"externalId eq "gext-4""#, &["g4"]),
    (Group, r#"meta.resourceType eq "Group""#, &["g1", "g2", "g3", "g4", "g5"]),
    (Group, r#"members eq "u02""#, &["g1", "g2"]),
    (Group, r#"members[value eq "g3" and type eq "Group"]"#, &["g2"]),
    (Group, r#"members[value eq "u02" and type eq "Group"]"#, &[]),
    (Group, r#"members.type eq "group""#, &["g2"]),
    (Group, r#"not (members eq "u10")"#, &["g1", "g4", "g5"]),
    (Group, r#"members ne "u10""#, &["g1", "g2", "g3", "g4", "g5"]),
    (Group, "members pr", &["g1", "g2", "g3", "g5"]),
    (Group, "members eq null", &["g4"]),
    (Group, r#"members.display co "smith""#, &["g1", "g2"]),
    (Group, r#"members.display eq "admins""#, &["g2"]),
    (Group, r#"members[display eq "Admins" or value eq "u04"]"#, &["g2", "g5"]),
];

fn expand(filter: &str) -> String {
    filter.replace("ENT:", &format!("{ENT}:")).replace("RST:", &format!("{RST}:"))
}

fn parsed(filter: &str) -> Filter {
    parse(&expand(filter), &FilterLimits::default()).unwrap_or_else(|e| panic!("{filter}: {e}"))
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

/// Runs every case on `db`; returns the failures and each case's result.
async fn run_table(db: &mut Db) -> Result<(Vec<String>, Vec<BTreeSet<String>>), Box<dyn Error>> {
    let fx = fixture();
    let mut failures = Vec::new();
    let mut results = Vec::new();
    for (kind, filter, expected) in CASES {
        let frag =
            where_clause(&parsed(filter), *kind, db.dialect(), "t", 2).unwrap_or_else(|e| panic!("{filter}: {e}"));
        let got = match db.select(*kind, &frag.sql, &frag.params).await {
            Ok(got) => got,
            Err(e) => {
                failures.push(format!("[{}] {filter}: query failed: {e}\n  {}", db.name(), frag.sql));
                results.push(BTreeSet::new());
                continue;
            }
        };
        let expected = set(expected);
        if got != expected {
            failures.push(format!("[{}] {filter}: got {got:?}, expected {expected:?}\n  {}", db.name(), frag.sql));
        }
        let negated = db.select(*kind, &format!("NOT ({})", frag.sql), &frag.params).await?;
        let complement: BTreeSet<String> = fx.ids(*kind, "acme").difference(&expected).cloned().collect();
        if negated != complement {
            failures.push(format!("[{}] not ({filter}): got {negated:?}, expected {complement:?}", db.name()));
        }
        results.push(got);
    }
    Ok((failures, results))
}

fn report(failures: &[String]) {
    assert!(failures.is_empty(), "{} failing case(s):\n{}", failures.len(), failures.join("\n"));
}

#[tokio::test]
async fn filter_table_selects_the_expected_ids_on_sqlite() -> TestResult {
    let mut db = sqlite().await?;
    let (failures, _) = run_table(&mut db).await?;
    report(&failures);
    Ok(())
}

#[tokio::test]
async fn filter_table_selects_the_same_ids_on_postgres_as_on_sqlite() -> TestResult {
    let Some((scratch, mut pg)) = PgScratch::create().await? else {
        return Ok(());
    };
    let outcome = run_table(&mut pg).await;
    scratch.drop_db(pg).await?;
    let (mut failures, pg_results) = outcome?;
    let (_, lite_results) = run_table(&mut sqlite().await?).await?;
    for (((_, filter, _), p), l) in CASES.iter().zip(&pg_results).zip(&lite_results) {
        if p != l {
            failures.push(format!("{filter}: postgres {p:?} but sqlite {l:?}"));
        }
    }
    report(&failures);
    Ok(())
}

#[test]
fn filter_table_agrees_with_the_in_memory_evaluator() {
    let fx = fixture();
    let mut failures = Vec::new();
    for (kind, filter, expected) in CASES {
        let rows = if *kind == User { &fx.users } else { &fx.groups };
        let got: BTreeSet<String> = rows
            .iter()
            .filter(|r| r.account == "acme" && matches(&parsed(filter), *kind, &fx.rendered(*kind, r)))
            .map(|r| r.id.to_string())
            .collect();
        if got != set(expected) {
            failures.push(format!("{filter}: evaluator {got:?}, table {:?}", set(expected)));
        }
    }
    report(&failures);
}

#[test]
fn the_table_covers_every_operator_and_many_cases() {
    assert!(CASES.len() >= 80, "{}", CASES.len());
    for op in
        [" eq ", " ne ", " co ", " sw ", " ew ", " gt ", " ge ", " lt ", " le ", " pr", "not (", "[", " and ", " or "]
    {
        assert!(CASES.iter().any(|c| c.1.contains(op)), "no case uses {op:?}");
    }
}

// ================================================================================== sorting

/// (kind, sortBy, order, expected ids in order)
const SORTS: &[(ResourceKind, Option<&str>, SortOrder, &[&str])] = &[
    (
        User,
        None,
        SortOrder::Ascending,
        &["u01", "u02", "u03", "u04", "u05", "u06", "u07", "u08", "u09", "u10", "u11", "u12"],
    ),
    (
        User,
        None,
        SortOrder::Descending,
        &["u12", "u11", "u10", "u09", "u08", "u07", "u06", "u05", "u04", "u03", "u02", "u01"],
    ),
    (
        User,
        Some("userName"),
        SortOrder::Ascending,
        &["u02", "u03", "u06", "u07", "u08", "u09", "u10", "u11", "u12", "u01", "u05", "u04"],
    ),
    (
        User,
        Some("displayName"),
        SortOrder::Ascending,
        &["u06", "u02", "u03", "u07", "u08", "u09", "u10", "u11", "u12", "u01", "u04", "u05"],
    ),
    (
        User,
        Some("displayName"),
        SortOrder::Descending,
        &["u05", "u04", "u01", "u12", "u11", "u10", "u09", "u08", "u07", "u03", "u02", "u06"],
    ),
    (
        User,
        Some("name.familyName"),
        SortOrder::Ascending,
        &["u01", "u04", "u03", "u02", "u05", "u06", "u07", "u08", "u09", "u10", "u11", "u12"],
    ),
    (
        User,
        Some("name.familyName"),
        SortOrder::Descending,
        &["u12", "u11", "u10", "u09", "u08", "u07", "u06", "u05", "u02", "u03", "u04", "u01"],
    ),
    (
        User,
        Some("emails"),
        SortOrder::Ascending,
        &["u02", "u03", "u07", "u04", "u08", "u09", "u10", "u12", "u01", "u05", "u06", "u11"],
    ),
    (
        User,
        Some("meta.lastModified"),
        SortOrder::Descending,
        &["u04", "u01", "u02", "u12", "u11", "u10", "u09", "u08", "u06", "u07", "u05", "u03"],
    ),
    (
        User,
        Some("externalId"),
        SortOrder::Ascending,
        &["u02", "u01", "u05", "u11", "u03", "u04", "u06", "u07", "u08", "u09", "u10", "u12"],
    ),
    (
        User,
        Some("active"),
        SortOrder::Ascending,
        &["u03", "u06", "u01", "u02", "u04", "u05", "u07", "u08", "u09", "u10", "u11", "u12"],
    ),
    (
        User,
        Some("meta.resourceType"),
        SortOrder::Descending,
        &["u12", "u11", "u10", "u09", "u08", "u07", "u06", "u05", "u04", "u03", "u02", "u01"],
    ),
    (
        User,
        Some("groups"),
        SortOrder::Ascending,
        &["u01", "u02", "u03", "u10", "u07", "u04", "u05", "u06", "u08", "u09", "u11", "u12"],
    ),
    (
        User,
        Some("ENT:employeeNumber"),
        SortOrder::Ascending,
        &["u10", "u01", "u02", "u09", "u03", "u04", "u05", "u06", "u07", "u08", "u11", "u12"],
    ),
    (Group, Some("displayName"), SortOrder::Ascending, &["g3", "g4", "g2", "g1", "g5"]),
    (Group, Some("members"), SortOrder::Descending, &["g4", "g3", "g5", "g1", "g2"]),
];

async fn run_sorts(db: &mut Db) -> Result<Vec<String>, Box<dyn Error>> {
    let mut failures = Vec::new();
    for (kind, sort_by, order, expected) in SORTS {
        let path: Option<AttrPath> = sort_by.map(|p| match parsed(&format!("{p} pr")) {
            Filter::Present(p) => p,
            other => panic!("{other:?}"),
        });
        let body = order_by(path.as_ref(), *order, *kind, db.dialect(), "t")?;
        let sql = format!("SELECT t.id FROM {} t WHERE t.account_id = {} ORDER BY {body}", table(*kind), db.ph(1));
        let got = db.ids(&sql, "acme", &[]).await?;
        if got != *expected {
            failures.push(format!(
                "[{}] sortBy={sort_by:?} {order:?}: got {got:?}, expected {expected:?}\n  {body}",
                db.name()
            ));
        }
    }
    Ok(failures)
}

#[tokio::test]
async fn sorting_orders_values_nulls_and_ties_on_sqlite() -> TestResult {
    report(&run_sorts(&mut sqlite().await?).await?);
    Ok(())
}

#[tokio::test]
async fn sorting_orders_values_nulls_and_ties_on_postgres() -> TestResult {
    let Some((scratch, mut pg)) = PgScratch::create().await? else {
        return Ok(());
    };
    let outcome = run_sorts(&mut pg).await;
    scratch.drop_db(pg).await?;
    report(&outcome?);
    Ok(())
}
