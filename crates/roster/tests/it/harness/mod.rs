//! Test fixture: starts the real `roster` binary on free ports with a throw-away SQLite database,
//! creates per-test accounts and tokens through the admin API, and offers a SCIM client.

pub mod http;
pub mod scim;

use std::collections::{BTreeSet, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

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
    /// Present only when the database was empty.
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

/// One running `roster serve` process with its watchdog.
struct Proc {
    child: Child,
    /// `sh` that SIGKILLs the server (and removes the temp dir) when this test process dies
    /// without running destructors (statics are never dropped): it blocks on a pipe we hold.
    watchdog: Option<Child>,
    log: Log,
}

impl Proc {
    fn kill(mut self) {
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `roster serve` on free ports, with its own database unless told otherwise.
pub struct Server {
    proc: Option<Proc>,
    /// `http://127.0.0.1:<port>` of the public listener.
    pub public: String,
    /// `http://127.0.0.1:<port>` of the ops listener.
    pub ops: String,
    /// What the last start printed.
    pub startup: Startup,
    /// `ROSTER_ADMIN_TOKEN` given to the process.
    pub admin_token: String,
    /// `--database-url`.
    pub db_url: String,
    agent: ureq::Agent,
    /// Keeps the database directory alive; dropped after the process is killed.
    dir: Option<Arc<TestDir>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(p) = self.proc.take() {
            p.kill();
        }
    }
}

/// Options for starting a server.
#[derive(Clone, Debug)]
pub struct StartOptions {
    /// `--listen`.
    pub listen: String,
    /// `--ops-listen`.
    pub ops_listen: String,
}

impl Default for StartOptions {
    fn default() -> Self {
        StartOptions { listen: "127.0.0.1:0".into(), ops_listen: "127.0.0.1:0".into() }
    }
}

impl Server {
    /// Starts a server on a fresh database in a fresh temp dir.
    pub fn start() -> Server {
        let dir = Arc::new(TestDir::new("srv"));
        let url = dir.sqlite_url("roster.db");
        Server::start_on(dir, url, &format!("admin-{}", uid()), StartOptions::default())
    }

    /// Starts a server on `db_url` (inside `dir`, which the server keeps alive).
    pub fn start_on(dir: Arc<TestDir>, db_url: String, admin_token: &str, opts: StartOptions) -> Server {
        let (proc, startup) = spawn_serve(&db_url, admin_token, &opts, Some(dir.path()));
        Server {
            proc: Some(proc),
            public: format!("http://{}", startup.public_addr),
            ops: format!("http://{}", startup.ops_addr),
            startup,
            admin_token: admin_token.to_owned(),
            db_url,
            agent: agent(),
            dir: Some(dir),
        }
    }

    /// The temp dir holding the database.
    pub fn dir(&self) -> Arc<TestDir> {
        self.dir.clone().unwrap_or_else(|| panic!("server has no dir"))
    }

    /// SIGKILLs the process (`Child::kill`), like a crash or an OOM kill.
    pub fn kill_hard(&mut self) {
        if let Some(p) = self.proc.take() {
            p.kill();
        }
    }

    /// SIGTERM, then SIGKILL after 15 s: a graceful stop.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let pid = p.child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = p.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            p.kill();
        }
    }

    /// Starts the process again on the same database and admin token (after `kill_hard`/`stop`).
    pub fn restart(&mut self, opts: StartOptions) {
        if let Some(p) = self.proc.take() {
            p.kill();
        }
        let dir = self.dir.as_ref().map(|d| d.path().to_owned());
        let (proc, startup) = spawn_serve(&self.db_url, &self.admin_token, &opts, dir.as_deref());
        self.public = format!("http://{}", startup.public_addr);
        self.ops = format!("http://{}", startup.ops_addr);
        self.startup = startup;
        self.proc = Some(proc);
    }

    /// The child's recent stdout/stderr lines.
    pub fn logs(&self) -> String {
        self.proc.as_ref().map(|p| dump_log(&p.log)).unwrap_or_default()
    }

    /// A request to the admin API with the admin token.
    #[track_caller]
    pub fn admin(&self, method: &'static str, path: &str, body: Option<&Value>) -> Resp {
        self.admin_with(method, path, body, Some(&self.admin_token.clone()))
    }

    /// A request to the ops port with an arbitrary (or no) bearer token.
    #[track_caller]
    pub fn admin_with(&self, method: &'static str, path: &str, body: Option<&Value>, token: Option<&str>) -> Resp {
        let mut req = Req::new(method, format!("{}{}", self.ops, path));
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

    /// The SCIM base URL of an account on this server's current public port.
    pub fn scim_base(&self, account_id: &str) -> String {
        format!("{}/scim/v2/accounts/{account_id}", self.public)
    }

    /// A SCIM client for an existing account and token.
    pub fn scim(&self, account_id: &str, token: &str) -> Scim {
        Scim::new(self.scim_base(account_id), account_id.to_owned(), token.to_owned(), self.agent.clone())
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

/// Spawns `roster serve` and waits for `roster: ready`.
fn spawn_serve(db_url: &str, admin_token: &str, opts: &StartOptions, dir: Option<&Path>) -> (Proc, Startup) {
    let mut cmd = Command::new(BIN);
    scrub_env(&mut cmd);
    cmd.args(["serve", "--listen", &opts.listen, "--ops-listen", &opts.ops_listen, "--database-url", db_url])
        .env("ROSTER_ADMIN_TOKEN", admin_token)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawning {BIN}: {e}"));
    let log: Log = Arc::new(Mutex::new(VecDeque::new()));
    let watchdog = spawn_watchdog(child.id(), dir);

    let (tx, rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout pipe"));
    let stderr = child.stderr.take().unwrap_or_else(|| panic!("no stderr pipe"));
    {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                push_log(&log, format!("stdout| {line}"));
                let _ = tx.send(line);
            }
        });
    }
    {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                push_log(&log, format!("stderr| {line}"));
            }
        });
    }

    let deadline = Instant::now() + READY_TIMEOUT;
    let mut public = None;
    let mut ops = None;
    let mut base = None;
    let mut token = None;
    let mut proc = Proc { child, watchdog, log };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
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
                let logs = dump_log(&proc.log);
                proc.kill();
                panic!("roster serve did not print `roster: ready` within {READY_TIMEOUT:?}; output:\n{logs}");
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                std::thread::sleep(Duration::from_millis(200));
                let status = proc.child.try_wait().ok().flatten();
                let logs = dump_log(&proc.log);
                proc.kill();
                panic!("roster serve closed stdout before `roster: ready` (exit: {status:?}); output:\n{logs}");
            }
        }
    }
    let (Some(public_addr), Some(ops_addr)) = (public, ops) else {
        let logs = dump_log(&proc.log);
        proc.kill();
        panic!("roster serve printed `ready` without both `listening on` lines; output:\n{logs}");
    };
    let bootstrap = match (base, token) {
        (Some(scim_base_url), Some(token)) => Some(Bootstrap { scim_base_url, token }),
        (None, None) => None,
        (b, t) => {
            let logs = dump_log(&proc.log);
            proc.kill();
            panic!("only one of the bootstrap lines was printed (base {b:?}, token {t:?}); output:\n{logs}");
        }
    };
    (proc, Startup { public_addr, ops_addr, bootstrap })
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
    let mut cmd = Command::new(BIN);
    scrub_env(&mut cmd);
    cmd.args(args).env("RUST_LOG", "warn").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
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
