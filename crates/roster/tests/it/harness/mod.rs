//! Test fixture: starts the real `roster` binary on free ports with a throw-away database (and,
//! on Kafka, a throw-away topic) in the backend chosen by `ROSTER_IT_BACKEND` (see [`backend`]),
//! creates per-test accounts and tokens through the admin API, and offers a SCIM client that
//! spreads requests over the server's ingress replicas.

pub mod backend;
pub mod http;
pub mod otlp;
pub mod scim;

use std::collections::{BTreeSet, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub use backend::{Backend, KafkaTopic, TestDb, backend};
pub use http::{Req, Resp, agent};
pub use scim::Scim;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_roster");

/// SCIM schema URNs used across the suite.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// Group core schema.
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// Enterprise user extension.
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// ListResponse message.
pub const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// Error message.
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
/// PatchOp message.
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// Roster's read-only licensing extension (present only for licensed users).
pub const ROSTER_EXT: &str = "urn:ietf:params:scim:schemas:extension:roster:2.0:User";

/// How long the server may take to print `roster: ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How many log lines of the child to keep for failure messages.
const LOG_LINES: usize = 400;

/// A fresh lower-case hex id, handy for unique names.
pub fn uid() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct TestDir {
    path: PathBuf,
}

impl TestDir {
    /// Creates `…/roster-it-<label>-<uuid>`.
    pub fn new(label: &str) -> Self {
        let path = std::env::temp_dir().join(format!("roster-it-{label}-{}", uid()));
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        TestDir { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A SQLite URL for a database file in this directory (created on first connect).
    pub fn sqlite_url(&self, file: &str) -> String {
        format!("sqlite://{}?mode=rwc", self.path.join(file).display())
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Bootstrap output printed on an empty database.
#[derive(Clone, Debug)]
pub struct Bootstrap {
    /// `roster: SCIM base URL: …`
    pub scim_base_url: String,
    /// `roster: SCIM token: …`
    pub token: String,
}

/// What the server printed while starting.
#[derive(Clone, Debug)]
pub struct Startup {
    /// `127.0.0.1:<port>` of the public listener.
    pub public_addr: String,
    /// `127.0.0.1:<port>` of the ops listener.
    pub ops_addr: String,
    /// Present only when the database was empty (`roster serve` only).
    pub bootstrap: Option<Bootstrap>,
}

type Log = Arc<Mutex<VecDeque<String>>>;

fn push_log(log: &Log, line: String) {
    let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
    if l.len() >= LOG_LINES {
        l.pop_front();
    }
    l.push_back(line);
}

fn dump_log(log: &Log) -> String {
    let l = log.lock().unwrap_or_else(|p| p.into_inner());
    l.iter().cloned().collect::<Vec<_>>().join("\n")
}

/// Environment variables of the developer's shell that would change what the child does.
fn scrub_env(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("ROSTER_") || k.starts_with("OTEL_") {
            cmd.env_remove(&k);
        }
    }
}

/// Which `roster` subcommand a process of a server runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `roster serve`: ingress and projector in one process.
    Serve,
    /// `roster ingress`.
    Ingress,
    /// `roster projector`.
    Projector,
    /// `roster licensing`: the licensing worker.
    Licensing,
}

impl Role {
    fn subcommand(self) -> &'static str {
        match self {
            Role::Serve => "serve",
            Role::Ingress => "ingress",
            Role::Projector => "projector",
            Role::Licensing => "licensing",
        }
    }

    /// Whether the process serves SCIM on a public port.
    pub fn is_public(self) -> bool {
        matches!(self, Role::Serve | Role::Ingress)
    }
}

/// The processes a server consists of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    /// One `roster serve`.
    Serve,
    /// Separate `roster ingress`, `roster projector` and `roster licensing` processes.
    Split {
        /// Number of `roster ingress` processes (at least 1).
        ingress: usize,
        /// Number of `roster projector` processes.
        projectors: usize,
        /// Number of `roster licensing` processes.
        licensing: usize,
    },
}

impl Topology {
    /// What the backend of this run uses for a server: `serve`, or on Kafka two ingress and two
    /// projector replicas and one licensing worker.
    pub fn for_backend() -> Topology {
        if backend().runs_serve() {
            Topology::Serve
        } else {
            Topology::Split { ingress: 2, projectors: 2, licensing: 1 }
        }
    }

    fn roles(self) -> Vec<Role> {
        match self {
            Topology::Serve => vec![Role::Serve],
            Topology::Split { ingress, projectors, licensing } => {
                assert!(ingress >= 1, "a server needs at least one ingress");
                let mut r = vec![Role::Ingress; ingress];
                r.extend(std::iter::repeat_n(Role::Projector, projectors));
                r.extend(std::iter::repeat_n(Role::Licensing, licensing));
                r
            }
        }
    }
}

/// Everything that defines a server apart from its ports: state, log, admin token, processes.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Temp dir (SQLite file, kept alive while the server runs).
    pub dir: Arc<TestDir>,
    /// The database.
    pub db: Arc<TestDb>,
    /// `ROSTER_ADMIN_TOKEN`.
    pub admin_token: String,
    /// The Kafka topic of the event log; `None` = the embedded log in the database.
    pub kafka: Option<Arc<KafkaTopic>>,
    /// The projectors' consumer group (Kafka only).
    pub group: String,
    /// The processes.
    pub topology: Topology,
    /// Extra environment for every process (e.g. `ROSTER_APPLY_TIMEOUT_SECS`).
    pub env: Vec<(String, String)>,
}

impl Spec {
    /// A fresh database (and, on Kafka, a fresh topic and group) in this run's backend.
    pub fn fresh() -> Spec {
        let dir = Arc::new(TestDir::new("srv"));
        let db = Arc::new(TestDb::fresh(&dir, "roster.db"));
        let kafka = (backend() == Backend::Kafka).then(|| Arc::new(KafkaTopic::fresh()));
        let group = kafka.as_ref().map(|k| k.new_group()).unwrap_or_default();
        Spec {
            dir,
            db,
            admin_token: format!("admin-{}", uid()),
            kafka,
            group,
            topology: Topology::for_backend(),
            env: Vec::new(),
        }
    }

    /// The same spec on another database (e.g. a replayed one); Kafka gets a new consumer group.
    pub fn with_db(&self, db: TestDb) -> Spec {
        let group = self.kafka.as_ref().map(|k| k.new_group()).unwrap_or_default();
        Spec { db: Arc::new(db), group, ..self.clone() }
    }

    /// The `ROSTER_*` environment of every process of this server (database, log, admin token).
    pub fn process_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("ROSTER_DATABASE_URL".to_owned(), self.db.url.clone()),
            ("ROSTER_ADMIN_TOKEN".to_owned(), self.admin_token.clone()),
        ];
        if let Some(k) = &self.kafka {
            env.extend([
                ("ROSTER_KAFKA_BROKERS".to_owned(), k.brokers.clone()),
                ("ROSTER_KAFKA_TOPIC".to_owned(), k.topic.clone()),
                ("ROSTER_KAFKA_PARTITIONS".to_owned(), k.partitions.to_string()),
                ("ROSTER_KAFKA_GROUP".to_owned(), self.group.clone()),
            ]);
        }
        env.extend(self.env.iter().cloned());
        env
    }

    /// `roster migrate` with this spec's environment (schema, and the topic on Kafka).
    pub fn migrate(&self) {
        let env = self.process_env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let out = run_roster_with(&["migrate"], &env, Duration::from_secs(120));
        assert!(
            out.status.success(),
            "roster migrate failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            out.stdout,
            out.stderr
        );
    }
}

/// One running `roster` process with its watchdog; SIGKILLed on drop.
struct Proc {
    child: Child,
    /// `sh` that SIGKILLs the process (and removes the temp dir) when this test process dies
    /// without running destructors (statics are never dropped): it blocks on a pipe we hold.
    watchdog: Option<Child>,
    log: Log,
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A process that has been spawned and has not printed `roster: ready` yet.
struct Starting {
    role: Role,
    proc: Proc,
    lines: mpsc::Receiver<String>,
}

/// A process that printed `roster: ready`.
struct Ready {
    proc: Proc,
    public_addr: Option<String>,
    ops_addr: String,
    bootstrap: Option<Bootstrap>,
}

/// One process of a server.
struct Member {
    role: Role,
    proc: Option<Proc>,
    /// `127.0.0.1:<port>` of the public listener of the last start (ingress and serve).
    public_addr: Option<String>,
    /// `127.0.0.1:<port>` of the ops listener of the last start.
    ops_addr: String,
    /// Output of earlier incarnations (after a kill), for failure messages.
    past_logs: String,
}

impl Member {
    fn logs(&self) -> String {
        let now = self.proc.as_ref().map(|p| dump_log(&p.log)).unwrap_or_default();
        format!("{}{now}", self.past_logs)
    }

    fn take_proc(&mut self) -> Option<Proc> {
        let p = self.proc.take()?;
        self.past_logs.push_str(&dump_log(&p.log));
        self.past_logs.push_str("\n[process ended]\n");
        Some(p)
    }
}

/// Spreads requests over the ingress replicas of a server: a URL under the server's canonical
/// public origin goes to the next live replica in turn (round-robin per request), so consecutive
/// requests of a test (a write, then the read that must see it) hit different processes.
#[derive(Debug, Default)]
pub struct Router {
    /// (canonical origin, live replica origins).
    state: Mutex<(String, Vec<String>)>,
    next: AtomicUsize,
}

impl Router {
    /// `url` with the canonical origin replaced by the next replica's.
    pub fn route(&self, url: &str) -> String {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (canonical, origins) = &*st;
        if origins.len() < 2 {
            return url.to_owned();
        }
        match url.strip_prefix(canonical.as_str()) {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => {
                let i = self.next.fetch_add(1, Ordering::Relaxed) % origins.len();
                format!("{}{rest}", origins[i])
            }
            _ => url.to_owned(),
        }
    }

    fn set(&self, canonical: String, origins: Vec<String>) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = (canonical, origins);
    }
}

/// A running Roster on free ports: one `roster serve`, or ingress and projector processes that
/// share a database and log. SCIM and admin requests are spread over the ingress replicas; every
/// replica uses the first ingress's URL as `ROSTER_PUBLIC_URL`, so `meta.location` and
/// `scim_base_url` are the same whichever replica answers.
pub struct Server {
    /// The processes; killed on drop, before the database and topic are removed.
    members: Vec<Member>,
    /// `http://127.0.0.1:<port>` of the first public listener: the server's public URL.
    pub public: String,
    /// `http://127.0.0.1:<port>` of the first ops listener.
    pub ops: String,
    /// What the first public process printed on its last start.
    pub startup: Startup,
    /// `ROSTER_ADMIN_TOKEN` given to the processes.
    pub admin_token: String,
    /// `--database-url`.
    pub db_url: String,
    agent: ureq::Agent,
    router: Arc<Router>,
    admin_next: AtomicUsize,
    /// Keeps the database, topic and temp dir alive; dropped after the processes.
    spec: Spec,
}

impl Drop for Server {
    fn drop(&mut self) {
        for m in &mut self.members {
            drop(m.proc.take());
        }
    }
}

/// Options for starting a server.
#[derive(Clone, Debug)]
pub struct StartOptions {
    /// `--listen` of the first public process.
    pub listen: String,
    /// `--ops-listen` of the first public process.
    pub ops_listen: String,
}

impl Default for StartOptions {
    fn default() -> Self {
        StartOptions { listen: "127.0.0.1:0".into(), ops_listen: "127.0.0.1:0".into() }
    }
}

impl Server {
    /// Starts a server in this run's backend on a fresh database (and topic).
    pub fn start() -> Server {
        Server::launch(Spec::fresh())
    }

    /// Starts the processes of `spec` (after `roster migrate` when there are several).
    pub fn launch(spec: Spec) -> Server {
        if spec.kafka.is_some() || spec.topology != Topology::Serve {
            spec.migrate();
        }
        let members = spec
            .topology
            .roles()
            .into_iter()
            .map(|role| Member {
                role,
                proc: None,
                public_addr: None,
                ops_addr: String::new(),
                past_logs: String::new(),
            })
            .collect();
        let mut srv = Server {
            members,
            public: String::new(),
            ops: String::new(),
            startup: Startup { public_addr: String::new(), ops_addr: String::new(), bootstrap: None },
            admin_token: spec.admin_token.clone(),
            db_url: spec.db.url.clone(),
            agent: agent(),
            router: Arc::default(),
            admin_next: AtomicUsize::new(0),
            spec,
        };
        srv.start_all(&StartOptions::default());
        srv
    }

    /// Starts every member that is not running: the first public one first (its URL is the
    /// server's public URL), then the others at once.
    fn start_all(&mut self, opts: &StartOptions) {
        let first = self.members.iter().position(|m| m.role.is_public()).unwrap_or(0);
        if self.members[first].proc.is_none() {
            let ready = spawn_roster(self.members[first].role, &opts.listen, &opts.ops_listen, &self.spec, None).wait();
            let public_addr = ready.public_addr.clone().unwrap_or_default();
            self.startup = Startup {
                public_addr: public_addr.clone(),
                ops_addr: ready.ops_addr.clone(),
                bootstrap: ready.bootstrap.clone(),
            };
            self.public = format!("http://{public_addr}");
            self.ops = format!("http://{}", self.startup.ops_addr);
            self.install(first, ready);
        }
        let starting: Vec<(usize, Starting)> = (0..self.members.len())
            .filter(|&i| self.members[i].proc.is_none())
            .map(|i| {
                (i, spawn_roster(self.members[i].role, "127.0.0.1:0", "127.0.0.1:0", &self.spec, Some(&self.public)))
            })
            .collect();
        for (i, s) in starting {
            let ready = s.wait();
            self.install(i, ready);
        }
        self.update_router();
    }

    fn install(&mut self, i: usize, ready: Ready) {
        let m = &mut self.members[i];
        m.public_addr = ready.public_addr;
        m.ops_addr = ready.ops_addr;
        m.proc = Some(ready.proc);
    }

    fn update_router(&self) {
        self.router.set(self.public.clone(), self.public_origins());
    }

    /// `http://127.0.0.1:<port>` of every running public process (the ingress replicas).
    pub fn public_origins(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| m.proc.is_some() && m.role.is_public())
            .filter_map(|m| m.public_addr.as_ref().map(|a| format!("http://{a}")))
            .collect()
    }

    /// What defines this server (database, topic, admin token, processes).
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The temp dir of the server.
    pub fn dir(&self) -> Arc<TestDir> {
        self.spec.dir.clone()
    }

    /// The Kafka topic, when the server runs on Kafka.
    pub fn kafka(&self) -> Option<&Arc<KafkaTopic>> {
        self.spec.kafka.as_ref()
    }

    fn index(&self, role: Role, n: usize) -> usize {
        self.members
            .iter()
            .enumerate()
            .filter(|(_, m)| m.role == role)
            .nth(n)
            .map(|(i, _)| i)
            .unwrap_or_else(|| panic!("the server has no {role:?} #{n}"))
    }

    /// `http://127.0.0.1:<port>` of the ops listener of the `n`-th process of `role`.
    pub fn ops_of(&self, role: Role, n: usize) -> String {
        format!("http://{}", self.members[self.index(role, n)].ops_addr)
    }

    /// SIGKILLs every process (`Child::kill`), like a crash or an OOM kill.
    pub fn kill_hard(&mut self) {
        for m in &mut self.members {
            drop(m.take_proc());
        }
        self.update_router();
    }

    /// SIGKILLs the `n`-th process of `role`; the others keep running.
    pub fn kill_member(&mut self, role: Role, n: usize) {
        let i = self.index(role, n);
        let p = self.members[i].take_proc().unwrap_or_else(|| panic!("{role:?} #{n} is not running"));
        drop(p);
        self.update_router();
    }

    /// Starts the `n`-th process of `role` again (the first public process on its old address, so
    /// the server's public URL stays valid).
    pub fn restart_member(&mut self, role: Role, n: usize) {
        let i = self.index(role, n);
        drop(self.members[i].take_proc());
        let first = self.members.iter().position(|m| m.role.is_public()).unwrap_or(0);
        let listen = if i == first { self.startup.public_addr.clone() } else { "127.0.0.1:0".to_owned() };
        let public = (i != first).then(|| self.public.clone());
        let ready = spawn_roster(role, &listen, "127.0.0.1:0", &self.spec, public.as_deref()).wait();
        self.install(i, ready);
        self.update_router();
    }

    /// SIGTERM to the `n`-th process of `role`, then SIGKILL after 15 s: a graceful stop.
    pub fn stop_member(&mut self, role: Role, n: usize) {
        let i = self.index(role, n);
        let p = self.members[i].take_proc().unwrap_or_else(|| panic!("{role:?} #{n} is not running"));
        terminate(vec![p]);
        self.update_router();
    }

    /// SIGTERM to every process at once; for each, how long it took to exit and its exit status
    /// (`None` when it was still running after `wait` and had to be SIGKILLed).
    pub fn stop_timed(&mut self, wait: Duration) -> Vec<(Role, Duration, Option<std::process::ExitStatus>)> {
        let started = Instant::now();
        let running: Vec<usize> = (0..self.members.len()).filter(|i| self.members[*i].proc.is_some()).collect();
        for p in self.members.iter().filter_map(|m| m.proc.as_ref()) {
            let _ = Command::new("kill").args(["-TERM", &p.child.id().to_string()]).status();
        }
        // Polled together, so each process's time is its own and not its predecessors'.
        let mut out: Vec<Option<(Role, Duration, Option<std::process::ExitStatus>)>> = vec![None; running.len()];
        while out.iter().any(Option::is_none) {
            let elapsed = started.elapsed();
            for (i, slot) in running.iter().zip(out.iter_mut()) {
                let m = &mut self.members[*i];
                let Some(p) = m.proc.as_mut() else { continue };
                if slot.is_some() {
                    continue;
                }
                if let Ok(Some(st)) = p.child.try_wait() {
                    *slot = Some((m.role, elapsed, Some(st)));
                } else if elapsed > wait {
                    *slot = Some((m.role, elapsed, None));
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Taken only now, so the logs keep what each process said while stopping.
        for i in running {
            drop(self.members[i].take_proc());
        }
        self.update_router();
        out.into_iter().flatten().collect()
    }

    /// SIGTERM to every process, then SIGKILL after 15 s: a graceful stop.
    pub fn stop(&mut self) {
        let procs: Vec<Proc> = self.members.iter_mut().filter_map(Member::take_proc).collect();
        terminate(procs);
        self.update_router();
    }

    /// Starts every process again on the same database, log and admin token (after
    /// `kill_hard`/`stop`); the public URL changes unless `opts` pins it.
    pub fn restart(&mut self, opts: StartOptions) {
        for m in &mut self.members {
            drop(m.take_proc());
        }
        self.start_all(&opts);
    }

    /// The recent stdout/stderr lines of every process.
    pub fn logs(&self) -> String {
        self.members
            .iter()
            .enumerate()
            .map(|(i, m)| format!("===== process {i} ({:?}) =====\n{}", m.role, m.logs()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The ops origin of the next public process (admin requests are spread like SCIM ones).
    fn admin_origin(&self) -> String {
        let live: Vec<&Member> = self.members.iter().filter(|m| m.role.is_public() && m.proc.is_some()).collect();
        if live.is_empty() {
            return self.ops.clone();
        }
        let i = self.admin_next.fetch_add(1, Ordering::Relaxed) % live.len();
        format!("http://{}", live[i].ops_addr)
    }

    /// A request to the admin API with the admin token.
    #[track_caller]
    pub fn admin(&self, method: &'static str, path: &str, body: Option<&Value>) -> Resp {
        self.admin_with(method, path, body, Some(&self.admin_token.clone()))
    }

    /// A request to the ops port with an arbitrary (or no) bearer token.
    #[track_caller]
    pub fn admin_with(&self, method: &'static str, path: &str, body: Option<&Value>, token: Option<&str>) -> Resp {
        let mut req = Req::new(method, format!("{}{}", self.admin_origin(), path));
        if let Some(t) = token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        if let Some(b) = body {
            req = req.header("Content-Type", "application/json").body(b.to_string());
        }
        req.send(&self.agent)
    }

    /// `POST /admin/v1/accounts` → `(id, scim_base_url)`; asserts the documented response.
    #[track_caller]
    pub fn create_account(&self, name: &str) -> (String, String) {
        let r = self.admin("POST", "/admin/v1/accounts", Some(&json!({ "name": name })));
        let b = r.expect_json(201);
        let id = b["id"].as_str().unwrap_or_else(|| panic!("account without id:\n{}", r.describe())).to_owned();
        assert_eq!(b["name"], json!(name), "account name:\n{}", r.describe());
        let base = b["scim_base_url"]
            .as_str()
            .unwrap_or_else(|| panic!("account without scim_base_url:\n{}", r.describe()))
            .to_owned();
        (id, base)
    }

    /// `POST /admin/v1/accounts/{id}/scim-tokens` → the full response body.
    #[track_caller]
    pub fn create_token(&self, account_id: &str, name: &str) -> Value {
        let r =
            self.admin("POST", &format!("/admin/v1/accounts/{account_id}/scim-tokens"), Some(&json!({ "name": name })));
        let b = r.expect_json(201);
        for k in ["id", "name", "token", "created_at"] {
            assert!(b.get(k).is_some_and(|v| !v.is_null()), "token response lacks `{k}`:\n{}", r.describe());
        }
        b
    }

    /// The SCIM base URL of an account under this server's public URL.
    pub fn scim_base(&self, account_id: &str) -> String {
        format!("{}/scim/v2/accounts/{account_id}", self.public)
    }

    /// A SCIM client for an existing account and token, spreading requests over the replicas.
    pub fn scim(&self, account_id: &str, token: &str) -> Scim {
        Scim::new(self.scim_base(account_id), account_id.to_owned(), token.to_owned(), self.agent.clone())
            .routed(self.router.clone())
    }

    /// A fresh account with one token: the usual start of a test.
    #[track_caller]
    pub fn tenant(&self) -> Scim {
        let (id, _) = self.create_account(&format!("it-{}", uid()));
        let tok = self.create_token(&id, "entra");
        let token = tok["token"].as_str().unwrap_or_default().to_owned();
        self.scim(&id, &token)
    }

    /// `GET /admin/v1/accounts/{id}/events?resource_id=…` → the `events` array.
    #[track_caller]
    pub fn events(&self, account_id: &str, resource_id: &str) -> Vec<Value> {
        let r = self.admin("GET", &format!("/admin/v1/accounts/{account_id}/events?resource_id={resource_id}"), None);
        let b = r.expect_json(200);
        match b.get("events") {
            Some(Value::Array(a)) => a.clone(),
            _ => panic!("events response lacks an `events` array:\n{}", r.describe()),
        }
    }
}

/// SIGTERM to each process, then waits up to 15 s for all of them to exit (SIGKILL on drop).
fn terminate(mut procs: Vec<Proc>) {
    for p in &procs {
        let _ = Command::new("kill").args(["-TERM", &p.child.id().to_string()]).status();
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    for p in &mut procs {
        while Instant::now() < deadline {
            if let Ok(Some(_)) = p.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Spawns `roster <role>` for `spec`; `public_url` becomes `ROSTER_PUBLIC_URL`.
fn spawn_roster(role: Role, listen: &str, ops_listen: &str, spec: &Spec, public_url: Option<&str>) -> Starting {
    let mut cmd = Command::new(BIN);
    scrub_env(&mut cmd);
    // The spec's environment comes last, so a test can choose its own RUST_LOG.
    cmd.args([role.subcommand(), "--listen", listen, "--ops-listen", ops_listen])
        .env("RUST_LOG", std::env::var("ROSTER_IT_RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .envs(spec.process_env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(u) = public_url {
        cmd.env("ROSTER_PUBLIC_URL", u);
    }
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawning {BIN}: {e}"));
    let log: Log = Arc::new(Mutex::new(VecDeque::new()));
    let watchdog = spawn_watchdog(child.id(), Some(spec.dir.path()));
    // For debugging: `ROSTER_IT_LOG_DIR=<dir>` keeps every process's whole output in a file.
    let mut log_file = std::env::var_os("ROSTER_IT_LOG_DIR").map(|d| {
        let d = PathBuf::from(d);
        let _ = std::fs::create_dir_all(&d);
        let name = format!("{}-{}-{}.log", role.subcommand(), child.id(), &uid()[..6]);
        Arc::new(Mutex::new(std::fs::File::create(d.join(name)).unwrap_or_else(|e| panic!("log file: {e}"))))
    });
    if let Some(f) = &log_file {
        use std::io::Write;
        let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(
            f,
            "# roster {} db={} kafka={:?}",
            role.subcommand(),
            spec.db.url,
            spec.kafka.as_ref().map(|k| &k.topic)
        );
    }

    let (tx, rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout pipe"));
    let stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr pipe"));
    {
        let log = log.clone();
        let file = log_file.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                log_to_file(file.as_ref(), "stdout", &line);
                push_log(&log, format!("stdout| {line}"));
                let _ = tx.send(line);
            }
        });
    }
    {
        let log = log.clone();
        let file = log_file.take();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                log_to_file(file.as_ref(), "stderr", &line);
                push_log(&log, format!("stderr| {line}"));
            }
        });
    }
    Starting { role, proc: Proc { child, watchdog, log }, lines: rx }
}

fn log_to_file(file: Option<&Arc<Mutex<std::fs::File>>>, stream: &str, line: &str) {
    if let Some(f) = file {
        use std::io::Write;
        let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(f, "{stream}| {line}");
    }
}

impl Starting {
    /// Waits for `roster: ready` and the addresses printed before it.
    fn wait(mut self) -> Ready {
        let what = format!("roster {}", self.role.subcommand());
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut public = None;
        let mut ops = None;
        let mut base = None;
        let mut token = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let line = line.trim();
                    if let Some(v) = line.strip_prefix("roster: public listening on ") {
                        public = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("roster: ops listening on ") {
                        ops = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("roster: SCIM base URL: ") {
                        base = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("roster: SCIM token: ") {
                        token = Some(v.trim().to_owned());
                    } else if line == "roster: ready" {
                        break;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!(
                        "{what} did not print `roster: ready` within {READY_TIMEOUT:?}; output:\n{}",
                        dump_log(&self.proc.log)
                    );
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = poll(Duration::from_secs(5), || self.proc.child.try_wait().ok().flatten());
                    panic!(
                        "{what} closed stdout before `roster: ready` (exit: {status:?}); output:\n{}",
                        dump_log(&self.proc.log)
                    );
                }
            }
        }
        let Some(ops_addr) = ops else {
            panic!("{what} printed `ready` without `ops listening on`; output:\n{}", dump_log(&self.proc.log));
        };
        if self.role.is_public() && public.is_none() {
            panic!("{what} printed `ready` without `public listening on`; output:\n{}", dump_log(&self.proc.log));
        }
        let bootstrap = match (base, token) {
            (Some(scim_base_url), Some(token)) => Some(Bootstrap { scim_base_url, token }),
            (None, None) => None,
            (b, t) => panic!(
                "only one of the bootstrap lines was printed (base {b:?}, token {t:?}); output:\n{}",
                dump_log(&self.proc.log)
            ),
        };
        Ready { proc: self.proc, public_addr: public, ops_addr, bootstrap }
    }
}

/// Spawns `sh` that waits for EOF on its stdin (held by this process), then SIGKILLs `pid` and
/// removes `dir`. Killed first on an orderly shutdown, so it only acts if we die.
fn spawn_watchdog(pid: u32, dir: Option<&Path>) -> Option<Child> {
    let dir = dir.map(|d| d.display().to_string()).unwrap_or_default();
    Command::new("sh")
        .args([
            "-c",
            r#"read _ignored; kill -9 "$1" 2>/dev/null; sleep 1; if [ -n "$2" ]; then rm -rf "$2"; fi"#,
            "roster-it-watchdog",
            &pid.to_string(),
            &dir,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

/// Output of a finished command.
#[derive(Debug)]
pub struct CmdOutput {
    /// Exit status.
    pub status: ExitStatus,
    /// Captured stdout.
    pub stdout: String,
    /// Captured stderr.
    pub stderr: String,
}

/// Runs `roster <args>` with a timeout, capturing output (read in threads so pipes never fill).
pub fn run_roster(args: &[&str], timeout: Duration) -> CmdOutput {
    run_roster_with(args, &[], timeout)
}

/// [`run_roster`] with extra environment variables.
pub fn run_roster_with(args: &[&str], env: &[(&str, &str)], timeout: Duration) -> CmdOutput {
    let mut cmd = Command::new(BIN);
    scrub_env(&mut cmd);
    cmd.args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawning {BIN} {args:?}: {e}"));
    let mut out = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let mut err = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                let stdout = t_out.join().unwrap_or_default();
                let stderr = t_err.join().unwrap_or_default();
                panic!("roster {args:?} did not finish within {timeout:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
            }
        }
    };
    CmdOutput { status, stdout: t_out.join().unwrap_or_default(), stderr: t_err.join().unwrap_or_default() }
}

/// Percent-encodes a filter (or any query value) the way Entra does: spaces as `+`, `"` as `%22`.
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The `id`s of a list of resources.
#[track_caller]
pub fn ids(resources: &[Value]) -> BTreeSet<String> {
    resources
        .iter()
        .map(|r| r["id"].as_str().unwrap_or_else(|| panic!("resource without id: {r}")).to_owned())
        .collect()
}

/// A set of string ids from string slices.
pub fn set<S: AsRef<str>>(items: &[S]) -> BTreeSet<String> {
    items.iter().map(|s| s.as_ref().to_owned()).collect()
}

/// `members[].value` of a group (empty when `members` is absent).
#[track_caller]
pub fn member_ids(group: &Value) -> BTreeSet<String> {
    match group.get("members") {
        None | Some(Value::Null) => BTreeSet::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|m| m["value"].as_str().unwrap_or_else(|| panic!("member without string value: {m}")).to_owned())
            .collect(),
        Some(other) => panic!("`members` is not an array: {other}"),
    }
}

/// The number inside a weak ETag `W/"<n>"`; panics on any other shape.
#[track_caller]
pub fn version_number(v: &Value) -> u64 {
    let s = v.as_str().unwrap_or_else(|| panic!("version is not a string: {v}"));
    s.strip_prefix("W/\"")
        .and_then(|r| r.strip_suffix('"'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("version {s:?} is not of the form W/\"<n>\""))
}

/// Polls `f` until it returns `Some` or `timeout` passes.
pub fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A value with the roster licensing extension removed (it may appear asynchronously).
pub fn without_license(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove(ROSTER_EXT);
        if let Some(Value::Array(s)) = o.get_mut("schemas") {
            s.retain(|x| x != ROSTER_EXT);
        }
    }
    v
}

/// Creates a user and returns it once it is visible. A 503 is accepted (on Kafka while the
/// consumer group rebalances after a crash, a write may wait longer than the apply time-out): it
/// must carry `Retry-After`, and its event is durable, so the user must appear without a retry.
#[track_caller]
pub fn create_user_eventually(scim: &Scim, user_name: &str) -> Value {
    let r = scim.post("/Users", &json!({"schemas": [USER_SCHEMA], "userName": user_name, "active": true}));
    match r.status {
        201 => r.scim(201),
        503 => {
            r.scim_error(503, None);
            assert!(r.header("retry-after").is_some(), "503 without Retry-After:\n{}", r.describe());
            poll(Duration::from_secs(90), || scim.filter_users(&format!("userName eq \"{user_name}\"")).pop())
                .unwrap_or_else(|| {
                    panic!("a create answered 503 (durable, to be applied) never appeared:\n{}", r.describe())
                })
        }
        _ => panic!("create of {user_name} failed:\n{}", r.describe()),
    }
}
